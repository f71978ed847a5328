"""The story editor page, driven in headless Chromium against Storyline and its simulator.

Needs Debian's ``chromium`` (``make browser`` installs it); skipped without it. Set
STORYLINE_UPDATE_SCREENSHOT=1 to rewrite the README's screenshot, docs/editor.png.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.support import Api, new_user, storyline, token
from tests.support.browser import csp_directives

COMPLETION_TIMEOUT_MS = 30_000
# Playwright's 5 s default is tight on a loaded 2-core machine (CI runs everything at once).
expect.set_options(timeout=15_000)
STAGES = ("script", "entities", "storyboard", "render", "done")


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
    simulated: Api, page: Page, project_root: Path
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
    versions = [int(m.group(1)) for text in texts if (m := re.search(r"\bv(\d+)\b", text))]
    assert len(versions) == len(texts)
    assert versions == sorted(set(versions)), texts  # in version order, no duplicates
    assert "COMPLETED" in texts[-1]

    # after `complete`, the balance is refreshed: the grant less the one charge
    await expect(page.get_by_test_id("balance")).to_have_text("40")

    if os.environ.get("STORYLINE_UPDATE_SCREENSHOT") == "1":
        await page.screenshot(path=project_root / "docs" / "editor.png", full_page=True)

    # the token is remembered; the recent projects come back, finished, with nothing to watch
    await page.reload()
    await expect(page.get_by_label("API token")).not_to_have_value("")
    await expect(page.get_by_test_id("balance")).to_have_text("40")
    await expect(card.get_by_test_id("status")).to_have_text("COMPLETED")
    await expect(card.get_by_test_id("watch")).to_be_hidden()


async def test_an_unaffordable_story_shows_required_and_balance(simulated: Api, page: Page) -> None:
    await open_editor(page, simulated, token(new_user()))
    await page.get_by_label("Quality").select_option("FULL_HD")
    await expect(page.get_by_test_id("price")).to_have_text("80")
    await page.get_by_label("Aspect ratio").select_option("SQUARE_1_1")
    await page.get_by_label("Prompt").fill("A square story")
    await page.get_by_role("button", name="Generate story").click()
    card = page.get_by_test_id("project-card")
    await expect(card.get_by_test_id("status")).to_have_text(
        "COMPLETED", timeout=COMPLETION_TIMEOUT_MS
    )
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


async def test_a_recent_project_can_be_watched_to_its_failure(api: Api, page: Page) -> None:
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
    await card.get_by_role("button", name="Watch").click()
    await expect(card.get_by_test_id("watch")).to_be_hidden()

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
    await expect(page.get_by_test_id("balance")).to_have_text("100")  # refunded


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
    await expect(page.get_by_test_id("balance")).to_have_text("100")
