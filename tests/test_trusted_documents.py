"""Trusted documents (STORYLINE_TRUSTED_DOCUMENTS): clients name documents by hash, and only
the manifest's run, on HTTP and on both WebSocket subprotocols (the live fan-out included).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from storyline import web
from storyline.auth import Role
from storyline.config import Settings
from storyline.graphql_http import document_id
from storyline.schema.fanout import LIVE, FanoutTransportWS
from storyline.schema.manifest import ENTRY_POINTS, ManifestError
from storyline.schema.persisted import (
    BAD_DOCUMENT_ID,
    BAD_PERSISTED_QUERY,
    CONFLICT,
    MISMATCH,
    NOT_FOUND,
    NOT_TRUSTED,
    TRUSTED_ONLY,
)
from storyline.schema.roots import build_schema
from storyline.upstream.simulator import REPORT as SIMULATOR_REPORT
from storyline_pipeline.reports import (
    DOCUMENTS,
    PERSISTED_ENV,
    Endpoint,
    ReportRejected,
    asend_report,
    report_input,
)
from tests.support import GENERATE, REPORT, Api, new_user, storyline, token
from tests.support.watch import (
    ACCOUNT_CHANGES,
    LEGACY_WS,
    SUBSCRIBE,
    TRANSPORT_WS,
    connected,
    next_message,
)

ROOT = Path(__file__).resolve().parents[1]
STORYLINE = Path(sys.executable).parent / "storyline"
PRICE = "query Price { price }"
UNTRUSTED = "query Me { me { balance } }"
TRUSTED = [GENERATE, REPORT, SUBSCRIBE, ACCOUNT_CHANGES, PRICE, *DOCUMENTS.values()]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trusted") / "manifest.json"
    path.write_text(json.dumps({document_id(text): text for text in TRUSTED}))
    return path


@pytest.fixture(scope="module")
async def trusted(
    database_url: str, fake_upstream: tuple[object, str], manifest: Path
) -> AsyncIterator[Api]:
    async with storyline(
        database_url, upstream_url=fake_upstream[1], trusted_documents=str(manifest)
    ) as api:
        yield api


async def post(api: Api, body: dict[str, Any], auth: str | None = None) -> tuple[int, Any]:
    headers = {} if auth is None else {"Authorization": f"Bearer {auth}"}
    response = await api.http.post("/graphql", json=body, headers=headers)
    return response.status_code, response.json()


def refused(answer: tuple[int, Any], message: str) -> None:
    status, body = answer
    assert status == 400, body
    assert body == {"errors": [{"message": message, "extensions": {"code": "BAD_USER_INPUT"}}]}


async def test_documents_run_by_documentid_apollo_s_hash_and_get(trusted: Api) -> None:
    user = token(new_user())
    by_id = await post(trusted, {"documentId": document_id(PRICE)}, user)
    assert by_id == (200, {"data": {"price": 60}})
    apollo = {"persistedQuery": {"version": 1, "sha256Hash": document_id(PRICE)[7:]}}
    assert await post(trusted, {"extensions": apollo}, user) == by_id
    both = {"documentId": document_id(PRICE), "extensions": apollo, "query": PRICE}
    assert await post(trusted, both, user) == by_id  # text and hash that agree
    got = await trusted.http.get(
        "/graphql",
        params={"documentId": document_id(PRICE)},
        headers={"Authorization": f"Bearer {user}"},
    )
    assert (got.status_code, got.json()) == by_id


async def test_anything_but_a_trusted_hash_is_refused(trusted: Api) -> None:
    user = token(new_user())
    refused(await post(trusted, {"query": PRICE}, user), TRUSTED_ONLY)
    refused(await post(trusted, {"documentId": document_id(UNTRUSTED)}, user), NOT_FOUND)
    apollo = {"persistedQuery": {"version": 1, "sha256Hash": document_id(UNTRUSTED)[7:]}}
    refused(await post(trusted, {"extensions": apollo}, user), NOT_FOUND)
    # Apollo's link then sends the text with the hash: not trusted either.
    untrusted = {"query": UNTRUSTED, "documentId": document_id(UNTRUSTED)}
    refused(await post(trusted, untrusted, user), NOT_TRUSTED)
    refused(await post(trusted, {"query": UNTRUSTED, "documentId": document_id(PRICE)}), MISMATCH)
    refused(await post(trusted, {"documentId": document_id(PRICE).upper()}), BAD_DOCUMENT_ID)
    refused(await post(trusted, {"documentId": document_id(PRICE), "extensions": apollo}), CONFLICT)
    old_version = {"persistedQuery": {"version": 2, "sha256Hash": document_id(PRICE)[7:]}}
    refused(await post(trusted, {"extensions": old_version}), BAD_PERSISTED_QUERY)
    got = await trusted.http.get("/graphql", params={"query": PRICE})
    refused((got.status_code, got.json()), TRUSTED_ONLY)


async def test_without_a_manifest_text_runs_and_a_hash_needs_its_text(api: Api) -> None:
    user = token(new_user())
    assert await post(api, {"query": PRICE}, user) == (200, {"data": {"price": 60}})
    both = {"query": PRICE, "documentId": document_id(PRICE)}
    assert await post(api, both, user) == (200, {"data": {"price": 60}})
    refused(await post(api, {"documentId": document_id(PRICE)}, user), NOT_FOUND)
    refused(await post(api, {"query": UNTRUSTED, "documentId": document_id(PRICE)}), MISMATCH)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The root fields of the subscriptions the fan-out path served itself."""
    fields: list[str] = []
    decide = FanoutTransportWS.served

    def counted(handler: FanoutTransportWS, operation: Any) -> Any:
        decided = decide(handler, operation)
        if decided is not None:
            fields.extend(name for name, live in LIVE.items() if live is decided[0].field)
        return decided

    monkeypatch.setattr(FanoutTransportWS, "served", counted)
    return fields


