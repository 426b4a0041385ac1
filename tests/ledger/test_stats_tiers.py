"""/v1/stats over days: the daily, hourly and group rollups and the records at the edges give
the same sums as the jobs themselves, and the busiest minute per model, mode and group."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import TypeAdapter
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.ledger import service as ledger_service
from app.ledger import stats as ledger_stats
from app.ledger.pricing import AnsweredBy
from app.ledger.schemas import StatsOut
from app.ledger.stats import stats
from app.models import JobMode, Tenant
from tests.conftest import make_tenant
from tests.ledger.test_stats import ended

DAY = datetime(2026, 11, 20, tzinfo=UTC)
SINCE = DAY + timedelta(hours=5, minutes=13)  # mid-hour, so every tier is read
UNTIL = DAY + timedelta(days=3, hours=7, minutes=44)


@pytest.fixture
def days(db: Session, tenant: tuple[Tenant, str]) -> list[ledger_service.EndedJob]:
    """Four days of jobs of two models and modes, two groups and jobs in none, a busy minute
    per model, and another tenant's jobs in the same minutes."""
    groups = [uuid.uuid4(), uuid.uuid4()]
    jobs: list[ledger_service.EndedJob] = []
    for i in range(300):
        at = DAY + timedelta(minutes=23 * i, seconds=i % 50)
        jobs.append(
            ended(
                tenant[0],
                at=at,
                latency=2.0 + i % 40,
                model="gpt-4o-mini" if i % 3 else "gpt-4.1-mini",
                mode=JobMode.batch if i % 4 else JobMode.realtime,
                answered_by=AnsweredBy.cache_exact if i % 9 == 0 else AnsweredBy.provider,
                tokens=50 + 7 * i,
                group_id=groups[i % 2] if i % 5 else None,
                state="failed" if i % 37 == 0 else "completed",
            )
        )
    # Busy minutes: seven gpt-4o-mini batch jobs of the first group on day 2, five
    # gpt-4.1-mini realtime jobs in no group at the start of the range's last, partial hour.
    busy = DAY + timedelta(days=1, hours=11, minutes=30)
    jobs += [ended(tenant[0], at=busy + timedelta(seconds=s), latency=9, group_id=groups[0])
             for s in range(7)]  # fmt: skip
    edge = UNTIL.replace(minute=2)
    jobs += [ended(tenant[0], at=edge + timedelta(seconds=s), latency=1, model="gpt-4.1-mini",
                   mode=JobMode.realtime) for s in range(5)]  # fmt: skip
    ledger_service.record(db, jobs)
    other, _ = make_tenant(db, name="other")
    ledger_service.record(
        db, [ended(other, at=busy + timedelta(seconds=30 + s), latency=3) for s in range(4)]
    )
    db.commit()
    return jobs


def _key(job: ledger_service.EndedJob, group_by: str | None) -> str:
    if group_by == "model":
        return job.model or "none"
    if group_by == "mode":
        return job.mode or "none"
    if group_by == "day":
        return job.ended_at.replace(hour=0, minute=0, second=0).isoformat()
    if group_by == "hour":
        return job.ended_at.replace(minute=0, second=0).isoformat()
    if group_by == "group":
        return str(job.group_id) if job.group_id else "none"
    return ""


def _peak(jobs: list[ledger_service.EndedJob]) -> float:
    minutes = Counter(j.ended_at.replace(second=0, microsecond=0) for j in jobs)
    return round(max(minutes.values(), default=0) / 60, 6)


@pytest.mark.parametrize("group_by", [None, "model", "mode", "day", "hour", "group"])
def test_every_tier_adds_up_to_the_jobs(
    db: Session,
    tenant: tuple[Tenant, str],
    days: list[ledger_service.EndedJob],
    group_by: str | None,
) -> None:
    out = stats(db, tenant_id=tenant[0].id, since=SINCE, until=UNTIL, group_by=group_by)  # type: ignore[arg-type]
    inside = [j for j in days if SINCE <= j.ended_at < UNTIL]
    done = [j for j in inside if j.state == "completed"]
    assert out.jobs["completed"] == len(done)
    assert out.jobs["failed"] == len(inside) - len(done)
    assert out.cost_usd == sum((j.costs.actual for j in done if j.costs), Decimal(0))
    assert out.naive_cost_usd == sum((j.costs.naive for j in done if j.costs), Decimal(0))
    assert out.peak_minute_jobs_per_s == _peak(done) == round(7 / 60, 6)
    if group_by is None:
        return
    by_key = {g.key: g for g in out.groups}
    expected: dict[str, list[ledger_service.EndedJob]] = {}
    for job in inside:
        expected.setdefault(_key(job, group_by), []).append(job)
    assert set(by_key) == set(expected)
    for key, jobs in expected.items():
        group = by_key[key]
        completed = [j for j in jobs if j.state == "completed"]
        assert group.jobs["total"] == len(jobs), key
        assert group.cost_usd == sum((j.costs.actual for j in completed if j.costs), Decimal(0))
        layers = group.savings_usd
        assert layers.cache + layers.routing + layers.batching + layers.prompt_cache == (
            group.naive_cost_usd - group.cost_usd
        )
        modes = Counter(j.mode for j in completed)
        assert {m: p.p50 is not None for m, p in group.lpr_seconds_by_mode.items()} == {
            m: True for m in modes
        }
        if group_by == "group" and key == "none":
            assert group.peak_minute_jobs_per_s is None  # a peak is not a difference
        else:
            assert group.peak_minute_jobs_per_s == _peak(completed), key


