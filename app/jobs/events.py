"""What the rest of the system hears when jobs end.

Every transition that ends jobs (completed, failed, cancelled) calls ``jobs_finished`` in the
same transaction, so a result is never stored without the webhook deliveries it owes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session

from app.delivery import service as delivery_service


def jobs_finished(session: Session, *, job_ids: Sequence[uuid.UUID]) -> None:
    """Record the webhook deliveries owed for jobs that just ended (safe to call twice)."""
    delivery_service.on_jobs_finished(session, job_ids=list(job_ids))
