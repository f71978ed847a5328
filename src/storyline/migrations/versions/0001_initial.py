"""Accounts, projects, the ledger, and the trigger that announces every project change.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE accounts (
            user_id     text PRIMARY KEY CHECK (length(user_id) BETWEEN 1 AND 255),
            balance     integer NOT NULL CHECK (balance >= 0),
            created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
            updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE projects (
            id                   uuid PRIMARY KEY,
            user_id              text NOT NULL REFERENCES accounts (user_id),
            external_id          text UNIQUE,
            status               text NOT NULL
                CHECK (status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED')),
            credits_used         integer NOT NULL CHECK (credits_used > 0),
            error_message        text,
            progress             integer CHECK (progress BETWEEN 0 AND 100),
            stage                text,
            result_url           text,
            prompt               text NOT NULL,
            quality              text NOT NULL CHECK (quality IN ('SD', 'HD', 'FULL_HD')),
            aspect_ratio         text NOT NULL CHECK (aspect_ratio IN
                ('LANDSCAPE_16_9', 'PORTRAIT_9_16', 'SQUARE_1_1', 'CLASSIC_4_3')),
            image_model          text NOT NULL,
            seed                 bigint,
            idempotency_key      text,
            request_fingerprint  text NOT NULL,
            version              integer NOT NULL DEFAULT 1,
            created_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
            updated_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
            UNIQUE (user_id, idempotency_key)
        )
        """
    )
    op.execute("CREATE INDEX projects_status_updated_idx ON projects (status, updated_at)")
    op.execute("CREATE INDEX projects_user_status_idx ON projects (user_id, status)")
    op.execute(
        "CREATE INDEX projects_user_created_idx ON projects (user_id, created_at DESC, id DESC)"
    )
    op.execute(
        """
        CREATE TABLE ledger (
            id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            user_id        text NOT NULL REFERENCES accounts (user_id),
            kind           text NOT NULL CHECK (kind IN ('GRANT', 'CHARGE', 'REFUND')),
            amount         integer NOT NULL
                CHECK ((kind = 'CHARGE') = (amount < 0) AND amount <> 0),
            balance_after  integer NOT NULL CHECK (balance_after >= 0),
            project_id     uuid REFERENCES projects (id),
            reason         text,
            created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
            UNIQUE (project_id, kind),
            CHECK (kind = 'GRANT' OR project_id IS NOT NULL)
        )
        """
    )
    op.execute("CREATE INDEX ledger_user_idx ON ledger (user_id, id DESC)")

    # Every change of a project row gets the next version and a fresh updated_at,
    # whoever writes it; an UPDATE that changes nothing stays invisible.
    op.execute(
        """
        CREATE FUNCTION storyline_project_touch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW IS DISTINCT FROM OLD THEN
                NEW.version := OLD.version + 1;
                NEW.updated_at := clock_timestamp();
            END IF;
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER projects_touch BEFORE UPDATE ON projects
        FOR EACH ROW EXECUTE FUNCTION storyline_project_touch()
        """
    )
    # The notification is sent iff the change commits. Texts are cut so that the payload
    # stays under PostgreSQL's 8000-byte limit whatever their length: at most
    # 4 bytes x (1000 + 200) characters, plus a URL of at most 2048 bytes, plus the fixed fields.
    op.execute(
        """
        CREATE FUNCTION storyline_project_notify() RETURNS trigger LANGUAGE plpgsql AS $$
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
    )
    op.execute(
        """
        CREATE TRIGGER projects_notify AFTER INSERT OR UPDATE ON projects
        FOR EACH ROW EXECUTE FUNCTION storyline_project_notify()
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE ledger")
    op.execute("DROP TABLE projects")
    op.execute("DROP FUNCTION storyline_project_notify()")
    op.execute("DROP FUNCTION storyline_project_touch()")
    op.execute("DROP TABLE accounts")
