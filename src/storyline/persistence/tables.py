"""Table definitions for building queries. The DDL lives in storyline/migrations/, not here."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
)

metadata = MetaData()

accounts = Table(
    "accounts",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("balance", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

projects = Table(
    "projects",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("external_id", Text),
    Column("status", Text, nullable=False),
    Column("credits_used", Integer, nullable=False),
    Column("error_message", Text),
    Column("progress", Integer),
    Column("stage", Text),
    Column("result_url", Text),
    Column("prompt", Text, nullable=False),
    Column("quality", Text, nullable=False),
    Column("aspect_ratio", Text, nullable=False),
    Column("image_model", Text, nullable=False),
    Column("seed", BigInteger),
    Column("idempotency_key", Text),
    Column("request_fingerprint", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_report_at", DateTime(timezone=True)),
    Column("last_xid", BigInteger),  # the transaction that wrote the row's version
)

ledger = Table(
    "ledger",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("amount", Integer, nullable=False),
    Column("balance_after", Integer, nullable=False),
    Column("project_id", Uuid),
    Column("reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
