"""report.html from report.md: the same Markdown rendered by markdown-it-py into a jinja2 page.

The HTML says nothing the Markdown does not: every word and number comes from the Markdown, and the
page only arranges and styles it. The title and the lines under it go into the header, the contents
line becomes the sticky navigation, and the Summary's "key: value" bullets are shown again as cards.
Table cells take their colour from their own text (a leading + or - sign, a lone "—"), images are
embedded as data URIs and the CSS inline, so the page is one file that needs no network.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from pathlib import Path

import jinja2
from markdown_it import MarkdownIt
from markdown_it.token import Token

_PAGE = jinja2.Environment(loader=jinja2.PackageLoader("seglab.study", "templates"), autoescape=True)


def slug(title: str) -> str:
    """The id GitHub gives a heading ('Per-class IoU' -> 'per-class-iou'), so one link works in both files."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def _plain(inline: Token) -> str:
    """An inline token's words without their markup."""
    return "".join(t.content for t in inline.children or [] if t.type in ("text", "code_inline"))


def _heading_ids(state) -> None:
    """Core rule: every heading gets its GitHub id; repeats get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    for opening, inline in zip(state.tokens, state.tokens[1:]):
        if opening.type == "heading_open":
            base = slug(_plain(inline))
            n = seen.get(base, 0)
            seen[base] = n + 1
            opening.attrSet("id", f"{base}-{n}" if n else base)


def _td_open(self, tokens: list[Token], idx: int, options, env) -> str:
    """A cell is green or red by its own leading sign (Δ columns) and muted when it only says '—'."""
    text = _plain(tokens[idx + 1])
    tone = "pos" if text.startswith("+") else "neg" if text[:1] in ("-", "−") else "muted" if text == "—" else ""
    if tone:
        tokens[idx].attrJoin("class", tone)
    return self.renderToken(tokens, idx, options, env)


def _table_open(self, tokens: list[Token], idx: int, options, env) -> str:
    return '<div class="scroll">' + self.renderToken(tokens, idx, options, env)


def _table_close(self, tokens: list[Token], idx: int, options, env) -> str:
    return self.renderToken(tokens, idx, options, env) + "</div>"


def _image(self, tokens: list[Token], idx: int, options, env) -> str:
    """An image file next to report.md becomes a data URI; one from elsewhere is shown as its alt text, as
    the page must not load anything."""
    src = tokens[idx].attrGet("src") or ""
    mime, path = mimetypes.guess_type(src)[0] or "", env["root"] / src
    if not src.startswith("data:"):
        if "://" in src or src.startswith("/") or not mime.startswith("image/") or not path.is_file():
            return self.renderInline(tokens[idx].children or [], options, env)
        tokens[idx].attrSet("src", f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii"))
    return self.image(tokens, idx, options, env)


def markdown() -> MarkdownIt:
    """CommonMark with tables, raw HTML off (text from runs is shown, never interpreted), seglab's rules."""
    md = MarkdownIt("commonmark", {"html": False, "xhtmlOut": False}).enable("table")
    md.core.ruler.push("heading_ids", _heading_ids)
    for name, rule in (("td_open", _td_open), ("table_open", _table_open), ("table_close", _table_close),
                       ("image", _image)):
        md.add_render_rule(name, rule)
    return md


def render_html(text: str, root: Path) -> str:
    """The page for Markdown ``text`` whose relative image paths are read from ``root``."""
    md, env = markdown(), {"root": Path(root)}
    title, nav, intro, sections = None, None, [], []
    for block in _blocks(md.parse(text, env)):
        tag = block[0].tag if block[0].type == "heading_open" else None
        if tag == "h1" and title is None:
            title = block[1]
        elif tag == "h2":
            sections.append(block)
        elif sections:
            sections[-1] += block
        elif nav is None and any(t.type == "link_open" for t in block[1].children or []):
            nav = block[1]  # the contents line: the paragraph of links before the first section
        else:
            intro.append(block)

    def inline(token: Token | None) -> str:
        return "" if token is None else md.renderer.renderInline(token.children or [], md.options, env)

    return _PAGE.get_template("report.html.j2").render(
        title=_plain(title) if title else "report", heading=inline(title), nav=inline(nav),
        intro=[md.renderer.render(b, md.options, env) for b in intro],
        cards=_cards(md, sections[0] if sections else [], env),
        sections=[md.renderer.render(s, md.options, env) for s in sections])


def _blocks(tokens: list[Token]) -> list[list[Token]]:
    """The top-level blocks (a heading, a paragraph, a whole table or list), each as its tokens."""
    out, depth = [], 0
    for t in tokens:
        if depth == 0:
            out.append([])
        out[-1].append(t)
        depth += t.nesting
    return out


def _cards(md: MarkdownIt, section: list[Token], env: dict) -> list[tuple[str, str]]:
    """The 'key: value' items of the first bullet list in ``section`` as (key, value) HTML."""
    start = next((i for i, t in enumerate(section) if t.type == "bullet_list_open"), len(section))
    items = []
    for t in section[start:]:
        if t.type == "bullet_list_close" and t.level == section[start].level:
            break
        if t.type == "inline" and ": " in t.content:
            key, value = t.content.split(": ", 1)
            items.append((md.renderInline(key, env), md.renderInline(value, env)))
    return items
