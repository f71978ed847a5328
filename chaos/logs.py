"""The instances' ERROR lines, each explained by a fault or listed as unexplained.

An explanation names what a line says (a pattern over its message and exception) and the
faults that cause it; a line is explained when one of those faults was on around it:
from a second before the fault started until ``after`` seconds after it ended (a request
that met the fault may fail a little later, when its timeout runs out).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from chaos.record import FaultRecord

# Faults that break connections to PostgreSQL that are in use (a listener's aside: the
# listener logs a warning and reconnects).
DATABASE_FAULTS = ("postgres-restart", "proxy-cut")


@dataclass(frozen=True)
class Explanation:
    name: str
    pattern: re.Pattern[str]
    faults: tuple[str, ...]
    after: float = 5.0


EXPLANATIONS = (
    Explanation(
        "a statement in flight when its connection to PostgreSQL was closed",
        re.compile(
            r"ConnectionDoesNotExistError|connection was closed in the middle of operation"
            r"|AdminShutdownError|ConnectionResetError|unexpected connection_lost"
            r"|the underlying connection is closed"
            # asyncpg, when the server's FATAL arrived between two statements: it is still
            # reading the error when the next statement (a COMMIT, say) is sent.
            r"|another operation \(\d+\) is in progress"
        ),
        DATABASE_FAULTS,
    ),
    Explanation(
        "no connection to PostgreSQL while it restarted",
        re.compile(
            r"CannotConnectNowError|the database system is (shutting down|starting up)"
            r"|Connect call failed|ConnectionRefusedError|unexpected connection_lost"
        ),
        ("postgres-restart",),
    ),
)


@dataclass(frozen=True)
class Line:
    instance: str
    time: float  # wall clock
    level: str
    text: str  # the message, then the exception's last lines
    exception: str  # the whole traceback (a chained exception names its cause first)
    request_id: str

    def __str__(self) -> str:
        moment = datetime.fromtimestamp(self.time).strftime("%H:%M:%S.%f")[:-3]
        return f"{moment} {self.instance} {self.level}: {self.text}"


def error_lines(logs: Path) -> tuple[list[Line], list[str]]:
    """ERROR and CRITICAL lines of every instance log; and the lines that are not JSON."""
    found: list[Line] = []
    unreadable: list[str] = []
    for path in sorted(logs.glob("instance-*.log")):
        for raw in path.read_text(errors="replace").splitlines():
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                unreadable.append(f"{path.stem}: {raw[:300]}")
                continue
            if entry.get("level") not in ("ERROR", "CRITICAL"):
                continue
            exception = str(entry.get("exception") or "")
            text = entry.get("message", "")
            if exception:
                text += " | " + " / ".join(exception.strip().splitlines()[-3:])
            moment = datetime.fromisoformat(entry["time"]).timestamp()
            rid = entry.get("request_id", "")
            found.append(Line(path.stem, moment, entry["level"], text, exception, rid))
    return found, unreadable


def explain(line: Line, faults: list[FaultRecord], end: float) -> str | None:
    """The name of what explains ``line``, or None."""
    for explanation in EXPLANATIONS:
        if not explanation.pattern.search(f"{line.text}\n{line.exception}"):
            continue
        for fault in faults:
            ended = fault.ended if fault.ended is not None else end
            if (
                fault.kind in explanation.faults
                and fault.started - 1 <= line.time <= ended + explanation.after
            ):
                return explanation.name
    return None
