"""Settings, read from ``STORYLINE_*`` environment variables; nothing is built at import time."""

from __future__ import annotations

import math
import os
import secrets
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_SECRET_LENGTH = 32
MIN_SECRET_BITS = 128
HOW_TO_GENERATE = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STORYLINE_", extra="ignore")

    database_url: SecretStr | None = None
    # The connections that need a session of their own (the LISTEN connection, migrations)
    # use this URL when set: a direct one, while database_url goes through a pooler.
    listen_database_url: SecretStr | None = None
    # "transaction": database_url reaches PostgreSQL through a transaction-mode pooler
    # (PgBouncer), which gives each transaction whichever server connection is free.
    database_pooler: Literal["none", "transaction"] = "none"
    data_dir: Path = Path(".storyline")
    jwt_secret: SecretStr | None = None

    upstream_url: str | None = None
    upstream_token: SecretStr = SecretStr("")
    upstream_timeout: float = Field(default=10.0, gt=0)

    signup_credits: int = Field(default=100, ge=0, le=1_000_000)
    pending_timeout: float = Field(default=300.0, gt=0)
    processing_timeout: float = Field(default=7200.0, gt=0)
    sweep_interval: float = Field(default=15.0, gt=0)

    db_pool_size: int = Field(default=20, ge=1, le=200)

    # Limits on what one request or connection may ask for.
    max_subscriptions_per_connection: int = Field(default=50, ge=1, le=1000)
    max_subscriptions_per_user: int = Field(default=200, ge=1, le=100_000)
    max_query_depth: int = Field(default=15, ge=2, le=100)
    max_query_tokens: int = Field(default=2000, ge=100, le=100_000)
    max_query_aliases: int = Field(default=30, ge=1, le=10_000)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_query_bytes: int = Field(default=65_536, ge=1024, le=1_048_576)
    # Parsed documents kept for reuse, by the memory they hold (schema/documents.py).
    document_cache_bytes: int = Field(default=32 * 1_048_576, ge=0)
    # Seconds a client has to send a whole request (head and body): a slow or stalled
    # sender is closed rather than holding a connection and its buffers.
    request_timeout: float = Field(default=30.0, gt=0)

    # WebSocket keep-alive: a ping every interval (0: none); no pong within the timeout
    # closes the connection, and with it a vanished client's subscriptions.
    ws_ping_interval: float = Field(default=20.0, ge=0)
    ws_ping_timeout: float = Field(default=20.0, gt=0)
    # A WebSocket that has not sent connection_init by then is closed (4408), on both
    # subprotocols; strawberry's default wait.
    ws_init_timeout: float = Field(default=60.0, gt=0)

    # Production switches: a closed API explores nothing and answers no foreign origin.
    introspection: bool = True
    graphiql: bool = True
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # A manifest of trusted documents (JSON: "sha256:<hex>" -> document text): when set,
    # clients name a document by its hash and nothing else runs (schema/persisted.py).
    trusted_documents: Path | None = None

    # The built-in simulator (used when upstream_url is unset).
    simulator_step_seconds: float = Field(default=1.0, ge=0)
    simulator_failure_rate: float = Field(default=0.0, ge=0, le=1)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # auto: JSON lines unless stderr is a terminal.
    log_format: Literal["auto", "json", "text"] = "auto"

    @field_validator("jwt_secret")
    @classmethod
    def secret_unguessable(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        secret = value.get_secret_value()
        if len(secret) < MIN_SECRET_LENGTH:
            problem = f"must be at least {MIN_SECRET_LENGTH} characters for HS256"
        elif estimated_bits(secret) < MIN_SECRET_BITS:
            problem = f"looks guessable (below {MIN_SECRET_BITS} bits of entropy)"
        else:
            return value
        raise ValueError(f"{problem}; make one with: {HOW_TO_GENERATE}")

    @model_validator(mode="after")
    def pending_outlasts_the_upstream_call(self) -> Settings:
        # The sweeper must not settle a project whose upstream call may still answer.
        if self.pending_timeout <= self.upstream_timeout:
            raise ValueError("STORYLINE_PENDING_TIMEOUT must exceed STORYLINE_UPSTREAM_TIMEOUT")
        return self

    @model_validator(mode="after")
    def pooled_needs_a_session_url(self) -> Settings:
        # LISTEN and the migrations' advisory lock belong to a server session, which a
        # transaction-mode pooler does not keep from one transaction to the next.
        if self.database_pooler == "transaction" and self.listen_database_url is None:
            raise ValueError(
                "STORYLINE_DATABASE_POOLER=transaction needs STORYLINE_LISTEN_DATABASE_URL,"
                " a session connection (direct, or a session-mode pool) to the same database"
            )
        return self

    @field_validator("cors_origins", mode="before")
    @classmethod
    def comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("upstream_url")
    @classmethod
    def upstream_is_http(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @property
    def jwt_secret_file(self) -> Path:
        """Where the secret is generated and kept when STORYLINE_JWT_SECRET is unset."""
        return self.data_dir / "jwt-secret"

    def session_database_url(self, database_url: str) -> str:
        """The URL of the connections that need a session (the LISTEN connection, the
        migrations): ``STORYLINE_LISTEN_DATABASE_URL``, or else ``database_url``."""
        if self.listen_database_url is not None:
            return self.listen_database_url.get_secret_value()
        return database_url

    def resolved_jwt_secret(self) -> str:
        """The configured secret, or one generated once and kept in the data directory."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return _dev_secret(self.jwt_secret_file)

    def jwt_secret_source(self) -> str | None:
        """Where resolved_jwt_secret() takes the secret from, never the secret itself: the
        variable's name, or the data directory's file (an absolute path, since a relative
        data directory depends on the current one); None when it would generate a new one."""
        if self.jwt_secret is not None:
            return "STORYLINE_JWT_SECRET"
        kept = self.jwt_secret_file.absolute()
        return str(kept) if kept.exists() else None

    def simulator_token(self) -> str:
        """The token the simulator accepts: the configured upstream token, or one generated
        once and kept in the data directory."""
        configured = self.upstream_token.get_secret_value()
        return configured or _dev_secret(self.data_dir / "upstream-token")

    def resolved_upstream_token(self) -> str:
        """What the video service client sends; a real service's token is never invented."""
        if self.upstream_url is None:
            return self.simulator_token()
        return self.upstream_token.get_secret_value()


def estimated_bits(secret: str) -> float:
    """An upper estimate of a secret's entropy: its shortest repeating block's length times
    the Shannon entropy of that block's character frequencies.

    Frequencies see what makes a secret weak in practice (whitespace, one character over
    and over, a small alphabet, a word repeated) and cost nothing to compute; what they
    cannot see (a phrase, a keyboard walk) would take a dictionary. secrets.token_urlsafe(48)
    scores about 330 bits, a 32-digit hex string about 120 (it carries exactly 128: the
    estimate errs towards refusing).
    """
    # (s + s).find(s, 1) is the shortest period of s when it divides len(s), else len(s).
    block = secret[: (secret + secret).find(secret, 1)]
    counts = Counter(block).values()
    return -sum(count * math.log2(count / len(block)) for count in counts)


def _dev_secret(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
        # link() fails if the name exists: when several processes start at once, one secret wins.
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()