def by_hash(document: str, variables: dict[str, Any]) -> dict[str, Any]:
    return {"documentId": document_id(document), "variables": variables}


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_subscriptions_by_hash_go_live(
    trusted: Api, protocol: str, served: list[str]
) -> None:
    """projectStatus and accountChanges named by hash, through a project's whole life."""
    user = new_user()
    generate = by_hash(GENERATE, {"input": {"prompt": "A cat by hash"}})
    project = (await post(trusted, generate, token(user)))[1]["data"]["generateStory"]
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    seen: dict[str, list[str]] = {"1": [], "2": []}
    async with connected(trusted.url, token(user), protocol) as ws:
        for op, payload in (
            ("1", by_hash(SUBSCRIBE, {"id": project["id"]})),
            ("2", by_hash(ACCOUNT_CHANGES, {})),
        ):
            await ws.send(json.dumps({"id": op, "type": kind, "payload": payload}))
        report = by_hash(REPORT, {"input": {"projectId": project["id"], "status": "COMPLETED"}})
        reported = False
        while "complete" not in seen["1"] or "COMPLETED" not in seen["2"]:
            message = await next_message(ws, 10)
            if message["type"] not in ("next", "data"):
                seen[message["id"]].append(message["type"])
                continue
            assert "errors" not in message["payload"], message
            [value] = message["payload"]["data"].values()
            seen[message["id"]].append(value.get("status") or value["__typename"])
            if not reported and "PROCESSING" in seen["1"] and "PROCESSING" in seen["2"]:
                assert (await post(trusted, report, token("pipeline", Role.PIPELINE)))[0] == 200
                reported = True
    assert seen["1"] == ["PROCESSING", "COMPLETED", "complete"]
    assert seen["2"] == ["BalanceChange", "PROCESSING", "COMPLETED"]
    # The fan-out serves graphql-transport-ws; legacy graphql-ws takes the ordinary path.
    fanout = ["accountChanges", "projectStatus"] if protocol == TRANSPORT_WS else []
    assert sorted(served) == fanout


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_subscription_by_text_or_unknown_hash_is_refused(
    trusted: Api, protocol: str
) -> None:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    async with connected(trusted.url, token(new_user()), protocol) as ws:
        for op, payload, message in (
            ("1", {"query": ACCOUNT_CHANGES}, TRUSTED_ONLY),
            ("2", {"documentId": document_id(UNTRUSTED)}, NOT_FOUND),
        ):
            await ws.send(json.dumps({"id": op, "type": kind, "payload": payload}))
            error = {"message": message, "extensions": {"code": "BAD_USER_INPUT"}}
            sent = [error] if protocol == TRANSPORT_WS else error
            assert await next_message(ws, 5) == {"id": op, "type": "error", "payload": sent}
        # The socket stays open, and serves what is trusted.
        payload = by_hash(ACCOUNT_CHANGES, {})
        await ws.send(json.dumps({"id": "3", "type": kind, "payload": payload}))
        first = await next_message(ws, 5)
        assert first["payload"]["data"]["accountChanges"]["__typename"] == "BalanceChange"


