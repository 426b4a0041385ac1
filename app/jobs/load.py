"""A model's load: the estimated input tokens of its jobs committed to the Batch API and not
ended (waiting in its batch window, batched or submitted), which the router compares with
the model's queue limit (OpenAI's enqueued tokens per model, ``enqueued_token_limit``)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.kit.db import in_array
from app.models import Job, JobMode, JobState

_ENQUEUED = (JobState.waiting, JobState.batched, JobState.submitted)


def enqueued_tokens(session: Session, *, models: Sequence[str]) -> dict[str, int]:
    """Per model among ``models``, the estimated input tokens of its unfinished batch-mode
    jobs (0 for a model with none)."""
    if not models:
        return {}
    query = (
        select(Job.model, func.coalesce(func.sum(Job.estimated_tokens), 0))
        .where(
            in_array(Job.model, list(models)),
            Job.mode == JobMode.batch,
            Job.state.in_(_ENQUEUED),
        )
        .group_by(Job.model)
    )
    found = {str(model): int(tokens or 0) for model, tokens in session.execute(query)}
    return {model: found.get(model, 0) for model in models}
