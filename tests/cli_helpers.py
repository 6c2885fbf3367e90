"""Run the real ``seglab`` entry point in-process and capture what a user would see."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from seglab.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys, *args: str) -> Result:
    old = sys.argv
    sys.argv = ["seglab", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """Exit code 2, a single 'error: ...' line naming what is wrong, and no traceback."""
    assert result.code == 2, (result.code, result.err[-2000:])
    lines = [ln for ln in result.err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


__all__ = ["assert_one_line_error", "pytest", "run_cli"]
