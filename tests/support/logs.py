"""What was logged while a block ran."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class Records(logging.Handler):
    """Keeps every record it is handed, from ``level`` up."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def logged(level: int, *loggers: str) -> Iterator[list[logging.LogRecord]]:
    """The records from ``level`` up logged during the block: everything the root logger
    hears, and what the ``loggers`` named hear (those that do not propagate to the root:
    uvicorn's, Prefect's)."""
    handler = Records(level)
    listening = [logging.getLogger(), *(logging.getLogger(name) for name in loggers)]
    for logger in listening:
        logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        for logger in listening:
            logger.removeHandler(handler)


@contextmanager
def errors_logged() -> Iterator[list[logging.LogRecord]]:
    """ERROR records from any logger, uvicorn's too (in tests they do not reach the root)."""
    with logged(logging.ERROR, "uvicorn") as records:
        yield records
