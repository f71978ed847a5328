"""GraphiQL's vendored files: fetched from the npm registry, verified, and pinned.

The manifest (src/storyline/web/static/graphiql/manifest.json) names, per npm package, its
version and which files of its tarball are vendored under which local name. For each
package this asks the registry for that version's ``dist.tarball`` and ``dist.integrity``,
downloads the tarball, refuses it unless its hash is the registry's ``dist.integrity``,
and takes the named files from it. The manifest records the tarball's URL and integrity
and each file's own sha384 integrity, which the GraphiQL page puts in its tags.

    python tools/graphiql_assets.py           # re-download, verify, write files + manifest
    python tools/graphiql_assets.py --check   # re-download, verify, compare; writes nothing

To update: change a package's ``version`` (and a file's ``from`` if its place in the
tarball moved) in the manifest, run ``make graphiql-assets``, then the GraphiQL tests.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

ASSETS = Path(__file__).resolve().parents[1] / "src" / "storyline" / "web" / "static" / "graphiql"
MANIFEST = ASSETS / "manifest.json"
REGISTRY = "https://registry.npmjs.org"


def integrity(data: bytes, algorithm: str = "sha384") -> str:
    """A Subresource Integrity value (the form npm's ``dist.integrity`` also takes). As
    storyline.web.graphiql computes it: this script needs nothing of the package."""
    digest = hashlib.new(algorithm, data).digest()
    return f"{algorithm}-{base64.b64encode(digest).decode()}"


def verified_tarball(http: httpx.Client, name: str, version: str) -> tuple[str, str, bytes]:
    """The package's tarball URL, its registry integrity, and its bytes once they match."""
    meta = http.get(f"{REGISTRY}/{quote(name, safe='@')}/{quote(version)}")
    meta.raise_for_status()
    dist = meta.json()["dist"]
    expected: str = dist["integrity"]
    algorithm = expected.split("-", 1)[0]
    if algorithm not in ("sha512", "sha384", "sha256"):
        raise SystemExit(f"{name}@{version}: the registry's integrity is {algorithm}")
    tarball = http.get(dist["tarball"])
    tarball.raise_for_status()
    if integrity(tarball.content, algorithm) != expected:
        raise SystemExit(f"{name}@{version}: the tarball does not match {expected}")
    return dist["tarball"], expected, tarball.content


def member(tarball: bytes, path: str) -> bytes:
    """``path`` of the package (npm tarballs put everything under ``package/``)."""
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        extracted = archive.extractfile(f"package/{path}")
        if extracted is None:
            raise SystemExit(f"package/{path} is not a file")
        return extracted.read()


def refresh(manifest: dict[str, Any], *, write: bool) -> list[str]:
    """Fetch every package; write its files (``write``) or list what differs from them."""
    differences = []
    with httpx.Client(timeout=60, follow_redirects=True) as http:
        for package in manifest["packages"]:
            name, version = package["name"], package["version"]
            url, tarball_integrity, tarball = verified_tarball(http, name, version)
            print(f"{name}@{version}: {tarball_integrity}")
            if package.get("tarball") == url and package.get("integrity") != tarball_integrity:
                # npm never republishes a version: the same tarball must keep its hash.
                raise SystemExit(f"{name}@{version}: the registry's integrity changed")
            files = package.pop("files")
            package.update(tarball=url, integrity=tarball_integrity, files=files)
            for local, entry in files.items():
                data = member(tarball, entry["from"])
                entry["integrity"] = integrity(data)
                target = ASSETS / local
                if write:
                    target.write_bytes(data)
                elif not target.exists() or target.read_bytes() != data:
                    differences.append(f"{local} is not {name}@{version}'s {entry['from']}")
    return differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare with the registry, write nothing"
    )
    args = parser.parse_args()
    manifest = json.loads(MANIFEST.read_text())
    recorded = json.dumps(manifest, sort_keys=True)
    differences = refresh(manifest, write=not args.check)
    if args.check:
        if json.dumps(manifest, sort_keys=True) != recorded:
            differences.append("the manifest's integrity values are not the registry's")
        for difference in differences:
            print(difference, file=sys.stderr)
        sys.exit(1 if differences else 0)
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
