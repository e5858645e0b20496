"""`python -m dashboard table`: bad input is refused with a message saying what to change, before any
server starts."""

from __future__ import annotations

import pytest

from dashboard.cli import main


@pytest.mark.parametrize(
    ("extra", "wanted"),
    [
        (["--orders", "1"], "--orders must be at least 2"),
        (["--minutes", "0"], "--minutes must be a positive number"),
        (["--flags", "warp_speed"], "warp_speed is not a row of the table"),
        (["--handout", "x.gif"], "--handout must end in .png or .pdf"),
    ],
)
def test_bad_input_is_refused_with_what_to_change(tmp_path, capsys, extra, wanted) -> None:
    code = main(["--lang", "en", "table", "--json", str(tmp_path / "t.json"), "--no-history", *extra])
    assert code == 2
    assert wanted in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


def test_the_refusal_speaks_vietnamese_too(tmp_path, capsys) -> None:
    code = main(["--lang", "vi", "table", "--json", str(tmp_path / "t.json"), "--orders", "1"])
    assert code == 2
    assert "phải từ 2 trở lên" in capsys.readouterr().err
