"""``thrifty submit``, ``status`` and ``stats`` over HTTP against an API server process and a
real worker, as a user runs them."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.cli import jobs as cli_jobs
from app.cli import main as cli
from app.models import Job, Tenant


@pytest.fixture
def as_user(
    monkeypatch: pytest.MonkeyPatch, api_server: str, tenant: tuple[Tenant, str]
) -> tuple[Tenant, str]:
    monkeypatch.setenv("THRIFTY_API_URL", api_server)
    monkeypatch.setenv("THRIFTY_API_KEY", tenant[1])
    return tenant


def lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and " " not in line)


def test_bad_lines_are_reported_by_number_and_nothing_is_stored(
    tmp_path: Path, db: Session, as_user: tuple[Tenant, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text(
        '{"prompt": "fine"}\n'
        "\n"
        "{not json\n"
        '{"prompt": "fine too"}\n'
        '{"prompt": "x", "colour": "red"}\n'
        "[1, 2]\n"
        '{"prompt": "x", "priority": "high"}\n'
    )
    assert cli(["submit", str(path)]) == 1
    err = capsys.readouterr().err
    for number in (3, 5, 6, 7):
        assert f"line {number}:" in err
    assert "line 1:" not in err
    assert "line 4:" not in err
    assert "nothing was submitted" in err
    assert db.scalar(select(func.count()).select_from(Job)) == 0


@pytest.mark.usefixtures("worker")
def test_submit_waits_with_progress_and_writes_the_results_in_order(
    tmp_path: Path,
    db: Session,
    as_user: tuple[Tenant, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Requests of at most REQUEST_SIZE jobs: 7 jobs in requests of 3 are three groups.
    monkeypatch.setattr(cli_jobs, "REQUEST_SIZE", 3)
    tag = uuid.uuid4().hex[:8]
    prompts = [f"What is {i} plus {i} ({tag})?" for i in range(7)]
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(orjson.dumps({"prompt": p}).decode() + "\n" for p in prompts))
    output = tmp_path / "results.jsonl"
    assert cli(["submit", str(path), "--wait", "--output", str(output)]) == 0
    out = capsys.readouterr().out
    values = lines(out)
    assert values["submitted"] == "7"
    assert values["completed"] == "7"
    assert float(values["cost_usd"]) > 0
    assert out.count("group_id=") == 3
    assert "cost $" in out  # the progress bar's cost so far
    results = [orjson.loads(line) for line in output.read_text().splitlines()]
    assert [r["state"] for r in results] == ["completed"] * 7
    stored = {job_id: prompt for job_id, prompt in db.execute(select(Job.id, Job.prompt))}
    assert [stored[uuid.UUID(r["id"])] for r in results] == prompts

    group = out.split("group_id=")[1].split()[0]
    assert cli(["status", group]) == 0
    status = capsys.readouterr().out
    assert "completed" in status
    assert "done=true" in status

    assert cli(["stats", "--since", "1h"]) == 0
    table = capsys.readouterr().out
    for row in ("CPR", "LPR p50 / p95 / p99", "throughput", "saved by routing", "saved by cache"):
        assert row in table


def test_stats_reports_the_apis_422(
    as_user: tuple[Tenant, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["stats", "--since", "yesterday"]) == 1
    assert "since" in capsys.readouterr().err


def test_submit_writes_a_zero_cost_as_a_plain_decimal() -> None:
    """Jobs that all came from the cache cost 0.000000000000 each; their sum is written the
    same way, not as Decimal's 0E-12."""
    from decimal import Decimal

    total = sum((Decimal("0.000000000000") for _ in range(3)), Decimal(0))
    assert str(total) == "0E-12"
    assert cli_jobs.usd(total) == "0.000000000000"
    assert cli_jobs.usd(Decimal("0.002384000000")) == "0.002384000000"
