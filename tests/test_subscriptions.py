"""projectStatus over both WebSocket subprotocols, driven by raw messages."""

from __future__ import annotations

import asyncio

import pytest

from tests.support import Api, new_user, token
from tests.watch import LEGACY_WS, TRANSPORT_WS, collect, connected, start


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_current_state_then_each_change_in_order_then_complete(
    api: Api, protocol: str
) -> None:
    user = new_user()
    project = (await api.generate(user))["data"]["generateStory"]
    async with connected(api.url, token(user), protocol) as ws:
        await start(ws, project["id"])
        watching = asyncio.create_task(collect(ws))
        await asyncio.sleep(0.2)
        for progress, stage in ((15, "script"), (40, "entities"), (65, "storyboard")):
            await api.report(
                projectId=project["id"], status="PROCESSING", progress=progress, stage=stage
            )
        await api.report(projectId=project["id"], status="COMPLETED", resultUrl="https://cdn/x.mp4")
        events = await asyncio.wait_for(watching, 10)
    assert [(e["status"], e["version"], e["progress"]) for e in events] == [
        ("PROCESSING", 2, None),
        ("PROCESSING", 3, 15),
        ("PROCESSING", 4, 40),
        ("PROCESSING", 5, 65),
        ("COMPLETED", 6, 100),
    ]
    assert events[-1]["resultUrl"] == "https://cdn/x.mp4"
    assert events[0]["projectId"] == project["id"]
