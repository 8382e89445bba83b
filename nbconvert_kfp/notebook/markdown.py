"""Markdown: the markdown cells a step's report shows, as safe HTML.

A small subset of Markdown, rendered at conversion so that steps need no renderer:
headings, paragraphs, lists, fenced code, inline code, emphasis and http(s) links. Every
text is escaped, so raw HTML in a cell shows as text and no link runs script.
"""

from __future__ import annotations

import html
import re

_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\*([^*]+)\*|\[([^\]]+)\]\(([^)\s]+)\)")


def _inline(text: str) -> str:
    """Escaped text with Markdown's code spans, bold, italics and http(s) links."""
    out, last = [], 0
    for match in _INLINE.finditer(text):
        out.append(html.escape(text[last:match.start()]))
        code, bold, italic, label, url = match.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{_inline(bold)}</strong>")
        elif italic is not None:
            out.append(f"<em>{_inline(italic)}</em>")
        elif re.match(r"https?://", url):
            out.append(f'<a href="{html.escape(url, quote=True)}">{_inline(label)}</a>')
        else:
            out.append(html.escape(match.group(0)))
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def to_html(text: str) -> str:
    """A small, safe Markdown: headings, paragraphs, lists, fenced code, inline code, emphasis and
    http(s) links. Raw HTML shows as text."""
    blocks: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []
    fence: list[str] | None = None

    def close() -> None:
        if paragraph:
            blocks.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if items:
            blocks.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in text.splitlines():
        if fence is not None:
            if line.strip().startswith("```"):
                blocks.append(f"<pre>{html.escape(chr(10).join(fence))}</pre>")
                fence = None
            else:
                fence.append(line)
            continue
        heading = re.match(r"(#{1,6})\s+(.*)", line)
        item = re.match(r"\s*(?:[-*+]|\d+[.)])\s+(.*)", line)
        if line.strip().startswith("```"):
            close()
            fence = []
        elif heading:
            close()
            level = len(heading.group(1))
            blocks.append(f"<h{level}>{_inline(heading.group(2).rstrip('#').strip())}</h{level}>")
        elif item:
            if paragraph:
                close()
            items.append(item.group(1))
        elif not line.strip():
            close()
        elif items and line.startswith((" ", "\t")):
            items[-1] += " " + line.strip()
        else:
            if items:
                close()
            paragraph.append(line.strip())
    close()
    if fence is not None:
        blocks.append(f"<pre>{html.escape(chr(10).join(fence))}</pre>")
    return "\n".join(blocks)
