"""The documentation's relative links lead to files of the clone, nowhere outside it."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# Inline links and images, [text](target "title"), and reference definitions, [name]: target.
INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


def relative_links(document: Path) -> list[str]:
    text = FENCE.sub("", document.read_text())  # code is not links
    targets = INLINE.findall(text) + REFERENCE.findall(text)
    return [target for target in targets if not EXTERNAL.match(target)]


def test_the_link_finder_sees_each_kind_of_link(tmp_path: Path) -> None:
    document = tmp_path / "x.md"
    document.write_text(
        '[a](a.md) ![b](img/b.png "B") [c](https://example.org) [d](#top)\n'
        "[e]: ../e.md\n```\n[f](not-a-link.md)\n```\n"
    )
    assert relative_links(document) == ["a.md", "img/b.png", "#top", "../e.md"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_clone(document: Path) -> None:
    broken = []
    for target in relative_links(document):
        path = unquote(target.partition("#")[0])
        if not path:  # an anchor in the same document
            continue
        resolved = (document.parent / path).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(target)
    assert broken == [], f"{document.name}: links that lead nowhere in the clone: {broken}"
