"""The rule router and catalog validation, with the shipped catalog and small custom ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.catalog.catalog import Catalog, CatalogError, load_catalog
from app.config import DEFAULT_CATALOG
from app.kit.errors import ValidationFailed
from app.routing.service import NoRoute, Route, route, validate_hints


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(DEFAULT_CATALOG)


def route_text(
    catalog: Catalog,
    text: str,
    *,
    tokens: int = 50,
    instruction: str | None = None,
    model_hint: str | None = None,
    tier_hint: str | None = None,
) -> Route:
    return route(
        catalog,
        text=text,
        tokens=tokens,
        instruction=instruction,
        model_hint=model_hint,
        tier_hint=tier_hint,
    )


def model_entry(
    name: str, tier: str, *, price: float, context: int, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai",
        "tier": tier,
        "input_per_mtok": price,
        "output_per_mtok": price * 4,
        "context_tokens": context,
        **extra,
    }


MODELS = [
    model_entry("small", "economy", price=0.1, context=1_000),
    model_entry("medium", "standard", price=0.5, context=10_000),
    model_entry("big", "premium", price=2.0, context=100_000),
]
# A model naming a provider the catalog does not define.
FOREIGN_MODEL = model_entry("claude", "premium", price=3.0, context=200_000, provider="anthropic")


def catalog_data(**overrides: Any) -> dict[str, Any]:
    """A small valid catalog as plain data; ``overrides`` replace top-level keys."""
    data: dict[str, Any] = {
        "naive_model": "big",
        "default_tier": "standard",
        "providers": {"openai": {"kind": "openai_batch", "base_url": "http://127.0.0.1:1/v1"}},
        "models": MODELS,
        "rules": [{"name": "summaries are cheap", "tier": "economy", "instruction_in": ["tldr"]}],
    }
    data.update(overrides)
    return data


# --- the shipped catalog's rules ----------------------------------------------------------


def test_summarise_instruction_goes_to_the_economy_model(catalog: Catalog) -> None:
    text = "Summarise the following document.\n\nA long article."

    chosen = route_text(catalog, text, instruction="summarise")

    assert chosen.model == "gpt-4o-mini"
    assert chosen.provider == "openai"
    assert chosen.reason.startswith("rule: ")
    assert "summar" in chosen.reason


def test_instruction_match_ignores_case_and_spaces(catalog: Catalog) -> None:
    chosen = route_text(catalog, "An article.", instruction="  TLDR ")

    assert chosen.model == "gpt-4o-mini"


@pytest.mark.parametrize(
    "text",
    [
        "Prove that the square root of 2 is irrational.",
        "Help me debug this function that returns None.",
    ],
)
def test_premium_keywords_go_to_the_premium_model(catalog: Catalog, text: str) -> None:
    chosen = route_text(catalog, text)

    assert chosen.model == "gpt-4o"
    assert chosen.reason.startswith("rule: ")
    assert "premium" in chosen.reason


def test_plain_question_goes_to_the_default_tier(catalog: Catalog) -> None:
    chosen = route_text(catalog, "What is the capital of France?")

    assert catalog.default_tier == "standard"
    assert chosen.model == "gpt-4.1-mini"
    assert catalog.model(chosen.model).tier == "standard"
    assert chosen.reason == "default tier standard"


@pytest.mark.parametrize(
    "text",
    [
        "How can I improve my sleep?",
        "The council approved the budget. What happens next?",
    ],
)
def test_keywords_match_whole_words_not_substrings(catalog: Catalog, text: str) -> None:
    # "improve" and "approved" contain the premium keyword "prove" but ask for no proof.
    chosen = route_text(catalog, text)

    assert chosen.model == "gpt-4.1-mini", chosen.reason


def test_long_input_rule_picks_the_long_context_tier(catalog: Catalog) -> None:
    chosen = route_text(catalog, "What is in this dump?", tokens=150_000)

    assert chosen.model == "gpt-4.1-mini"
    assert "long" in chosen.reason


def test_model_hint_wins_over_rules(catalog: Catalog) -> None:
    chosen = route_text(catalog, "A long article.", instruction="summarise", model_hint="gpt-4o")

    assert chosen.model == "gpt-4o"
    assert chosen.reason == "model requested by the client"


def test_tier_hint_wins_over_rules(catalog: Catalog) -> None:
    chosen = route_text(catalog, "Prove Fermat's little theorem.", tier_hint="economy")

    assert chosen.model == "gpt-4o-mini"
    assert chosen.reason == "tier economy requested by the client"


def test_summary_too_long_for_economy_falls_back_in_the_shipped_catalog(
    catalog: Catalog,
) -> None:
    chosen = route_text(catalog, "A very long report.", tokens=200_000, instruction="summarise")

    assert chosen.model == "gpt-4.1-mini"
    assert "cannot hold 200000 tokens" in chosen.reason


# --- context fallback with a custom catalog ---------------------------------------------


def test_tier_that_cannot_hold_the_input_falls_back_to_the_cheapest_model_that_can() -> None:
    custom = Catalog.model_validate(catalog_data())

    chosen = route_text(custom, "An article.", tokens=5_000, instruction="tldr")

    assert chosen.model == "medium"  # cheapest of the models whose context holds 5,000
    assert chosen.reason.startswith("rule: summaries are cheap")
    assert "economy models cannot hold 5000 tokens" in chosen.reason


def test_cheapest_fitting_model_within_the_tier_is_preferred() -> None:
    models = [
        model_entry("tiny", "economy", price=0.05, context=1_000),
        model_entry("roomy", "economy", price=0.2, context=50_000),
        model_entry("big", "premium", price=2.0, context=100_000),
    ]
    custom = Catalog.model_validate(catalog_data(models=models, default_tier="economy"))

    assert route_text(custom, "short").model == "tiny"
    assert route_text(custom, "long", tokens=20_000).model == "roomy"


def test_input_larger_than_every_context_raises_no_route() -> None:
    custom = Catalog.model_validate(catalog_data())

    with pytest.raises(NoRoute, match="every model"):
        route_text(custom, "An enormous input.", tokens=100_001)


# --- hints validation ---------------------------------------------------------------------


def test_known_hints_are_accepted(catalog: Catalog) -> None:
    validate_hints(catalog, model="gpt-4o", tier=None)
    validate_hints(catalog, model=None, tier="economy")
    validate_hints(catalog, model=None, tier=None)


def test_unknown_model_hint_lists_the_catalog_models(catalog: Catalog) -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_hints(catalog, model="gpt-99", tier=None)

    for name in ("gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"):
        assert name in caught.value.message


def test_unknown_tier_hint_lists_the_catalog_tiers(catalog: Catalog) -> None:
    with pytest.raises(ValidationFailed) as caught:
        validate_hints(catalog, model=None, tier="platinum")

    assert "anthropic, economy, flagship, nano, premium, standard" in caught.value.message


# --- catalog validation -------------------------------------------------------------------


def test_custom_catalog_data_is_valid() -> None:
    Catalog.model_validate(catalog_data())


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"models": [*MODELS, FOREIGN_MODEL]}, "model claude names unknown provider anthropic"),
        ({"naive_model": "gpt-5"}, "naive_model gpt-5 is not in the catalog"),
        (
            {"rules": [{"name": "to nowhere", "tier": "platinum", "keywords": ["x"]}]},
            "tier platinum has no model",
        ),
        ({"default_tier": "platinum"}, "tier platinum has no model"),
        (
            {"models": [{**MODELS[0], "fallbacks": ["medium", "gpt-9"]}, *MODELS[1:]]},
            "model small: fallbacks names unknown model gpt-9",
        ),
        (
            {"models": [{**MODELS[0], "fallbacks": ["small"]}, *MODELS[1:]]},
            "model small: fallbacks must not name itself",
        ),
    ],
    ids=[
        "unknown-provider",
        "naive-model-missing",
        "rule-tier-without-model",
        "default-tier",
        "chain-unknown-model",
        "chain-self-loop",
    ],
)
def test_catalog_rejects_dangling_references(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        Catalog.model_validate(catalog_data(**overrides))


def test_an_unknown_model_in_a_chain_stops_the_catalog_loading_naming_it(
    tmp_path: Path,
) -> None:
    """At start-up: the catalog file does not load, and the error names the file, the model
    and the unknown name."""
    text = DEFAULT_CATALOG.read_text()
    bad = tmp_path / "catalog.toml"
    bad.write_text(text.replace('fallbacks = ["gpt-4.1-mini", "claude-haiku-4-5"]',
                                'fallbacks = ["gpt-4.1-mini", "gpt-9-turbo"]', 1))  # fmt: skip
    with pytest.raises(CatalogError) as raised:
        load_catalog(bad)
    assert str(bad) in str(raised.value)
    assert "model gpt-4o-mini: fallbacks names unknown model gpt-9-turbo" in str(raised.value)
