"""``storyline serve | migrate | token | simulator | trusted-documents write``."""

from __future__ import annotations

import argparse
import gc
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette

from storyline import logs, telemetry
from storyline.auth import Role, issue_token
from storyline.config import Settings
from storyline.faults import warn_if_armed
from storyline.server import uvicorn_options

# Set by ``serve`` for its worker processes, which build the app from the environment.
SELF_URL_VARIABLE = "STORYLINE_SELF_URL"
DEMO_USER = "demo-user"
DEMO_TOKEN_TTL = 7 * 24 * 3600
TOKEN_TTL = 24 * 3600  # `storyline token`'s default


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="storyline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API (applies migrations first)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations")
    serve.add_argument(
        "--print-token", action="store_true", help=f"print a token for the user {DEMO_USER!r}"
    )

    commands.add_parser("migrate", help="apply migrations and exit")

    token = commands.add_parser("token", help="print a signed JWT")
    token.add_argument("subject")
    token.add_argument("--role", choices=[role.value for role in Role], default="user")
    token.add_argument(
        "--ttl",
        type=_seconds,
        default=TOKEN_TTL,
        help=f"seconds until it expires (default {TOKEN_TTL}: 24 h); 0: never",
    )
    token.add_argument(
        "--new-secret",
        action="store_true",
        help="when no secret exists (STORYLINE_JWT_SECRET unset, none in the data directory),"
        " generate one into the data directory instead of refusing",
    )

    simulator = commands.add_parser("simulator", help="run the stand-in video service alone")
    simulator.add_argument("--host", default="127.0.0.1")
    simulator.add_argument("--port", type=int, default=8001)
    simulator.add_argument(
        "--callback-url",
        default="http://127.0.0.1:8000/graphql",
        help="the Storyline GraphQL endpoint the simulated pipeline reports to",
    )

    trusted = commands.add_parser(
        "trusted-documents", help="the manifest of trusted documents (STORYLINE_TRUSTED_DOCUMENTS)"
    )
    trusted_commands = trusted.add_subparsers(dest="action", required=True)
    write = trusted_commands.add_parser(
        "write",
        help="write a manifest of the documents the editor page, the simulator and installed"
        " clients (the pipeline's) send",
    )
    write.add_argument("path", type=Path, help="the manifest to write (replaced whole)")
    write.add_argument(
        "--document",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a file holding one more document to trust (its exact text); repeatable",
    )

    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as invalid:
        # Name the variables, never their values: they may be secrets.
        for error in invalid.errors(include_input=False):
            field = "_".join(str(part) for part in error["loc"]).upper()
            print(f"storyline: STORYLINE_{field}: {error['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.configure(settings.log_level, settings.log_format)
    if args.command == "serve":
        _serve(settings, args)
    elif args.command == "migrate":
        from storyline.persistence.migrate import migrate

        migrate(settings.session_database_url(database_url(settings)))
    elif args.command == "token":
        _token(settings, args)
    elif args.command == "trusted-documents":
        from storyline.trusted_documents import write_command

        write_command(settings, args.path, args.document)
    else:
        _simulator(settings, args)


def database_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    from storyline.persistence.embedded import embedded_database_url

    return embedded_database_url(settings.data_dir)


def app_from_environment() -> Starlette:
    """The app of a ``serve`` worker process."""
    from storyline.app import create_app

    settings = Settings()
    app = create_app(
        settings,
        database_url=database_url(settings),
        self_url=os.environ[SELF_URL_VARIABLE],
        tracing=telemetry.from_environment(),
    )
    # A process-wide policy, so here rather than in create_app (tests build many apps in
    # one process): what start-up built (modules, schema, statements) lives as long as the
    # process, out of the collector's way. The young generations are sized for what an
    # instance holds: every object a new connection or subscription keeps survives them,
    # and a collection of the middle one scans all that came since the last (up to the
    # first threshold times the second), stalling every request and delivery meanwhile. A
    # few thousand connections opened at once made that a 200 ms stall at (20000, 20);
    # (10000, 5) bounds it to 50,000 objects, with gen-0 collections still rare enough for
    # generateStory (docs/benchmarks-patches.md).
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 5, 10)
    return app


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    warn_if_armed()
    # Checked here, before any worker starts, as the settings are.
    if problem := telemetry.configuration_error(os.environ):
        print(f"storyline: {problem}", file=sys.stderr)
        raise SystemExit(2)
    if settings.trusted_documents is not None:
        from storyline.trusted_documents import refuse_a_bad_manifest

        refuse_a_bad_manifest(settings)  # here, before workers that would each fail on it
    url = database_url(settings)
    if not args.no_migrate:
        from storyline.persistence.migrate import migrate

        migrate(settings.session_database_url(url))
    # Workers inherit these: one embedded database and one secret for all of them.
    os.environ["STORYLINE_DATABASE_URL"] = url
    os.environ["STORYLINE_JWT_SECRET"] = settings.resolved_jwt_secret()
    local_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host  # noqa: S104
    os.environ[SELF_URL_VARIABLE] = f"http://{local_host}:{args.port}"
    # uvicorn re-raises SIGTERM after its graceful shutdown; turning it into an exit lets
    # atexit handlers run, among them the one that stops the embedded PostgreSQL.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if args.print_token:
        token = issue_token(
            settings.resolved_jwt_secret(), DEMO_USER, role=Role.USER, ttl=DEMO_TOKEN_TTL
        )
        print(
            f"\nStoryline: the story editor at http://{local_host}:{args.port}/ and"
            f" GraphiQL at http://{local_host}:{args.port}/graphql\n"
            f"Paste into GraphiQL's headers pane (user {DEMO_USER!r}, valid 7 days):\n"
            f'{{"Authorization": "Bearer {token}"}}\n',
            flush=True,
        )
    uvicorn.run(
        "storyline.cli:app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
        **uvicorn_options(settings),
        log_config=None,  # keep the structured logging configured above
        proxy_headers=False,
    )


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds < math.inf:
        raise argparse.ArgumentTypeError(f"not a number of seconds >= 0: {text!r}")
    return seconds


