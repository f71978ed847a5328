"""Keep every project notification under PostgreSQL's 8000-byte limit, escaping included.

0001 cut texts by characters before JSON escaping; a control character escapes to six
bytes (\\u00XX), so a long enough text could still overflow the payload and make the
writing transaction fail. Now the payload is measured after it is built, and if it is too
long it is rebuilt with shorter texts (and ``truncated`` set).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# 300 + 50 characters of six bytes each, a URL of at most 2048 plain bytes (resultUrl is
# printable ASCII without quotes or backslashes), and the fixed fields stay near 4.5 kB.
NOTIFY = """
CREATE OR REPLACE FUNCTION storyline_project_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    payload text;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.version = OLD.version THEN
        RETURN NULL;
    END IF;
    payload := storyline_project_payload(NEW, 1000, 200);
    IF octet_length(payload) > 7900 THEN
        payload := storyline_project_payload(NEW, 300, 50);
    END IF;
    PERFORM pg_notify('storyline_project', payload);
    RETURN NULL;
END
$$
"""

PAYLOAD = """
CREATE FUNCTION storyline_project_payload(p projects, message_chars int, stage_chars int)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT json_build_object(
        'id', p.id,
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

# 0001's function, for the way back.
OLD_NOTIFY = """
CREATE OR REPLACE FUNCTION storyline_project_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.version = OLD.version THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('storyline_project', json_build_object(
        'id', NEW.id,
        'status', NEW.status,
        'version', NEW.version,
        'progress', NEW.progress,
        'stage', left(NEW.stage, 200),
        'error_message', left(NEW.error_message, 1000),
        'result_url',
            CASE WHEN octet_length(NEW.result_url) <= 2048 THEN NEW.result_url END,
        'truncated', coalesce(length(NEW.stage) > 200, false)
            OR coalesce(length(NEW.error_message) > 1000, false)
            OR coalesce(octet_length(NEW.result_url) > 2048, false),
        'updated_at', NEW.updated_at
    )::text);
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.execute(PAYLOAD)
    op.execute(NOTIFY)


def downgrade() -> None:
    op.execute(OLD_NOTIFY)
    op.execute("DROP FUNCTION storyline_project_payload(projects, int, int)")
