"""Per-tenant routing: the settings endpoint, jobs routed by the learned router (trained here
on a few dozen lines of the RouteLLM MMLU dev file) and by the semantic routes with their
reasons in the API, and tenants on the rules routed as before."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.catalog.catalog import Catalog, get_catalog
from app.embeddings.base import Embedder, Vectors
from app.embeddings.local import LocalEmbedder
from app.intake import ingest as intake_ingest
from app.kit.text import normalise
from app.models import Job, JobState, Tenant
from app.routing import calibration, strategies
from app.routing import service as routing_service
from app.routing.learned import load_router
from app.routing.semantic import fit_threshold
from app.routing.training import train_command
from app.tenants import service as tenant_service
from app.tenants.scopes import Scope
from tests.conftest import ROOT
from tests.jobs.test_submit import assert_error

DEV = ROOT.parent / "shared" / "data" / "routing" / "routellm_mmlu_dev.jsonl"
if not DEV.exists():
    DEV = Path("/work/shared/data/routing/routellm_mmlu_dev.jsonl")


class CountingEmbedder:
    """The real model, counting the texts it embeds."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.name, self.dimensions = inner, inner.name, inner.dimensions
        self.texts: list[str] = []

    def embed(self, texts: list[str]) -> Vectors:
        self.texts.extend(texts)
        return self.inner.embed(texts)


@pytest.fixture(scope="module")
def minilm() -> LocalEmbedder:
    return LocalEmbedder()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, minilm: LocalEmbedder) -> Path:
    """A tiny router: 12 lines from each of 5 domains of the dev file (60 prompts), in a
    tmp directory (the data is never copied into the repository)."""
    if not DEV.exists():
        pytest.skip(f"{DEV} is not on this machine")
    by_domain: dict[str, list[str]] = {}
    for line in DEV.read_text().splitlines():
        by_domain.setdefault(json.loads(line)["domain"], []).append(line)
    picked = sorted(by_domain)[:: max(1, len(by_domain) // 5)][:5]
    lines = [line for domain in picked for line in by_domain[domain][:12]]
    base = tmp_path_factory.mktemp("router")
    outcomes = base / "outcomes.jsonl"
    outcomes.write_text("\n".join(lines) + "\n")
    train_command(outcomes_path=outcomes, out=base / "r", embedder=minilm, say=lambda _: None)
    return base / "r"


@pytest.fixture
def learned_catalog(trained: Path) -> Iterator[Catalog]:
    """The test catalog naming the trained router, for the API and ingest."""
    from app.main import app

    shipped = get_catalog()
    assert shipped.learned is not None
    catalog = shipped.model_copy(
        update={"learned": shipped.learned.model_copy(update={"router_dir": str(trained)})}
    )
    app.dependency_overrides[get_catalog] = lambda: catalog
    yield catalog
    app.dependency_overrides.pop(get_catalog, None)


def prompts(count: int) -> list[str]:
    lines = DEV.read_text().splitlines()[50::100][:count]
    return [json.loads(line)["prompt"] for line in lines]


def ingest(db: Session, catalog: Catalog, embedder: Embedder) -> None:
    ids = list(db.scalars(select(Job.id).where(Job.state == JobState.queued)))
    intake_ingest.ingest(db, job_ids=ids, catalog=catalog, embedder=lambda: embedder)
    db.commit()


def job_out(api: TestClient, job_id: str) -> dict[str, object]:
    response = api.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


# --- the settings endpoint ------------------------------------------------------------------


def test_settings_default_to_the_rules_and_change_with_put(api: TestClient) -> None:
    got = api.get("/v1/routing/settings").json()
    assert got == {"strategy": "rules", "quality_target": 0.95, "learned_available": False,
                   "weak_model": "gpt-4o-mini", "strong_model": "gpt-4o",
                   "semantic_routes": ["code goes to the premium tier",
                                       "short factual lookups go to the economy tier"],
                   "daily_budget_usd": None, "monthly_budget_usd": None,
                   "budget_policy": "reject"}  # fmt: skip

    put = api.put("/v1/routing/settings", json={"quality_target": 0.9})
    assert put.status_code == 200, put.text
    assert put.json()["quality_target"] == 0.9
    assert api.get("/v1/routing/settings").json()["quality_target"] == 0.9
    # Left out: unchanged; null: back to the default.
    assert (
        api.put("/v1/routing/settings", json={"strategy": "rules"}).json()["quality_target"] == 0.9
    )
    assert (
        api.put("/v1/routing/settings", json={"quality_target": None}).json()["quality_target"]
        == 0.95
    )


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"strategy": "cheapest"}, "strategy"),
        ({"quality_target": 0}, "quality_target"),
        ({"quality_target": -0.5}, "quality_target"),
        ({"quality_target": 1.01}, "quality_target"),
        ({"quality_target": "0.9"}, "quality_target"),
        ({"quality_target": True}, "quality_target"),
        ({"threshold": 0.3}, "threshold"),
    ],
    ids=["unknown", "zero", "negative", "above-one", "string", "bool",
         "unknown-field"],
)  # fmt: skip
def test_a_bad_setting_is_a_422_naming_the_field(
    api: TestClient, body: dict[str, object], where: str
) -> None:
    assert where in assert_error(api.put("/v1/routing/settings", json=body), 422)


