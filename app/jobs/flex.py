"""The one write the flex mode adds to ``jobs``: flex calls OpenAI refused, sent realtime."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, literal, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from app.models import Job, JobMode, JobState, utcnow


def fell_back_to_realtime(session: Session, *, job_ids: Sequence[uuid.UUID], reason: str) -> None:
    """Submitted flex jobs whose flex call was refused (429 resource unavailable) and that
    are sent realtime instead: their mode becomes ``realtime`` (priced at list), and their
    ``route_reason`` and ``routing`` (``flex_fallback``) say why, for the user to see."""
    if not job_ids:
        return
    session.execute(
        update(Job)
        .where(Job.id.in_(job_ids), Job.state == JobState.submitted, Job.mode == JobMode.flex)
        .values(
            mode=JobMode.realtime,
            route_reason=func.concat(Job.route_reason, f"; {reason}"),
            routing=func.coalesce(Job.routing, literal({}, JSONB)).op("||")(
                literal({"flex_fallback": reason}, JSONB)
            ),
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
