"""MkDocs hook: the CLI reference page, written at build time from seglab's typer app.

Why generated: the options, their help texts and defaults live in the code (``seglab.cli`` and the config
fields behind ``seglab train``), so a page copied by hand would drift from them. The hook walks the click
command tree that ``typer.main.get_command`` builds and replaces the marker in ``reference/cli.md`` with
one section per command: usage, help, arguments and options. It needs no network and no plugin.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

MARKER = "<!-- cli-reference -->"
SRC = Path(__file__).resolve().parents[2] / "src"


def on_page_markdown(markdown, page, config, files, **kwargs):
    """MkDocs event: fill the marker on the page that has it; other pages pass through unchanged."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_markdown())


def cli_markdown() -> str:
    """Markdown for every command of ``seglab``, in the order ``seglab --help`` lists them."""
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))  # this checkout's seglab, installed or not
    import typer

    from seglab.cli import app

    root = typer.main.get_command(app)
    root_ctx = root.context_class(root, info_name="seglab")  # typer ships its own click
    parts = [_command(root, root_ctx, ["seglab"])]
    for path, command, ctx in _leaves(root, root_ctx, ["seglab"]):
        parts.append(_command(command, ctx, path))
    return "\n".join(parts)


def _leaves(group, ctx, path):
    """(path, command, context) of every command and command group below ``group``, depth first."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        sub = type(ctx)(command, info_name=name, parent=ctx)
        yield [*path, name], command, sub
        if hasattr(command, "list_commands"):
            yield from _leaves(command, sub, [*path, name])


def _command(command, ctx, path) -> str:
    """One section: heading, usage, help text, then the arguments and options as tables."""
    _fill_choices(command, ctx)
    pieces = [re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), p) for p in command.collect_usage_pieces(ctx)]
    usage = " ".join([*path, *pieces])  # typer writes arguments as {name}; --help shows NAME
    lines = [f"## {' '.join(path)}", "", "```", usage, "```", ""]
    lines += [_text(paragraph) + "\n" for paragraph in (command.help or "").split("\n\n") if paragraph.strip()]
    if hasattr(command, "list_commands"):
        rows = [(f"[`{' '.join([*path, name])}`](#{'-'.join([*path, name])})",
                 _text((command.get_command(ctx, name).help or "").split("\n\n")[0]))
                for name in command.list_commands(ctx)]
        lines += _table(["command", "what it does"], rows)
        return "\n".join(lines)
    records = {}  # table title -> (name, help) rows, as --help shows them
    for p in command.params:
        record = p.get_help_record(ctx)
        if record is not None:
            title = "Arguments" if p.param_type_name == "argument" else getattr(p, "rich_help_panel", None) or "Options"
            records.setdefault(title, []).append((f"`{record[0]}`", _text(record[1])))
    for title, rows in sorted(records.items(), key=lambda kv: kv[0] != "Arguments"):
        lines += [f"**{_text(title)}**", ""]
        lines += _table(["argument" if title == "Arguments" else "option", "help"], rows)
    return "\n".join(lines)


def _fill_choices(command, ctx) -> None:
    """Commands made by ``with_choices`` append each option's allowed values to its help when help is shown;
    show it once (into a discarded buffer) so the reference lists the same values."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        command.get_help(ctx)


def _table(header: list[str], rows) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return [*out, ""]


def _text(text: str) -> str:
    """Help text as Markdown table cell text: one line, and nothing read as HTML, emphasis or a cell break."""
    parts = re.split(r"(`[^`]*`)", " ".join(text.split()))
    for i in range(0, len(parts), 2):  # the odd parts are code spans, shown as written
        for raw, safe in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("*", "\\*"), ("|", "\\|"), ("_", "\\_")):
            parts[i] = parts[i].replace(raw, safe)
    return "".join(parts)

