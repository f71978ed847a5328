"""Debian's Chromium, headless, driven by Playwright: for the pages Storyline serves.

Needs ``/usr/bin/chromium`` (``make browser`` installs it); a test that asks for it without
it is skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
# Without the background-networking flags, Chromium's own connections crowd out the page's.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def offline_args(dead_port: int) -> list[str]:
    """Arguments that leave Chromium nothing but 127.0.0.1: no other name resolves, and a
    request for any other host (an address too, which needs no name) goes to a proxy on
    ``dead_port``, where nothing listens. Loopback bypasses the proxy."""
    return [
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--proxy-server=http://127.0.0.1:{dead_port}",
        "--proxy-bypass-list=127.0.0.1",
    ]


@asynccontextmanager
async def chromium(*extra_args: str) -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        pytest.skip(f"{CHROMIUM} is absent (Debian's chromium package; `make browser`)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args]
        )
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def watched_page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh page (own storage) that fails the test on any JavaScript error, a policy
    violation included (Chromium reports those as console errors)."""
    context = await browser.new_context(viewport={"width": 1200, "height": 800})
    page = await context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text} at {message.location}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    try:
        yield page
    finally:
        await context.close()
    assert not problems, problems


def csp_directives(policy: str) -> dict[str, list[str]]:
    directives = {}
    for directive in policy.split(";"):
        name, *values = directive.split()
        directives[name] = values
    return directives
