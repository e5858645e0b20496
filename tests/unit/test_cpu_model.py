"""The processor's name, which every report carries: two hosts with the same GPU can differ by half."""

from __future__ import annotations

from dashboard.engine import hardware

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9654   96-Core Processor
flags\t\t: fpu vme

processor\t: 1
model name\t: AMD EPYC 9654   96-Core Processor
"""


def test_the_cpu_is_named_by_the_first_model_name_line_with_its_spaces_tidied():
    assert hardware.cpu_model(CPUINFO) == "AMD EPYC 9654 96-Core Processor"


def test_without_a_model_name_line_the_name_falls_back_to_what_python_knows():
    name = hardware.cpu_model("processor\t: 0\nmodel name\t:   \n")
    assert name and name != "AMD EPYC 9654 96-Core Processor"
    assert "model name" not in name
