"""ORM models, one file per table."""

from app.models.api_key import ApiKey
from app.models.base import Base, utcnow
from app.models.cache_entry import CacheEntry
from app.models.job import TERMINAL_STATES, Job, JobState
from app.models.job_group import JobGroup
from app.models.provider_batch import BatchState, ProviderBatch
from app.models.tenant import Tenant

__all__ = [
    "TERMINAL_STATES",
    "ApiKey",
    "Base",
    "BatchState",
    "CacheEntry",
    "Job",
    "JobGroup",
    "JobState",
    "ProviderBatch",
    "Tenant",
    "utcnow",
]
