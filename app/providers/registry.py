"""Adapters by provider name, built from the catalog."""

from __future__ import annotations

from app.providers.base import BatchProvider
from app.providers.openai_batch import OpenAIBatchProvider
from app.routing.catalog import Catalog


def get_provider(catalog: Catalog, name: str) -> BatchProvider:
    config = catalog.providers[name]
    return OpenAIBatchProvider(
        base_url=config.resolved_base_url(),
        api_key=config.api_key(),
        completion_window=config.completion_window,
    )
