"""Remember when the pipeline last reported, even when a report changes nothing.

A heartbeat (the same stage and progress again) is a sign of life: the sweeper's
processing timeout counts from ``last_report_at``. Stamping it is not a change of the
project, so it neither bumps the version nor notifies watchers.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TOUCH = """
CREATE OR REPLACE FUNCTION storyline_project_touch() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    compared projects;
BEGIN
    compared := NEW;
    compared.last_report_at := OLD.last_report_at;
    IF compared IS DISTINCT FROM OLD THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$$
"""

OLD_TOUCH = """
CREATE OR REPLACE FUNCTION storyline_project_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW IS DISTINCT FROM OLD THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.execute("ALTER TABLE projects ADD COLUMN last_report_at timestamptz")
    op.execute(TOUCH)
    op.execute(
        "CREATE INDEX projects_processing_alive_idx ON projects "
        "((coalesce(last_report_at, updated_at))) WHERE status = 'PROCESSING'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX projects_processing_alive_idx")
    op.execute(OLD_TOUCH)
    op.execute("ALTER TABLE projects DROP COLUMN last_report_at")