def test_the_operator_peak_is_every_tenant_s_busiest_minute(
    db: Session, tenant: tuple[Tenant, str], days: list[ledger_service.EndedJob]
) -> None:
    everyone = stats(db, tenant_id=None, since=SINCE, until=UNTIL, group_by="model")
    # The other tenant's four jobs end in the busy minute: 7 + 4 gpt-4o-mini jobs.
    assert everyone.peak_minute_jobs_per_s == round(11 / 60, 6)
    by_model = {g.key: g.peak_minute_jobs_per_s for g in everyone.groups}
    assert by_model["gpt-4o-mini"] == round(11 / 60, 6)
    assert by_model["gpt-4.1-mini"] == round(5 / 60, 6)


# Four groups of one tenant: one wholly inside the range, one it cuts at its start, one at
# its end, and one that ends inside the range's first, partial hour and goes on after it.
CUT_SINCE = DAY + timedelta(hours=10, minutes=20)
CUT_UNTIL = DAY + timedelta(days=1, hours=3, minutes=40)


@pytest.fixture
def cut_groups(db: Session, tenant: tuple[Tenant, str]) -> dict[str, uuid.UUID]:
    groups = {name: uuid.uuid4() for name in ("inside", "start", "end", "edge")}
    spans = {
        "inside": (CUT_SINCE + timedelta(hours=2), timedelta(minutes=11), 40),
        "start": (CUT_SINCE - timedelta(hours=3), timedelta(minutes=9), 50),
        "end": (CUT_UNTIL - timedelta(hours=2), timedelta(minutes=7), 40),
        "edge": (CUT_SINCE - timedelta(minutes=10), timedelta(minutes=1), 90),
    }
    jobs = [
        ended(
            tenant[0],
            at=start + step * i,
            latency=0.5 + 3.7 * i,
            model="gpt-4o-mini" if i % 3 else "gpt-4.1-mini",
            mode=JobMode.realtime if i % 4 == 0 else JobMode.batch,
            answered_by=AnsweredBy.cache_semantic if i % 6 == 1 else AnsweredBy.provider,
            tokens=100 + 13 * i,
            group_id=groups[name],
            state="cancelled" if i % 17 == 5 else "completed",
        )
        for name, (start, step, count) in spans.items()
        for i in range(count)
    ]
    # Jobs in no group, across the range.
    jobs += [ended(tenant[0], at=CUT_SINCE + timedelta(minutes=5 * i), latency=2)
             for i in range(100)]  # fmt: skip
    ledger_service.record(db, jobs)
    db.commit()
    return groups


@pytest.mark.parametrize(
    ("since", "until"),
    [
        (CUT_SINCE, CUT_UNTIL),
        (CUT_SINCE - timedelta(hours=4), CUT_UNTIL + timedelta(hours=4)),  # every group whole
        (CUT_SINCE + timedelta(minutes=2), CUT_SINCE + timedelta(minutes=40)),  # one hour
        (CUT_SINCE + timedelta(hours=2, minutes=30), CUT_UNTIL),  # inside the inside group
    ],
)
def test_whole_groups_from_the_all_time_rollup_agree_with_the_hours(
    db: Session,
    tenant: tuple[Tenant, str],
    cut_groups: dict[str, uuid.UUID],
    since: datetime,
    until: datetime,
) -> None:
    """A group the range holds wholly is read from its all-time row, a group it cuts from
    the hourly group rollup and the records: per group and mode, the same sums (to the cent,
    every histogram count) as reading every group by the hour, the old way."""
    params = ledger_stats._params(tenant_id=tenant[0].id, since=since, until=until,
                                  group_by="group")  # fmt: skip
    fast = ledger_stats._entries(db, ledger_stats._groups_sql(all_tenants=False), params)
    hourly = ledger_stats._entries(
        db, ledger_stats._groups_sql(all_tenants=False, by_hour=True), params
    )
    assert fast.labels, "no group in the range"
    order = sorted(range(len(fast.labels)), key=lambda i: fast.labels[i])
    reference = sorted(range(len(hourly.labels)), key=lambda i: hourly.labels[i])
    assert [fast.labels[i] for i in order] == [hourly.labels[i] for i in reference]
    assert (fast.ints[order] == hourly.ints[reference]).all()
    assert [fast.money[i] for i in order] == [hourly.money[i] for i in reference]
    assert [fast.latency[i] for i in order] == pytest.approx([hourly.latency[i] for i in reference])
    # And the answer per group is the jobs' own, the jobs in no group included.
    out = stats(db, tenant_id=tenant[0].id, since=since, until=until, group_by="group")
    jobs = db.execute(
        text(
            "SELECT coalesce(group_id::text, 'none'), count(*), sum(actual_usd), "
            "sum(saved_cache_usd + saved_routing_usd + saved_batching_usd) FROM cost_records "
            "WHERE ended_at >= :a AND ended_at < :b GROUP BY 1"
        ),
        {"a": since, "b": until},
    ).all()
    by_key = {g.key: g for g in out.groups}
    assert set(by_key) == {key for key, *_ in jobs}
    for key, count, cost, saved in jobs:
        group = by_key[key]
        assert group.jobs["total"] == count
        assert group.cost_usd == cost
        assert group.naive_cost_usd - group.cost_usd == saved


