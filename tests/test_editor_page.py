"""The story editor page, driven in headless Chromium against Storyline and its simulator.

Needs Debian's ``chromium`` (``make browser`` installs it); skipped without it. Set
STORYLINE_UPDATE_SCREENSHOT=1 to rewrite the README's screenshot, docs/editor.png.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import (
    Browser,
    Locator,
    Page,
    WebSocketRoute,
    expect,
)

from storyline.graphql_http import document_id
from storyline.schema.manifest import manifest_of, own_sources, write_manifest
from storyline.web import editor_document
from tests.support import Api, new_user, storyline, token
from tests.support.browser import csp_directives

COMPLETION_TIMEOUT_MS = 30_000
# Playwright's 5 s default is tight on a loaded 2-core machine (CI runs everything at once).
expect.set_options(timeout=15_000)
STAGES = ("script", "entities", "storyboard", "render", "done")
# A quiet spell longer than any timer of the page's (its refund look-up waits 3 s).
QUIET_MS = 4_000


@pytest.fixture(scope="module")
async def simulated(database_url: str, browser: Browser) -> AsyncIterator[Api]:
    """Storyline with its built-in simulator (no upstream_url), a step every 0.2 s."""
    async with storyline(database_url, simulator_step_seconds=0.2) as api:
        yield api


async def open_editor(page: Page, api: Api, raw_token: str) -> None:
    response = await page.goto(f"{api.url}/")
    # The page works under its own policy: a violation is a console error, failing the test.
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    await page.get_by_label("API token").fill(raw_token)
    await page.get_by_role("button", name="Use token").click()


async def completed_story(page: Page, prompt: str) -> Locator:
    """Generate a story of ``prompt``; its card, once it shows COMPLETED (the only card)."""
    await page.get_by_label("Prompt").fill(prompt)
    await page.get_by_role("button", name="Generate story").click()
    card = page.get_by_test_id("project-card")
    await expect(card.get_by_test_id("status")).to_have_text(
        "COMPLETED", timeout=COMPLETION_TIMEOUT_MS
    )
    return card


def timeline_versions(texts: list[str]) -> list[int]:
    """The versions a card's timeline entries name ("v3 · PROCESSING …"), in their order."""
    return [int(m[1]) for text in texts if (m := re.search(r"\bv(\d+)\b", text))]


