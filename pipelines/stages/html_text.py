"""The visible text of an HTML page (what the text decoder embeds for an HTML file).

A small :class:`html.parser.HTMLParser` subclass (standard library): the text of every element
except ``script``, ``style``, ``template``, ``noscript`` and comments, entities resolved; block
elements (paragraphs, headings, list items, table cells, ``br``) end a line; runs of spaces and
tabs fold to one space and runs of blank lines to one.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_HIDDEN = frozenset({"script", "style", "template", "noscript", "svg", "math"})
_BLOCKS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt"),
        *("figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6"),
        *("header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table"),
        *("td", "th", "title", "tr", "ul"),
    }
)
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")
_HTML_START = re.compile(
    r"\A(?:\ufeff)?\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)\b", re.I | re.S
)


def looks_like_html(text: str) -> bool:
    """True when ``text`` starts like an HTML document (a doctype or an ``<html>`` element)."""
    return _HTML_START.match(text[:4096]) is not None


class _Visible(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_text(source: str) -> str:
    """The visible text of the HTML ``source``."""
    parser = _Visible()
    parser.feed(source)
    parser.close()
    text = "".join(parser.parts).replace("\xa0", " ")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