def _token(settings: Settings, args: argparse.Namespace) -> None:
    """Sign with the secret ``serve`` would use (Settings.resolved_jwt_secret) and say which
    on stderr; never invent one unless asked, since a server started elsewhere would not
    know it."""
    source = settings.jwt_secret_source()
    kept = settings.jwt_secret_file.absolute()
    if source is None and not args.new_secret:
        print(
            "storyline token: no secret to sign with: STORYLINE_JWT_SECRET is unset and"
            f" {kept} does not exist.\nSet STORYLINE_JWT_SECRET or STORYLINE_DATA_DIR as the"
            " server has them (a relative data directory is taken from the current one), or"
            " pass --new-secret to generate a secret there for a server yet to start.",
            file=sys.stderr,
        )
        raise SystemExit(1)
    secret = settings.resolved_jwt_secret()
    ttl = args.ttl or None  # 0: no exp claim
    print(issue_token(secret, args.subject, role=Role(args.role), ttl=ttl), flush=True)
    if source is None:
        used = f"a new secret, generated into {kept}: a server uses it if started with this"
        used += " data directory and without STORYLINE_JWT_SECRET"
    else:
        used = f"the secret in {source}"
    print(f"storyline token: signed with {used}", file=sys.stderr)
    if ttl is None:
        print(
            "storyline token: warning: this token never expires; whoever holds it is"
            " let in until the secret changes",
            file=sys.stderr,
        )
    else:
        until = datetime.fromtimestamp(time.time() + ttl, UTC)
        print(f"storyline token: valid until {until:%Y-%m-%d %H:%M:%S} UTC", file=sys.stderr)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _simulator(settings: Settings, args: argparse.Namespace) -> None:
    from storyline.upstream.simulator import Simulator

    secret = settings.resolved_jwt_secret()
    simulator = Simulator(
        callback_url=args.callback_url,
        token=settings.simulator_token(),
        pipeline_token=lambda: issue_token(secret, "simulator", role=Role.PIPELINE, ttl=600),
        step_seconds=settings.simulator_step_seconds,
        failure_rate=settings.simulator_failure_rate,
        persisted=settings.trusted_documents is not None,
    )
    if not settings.upstream_token.get_secret_value():
        print(
            "storyline simulator: accepting jobs that bear the token in"
            f" {settings.data_dir / 'upstream-token'}: give it to `storyline serve`"
            " as STORYLINE_UPSTREAM_TOKEN",
            file=sys.stderr,
            flush=True,
        )
    uvicorn.run(simulator.app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
