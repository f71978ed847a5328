"""Announce what accountChanges needs: every ledger row, and who owns each project change.

- Project notifications carry the owner (``user_id``: the hub routes them to the owner's
  accountChanges watchers) and the id of the writing transaction (``xid``).
- ``projects.last_xid`` keeps that id on the row, written by the touch trigger with each
  change. A watcher reads its first state inside one snapshot and remembers only that
  snapshot: a notification whose transaction the snapshot already saw is a state it has
  sent, one the snapshot did not see is newer. After a listener outage, the rows whose
  ``last_xid`` the snapshot did not see are exactly the projects that changed since. No
  per-project memory and no clock comparison is needed for either.
- Every ledger row is announced on ``storyline_ledger`` inside the writing transaction, so
  a BalanceChange exists iff the entry committed. The payload is bounded without cutting:
  user ids are at most 255 characters and reasons at most 500 (checked on input), six
  bytes each at worst when escaped.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TOUCH = """
CREATE OR REPLACE FUNCTION storyline_project_touch() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    compared projects;
BEGIN
    compared := NEW;
    compared.last_report_at := OLD.last_report_at;
    compared.last_xid := OLD.last_xid;
    IF compared IS DISTINCT FROM OLD THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := clock_timestamp();
        NEW.last_xid := pg_current_xact_id()::text::bigint;
    ELSE
        NEW.last_xid := OLD.last_xid;
    END IF;
    RETURN NEW;
END
$$
"""

PAYLOAD = """
CREATE OR REPLACE FUNCTION storyline_project_payload(
    p projects, message_chars int, stage_chars int
) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT json_build_object(
        'id', p.id,
        'user_id', p.user_id,
        'xid', p.last_xid,
        'status', p.status,
        'version', p.version,
        'progress', p.progress,
        'stage', left(p.stage, stage_chars),
        'error_message', left(p.error_message, message_chars),
        'result_url', CASE WHEN octet_length(p.result_url) <= 2048 THEN p.result_url END,
        'truncated', coalesce(length(p.stage) > stage_chars, false)
            OR coalesce(length(p.error_message) > message_chars, false)
            OR coalesce(octet_length(p.result_url) > 2048, false),
        'updated_at', p.updated_at
    )::text
$$
"""

LEDGER_NOTIFY = """
CREATE FUNCTION storyline_ledger_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('storyline_ledger', json_build_object(
        'id', NEW.id,
        'user_id', NEW.user_id,
        'kind', NEW.kind,
        'amount', NEW.amount,
        'balance_after', NEW.balance_after,
        'project_id', NEW.project_id,
        'reason', NEW.reason,
        'created_at', NEW.created_at
    )::text);
    RETURN NULL;
END
$$
"""


def _revision(name: str) -> ModuleType:
    """An earlier revision's module, for the functions it created (the way back)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    # Rows written before this revision keep NULL: older than any snapshot.
    op.execute("ALTER TABLE projects ADD COLUMN last_xid bigint")
    op.execute(
        "ALTER TABLE projects ALTER COLUMN last_xid SET DEFAULT pg_current_xact_id()::text::bigint"
    )
    op.execute(TOUCH)
    op.execute(PAYLOAD)
    op.execute("CREATE INDEX projects_user_updated_idx ON projects (user_id, updated_at)")
    op.execute(LEDGER_NOTIFY)
    op.execute(
        "CREATE TRIGGER ledger_notify AFTER INSERT ON ledger "
        "FOR EACH ROW EXECUTE FUNCTION storyline_ledger_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER ledger_notify ON ledger")
    op.execute("DROP FUNCTION storyline_ledger_notify()")
    op.execute("DROP INDEX projects_user_updated_idx")
    old_payload: str = _revision("0002_notify_payload_bound").PAYLOAD
    op.execute(old_payload.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    op.execute(_revision("0003_last_report").TOUCH)
    op.execute("ALTER TABLE projects DROP COLUMN last_xid")
