"""Crash points for fault-injection tests.

``STORYLINE_CRASH_AT=<point>`` makes the process kill itself with SIGKILL when it
reaches that point. Tests set it on a server they start; production never does (and a
server that has it set says so loudly at start-up).
"""

from __future__ import annotations

import logging
import os
import signal

VARIABLE = "STORYLINE_CRASH_AT"
POINTS = (
    "generate-before-charge-commit",
    "generate-after-charge",
    "generate-after-upstream-accepted",
)

log = logging.getLogger(__name__)


def crash_point(name: str) -> None:
    if os.environ.get(VARIABLE) == name:
        log.critical("fault injection: killing the process at %s", name)
        os.kill(os.getpid(), signal.SIGKILL)


def warn_if_armed() -> None:
    armed = os.environ.get(VARIABLE)
    if armed:
        log.critical("%s=%s is set: this process will kill itself there", VARIABLE, armed)
