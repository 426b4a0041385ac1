"""What a request cost, and what it would have cost sent naively."""

from __future__ import annotations

from decimal import Decimal

from app.catalog.catalog import Catalog, ModelConfig

_MILLION = Decimal(1_000_000)


def list_price(model: ModelConfig, *, input_tokens: int, output_tokens: int) -> Decimal:
    """Realtime list price of the given usage on ``model``, in USD."""
    return (model.input_per_mtok * input_tokens + model.output_per_mtok * output_tokens) / _MILLION


def batch_price(model: ModelConfig, *, input_tokens: int, output_tokens: int) -> Decimal:
    """Price of the usage through the provider's batch endpoint (list price less the discount)."""
    full = list_price(model, input_tokens=input_tokens, output_tokens=output_tokens)
    return full * (1 - model.batch_discount)


def naive_price(catalog: Catalog, *, input_tokens: int, output_tokens: int) -> Decimal:
    """The baseline: every request sent on its own to the catalog's naive model at list price."""
    return list_price(
        catalog.model(catalog.naive_model), input_tokens=input_tokens, output_tokens=output_tokens
    )
