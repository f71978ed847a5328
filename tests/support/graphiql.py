"""GraphiQL's page as a browser gets it: the files it loads, each checked against its tag."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx

from storyline.web.graphiql import integrity


@dataclass(frozen=True)
class Loaded:
    tag: str  # "script" or "link"
    url: str  # absolute
    integrity: str | None


class _Tags(HTMLParser):
    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base
        self.loaded: list[Loaded] = []
        self.inline_scripts = 0
        self.inline_styles = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "style" or "style" in found:
            self.inline_styles += 1
        if tag == "script" and found.get("src") is None:
            self.inline_scripts += 1
        elif tag == "script" or (tag == "link" and found.get("rel") == "stylesheet"):
            href = found.get("src") if tag == "script" else found.get("href")
            assert href is not None, found
            self.loaded.append(Loaded(tag, urljoin(self.base, href), found.get("integrity")))


async def served_graphiql(http: httpx.AsyncClient) -> tuple[httpx.Response, list[Loaded]]:
    """GET /graphql as a browser does, then every file the page loads.

    Asserts what makes it work offline and pinned: no inline script or style, nothing
    loaded from another origin, an integrity on every tag, and each file served matching
    its integrity (as a browser checks it). Returns the page and what it loads."""
    page = await http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    tags = _Tags(str(page.url))
    tags.feed(page.text)
    assert (tags.inline_scripts, tags.inline_styles) == (0, 0), page.text
    assert tags.loaded, page.text
    origin = urlsplit(str(page.url)).netloc
    for loaded in tags.loaded:
        assert urlsplit(loaded.url).netloc == origin, loaded
        assert loaded.integrity is not None, loaded
        served = await http.get(loaded.url)
        assert served.status_code == 200, loaded
        algorithm = loaded.integrity.split("-", 1)[0]
        assert integrity(served.content, algorithm) == loaded.integrity, loaded
    return page, tags.loaded
