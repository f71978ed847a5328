"""OpenTelemetry traces, off unless the standard ``OTEL_*`` variables ask for them.

Tracing is on when ``OTEL_SDK_DISABLED`` is not ``true`` and either
``OTEL_TRACES_EXPORTER`` names an exporter other than ``none``, or it is unset and
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (then
``otlp``). OpenTelemetry's own default exporter is ``otlp`` whatever is set; Storyline's is
none, so an instance nobody pointed at a collector neither traces nor sends anything.

Off, nothing of OpenTelemetry is imported or installed: no schema extension, no trace
config on the video service's client, no asyncpg wrappers, no middleware. On, the extra
``storyline[otel]`` must be installed; ``storyline.telemetry.tracing`` does the rest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib.util import find_spec
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storyline.telemetry.tracing import Tracing

EXPORTERS = frozenset({"otlp", "console"})
OTLP_PROTOCOL = "http/protobuf"  # the exporter the extra installs; gRPC's pulls grpcio
INSTALL = "pip install 'storyline[otel]'"


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The exporters the variables ask for; empty when tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if named:
        names = [name.strip().lower() for name in named.split(",") if name.strip()]
        return [] if "none" in names else names
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return ["otlp"] if any(environ.get(name, "").strip() for name in endpoints) else []


def configuration_error(environ: Mapping[str, str]) -> str | None:
    """Why the variables cannot be served (naming the variable), or None."""
    names = exporter_names(environ)
    if not names:
        return None
    unknown = sorted(set(names) - EXPORTERS)
    if unknown:
        return f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} is not one of otlp, console, none"
    if "otlp" in names:
        for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = environ.get(variable, "").strip()
            if protocol:
                if protocol != OTLP_PROTOCOL:
                    return f"{variable}: only {OTLP_PROTOCOL} is supported"
                break
    if find_spec("opentelemetry.sdk") is None:
        return f"OTEL_* variables ask for traces, but OpenTelemetry is not installed: {INSTALL}"
    return None


def from_environment(environ: Mapping[str, str] = os.environ) -> Tracing | None:
    """Tracing as the variables ask, exporting in the background; None when they do not.

    Raises ValueError (with configuration_error's message) for variables it cannot serve."""
    names = exporter_names(environ)
    if not names:
        return None
    problem = configuration_error(environ)
    if problem is not None:
        raise ValueError(problem)
    from storyline.telemetry.tracing import Tracing, exporting

    return Tracing(exporting(names))
