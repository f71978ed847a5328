"""generateStory: reserve, create upstream, confirm, against real PostgreSQL and a fake service."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support import Api, books, new_user
from tests.support.fakes import FakeVideoService


async def test_charges_creates_upstream_and_moves_to_processing(
    api: Api, engine: AsyncEngine, fake: FakeVideoService
) -> None:
    user = new_user()
    body = await api.generate(
        user,
        prompt="  A fox in the snow  ",
        quality="FULL_HD",
        aspectRatio="PORTRAIT_9_16",
        imageModel="comfyui/sdxl",
        seed=42,
    )
    project = body["data"]["generateStory"]
    assert project["status"] == "PROCESSING"
    assert project["creditsUsed"] == 80
    assert project["prompt"] == "A fox in the snow"
    assert project["externalId"].startswith("ext-")
    assert project["version"] == 2  # inserted, then confirmed

    [call] = fake.calls_for(project["id"])
    assert call.authorization == "Bearer upstream-secret-token"
    assert call.body == {
        "template_name": "story",
        "config": {
            "prompt": "A fox in the snow",
            "aspect_ratio": "9:16",
            "quality": "full_hd",
            "image_generation_config_name": "comfyui/sdxl",
            "seed": 42,
            "auto_mode": True,
            "entity_ids": [],
        },
        "metadata": {"storyline_project_id": project["id"]},
    }
    state = await books(engine, user)
    assert state.balance == 20
    assert state.ledger == [("GRANT", 100, None), ("CHARGE", -80, project["id"])]
    assert state.projects == [(project["id"], "PROCESSING")]


async def test_defaults_are_hd_landscape_flux(api: Api, fake: FakeVideoService) -> None:
    project = (await api.generate(new_user()))["data"]["generateStory"]
    assert (project["quality"], project["aspectRatio"], project["creditsUsed"]) == (
        "HD",
        "LANDSCAPE_16_9",
        60,
    )
    config = fake.calls_for(project["id"])[0].body["config"]
    assert (config["quality"], config["aspect_ratio"], config["image_generation_config_name"]) == (
        "hd",
        "16:9",
        "comfyui/flux",
    )
    assert "seed" not in config
