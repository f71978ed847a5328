"""GraphiQL at /graphql: this package's own pinned copies of its files, working offline.

The browser test runs in Debian's Chromium with nothing but 127.0.0.1 reachable (skipped
without Chromium; ``make browser``). Set STORYLINE_UPDATE_SCREENSHOT=1 to rewrite
docs/graphiql.png.
"""

from __future__ import annotations

import glob
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Locator, Page, WebSocket, expect

from storyline.web import graphiql
from tests.support import Api, bearer, new_user
from tests.support.browser import csp_directives
from tests.support.graphiql import served_graphiql

expect.set_options(timeout=15_000)  # a loaded 2-core machine; see test_editor_page
NPM_PACKAGE = re.compile(r"(?:@[a-z0-9-]+/)?[a-z0-9.-]+")


def manifest_packages() -> list[dict[str, Any]]:
    packages: list[dict[str, Any]] = json.loads(graphiql.MANIFEST.read_text())["packages"]
    return packages


def test_the_vendored_files_are_those_of_the_pinned_npm_tarballs() -> None:
    """Each file is byte for byte the one the manifest pins (tools/graphiql_assets.py took
    it from the tarball whose registry integrity the manifest records)."""
    pinned = set()
    for package in manifest_packages():
        name, version = package["name"], package["version"]
        assert NPM_PACKAGE.fullmatch(name), name
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), package
        tail = name.rsplit("/", 1)[-1]
        assert package["tarball"] == f"https://registry.npmjs.org/{name}/-/{tail}-{version}.tgz"
        assert re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", package["integrity"]), package
        for file, entry in package["files"].items():
            served = graphiql.integrity((graphiql.ASSETS / file).read_bytes())
            assert served == entry["integrity"], f"{file} is not {name}@{version}'s"
            pinned.add(file)
    present = {path.name for path in graphiql.ASSETS.iterdir()}
    assert present == pinned | set(graphiql.OWN_FILES) | {graphiql.MANIFEST.name}


def test_graphiqls_files_are_package_data() -> None:
    """An installed wheel serves them: setuptools' package-data globs take each one."""
    project = Path(__file__).resolve().parents[1]
    config = tomllib.loads((project / "pyproject.toml").read_text())
    package = project / "src" / "storyline"
    taken = {
        Path(match)
        for pattern in config["tool"]["setuptools"]["package-data"]["storyline"]
        for match in glob.glob(pattern, root_dir=package)
    }
    for path in graphiql.ASSETS.iterdir():
        assert path.relative_to(package) in taken, path


