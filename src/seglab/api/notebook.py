"""What makes the API pleasant in IPython and Jupyter: seglab's errors as their one line, and figures inline."""

from __future__ import annotations

import base64
import html
import sys
import tempfile
from pathlib import Path

from seglab.errors import SeglabError


def _shell():
    """The running IPython shell (a terminal or a Jupyter kernel), or None outside IPython."""
    ipython = sys.modules.get("IPython")
    try:
        return ipython.get_ipython() if ipython is not None else None
    except Exception:  # noqa: BLE001 - an IPython too old or too odd to ask: treat as plain Python
        return None


def _short_traceback(shell, etype, value, tb, tb_offset=None):
    """IPython's exception_only view: ``ConfigError: config key 'train.lr': ...``, the line the CLI prints;
    ``%tb`` still shows the whole traceback (IPython keeps it in sys.last_traceback)."""
    shell.showtraceback((etype, value, tb), exception_only=True)


def one_line_errors() -> None:
    """In IPython, show seglab's user errors as one line instead of a traceback through the library. Only
    where no other custom exception handler is installed, and only once."""
    shell = _shell()
    if shell is None or getattr(shell, "custom_exceptions", ()) not in ((), (SeglabError,)):
        return
    shell.set_custom_exc((SeglabError,), _short_traceback)


def img_tag(path: Path | None, alt: str) -> str:
    """An <img> with the PNG inlined as a data URI (a notebook keeps it), or nothing without a figure."""
    if path is None or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" style="max-width:100%">'


def figure_html(make, alt: str) -> str:
    """``make(path)`` draws a figure into ``path`` (the report's figure functions), inlined as an <img>."""
    with tempfile.TemporaryDirectory() as tmp:
        return img_tag(make(Path(tmp) / "figure.png"), alt)
