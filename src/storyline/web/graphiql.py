"""GraphiQL's page, on this package's own copies of its files: no CDN, works offline.

The vendored files and their versions are in static/graphiql/manifest.json (written by
tools/graphiql_assets.py from the npm registry). Every tag carries the file's integrity,
the manifest's for the vendored ones, so a file that is not the one pinned is refused by
the browser rather than run. The page has no inline script or style: its own code is
static/graphiql/storyline-graphiql.js and .css, under a policy as strict as the editor's
but for one style GraphiQL's dialogs add (DIALOG_STYLE).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from html import escape
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from storyline.web import NOSNIFF, content_security_policy

ASSETS = Path(__file__).parent / "static" / "graphiql"
MANIFEST = ASSETS / "manifest.json"
# Where the page links them from, relative to the page (/graphql): /static/graphiql/.
URL_PREFIX = "static/graphiql/"
OWN_FILES = ("storyline-graphiql.css", "storyline-graphiql.js")
# GraphiQL's dialogs (Radix, through react-remove-scroll-bar) add a <style> while open, to
# keep the page behind them from scrolling. Its text depends only on the page's scroll bar
# and body margins, which this page does not have (storyline-graphiql.css): every measure
# in it is 0px, so its hash admits it, and no other inline style.
DIALOG_STYLE = "'sha256-Y/huXlwoYkVyQlxwSVcCi1RCDGDCSVBzDt0hYP9qlTc='"
# GraphiQL's stylesheet embeds its fonts and a few images as data: URLs.
POLICY = (
    f"default-src 'none'; script-src 'self'; style-src 'self' {DIALOG_STYLE}; "
    "font-src data:; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'; connect-src 'self'"
)


@dataclass(frozen=True)
class Asset:
    file: str  # its name in static/graphiql/
    integrity: str  # a Subresource Integrity value


def integrity(data: bytes, algorithm: str = "sha384") -> str:
    """A Subresource Integrity value (npm's ``dist.integrity`` has the same form)."""
    return f"{algorithm}-{base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def vendored() -> list[Asset]:
    """The manifest's files, in its order (the order the page loads them in)."""
    manifest = json.loads(MANIFEST.read_text())
    return [
        Asset(file, entry["integrity"])
        for package in manifest["packages"]
        for file, entry in package["files"].items()
    ]


@cache
def page_html() -> str:
    """The page: a tag for each of the manifest's stylesheets and scripts, in its order,
    then for the page's own two files."""
    own = [Asset(file, integrity((ASSETS / file).read_bytes())) for file in OWN_FILES]
    assets = [*vendored(), *own]
    stylesheets = [
        f'<link rel="stylesheet" href="{_href(a)}" integrity="{a.integrity}">'
        for a in assets
        if a.file.endswith(".css")
    ]
    # Deferred: run in this order once the document is parsed.
    scripts = [
        f'<script defer src="{_href(a)}" integrity="{a.integrity}"></script>'
        for a in assets
        if a.file.endswith(".js")
    ]
    head = "\n  ".join([*stylesheets, *scripts])
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Storyline · GraphiQL</title>
  <link rel="icon" href="data:,">
  {head}
</head>
<body>
  <div id="graphiql">Loading…</div>
</body>
</html>
"""


def _href(asset: Asset) -> str:
    return escape(URL_PREFIX + asset.file)


def graphiql_page(request: Request) -> Response:
    headers = {**NOSNIFF, "Content-Security-Policy": content_security_policy(request, POLICY)}
    return HTMLResponse(page_html(), headers=headers)