async def test_the_editor_is_served_with_security_headers(api: Api) -> None:
    host = api.url.removeprefix("http://")
    page = await api.http.get("/")
    assert page.status_code == 200
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    policy = csp_directives(page.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval'
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["connect-src"] == ["'self'", f"ws://{host}", f"wss://{host}"]
    for asset in ("/static/editor.js", "/static/editor.css"):
        served = await api.http.get(asset)
        assert served.headers["x-content-type-options"] == "nosniff", asset


async def test_a_forged_host_cannot_write_the_policy(api: Api) -> None:
    page = await api.http.get("/", headers={"Host": "evil; script-src *"})
    policy = csp_directives(page.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]


async def test_a_prompt_goes_live_through_the_simulator_to_completed(
    simulated: Api, page: Page
) -> None:
    await open_editor(page, simulated, token(new_user()))
    await expect(page.get_by_test_id("balance")).to_have_text("100")
    await expect(page.get_by_test_id("price")).to_have_text("60")  # HD, the default
    await expect(page.get_by_label("Quality")).to_have_value("HD")
    await expect(page.get_by_label("Aspect ratio")).to_have_value("LANDSCAPE_16_9")

    await page.get_by_label("Prompt").fill("A lighthouse keeper adopts a seal")
    await page.get_by_role("button", name="Generate story").click()

    card = page.get_by_test_id("project-card")
    await expect(card).to_have_count(1)
    await expect(card.get_by_test_id("project-prompt")).to_have_text(
        "A lighthouse keeper adopts a seal"
    )
    await expect(card.get_by_test_id("status")).to_have_text(
        "COMPLETED", timeout=COMPLETION_TIMEOUT_MS
    )
    await expect(card.get_by_test_id("progress")).to_have_js_property("value", 100)
    await expect(card.get_by_test_id("percent")).to_have_text("100%")
    link = card.get_by_test_id("result-link")
    await expect(link).to_be_visible()
    await expect(link).to_have_attribute(
        "href", re.compile(r"^https://videos\.storyline\.invalid/.+\.mp4$")
    )
    await expect(card.get_by_test_id("project-error")).to_be_hidden()

    entries = card.get_by_test_id("timeline-entry")
    texts = await entries.all_inner_texts()
    for stage in STAGES:
        assert any(stage in text for text in texts), (stage, texts)
    versions = timeline_versions(texts)
    assert len(versions) == len(texts)
    assert versions == sorted(set(versions)), texts  # in version order, no duplicates
    assert "COMPLETED" in texts[-1]

    # the charge came by the account's subscription: the grant less the one charge
    await expect(page.get_by_test_id("balance")).to_have_text("40")

    # the token is remembered; the recent projects come back, finished
    await page.reload()
    await expect(page.get_by_label("API token")).not_to_have_value("")
    await expect(page.get_by_test_id("balance")).to_have_text("40")
    await expect(card.get_by_test_id("status")).to_have_text("COMPLETED")
    await expect(card.get_by_test_id("project-prompt")).to_have_text(
        "A lighthouse keeper adopts a seal"
    )


async def test_an_unaffordable_story_shows_required_and_balance(simulated: Api, page: Page) -> None:
    await open_editor(page, simulated, token(new_user()))
    await page.get_by_label("Quality").select_option("FULL_HD")
    await expect(page.get_by_test_id("price")).to_have_text("80")
    await page.get_by_label("Aspect ratio").select_option("SQUARE_1_1")
    card = await completed_story(page, "A square story")
    await expect(page.get_by_test_id("balance")).to_have_text("20")

    await page.get_by_role("button", name="Generate story").click()
    error = page.get_by_test_id("story-error")
    await expect(error).to_contain_text("INSUFFICIENT_CREDITS")
    await expect(error).to_contain_text("required 80, balance 20")
    await expect(card).to_have_count(1)  # nothing saved


async def test_a_bad_token_is_reported_as_unauthenticated(simulated: Api, page: Page) -> None:
    await open_editor(page, simulated, "not-a-token")
    error = page.get_by_test_id("account-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("UNAUTHENTICATED")
    await expect(page.get_by_test_id("balance")).to_have_text("\N{EN DASH}")  # no figure

    await page.get_by_label("Prompt").fill("A story nobody pays for")
    await page.get_by_role("button", name="Generate story").click()
    await expect(page.get_by_test_id("story-error")).to_contain_text("UNAUTHENTICATED")
    await expect(page.get_by_test_id("project-card")).to_have_count(0)


async def test_a_recent_project_moves_live_to_its_failure_and_refund(api: Api, page: Page) -> None:
    """Against the fake video service, whose pipeline reports are this test's to make."""
    user = new_user()
    body = await api.generate(user, prompt="A story the renderer chokes on")
    project = body["data"]["generateStory"]
    assert project["status"] == "PROCESSING", body

    await open_editor(page, api, token(user))
    await expect(page.get_by_test_id("balance")).to_have_text("40")
    card = page.get_by_test_id("project-card")
    await expect(card).to_have_attribute("data-project-id", project["id"])
    await expect(card.get_by_test_id("status")).to_have_text("PROCESSING")
    await expect(page.get_by_test_id("live-state")).to_have_text("live")

    await api.report(projectId=project["id"], status="PROCESSING", progress=40, stage="entities")
    await expect(card.get_by_test_id("percent")).to_have_text("40%")
    await expect(card.get_by_test_id("stage")).to_contain_text("entities")
    await api.report(
        projectId=project["id"], status="FAILED", stage="render", errorMessage="Out of film."
    )
    await expect(card.get_by_test_id("status")).to_have_text("FAILED")
    await expect(card.get_by_test_id("project-error")).to_have_text("Out of film.")
    await expect(card.get_by_test_id("result")).to_be_hidden()
    await expect(card.get_by_test_id("timeline-entry").last).to_contain_text("FAILED")
    await expect(card.get_by_test_id("refunded")).to_be_visible()
    await expect(page.get_by_test_id("balance")).to_have_text("100")


async def test_a_refused_job_shows_upstream_failed_and_its_project(api: Api, page: Page) -> None:
    await open_editor(page, api, token(new_user()))
    await expect(page.get_by_test_id("balance")).to_have_text("100")
    await page.get_by_label("Prompt").fill("A story the service refuses [422]")
    await page.get_by_role("button", name="Generate story").click()

    error = page.get_by_test_id("story-error")
    await expect(error).to_contain_text("UPSTREAM_FAILED")
    card = page.get_by_test_id("project-card")
    await expect(card.get_by_test_id("status")).to_have_text("FAILED")
    project_id = await card.get_attribute("data-project-id")
    assert project_id
    await expect(error).to_contain_text(project_id)
    await expect(card.get_by_test_id("refunded")).to_be_visible()
    await expect(page.get_by_test_id("balance")).to_have_text("100")


async def created(api: Api, user: str, **fields: Any) -> str:
    """A project made through the API, behind the page's back; its id."""
    body = await api.generate(user, **fields)
    project = body["data"]["generateStory"]
    assert project["status"] == "PROCESSING", body
    return str(project["id"])


async def shown_order(page: Page) -> list[str]:
    ids: list[str] = await page.get_by_test_id("project-card").evaluate_all(
        "cards => cards.map(card => card.dataset.projectId)"
    )
    return ids


async def test_one_subscription_keeps_the_list_and_the_balance_without_polling(
    api: Api, page: Page, project_root: Path
) -> None:
    """Projects made through the API appear and move, a FAILED one shows "refunded" and its
    credits come back, all by the one accountChanges subscription: the page's only requests
    meanwhile are one project(id:) each, for the prompt a new project's events lack."""
    posts: list[str] = []
    page.on(
        "request",
        lambda request: (
            posts.append(request.post_data or "")
            if request.method == "POST" and request.url.endswith("/graphql")
            else None
        ),
    )
    sent: list[dict[str, Any]] = []
    page.on(
        "websocket",
        lambda ws: ws.on("framesent", lambda frame: sent.append(json.loads(frame))),
    )
    user = new_user()
    await open_editor(page, api, token(user))
    balance = page.get_by_test_id("balance")
    await expect(balance).to_have_text("100")
    await expect(page.get_by_test_id("price")).to_have_text("60")
    await expect(page.get_by_test_id("live-state")).to_have_text("live")
    await expect(page.get_by_test_id("projects-empty")).to_be_visible()
    # price and history, by the Dashboard operation of the page's document
    assert [json.loads(post)["operationName"] for post in posts] == ["Dashboard"], posts
    posts.clear()
    await page.evaluate("window.notReloaded = true")

    first = await created(api, user, prompt="A story a script asked for")
    card = page.locator(f'[data-project-id="{first}"]')
    await expect(card.get_by_test_id("project-prompt")).to_have_text("A story a script asked for")
    await expect(card.get_by_test_id("status")).to_have_text("PROCESSING")
    await expect(balance).to_have_text("40")  # the HD charge
    await api.report(projectId=first, status="PROCESSING", progress=50, stage="storyboard")
    await expect(card.get_by_test_id("percent")).to_have_text("50%")
    await expect(card.get_by_test_id("stage")).to_have_text("stage: storyboard")
    result = "https://videos.storyline.invalid/lighthouse.mp4"
    await api.report(projectId=first, status="COMPLETED", progress=100, resultUrl=result)
    await expect(card.get_by_test_id("status")).to_have_text("COMPLETED")
    await expect(card.get_by_test_id("result-link")).to_have_attribute("href", result)
    await expect(card.get_by_test_id("refunded")).to_be_hidden()

    second = await created(api, user, prompt="A story the renderer chokes on", quality="SD")
    failing = page.locator(f'[data-project-id="{second}"]')
    await expect(failing.get_by_test_id("status")).to_have_text("PROCESSING")
    await expect(balance).to_have_text("0")  # the SD charge
    await api.report(projectId=second, status="FAILED", stage="render", errorMessage="Out of film.")
    await expect(failing.get_by_test_id("status")).to_have_text("FAILED")
    await expect(failing.get_by_test_id("project-error")).to_have_text("Out of film.")
    await expect(failing.get_by_test_id("refunded")).to_be_visible()
    await expect(balance).to_have_text("40")  # what it was before that project
    assert await shown_order(page) == [second, first]  # newest first

    # Long enough for any timer of the page's to have fired (a poll, a refund look-up).
    await page.wait_for_timeout(QUIET_MS)
    details = [json.loads(post) for post in posts]
    assert [d["variables"] for d in details] == [{"id": first}, {"id": second}], posts
    assert all(d["operationName"] == "One" for d in details), posts
    assert all(d["query"] == editor_document() for d in details), posts  # by text: not trusted
    subscribes = [message for message in sent if message["type"] == "subscribe"]
    assert len(subscribes) == 1, subscribes
    assert subscribes[0]["payload"]["operationName"] == "Feed"
    assert await page.evaluate("window.notReloaded") is True

    if os.environ.get("STORYLINE_UPDATE_SCREENSHOT") == "1":
        await page.screenshot(path=project_root / "docs" / "editor.png", full_page=True)


class Relay:
    """The page's WebSockets routed through the test to Storyline: ``drop`` closes the
    current one at both ends, as a lost network would; while ``open`` is clear a new one
    waits to connect."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.subscribes: list[dict[str, Any]] = []
        self.routes: list[tuple[WebSocketRoute, WebSocketRoute]] = []  # (page's, server's)

    async def __call__(self, ws: WebSocketRoute) -> None:
        await self.open.wait()
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            parsed = json.loads(message)
            if parsed["type"] == "subscribe":
                self.subscribes.append(parsed["payload"])
            server.send(message)

        ws.on_message(from_page)
        self.routes.append((ws, server))

    async def drop(self) -> None:
        self.open.clear()
        page_side, server_side = self.routes[-1]
        await server_side.close(code=1001, reason="going away")
        await page_side.close(code=1001, reason="going away")


async def test_after_a_lost_connection_the_page_catches_up_on_what_it_missed(
    api: Api, page: Page
) -> None:
    """While the page is offline a project completes, one fails and is refunded, one starts:
    it reconnects by itself, resubscribes with ``since`` and shows them all."""
    relay = Relay()
    await page.route_web_socket(re.compile(r"/graphql$"), relay)
    user = new_user()
    await open_editor(page, api, token(user))
    live = page.get_by_test_id("live-state")
    await expect(live).to_have_text("live")
    first = await created(api, user, prompt="Finished while the page was away")
    card = page.locator(f'[data-project-id="{first}"]')
    await expect(card.get_by_test_id("status")).to_have_text("PROCESSING")
    await expect(page.get_by_test_id("balance")).to_have_text("40")

    await relay.drop()
    await expect(live).to_contain_text("reconnecting")
    await api.report(projectId=first, status="COMPLETED", resultUrl="https://cdn.example/a.mp4")
    second = await created(api, user, prompt="Failed while the page was away", quality="SD")
    await api.report(projectId=second, status="FAILED", errorMessage="Out of film.")
    third = await created(api, user, prompt="Started while the page was away", quality="SD")
    await expect(page.get_by_test_id("balance")).to_have_text("40")  # nothing has come yet
    relay.open.set()

    await expect(live).to_have_text("live")
    await expect(card.get_by_test_id("status")).to_have_text("COMPLETED")
    failed = page.locator(f'[data-project-id="{second}"]')
    await expect(failed.get_by_test_id("project-prompt")).to_have_text(
        "Failed while the page was away"
    )
    await expect(failed.get_by_test_id("status")).to_have_text("FAILED")
    # Its REFUND is not the newest entry, which is all a catch-up sends: the page looks it up.
    await expect(failed.get_by_test_id("refunded")).to_be_visible()
    started = page.locator(f'[data-project-id="{third}"]')
    await expect(started.get_by_test_id("project-prompt")).to_have_text(
        "Started while the page was away"
    )
    await expect(started.get_by_test_id("status")).to_have_text("PROCESSING")
    await expect(page.get_by_test_id("balance")).to_have_text("0")
    assert await shown_order(page) == [third, second, first]

    assert [s["variables"] for s in relay.subscribes[:1]] == [{}]
    assert len(relay.subscribes) == 2, relay.subscribes
    since = datetime.fromisoformat(relay.subscribes[1]["variables"]["since"])
    assert since < datetime.now(UTC)
    texts = await card.get_by_test_id("timeline-entry").all_inner_texts()
    versions = timeline_versions(texts)
    assert versions == sorted(set(versions)), texts  # caught up without a duplicate


async def test_with_trusted_documents_the_page_and_the_simulator_send_hashes(
    database_url: str, page: Page, tmp_path: Path
) -> None:
    """A server that runs only the manifest `storyline trusted-documents write` makes of its
    own clients' documents: a story goes live to COMPLETED, every document named by hash."""
    manifest = tmp_path / "manifest.json"
    write_manifest(manifest, manifest_of(d for source in own_sources() for d in source.documents))
    sent: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda request: (
            sent.append(json.loads(request.post_data or "{}"))
            if request.method == "POST" and request.url.endswith("/graphql")
            else None
        ),
    )
    page.on(
        "websocket",
        lambda ws: ws.on(
            "framesent",
            lambda frame: (
                sent.append(message["payload"])
                if (message := json.loads(frame))["type"] == "subscribe"
                else None
            ),
        ),
    )
    async with storyline(
        database_url, simulator_step_seconds=0.2, trusted_documents=str(manifest)
    ) as trusted:
        plain = await trusted.request("query Price { price }", auth=token(new_user()))
        assert plain.status_code == 400  # nothing else runs
        await open_editor(page, trusted, token(new_user()))
        await expect(page.get_by_test_id("price")).to_have_text("60")
        await completed_story(page, "A story told by hash")
        await expect(page.get_by_test_id("balance")).to_have_text("40")
    assert {"Dashboard", "Generate", "Feed"} <= {body["operationName"] for body in sent}
    assert all(body.keys() == {"documentId", "operationName", "variables"} for body in sent)
    assert {body["documentId"] for body in sent} == {document_id(editor_document())}