def test_learned_without_a_trained_router_is_a_clear_422(api: TestClient) -> None:
    response = api.put("/v1/routing/settings", json={"strategy": "learned"})
    message = assert_error(response, 422, "validation_error")
    assert "thrifty router train" in message
    assert "router_dir" in message
    assert response.json()["error"]["details"][0]["type"] == "router_unavailable"
    assert api.get("/v1/routing/settings").json()["strategy"] == "rules"


def test_the_settings_need_the_routing_scope(
    api: TestClient, db: Session, tenant: tuple[Tenant, str]
) -> None:
    _, key = tenant_service.create_key(db, tenant=tenant[0], name="ro", scopes=[Scope.jobs_read])
    db.commit()
    headers = {"Authorization": f"Bearer {key}"}
    assert_error(api.get("/v1/routing/settings", headers=headers), 403)
    assert_error(api.put("/v1/routing/settings", json={}, headers=headers), 403)


def test_a_job_quality_target_is_validated_alone_and_in_bulk(api: TestClient) -> None:
    for body in ({"prompt": "x", "quality_target": 0},
                 [{"prompt": "x"}, {"prompt": "y", "quality_target": 2}]):  # fmt: skip
        assert "quality_target" in assert_error(api.post("/v1/jobs", json=body), 422)
    assert api.post("/v1/jobs", json={"prompt": "x", "quality_target": 1}).status_code == 202


def test_a_configured_router_that_does_not_load_is_a_start_up_error(tmp_path: Path) -> None:
    shipped = get_catalog()
    assert shipped.learned is not None
    broken = shipped.model_copy(update={"learned": shipped.learned.model_copy(
        update={"router_dir": str(tmp_path / "missing")})})  # fmt: skip
    with pytest.raises(strategies.RouterUnavailable, match="does not load"):
        strategies.check_configured_router(broken)
    strategies.check_configured_router(shipped)  # none configured: fine


# --- routed by the learned router -----------------------------------------------------------


def test_learned_jobs_show_why_they_were_routed_and_embed_once(
    api: TestClient, db: Session, learned_catalog: Catalog, minilm: LocalEmbedder
) -> None:
    put = api.put("/v1/routing/settings", json={"strategy": "learned", "quality_target": 0.9})
    assert put.status_code == 200, put.text
    assert put.json()["learned_available"] is True
    asked = prompts(4)
    submitted = api.post("/v1/jobs", json=[
        {"prompt": asked[0]},
        {"prompt": asked[1], "quality_target": 0.5},
        {"prompt": asked[2], "quality_target": 1},
        {"prompt": asked[3], "cache": "bypass"},  # skips the cache, still scored at ingest
        {"prompt": "Explain TCP slow start.", "tier": "economy"},
        {"document": "A long article about rivers.", "instruction": "summarise"},
    ])  # fmt: skip
    assert submitted.status_code == 202, submitted.text
    ids = [j["id"] for j in submitted.json()["jobs"]]
    assert all(j["state"] == "queued" for j in submitted.json()["jobs"])

    counting = CountingEmbedder(minilm)
    ingest(db, learned_catalog, counting)
    # One embedding per scored prompt, shared by the router and the cache's semantic layer.
    # (Without sharing, the cache would embed the three cached prompts a second time.) The
    # tier-pinned prompt is routed by the rules and embedded by the cache alone.
    expected = [*asked, "Explain TCP slow start."]
    assert sorted(counting.texts) == sorted(normalise(p) for p in expected)

    outs = [job_out(api, job_id) for job_id in ids]
    thresholds = []
    for out in outs[:4]:
        routing = out["routing"]
        assert isinstance(routing, dict)
        assert routing["strategy"] == "learned"
        assert routing["tenant_strategy"] == "learned"
        assert out["model"] == routing["chosen"] in {"gpt-4o-mini", "gpt-4o"}
        assert [c["model"] for c in routing["candidates"]] == ["gpt-4o-mini", "gpt-4o"]
        assert isinstance(routing["score"], float)
        assert routing["expected_quality"] >= routing["quality_target"] - 1e-9
        assert 0 <= routing["expected_strong_share"] <= 1
        assert float(routing["expected_cost_usd"]) > 0
        strong = routing["threshold"] is None or routing["score"] >= routing["threshold"]
        assert (routing["chosen"] == "gpt-4o") == (strong and routing["expected_strong_share"] > 0)
        assert str(out["route_reason"]).startswith("learned: ")
        thresholds.append(routing.get("training_threshold"))
    assert [o["routing"]["quality_target"] for o in outs[:3]] == [0.9, 0.5, 1.0]  # type: ignore[index]
    low, high = thresholds[1], thresholds[2]  # a higher target never raises the training cut
    assert low is None or high is None or high <= low

    for out, hint in ((outs[4], "tier"), (outs[5], "documents")):
        routing = out["routing"]
        assert isinstance(routing, dict)
        assert routing["strategy"] == "rules"
        assert routing["tenant_strategy"] == "learned"
        assert hint in routing["note"]
    assert outs[5]["routing"]["rule"] == "summaries go to the economy tier"  # type: ignore[index]