async def test_graphiql_loads_only_this_servers_files_each_pinned(api: Api) -> None:
    page, loaded = await served_graphiql(api.http)
    host = api.url.removeprefix("http://")
    policy = csp_directives(page.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]  # no inline script, no eval, no CDN
    assert policy["style-src"] == ["'self'", graphiql.DIALOG_STYLE]
    assert policy["connect-src"] == ["'self'", f"ws://{host}", f"wss://{host}"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert page.headers["x-content-type-options"] == "nosniff"

    vendored = {
        file: entry["integrity"]
        for package in manifest_packages()
        for file, entry in package["files"].items()
        if file.endswith((".js", ".css"))
    }
    files = {urlsplit(each.url).path.removeprefix("/static/graphiql/"): each for each in loaded}
    assert set(files) == set(vendored) | set(graphiql.OWN_FILES)
    for file, integrity in vendored.items():
        assert files[file].integrity == integrity, file
    scripts = [file for file, each in files.items() if each.tag == "script"]
    # React first, GraphiQL on it, the explorer plugin on GraphiQL, then the page's own.
    assert scripts == [
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql.min.js",
        "plugin-explorer.umd.js",
        "storyline-graphiql.js",
    ]


async def paste(page: Page, editor: Locator, text: str) -> None:
    """Replace a CodeMirror editor's text as pasting does: one input, no keystrokes (typing
    would close brackets and open completions)."""
    await editor.click()
    await page.keyboard.press("Control+A")
    await page.keyboard.insert_text(text)


async def shown(editor: Locator) -> Any:
    """The JSON a CodeMirror editor holds (CodeMirror hangs itself on its element)."""
    return json.loads(await editor.evaluate("element => element.CodeMirror.getValue()"))


async def test_offline_graphiql_orders_a_story_and_watches_it_complete(
    api: Api, page: Page, project_root: Path
) -> None:
    requested: list[str] = []
    sockets: list[WebSocket] = []
    frames_sent: list[str | bytes] = []

    def on_websocket(socket: WebSocket) -> None:
        sockets.append(socket)
        # A function of Python's own: Playwright marks the handler it is given.
        socket.on("framesent", lambda payload: frames_sent.append(payload))

    page.on("request", lambda request: requested.append(request.url))
    page.on("websocket", on_websocket)

    response = await page.goto(f"{api.url}/graphql")
    assert response is not None
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    run = page.get_by_role("button", name="Execute query (Ctrl-Enter)")
    stop = page.get_by_role("button", name="Stop query (Ctrl-Enter)")
    await expect(run).to_be_visible()
    tabs = page.get_by_role("tablist", name="Select active operation")
    query = page.get_by_role("region", name="Query Editor").locator(".CodeMirror")
    headers = page.get_by_role("region", name="Headers").locator(".CodeMirror").filter(visible=True)
    result_window = page.get_by_role("region", name="Result Window")
    result = result_window.locator(".CodeMirror")

    # A tab of our own beside the welcome one: with two, each shows its operation's name,
    # which tells when GraphiQL has read what was pasted (it runs the one it last read).
    await page.get_by_role("button", name="Add tab").click()
    authorization = {"Authorization": bearer(new_user())}
    await paste(page, headers, json.dumps(authorization))
    await paste(
        page,
        query,
        'mutation Order {\n  generateStory(input: {prompt: "A lighthouse keeper adopts a seal"})'
        " {\n    id\n    status\n    creditsUsed\n  }\n}\n",
    )
    await expect(tabs.get_by_role("button", name="Order", exact=True)).to_be_visible()
    await run.click()
    await expect(result_window).to_contain_text("creditsUsed")
    ordered = (await shown(result))["data"]["generateStory"]
    assert (ordered["status"], ordered["creditsUsed"]) == ("PROCESSING", 60)

    await paste(
        page,
        query,
        f'subscription Watch {{\n  projectStatus(projectId: "{ordered["id"]}") {{\n'
        "    status\n    version\n    progress\n    stage\n    resultUrl\n  }\n}\n",
    )
    await expect(tabs.get_by_role("button", name="Watch", exact=True)).to_be_visible()
    await run.click()
    await expect(stop).to_be_visible()  # subscribed: the stream is open
    await expect(result_window).to_contain_text("projectStatus")
    assert (await shown(result))["data"]["projectStatus"]["status"] == "PROCESSING"

    # The pipeline reports; each report reaches GraphiQL over the open stream.
    reported = await api.report(
        projectId=ordered["id"], status="PROCESSING", progress=40, stage="render"
    )
    assert "errors" not in reported, reported
    await expect(result_window).to_contain_text('"progress": 40')
    reported = await api.report(
        projectId=ordered["id"], status="COMPLETED", resultUrl="https://cdn.example/seal.mp4"
    )
    assert "errors" not in reported, reported
    await expect(result_window).to_contain_text('"COMPLETED"')
    await expect(run).to_be_visible()  # the server ended the stream after the last state
    final = (await shown(result))["data"]["projectStatus"]
    assert final["status"] == "COMPLETED"
    assert final["resultUrl"] == "https://cdn.example/seal.mp4"
    assert final["progress"] == 100

    if os.environ.get("STORYLINE_UPDATE_SCREENSHOT") == "1":
        await headers.click()
        await page.keyboard.press("Control+Home")  # the header's start in view, not its end
        await page.screenshot(path=project_root / "docs" / "graphiql.png")

    # Nothing went anywhere but this server; the subscription went over its WebSocket,
    # authenticated by the pasted header as the connection_init payload.
    hosts = {urlsplit(url).hostname for url in requested if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, requested
    assert [ws.url for ws in sockets] == [f"{api.url.replace('http', 'ws', 1)}/graphql"]
    assert json.loads(frames_sent[0]) == {"type": "connection_init", "payload": authorization}


async def test_graphiqls_panes_and_dialogs_keep_to_its_policy(api: Api, page: Page) -> None:
    """Each opened once: a policy violation is a console error, failing the test."""
    await page.goto(f"{api.url}/graphql")
    for pane in ("Documentation Explorer", "History", "GraphiQL Explorer"):
        await page.get_by_role("button", name=f"Show {pane}").click()
        await expect(page.get_by_role("button", name=f"Hide {pane}")).to_be_visible()
    for dialog in ("Open settings dialog", "Open short keys dialog"):
        await page.get_by_role("button", name=dialog).click()
        await expect(page.get_by_role("dialog")).to_be_visible()
        await page.keyboard.press("Escape")
        await expect(page.get_by_role("dialog")).to_be_hidden()
