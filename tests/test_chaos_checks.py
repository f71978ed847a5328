"""The chaos harness's judgement of a finished watcher (chaos/checks.py): what a projectStatus
subscription the server completed may differ from the stored row by, and nothing more."""

from __future__ import annotations

from chaos.checks import ended_before_its_job_id
from chaos.watchers import AccountWatcher, ProjectWatcher, Watcher


def watcher(kind: type[Watcher], *, finished: bool) -> Watcher:
    made = kind.__new__(kind)  # the judgement reads only its kind and whether it finished
    made.finished = finished
    return made


def test_a_finished_watcher_may_lack_only_the_job_id_recorded_after_the_end() -> None:
    done = watcher(ProjectWatcher, finished=True)
    assert ended_before_its_job_id(done, (2, "FAILED"), (3, "FAILED"), confirmed=True)
    assert ended_before_its_job_id(done, (3, "COMPLETED"), (4, "COMPLETED"), confirmed=True)


def test_anything_else_is_stale() -> None:
    done = watcher(ProjectWatcher, finished=True)
    assert not ended_before_its_job_id(done, (2, "PROCESSING"), (3, "PROCESSING"), confirmed=True)
    assert not ended_before_its_job_id(done, (2, "FAILED"), (3, "COMPLETED"), confirmed=True)
    assert not ended_before_its_job_id(done, (3, "FAILED"), (2, "FAILED"), confirmed=True)
    assert not ended_before_its_job_id(done, (2, "FAILED"), None, confirmed=True)
    connected = watcher(ProjectWatcher, finished=False)
    assert not ended_before_its_job_id(connected, (2, "FAILED"), (3, "FAILED"), confirmed=True)
    assert not ended_before_its_job_id(done, (2, "FAILED"), (3, "FAILED"), confirmed=False)
    # A dashboard is sent the change that records the id: it must hold it.
    dashboard = watcher(AccountWatcher, finished=True)
    assert not ended_before_its_job_id(dashboard, (2, "FAILED"), (3, "FAILED"), confirmed=True)
