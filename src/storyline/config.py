"""Settings, read from ``STORYLINE_*`` environment variables; nothing is built at import time."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STORYLINE_", extra="ignore")

    database_url: SecretStr | None = None
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
    # Seconds a client has to send a whole request (head and body): a slow or stalled
    # sender is closed rather than holding a connection and its buffers.
    request_timeout: float = Field(default=30.0, gt=0)

    # WebSocket keep-alive: a ping every interval (0: none); no pong within the timeout
    # closes the connection, and with it a vanished client's subscriptions.
    ws_ping_interval: float = Field(default=20.0, ge=0)
    ws_ping_timeout: float = Field(default=20.0, gt=0)

    # Production switches: a closed API explores nothing and answers no foreign origin.
    introspection: bool = True
    graphiql: bool = True
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # The built-in simulator (used when upstream_url is unset).
    simulator_step_seconds: float = Field(default=1.0, ge=0)
    simulator_failure_rate: float = Field(default=0.0, ge=0, le=1)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # auto: JSON lines unless stderr is a terminal.
    log_format: Literal["auto", "json", "text"] = "auto"

    @field_validator("jwt_secret")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters for HS256")
        return value

    @model_validator(mode="after")
    def _pending_outlasts_the_upstream_call(self) -> Settings:
        # The sweeper must not settle a project whose upstream call may still answer.
        if self.pending_timeout <= self.upstream_timeout:
            raise ValueError("STORYLINE_PENDING_TIMEOUT must exceed STORYLINE_UPSTREAM_TIMEOUT")
        return self

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("upstream_url")
    @classmethod
    def _upstream_is_http(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    def resolved_jwt_secret(self) -> str:
        """The configured secret, or one generated once and kept in the data directory."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return _dev_secret(self.data_dir / "jwt-secret")


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
