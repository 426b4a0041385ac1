"""The typed rows the ledger takes and gives."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from app.ledger.pricing import CostChain, TokenUsage


@dataclass(frozen=True, slots=True)
class EndedJob:
    """A job that just ended, as the jobs domain hands it to the ledger: its facts from the
    jobs row and, for a completed job, the cost chain its outcome was priced with."""

    job_id: uuid.UUID
    tenant_id: uuid.UUID
    group_id: uuid.UUID | None
    state: str
    provider: str | None
    model: str | None
    mode: str | None
    usage: TokenUsage
    costs: CostChain | None
    created_at: datetime
    ended_at: datetime
    deadline: datetime | None
