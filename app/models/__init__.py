"""ORM models, one file per table."""

from app.models.api_key import ApiKey
from app.models.base import Base, utcnow
from app.models.cache_entry import EMBEDDING_DIMENSIONS, CacheEntry
from app.models.cache_settings import CacheSettings
from app.models.cost_record import CostRecord
from app.models.cost_rollup import (
    EVERY_TENANT,
    MINUTE_COLUMNS,
    NO_GROUP,
    CostDayRollup,
    CostGroupRollup,
    CostGroupTotal,
    CostPeak,
    CostRollup,
)
from app.models.job import TERMINAL_STATES, CacheMode, Job, JobMode, JobState, RequestedMode
from app.models.job_embedding import JobEmbedding
from app.models.job_group import JobGroup
from app.models.openai_batch import OpenAIBatch, OpenAIBatchStatus
from app.models.openai_batch_line import OpenAIBatchLine
from app.models.openai_file import OpenAIFile
from app.models.openai_file_part import OpenAIFilePart
from app.models.provider_batch import BatchState, ProviderBatch
from app.models.superseded_line import SupersededLine
from app.models.tenant import Tenant
from app.models.webhook_attempt import WebhookAttempt
from app.models.webhook_delivery import DeliveryState, WebhookDelivery
from app.models.webhook_endpoint import WebhookEndpoint
from app.models.webhook_secret import WebhookSecret

__all__ = [
    "EMBEDDING_DIMENSIONS",
    "EVERY_TENANT",
    "MINUTE_COLUMNS",
    "NO_GROUP",
    "TERMINAL_STATES",
    "ApiKey",
    "Base",
    "BatchState",
    "CacheEntry",
    "CacheMode",
    "CacheSettings",
    "CostDayRollup",
    "CostGroupRollup",
    "CostGroupTotal",
    "CostPeak",
    "CostRecord",
    "CostRollup",
    "DeliveryState",
    "Job",
    "JobEmbedding",
    "JobGroup",
    "JobMode",
    "JobState",
    "OpenAIBatch",
    "OpenAIBatchLine",
    "OpenAIBatchStatus",
    "OpenAIFile",
    "OpenAIFilePart",
    "ProviderBatch",
    "RequestedMode",
    "SupersededLine",
    "Tenant",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookSecret",
    "utcnow",
]