def test_the_all_time_group_rollup_knows_what_a_range_cuts(
    db: Session, tenant: tuple[Tenant, str], cut_groups: dict[str, uuid.UUID]
) -> None:
    """The case above reads both ways: the range holds one group wholly and cuts three."""
    rows = db.execute(
        text(
            "SELECT group_id, bool_and(first_ended_at >= :a AND last_ended_at < :b) "
            "FROM cost_group_totals GROUP BY 1"
        ),
        {"a": CUT_SINCE, "b": CUT_UNTIL},
    ).all()
    inside = {name: dict(rows)[group] for name, group in cut_groups.items()}
    assert inside == {"inside": True, "start": False, "end": False, "edge": False}
    totals = db.execute(
        text("SELECT sum(completed + failed + cancelled) FROM cost_group_totals")
    ).scalar()
    assert totals == 40 + 50 + 40 + 90


_ANSWER = TypeAdapter(StatsOut)
_MONEY = re.compile(r"^-?\d+\.\d{12}$")


def _money_texts(block: dict[str, Any]) -> list[Any]:
    names = ("cost_usd", "naive_cost_usd", "saved_usd", "cpr_usd", "naive_cpr_usd")
    return [block[name] for name in names if block[name] is not None] + list(
        block["savings_usd"].values()
    )


@pytest.mark.parametrize(
    ("since", "until", "every_tenant", "group_by"),
    [
        (CUT_SINCE, CUT_UNTIL, False, "group"),  # cuts three groups, holds one
        (CUT_SINCE + timedelta(minutes=2), CUT_SINCE + timedelta(minutes=40), False, "group"),
        (CUT_SINCE + timedelta(hours=2, minutes=30), CUT_UNTIL, False, "group"),
        (CUT_SINCE - timedelta(hours=4), CUT_UNTIL + timedelta(hours=4), False, "group"),
        (CUT_SINCE, CUT_UNTIL, True, "group"),  # the operator's view
        (SINCE, UNTIL, True, "group"),
        (SINCE, UNTIL, True, "model"),
        (SINCE, UNTIL, False, "hour"),
        (SINCE, UNTIL, False, "day"),
        (SINCE + timedelta(microseconds=250), UNTIL, False, None),  # a fraction of a second
        (UNTIL + timedelta(days=9), UNTIL + timedelta(days=10), True, "group"),  # no jobs
    ],
)
def test_the_answer_is_the_response_model_s_json_byte_for_byte(
    db: Session,
    tenant: tuple[Tenant, str],
    days: list[ledger_service.EndedJob],
    cut_groups: dict[str, uuid.UUID],
    since: datetime,
    until: datetime,
    every_tenant: bool,
    group_by: str | None,
) -> None:
    """The endpoint writes the answer straight from the sums, without the models: it is the
    JSON pydantic writes for the same ``StatsOut`` (what FastAPI wrote from the response
    model), byte for byte, on ranges that cut groups and on the operator's view, with every
    amount of money a decimal string of 12 places."""
    body = ledger_stats.stats_json(
        db,
        tenant_id=None if every_tenant else tenant[0].id,
        since=since,
        until=until,
        group_by=group_by,  # type: ignore[arg-type]
    )
    assert _ANSWER.dump_json(_ANSWER.validate_json(body)) == body
    answer = json.loads(body)
    blocks = [answer, *answer["groups"]]
    assert all(_MONEY.match(value) for block in blocks for value in _money_texts(block))
    if group_by == "group" and answer["jobs"]["total"]:
        assert len(answer["groups"]) > 1
