"""Exact Decimal prices: list, batch (list less the discount) and the naive baseline."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.accounting.service import batch_price, list_price, naive_price
from app.catalog.catalog import Catalog, ModelConfig, load_catalog
from app.config import DEFAULT_CATALOG

MILLION = 1_000_000


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(DEFAULT_CATALOG)


def test_list_price_of_a_million_input_tokens_on_gpt_4o_mini(catalog: Catalog) -> None:
    price = list_price(catalog.model("gpt-4o-mini"), input_tokens=MILLION, output_tokens=0)

    assert isinstance(price, Decimal)
    assert price == Decimal("0.15")


def test_batch_price_of_a_million_input_tokens_on_gpt_4o_mini(catalog: Catalog) -> None:
    price = batch_price(catalog.model("gpt-4o-mini"), input_tokens=MILLION, output_tokens=0)

    assert isinstance(price, Decimal)
    assert price == Decimal("0.075")


@pytest.mark.parametrize(
    ("model", "input_tokens", "output_tokens", "expected"),
    [
        ("gpt-4o-mini", 0, MILLION, Decimal("0.60")),
        ("gpt-4o-mini", 1_234, 567, Decimal("0.0005253")),
        ("gpt-4.1-mini", MILLION, MILLION, Decimal("2.00")),
        ("gpt-4o", 2_000, 500, Decimal("0.01")),
        ("gpt-4o", 1, 0, Decimal("0.0000025")),
        ("gpt-4o", 0, 0, Decimal("0")),
    ],
)
def test_list_price_is_exact(
    catalog: Catalog, model: str, input_tokens: int, output_tokens: int, expected: Decimal
) -> None:
    price = list_price(catalog.model(model), input_tokens=input_tokens, output_tokens=output_tokens)

    assert price == expected


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"])
def test_batch_price_is_half_the_list_price_at_a_half_discount(
    catalog: Catalog, model: str
) -> None:
    config = catalog.model(model)
    assert config.batch_discount == 0.5

    listed = list_price(config, input_tokens=1_234, output_tokens=567)
    batched = batch_price(config, input_tokens=1_234, output_tokens=567)

    assert batched == listed / 2


def test_batch_price_applies_the_models_own_discount() -> None:
    config = ModelConfig(
        name="custom",
        provider="openai",
        tier="economy",
        input_per_mtok=Decimal("1.0"),
        output_per_mtok=Decimal("3.0"),
        batch_discount=Decimal("0.25"),
        context_tokens=8_000,
    )

    listed = list_price(config, input_tokens=MILLION, output_tokens=MILLION)
    batched = batch_price(config, input_tokens=MILLION, output_tokens=MILLION)

    assert listed == Decimal("4")
    assert batched == Decimal("3")
    assert batched == listed * (1 - Decimal("0.25"))


def test_naive_price_is_the_list_price_of_the_naive_model(catalog: Catalog) -> None:
    assert catalog.naive_model == "gpt-4o"

    price = naive_price(catalog, input_tokens=MILLION, output_tokens=MILLION)

    assert price == Decimal("12.5")
    assert price == list_price(catalog.model("gpt-4o"), input_tokens=MILLION, output_tokens=MILLION)


def test_naive_price_follows_the_catalogs_naive_model(catalog: Catalog) -> None:
    cheap = Catalog.model_validate({**catalog.model_dump(), "naive_model": "gpt-4o-mini"})

    price = naive_price(cheap, input_tokens=MILLION, output_tokens=0)

    assert price == Decimal("0.15")