def test_a_learned_tenant_falls_back_to_the_rules_when_the_router_is_gone(
    api: TestClient, db: Session, learned_catalog: Catalog, minilm: LocalEmbedder
) -> None:
    assert api.put("/v1/routing/settings", json={"strategy": "learned"}).status_code == 200
    job_id = api.post("/v1/jobs", json={"prompt": prompts(1)[0]}).json()["jobs"][0]["id"]
    assert learned_catalog.learned is not None
    gone = learned_catalog.model_copy(
        update={"learned": learned_catalog.learned.model_copy(update={"router_dir": None})}
    )
    ingest(db, gone, CountingEmbedder(minilm))
    out = job_out(api, job_id)
    assert out["state"] == "waiting"
    routing = out["routing"]
    assert isinstance(routing, dict)
    assert routing["strategy"] == "rules"
    assert "learned routing unavailable" in routing["note"]


# --- rules tenants, as before ---------------------------------------------------------------


def test_rules_tenants_route_as_before_without_an_embedding(
    api: TestClient, db: Session, learned_catalog: Catalog, minilm: LocalEmbedder
) -> None:
    # A router is configured, but this tenant is on the rules (the default).
    submitted = api.post("/v1/jobs", json=[
        {"document": "An article about rivers.", "cache": "bypass"},
        {"prompt": "What is 2 + 2?", "cache": "bypass"},
        {"prompt": "Name a prime.", "cache": "bypass", "model": "gpt-4o"},
    ]).json()  # fmt: skip
    # Skipping the cache, they are routed in the request: no ingest, no embedding.
    assert [j["state"] for j in submitted["jobs"]] == ["waiting"] * 3
    outs = [job_out(api, j["id"]) for j in submitted["jobs"]]
    assert [o["route_reason"] for o in outs] == [
        "rule: summaries go to the economy tier; batch mode (auto: no deadline)",
        "default tier standard; batch mode (auto: no deadline)",
        "model requested by the client; batch mode (auto: no deadline)",
    ]
    routings = [o["routing"] for o in outs]
    assert all(isinstance(r, dict) and r["strategy"] == "rules" for r in routings)
    assert routings[0]["rule"] == "summaries go to the economy tier"  # type: ignore[index]
    assert routings[0]["tier"] == "economy"  # type: ignore[index]
    assert routings[1]["chosen"] == outs[1]["model"]  # type: ignore[index]
    assert routings[2]["hint"] == "model"  # type: ignore[index]
    assert routings[1]["score"] is None  # type: ignore[index]

    # A queued job of a rules tenant is routed by the rules at ingest too.
    queued = api.post("/v1/jobs", json={"prompt": "What is 3 + 3?"}).json()["jobs"][0]["id"]
    ingest(db, learned_catalog, CountingEmbedder(minilm))
    out = job_out(api, queued)
    assert out["route_reason"] == "default tier standard; batch mode (auto: no deadline)"
    assert out["routing"]["strategy"] == "rules"  # type: ignore[index]


def test_a_jobs_routing_record_is_null_until_routed(api: TestClient) -> None:
    job_id = api.post("/v1/jobs", json={"prompt": "x"}).json()["jobs"][0]["id"]
    assert job_out(api, job_id)["routing"] is None


def test_the_learned_route_follows_the_cut_and_overflows_down_the_chain() -> None:
    catalog = get_catalog()

    def verdict(score: float, threshold: float) -> strategies.LearnedScore:
        return strategies.LearnedScore(score, threshold, 0.95, 0.96, 0.4)

    strong = routing_service.route_learned(catalog, tokens=100, verdict=verdict(0.3, 0.2))
    weak = routing_service.route_learned(catalog, tokens=100, verdict=verdict(0.1, 0.2))
    assert (strong.model, weak.model) == ("gpt-4o", "gpt-4o-mini")
    assert strong.reason.startswith("learned: score 0.3000 >= threshold 0.2000")
    assert strong.details["candidates"] == ["gpt-4o-mini", "gpt-4o"]
    never = routing_service.route_learned(catalog, tokens=100, verdict=verdict(9, float("inf")))
    assert never.model == "gpt-4o-mini"
    assert "the weak model alone kept 96%" in never.reason
    assert never.details["threshold"] is None

    # An input gpt-4o-mini cannot hold goes down its fallback chain, and the record says so.
    big = catalog.model("gpt-4o-mini").context_tokens + 1
    over = routing_service.route_learned(catalog, tokens=big, verdict=verdict(0.1, 0.2))
    assert over.model != "gpt-4o-mini"
    assert catalog.model(over.model).context_tokens >= big
    assert "context overflow" in over.details["fallback"]


