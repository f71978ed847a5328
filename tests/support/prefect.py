"""A temporary Prefect API for the tests that run flows (a local subprocess on SQLite).

Imported only by the fixture that starts it: Prefect takes seconds to import, and most
tests run no flow.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect.settings import get_current_settings, temporary_settings
from prefect.testing.utilities import prefect_test_harness

# Nothing leaves the machine: the client's telemetry off (DO_NOT_TRACK), the server's
# analytics off. Flow runs in other processes get the same through these variables.
QUIET = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


@contextmanager
def prefect_api(home: Path) -> Iterator[str]:
    """A Prefect API for this process's flow runs, with ``home`` as PREFECT_HOME; yields its
    URL, for flow runs in other processes (PREFECT_API_URL).

    The harness's subprocess inherits the settings. Heartbeats are off: stopping their
    thread costs a second per flow run.
    """
    previous = os.environ.get("DO_NOT_TRACK")
    os.environ["DO_NOT_TRACK"] = "1"
    try:
        with (
            temporary_settings(
                updates={
                    "home": home,
                    "server.analytics_enabled": False,
                    "flows.heartbeat_frequency": None,
                }
            ),
            prefect_test_harness(server_startup_timeout=60),
        ):
            url = get_current_settings().api.url
            assert url, "the Prefect test harness set no API URL"
            yield url
    finally:
        if previous is None:
            os.environ.pop("DO_NOT_TRACK", None)
        else:
            os.environ["DO_NOT_TRACK"] = previous
