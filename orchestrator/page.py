"""Markdown made a web page: rendered by markdown-it-py (CommonMark and tables, raw HTML off)
into one Jinja2 template with one stylesheet (``templates/``), every image embedded, so the
page is one self-contained file.

Tables scroll inside their own box and their cells wrap long words (run ids, metric keys), so
the page itself never grows wider than the window.
"""

from __future__ import annotations

import base64
import mimetypes
from importlib import resources
from pathlib import Path

from jinja2 import Environment, select_autoescape
from markdown_it import MarkdownIt

TEMPLATES = resources.files("orchestrator") / "templates"


def markdown_renderer(folder: Path) -> MarkdownIt:
    """CommonMark with tables; raw HTML in the text is shown as text, never run. Images whose
    source is a file under ``folder`` are embedded as data URIs; tables are wrapped in a box
    that scrolls sideways when they cannot wrap narrow enough."""
    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")

    def image(self, tokens, index, options, env) -> str:
        token = tokens[index]
        path = folder / str(token.attrGet("src"))
        if path.is_file():
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            data = base64.b64encode(path.read_bytes()).decode()
            token.attrSet("src", f"data:{kind};base64,{data}")
        return self.image(tokens, index, options, env)

    renderer.add_render_rule("image", image)
    renderer.add_render_rule(
        "table_open", lambda self, tokens, index, options, env: '<div class="table">\n<table>\n'
    )
    renderer.add_render_rule(
        "table_close", lambda self, tokens, index, options, env: "</table>\n</div>\n"
    )
    return renderer


def render(title: str, markdown: str, folder: Path) -> str:
    """``markdown`` (images relative to ``folder``) as a self-contained HTML page."""
    environment = Environment(autoescape=select_autoescape(default=True))
    template = environment.from_string((TEMPLATES / "page.html").read_text())
    return template.render(
        title=title,
        stylesheet=(TEMPLATES / "page.css").read_text(),
        body=markdown_renderer(folder).render(markdown),
    )