# --- routed by the semantic routes ----------------------------------------------------------


def test_semantic_needs_routes_in_the_catalog(api: TestClient) -> None:
    from app.main import app

    bare = get_catalog().model_copy(update={"semantic_routes": []})
    app.dependency_overrides[get_catalog] = lambda: bare
    try:
        response = api.put("/v1/routing/settings", json={"strategy": "semantic"})
    finally:
        app.dependency_overrides.pop(get_catalog, None)
    assert "semantic_routes" in assert_error(response, 422, "validation_error")


def test_semantic_jobs_go_to_their_routes_tier_or_to_the_rules(
    api: TestClient, db: Session, minilm: LocalEmbedder
) -> None:
    put = api.put("/v1/routing/settings", json={"strategy": "semantic"})
    assert put.status_code == 200, put.text
    asked = [
        "Write a Python function that reverses a linked list.",
        "What is the capital of Peru?",
        "Tell me a story about a knight who is afraid of the dark.",
    ]
    submitted = api.post("/v1/jobs", json=[{"prompt": p, "cache": "bypass"} for p in asked])
    ids = [j["id"] for j in submitted.json()["jobs"]]
    assert [j["state"] for j in submitted.json()["jobs"]] == ["queued"] * 3  # routed at ingest

    counting = CountingEmbedder(minilm)
    ingest(db, get_catalog(), counting)
    code, capital, story = (job_out(api, job_id) for job_id in ids)

    expected = [(code, "code goes to the premium tier", "premium"),
                (capital, "short factual lookups go to the economy tier", "economy")]  # fmt: skip
    for out, route, tier in expected:
        routing = out["routing"]
        assert isinstance(routing, dict)
        assert routing["strategy"] == "semantic"
        assert routing["semantic_route"] == route
        assert routing["tier"] == tier
        assert routing["similarity"] >= routing["threshold"] > 0
        assert str(out["route_reason"]).startswith(f"semantic: {route} (similarity ")
    routing = story["routing"]
    assert isinstance(routing, dict)
    assert routing["strategy"] == "rules"
    assert routing["tenant_strategy"] == "semantic"
    assert routing["similarity"] < routing["threshold"]
    assert "no semantic route matched" in routing["note"]
    assert story["route_reason"].startswith("default tier standard; no semantic route matched")  # type: ignore[union-attr]


def test_a_route_threshold_is_the_cut_with_the_fewest_errors() -> None:
    assert fit_threshold([0.8, 0.7, 0.6], [0.3, 0.5, 0.65]) == pytest.approx(0.7)
    assert fit_threshold([0.9], [0.1]) == pytest.approx(0.9)


def test_the_learned_cut_follows_each_tenants_own_traffic(
    trained: Path, minilm: LocalEmbedder
) -> None:
    """The cut is the running quantile of the tenant's recent scores (calibration.py): once a
    tenant's window holds only its own traffic, the cut is one of that traffic's scores,
    whatever the training cut was; another tenant starts again from the training scores."""
    router = load_router(trained)
    texts = prompts(8)
    vectors = minilm.embed([normalise(p) for p in texts])
    own = router.score(np.asarray(vectors, dtype=np.float64), texts)
    target = next((t for t in (0.95, 0.9, 0.99, 0.8) if 0 < router.mix_for_quality(t)[1] < 1), None)
    assert target is not None, "the tiny router's mixes send all or nothing to strong"
    n = calibration.WINDOW + 40
    picks = [i % len(texts) for i in range(n)]
    busy, fresh = uuid.uuid4(), uuid.uuid4()

    def route(tenant: uuid.UUID, count: int) -> list[strategies.LearnedScore]:
        return strategies.score_prompts(
            router, vectors=vectors[picks[:count]], prompts=[texts[i] for i in picks[:count]],
            targets=[target] * count, streams=[tenant] * count,
        )  # fmt: skip

    verdicts = route(busy, n)
    first, last = verdicts[0], verdicts[-1]
    assert first.training_threshold is not None
    assert last.training_threshold == first.training_threshold
    assert float(own.min()) <= last.threshold <= float(own.max())
    assert route(fresh, 1)[0].threshold == first.threshold
