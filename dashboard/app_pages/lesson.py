"""Lesson: the presenter steps through a lesson of configs/lessons/; everyone guesses before each
measurement and sees the measured answer beside the class's guesses."""

from dashboard.ui import lesson_view

lesson_view.page()
