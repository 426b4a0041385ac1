"""The cost report page in a real browser (Debian's chromium, driven by playwright) against
an API server process: its charts render with data from /v1/stats, the console stays clean,
and a screenshot is saved."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

from playwright.sync_api import sync_playwright
from sqlalchemy.orm import Session

from app.catalog.catalog import get_catalog
from app.ledger import service as ledger_service
from app.ledger.pricing import AnsweredBy, TokenUsage, chain
from app.models import JobMode, Tenant, utcnow
from tests.conftest import TEST_HOME

CHROMIUM = Path("/usr/bin/chromium")  # scripts/bootstrap.sh installs Debian's package
SCREENSHOT = TEST_HOME / "report.png"
CHARTS = ["chart-cost", "chart-savings", "chart-lpr", "chart-throughput", "chart-cache",
          "chart-models"]  # fmt: skip


def _history(db: Session, tenant: Tenant) -> None:
    now = utcnow()
    jobs = []
    for i in range(120):
        model = ("gpt-4o-mini", "gpt-4.1-mini", "claude-3-5-haiku-latest")[i % 3]
        mode = JobMode.realtime if i % 4 == 0 else JobMode.batch
        answered = AnsweredBy.cache_exact if i % 7 == 0 else AnsweredBy.provider
        usage = TokenUsage(input_tokens=200 + 10 * i, output_tokens=50 + i)
        ended = now - timedelta(minutes=5 * i)
        jobs.append(
            ledger_service.EndedJob(
                job_id=uuid.uuid4(),
                tenant_id=tenant.id,
                group_id=None,
                state="completed",
                provider="openai",
                model=model,
                mode=mode.value,
                usage=usage,
                costs=chain(
                    get_catalog(), model=model, mode=mode, usage=usage, answered_by=answered
                ),
                created_at=ended - timedelta(seconds=2 + i % 50),
                ended_at=ended,
                deadline=None,
            )
        )
    ledger_service.record(db, jobs)
    db.commit()


def test_the_report_page_draws_its_charts_from_the_stats(
    db: Session, tenant: tuple[Tenant, str], api_server: str
) -> None:
    _history(db, tenant[0])
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # Nothing may come from outside the server.
        outside: list[str] = []
        page.on(
            "request",
            lambda r: (
                None
                if r.url.startswith(api_server) or r.url.startswith("data:")
                else outside.append(r.url)
            ),
        )
        page.goto(f"{api_server}/report#key={tenant[1]}")
        page.wait_for_function("window.thriftyReport && window.thriftyReport.loaded", timeout=30000)
        for chart in CHARTS:
            points = page.evaluate(
                "(id) => window.thriftyReport.charts[id].data.datasets"
                ".flatMap(d => d.data).filter(v => Number(v) > 0).length",
                chart,
            )
            assert points > 0, f"{chart} has no data"
            painted = page.evaluate(
                "(id) => { const c = document.getElementById(id);"
                " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }",
                chart,
            )
            assert painted > 1000, f"{chart} drew nothing"
        tiles = page.inner_text("#tiles").lower()
        assert "cost per request" in tiles
        assert "120" in tiles
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        # A wrong key is reported on the page, not as a broken chart.
        page.goto("about:blank")  # a new fragment alone would not load the page again
        page.goto(f"{api_server}/report#key=thr_wrong")
        page.wait_for_function("window.thriftyReport && window.thriftyReport.error", timeout=30000)
        assert "invalid" in page.inner_text("#status")
        browser.close()
    assert outside == []
    # The 401 of the wrong key is the one console error the browser logs.
    assert [e for e in errors if "401" not in e] == []
    assert SCREENSHOT.stat().st_size > 10_000
