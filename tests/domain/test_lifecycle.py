from __future__ import annotations

import itertools

import pytest

from storyline.domain.errors import InvalidTransition
from storyline.domain.lifecycle import (
    DEFAULT_FAILURE_MESSAGE,
    Change,
    Report,
    Snapshot,
    Status,
    apply,
)

PENDING = Snapshot(Status.PENDING, None, None)
PROCESSING = Snapshot(Status.PROCESSING, 40, "entities")

FORWARD = {
    (Status.PENDING, Status.PROCESSING),
    (Status.PENDING, Status.COMPLETED),
    (Status.PENDING, Status.FAILED),
    (Status.PROCESSING, Status.COMPLETED),
    (Status.PROCESSING, Status.FAILED),
}


@pytest.mark.parametrize(("current", "reported"), list(itertools.product(Status, Status)))
def test_status_only_moves_forward(current: Status, reported: Status) -> None:
    snapshot = Snapshot(current, 10, "script")
    report = Report(reported, progress=20, stage="next")
    if (current, reported) in FORWARD or (current is reported and not current.terminal):
        change = apply(snapshot, report)
        assert change is not None
        assert change.status is reported
    elif current is reported:
        assert apply(snapshot, report) is None  # a terminal status repeated changes nothing
    else:
        with pytest.raises(InvalidTransition) as raised:
            apply(snapshot, report)
        assert raised.value.code == "INVALID_TRANSITION"


def test_progress_within_a_status_updates_progress_and_stage() -> None:
    change = apply(PROCESSING, Report(Status.PROCESSING, progress=65, stage="storyboard"))
    assert change == Change(Status.PROCESSING, 65, "storyboard", None, None)


def test_a_report_that_brings_nothing_new_changes_nothing() -> None:
    assert apply(PROCESSING, Report(Status.PROCESSING, progress=40, stage="entities")) is None
    assert apply(PROCESSING, Report(Status.PROCESSING)) is None


def test_an_overtaken_progress_report_is_ignored() -> None:
    assert apply(PROCESSING, Report(Status.PROCESSING, progress=15, stage="script")) is None


def test_failed_keeps_the_message_and_refunds() -> None:
    change = apply(PROCESSING, Report(Status.FAILED, error_message="GPU on fire"))
    assert change is not None
    assert (change.error_message, change.progress, change.refund) == ("GPU on fire", 40, True)


def test_failed_without_a_message_says_so() -> None:
    change = apply(PENDING, Report(Status.FAILED))
    assert change is not None
    assert change.error_message == DEFAULT_FAILURE_MESSAGE


def test_completed_keeps_the_url_fills_progress_and_does_not_refund() -> None:
    change = apply(PROCESSING, Report(Status.COMPLETED, result_url="https://cdn/v.mp4"))
    assert change is not None
    assert (change.result_url, change.progress, change.refund) == ("https://cdn/v.mp4", 100, False)


def test_only_failed_keeps_an_error_and_only_completed_a_url() -> None:
    report = Report(Status.PROCESSING, progress=50, error_message="x", result_url="https://y")
    change = apply(PENDING, report)
    assert change is not None
    assert (change.error_message, change.result_url) == (None, None)