async def test_the_pipeline_client_names_its_report_by_hash_when_told(
    trusted: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = token(new_user())
    created = await post(trusted, by_hash(GENERATE, {"input": {"prompt": "A cat"}}), user)
    project = created[1]["data"]["generateStory"]
    report = report_input(status="PROCESSING", project_id=project["id"], progress=5)
    url, flow = f"{trusted.url}/graphql", token("flow", Role.PIPELINE)
    with pytest.raises(ReportRejected, match=TRUSTED_ONLY[:40]):
        await asend_report(Endpoint.resolve(url, flow), report)
    monkeypatch.setenv(PERSISTED_ENV, "1")
    reported = await asend_report(Endpoint.resolve(url, flow), report)
    assert (reported["status"], reported["progress"]) == ("PROCESSING", 5)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "cannot read .*: No such file or directory"),
        ("{", "is not JSON"),
        ('["query Price { price }"]', 'must hold a JSON object of "sha256:<hex>" to document text'),
        (
            json.dumps({"sha256:" + "0" * 64: PRICE}),
            f"is not the id of its document, which is {document_id(PRICE)}",
        ),
        (
            json.dumps({document_id("{ nope }"): "{ nope }"}),
            "would be refused by this server: Cannot query field 'nope' on type 'Query'.",
        ),
    ],
)
def test_a_bad_manifest_stops_the_server_at_start(
    tmp_path: Path, content: str | None, why: str
) -> None:
    path = tmp_path / "manifest.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ManifestError, match=why):
        build_schema(Settings(trusted_documents=path))


def test_storyline_serve_refuses_a_bad_manifest_before_it_starts(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text("{")
    env = {
        **os.environ,
        "STORYLINE_TRUSTED_DOCUMENTS": str(path),
        "STORYLINE_DATA_DIR": str(tmp_path),
    }
    ran = subprocess.run(
        [STORYLINE, "serve"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert ran.returncode == 2, ran.stderr
    assert f"storyline: STORYLINE_TRUSTED_DOCUMENTS: {path} is not JSON" in ran.stderr
    assert not (tmp_path / "pgdata").exists()  # refused before any database was started


def declared_clients(into: Path) -> Path:
    """A distribution's metadata under ``into`` declaring the entry points that
    clients/pipeline/pyproject.toml declares, as an install of the client would (the test
    venv's metadata may predate them)."""
    project = tomllib.loads((ROOT / "clients" / "pipeline" / "pyproject.toml").read_text())
    declared = project["project"]["entry-points"][ENTRY_POINTS]
    info = into / "declared_clients-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: declared-clients\nVersion: 0\n")
    lines = [f"[{ENTRY_POINTS}]", *(f"{name} = {value}" for name, value in declared.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return into


def test_the_command_writes_every_document_the_editor_and_the_pipeline_send(
    tmp_path: Path,
) -> None:
    path = tmp_path / "manifest.json"
    extra = tmp_path / "ops.graphql"
    extra.write_text(PRICE)
    python_path = [str(declared_clients(tmp_path / "site")), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(python_path)}
    ran = subprocess.run(
        [STORYLINE, "trusted-documents", "write", str(path), "--document", str(extra)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    manifest = json.loads(path.read_text())
    editor = web.editor_document()
    expected = [editor, SIMULATOR_REPORT, *DOCUMENTS.values(), PRICE]
    assert manifest == {document_id(text): text for text in expected}
    assert f"wrote 4 documents to {path}" in ran.stderr
    # The server starts with it, and the page is told to send the hash.
    build_schema(Settings(trusted_documents=path))

    # Every operation editor.js runs is in editor.graphql, and editor.js holds no document.
    script = (Path(web.__file__).parent / "static" / "editor.js").read_text()
    runs = r'(?:accountQuery|graphql\(state\.token,|subscribe)\(?\s*"(\w+)"'
    used = set(re.findall(runs, script))
    defined = set(re.findall(r"^(?:query|mutation|subscription) (\w+)", editor, re.MULTILINE))
    assert used == defined == {"Dashboard", "Price", "Refunds", "One", "Generate", "Feed"}
    document = r"[`\"']\s*(?:query|mutation|subscription|fragment)(?:\s+\w+)?\s*[({]"
    assert not re.search(document, script)
