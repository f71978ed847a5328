"""Who may see what: shared by the reads and the subscriptions."""

from __future__ import annotations

from storyline.auth import Principal
from storyline.persistence.projects import ProjectRecord


def can_see(principal: Principal, record: ProjectRecord) -> bool:
    return principal.sees_every_project or record.user_id == principal.user_id
