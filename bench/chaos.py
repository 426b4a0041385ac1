"""The fault suite: a mixed workload through the whole stack while everything breaks.

    python -m bench.chaos [--jobs 20000] [--small 400] [--slow-seconds 5] [--home DIR]

Starts the stack as `thrifty up` does (a `thrifty up` child process, which supervises its
children), with a private Redis (on a free port, started and supervised by the stack), the
simulator losing 10% of batch-create answers and expiring 10% of OpenAI batches half-way.
First the small tenant's jobs run alone (the baseline); then several tenants submit
``--jobs`` jobs in all (prompts and documents, mostly skipping the cache, some cached, some
to Anthropic, some to a model that leaves the catalog mid-run), one noisy tenant with a
webhook receiver that takes ``--slow-seconds`` per call, the small tenant again beside it,
while the run:

- SIGKILLs a worker process (a random pool) every 15 s for 150 s; the supervisor restarts it;
- SIGKILLs Redis (a restart: queued hints are lost; the sweeper re-drives the work);
- stops Postgres for a few seconds and starts it again;
- queues 429 and 500 storms at the simulator;
- submits poison rows (refused at the API) and stores rows Postgres cannot give back;
- removes a model from the catalog and restarts the workers and the API with it.

Ends with ``key=value`` lines: jobs, completed, failed, lost (not terminal at the end),
duplicated (a request in two live provider batches), billed_twice (a custom_id with a
successful result in two batches), stalled_s (longest time with work pending and no job
moving), small_tenant_slowdown (its completion beside the noisy tenant over alone), and the
figures behind them. The longest stall is broken down: the faults before and during it, when
each worker pool was ready again, and what was pending through it (jobs by stage: ingesting,
waiting, submitting, polling; open provider batches, backing off or due); every sample is in
``<home>/watch.jsonl``. Ports: THRIFTY_PG_PORT / _API_PORT / _SIMULATOR_PORT / _FLOWER_PORT /
_METRICS_PORT if set, else free ones.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
LEGACY = "gpt-4o-mini-legacy"
UNREADABLE_DEADLINE = "0001-01-01T00:00:00+14:00"
STALE_AFTER = 30
TERMINAL = ("completed", "failed", "cancelled")
# Workers are SIGKILLed every KILL_EVERY seconds for the first KILLS_UNTIL seconds of the run.
KILL_EVERY = 15.0
KILLS_UNTIL = 150.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _catalog(path: Path) -> None:
    """The shipped catalog with a cheaper economy model that will leave it mid-run."""
    text = (ROOT / "app" / "catalog" / "catalog.toml").read_text()
    text += f"""
[[models]]
name = "{LEGACY}"
provider = "openai"
tier = "economy"
input_per_mtok = 0.10
output_per_mtok = 0.40
batch_discount = 0.5
context_tokens = 128000
"""
    path.write_text(text)


def _remove_legacy(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: text.index('\n[[models]]\nname = "' + LEGACY)] + "\n")


class Receiver:
    """A webhook receiver on its own port that answers after ``delay`` seconds and records
    when each job's delivery arrived."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.arrived: dict[str, float] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(receiver.delay)
                try:
                    data = json.loads(body).get("data") or {}
                except ValueError:
                    data = {}
                with receiver.lock:
                    if data.get("id"):
                        receiver.arrived.setdefault(str(data["id"]), time.monotonic())
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", _free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Stack:
    """The `thrifty up` child process and the things the run breaks."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env = home, env
        log = (home / "logs").mkdir(parents=True, exist_ok=True) or home / "logs" / "up.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "up"],
            cwd=ROOT,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        ready = home / "run" / "ready.json"
        deadline = time.monotonic() + 900
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"thrifty up did not start; see {log}")
            time.sleep(1)
        self.info = json.loads(ready.read_text())

    def children(self) -> dict[str, int]:
        state = json.loads((self.home / "run" / "stack.json").read_text())
        return {item["name"]: int(item["pid"]) for item in state}

    def kill(self, name: str) -> None:
        pid = self.children().get(name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)

    def restart_postgres(self, down_seconds: float) -> None:
        from app.stack.postgres import EmbeddedPostgres

        postgres = EmbeddedPostgres(self.home / "pgdata", int(self.env["THRIFTY_PG_PORT"]))
        postgres.stop()
        time.sleep(down_seconds)
        postgres.start()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _submit(api: str, key: str, jobs: list[dict[str, Any]], *, say: Callable[[str], None]) -> int:
    """Submit in lists of 1,000 with idempotency keys, retrying 503/429/lost answers."""
    accepted = 0
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
        for start in range(0, len(jobs), 1000):
            chunk = jobs[start : start + 1000]
            for _ in range(60):
                try:
                    response = c.post("/v1/jobs", json=chunk)
                except httpx.HTTPError:
                    time.sleep(2)
                    continue
                if response.status_code in {429, 503, 500}:
                    time.sleep(float(response.headers.get("Retry-After", "2")))
                    continue
                if response.status_code == 202:
                    accepted += response.json()["count"]
                else:
                    say(f"  refused {response.status_code}: {response.text[:160]}")
                break
            else:
                say("  gave up on a chunk after 60 tries")
    return accepted


def _jobs(tenant: str, count: int, *, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(count):
        key = f"{tenant}-{seed}-{i}"
        kind = rng.random()
        if kind < 0.1:  # answered from the cache where it can (ingest: lookups, routing)
            job: dict[str, Any] = {"prompt": f"{tenant} {seed} question {rng.randrange(300)}?"}
        elif kind < 0.35:  # summaries: the economy tier, where the model that leaves lives
            words = " ".join(f"word{rng.randrange(5000)}" for _ in range(60))
            job = {"document": f"Report {key}. {words}.", "cache": "bypass"}
        elif kind < 0.40:
            job = {"prompt": f"{key}: one line on tides", "model": "claude-3-5-haiku-latest",
                   "cache": "bypass"}  # fmt: skip
        else:
            job = {"prompt": f"{key}: what is {rng.randrange(10**6)} squared?", "cache": "bypass"}
        job["idempotency_key"] = key
        out.append(job)
    return out


def _register(api: str, key: str, url: str) -> None:
    response = httpx.post(
        f"{api}/v1/webhooks/endpoints",
        json={"url": url, "events": ["job.completed", "job.failed"]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    response.raise_for_status()


# What a pending job waits for, by its state: the stage that owes it a move.
STAGES = {
    "queued": "ingesting",  # accepted, waiting for ingest (lookup, routing)
    "waiting": "waiting",  # routed, in its model's window
    "batched": "submitting",  # claimed into a provider batch not yet accepted
    "submitted": "polling",  # in a live provider batch
}


class Watch:
    """Samples the jobs table every second: the longest time with work pending and no job
    moving (``stalled``), whether everything has ended, and a timeline of what was pending
    (jobs by stage, provider batches by state), so the longest stall can be broken down."""

    def __init__(self) -> None:
        self.stalled = 0.0
        self.stalled_from = 0.0  # when the longest stall began (monotonic)
        self.last_move = time.monotonic()
        self.last: tuple[Any, ...] | None = None
        self.pending = 1
        # (monotonic, moved, {stage: jobs} | None when Postgres did not answer, {batch state: n})
        self.samples: list[tuple[float, bool, dict[str, int] | None, dict[str, int]]] = []
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        from sqlalchemy import text

        from app.kit.db import get_engine

        query = text(
            "SELECT count(*) FILTER (WHERE state IN ('completed','failed','cancelled')),"
            " max(updated_at) FROM jobs"
        )
        by_state = text(
            "SELECT state::text, count(*) FROM jobs"
            " WHERE state NOT IN ('completed','failed','cancelled') GROUP BY 1"
        )
        batches = text(
            "SELECT state::text || CASE WHEN state = 'submitted' AND next_poll_at > now()"
            " THEN ' (backing off)' ELSE '' END, count(*) FROM provider_batches"
            " WHERE state IN ('pending','submitted') GROUP BY 1"
        )
        while not self.stop.wait(1.0):
            now = time.monotonic()
            stages: dict[str, int] | None
            open_batches: dict[str, int] = {}
            try:
                with get_engine().connect() as conn:
                    ended, moved = conn.execute(query).one()
                    counts = dict(conn.execute(by_state).all())
                    open_batches = {k: int(n) for k, n in conn.execute(batches).all()}
                stages = {STAGES.get(k, k): int(n) for k, n in counts.items()}
                pending = sum(stages.values())
            except Exception:  # Postgres is down: nothing moves meanwhile
                pending, ended, moved, stages = self.pending, None, None, None
            sample = (ended, moved)
            progressed = ended is not None and sample != self.last
            self.samples.append((now, progressed, stages, open_batches))
            if progressed:
                self.last, self.last_move = sample, now
            elif self.pending and now - self.last_move > self.stalled:
                self.stalled, self.stalled_from = now - self.last_move, self.last_move
            self.pending = int(pending or 0)

    def breakdown(self, events: list[tuple[float, str]], t0: float, logs: Path) -> list[str]:
        """The longest stall: the faults that overlap it (and the last ones before it), when
        each worker pool was ready again (its log's ``ready.`` lines), and what was pending
        through it, sampled every few seconds."""
        begin, end = self.stalled_from, self.stalled_from + self.stalled
        out = [f"longest stall: {begin - t0:.1f}s to {end - t0:.1f}s ({self.stalled:.1f}s)"]
        ready = _ready_times(logs, time.time() - (time.monotonic() - t0))
        before = [e for e in events if e[0] < begin - t0]
        during = [e for e in events if begin - t0 <= e[0] <= end - t0]
        during += [(at, f"{pool} ready") for at, pool in ready if begin - t0 <= at <= end - t0]
        for at, what in before[-3:]:
            out.append(f"  before: {at:6.1f}s {what}")
        for at, what in sorted(during):
            out.append(f"  during: {at:6.1f}s {what}")
        last_shown = -1e9
        for now, _, stages, open_batches in self.samples:
            if not (begin - 1.5 <= now <= end + 1.5) or now - last_shown < 3.0:
                continue
            last_shown = now
            if stages is None:
                out.append(f"  {now - t0:6.1f}s Postgres did not answer")
                continue
            jobs = ", ".join(f"{k} {n}" for k, n in sorted(stages.items())) or "none"
            held = ", ".join(f"{k} {n}" for k, n in sorted(open_batches.items())) or "none"
            out.append(f"  {now - t0:6.1f}s jobs pending: {jobs}; batches: {held}")
        return out

    def dump(self, path: Path, t0: float) -> None:
        with path.open("w") as f:
            for now, moved, stages, open_batches in self.samples:
                row = {"t": round(now - t0, 1), "moved": moved, "jobs": stages}
                f.write(json.dumps({**row, "batches": open_batches}) + "\n")


def _ready_times(logs: Path, wall0: float) -> list[tuple[float, str]]:
    """(seconds since the chaos began, pool) for every time a worker pool said it was ready."""
    from datetime import datetime

    found = []
    for log in logs.glob("worker*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if line.endswith(" ready.") and line.startswith("[20"):
                stamp = datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                found.append((stamp - wall0, log.stem))
    return sorted(found)


def _simulator_duplicates(sim: str) -> tuple[int, int]:
    """(duplicated, billed_twice) over every batch the simulator holds: a request in two
    live batches (neither dead nor its line failed), and one with a success in two."""
    live: Counter[str] = Counter()
    billed: Counter[str] = Counter()
    headers = {
        "Authorization": "Bearer chaos",
        "x-api-key": "chaos",
        "anthropic-version": "2023-06-01",
    }
    with httpx.Client(base_url=sim, headers=headers, timeout=120) as c:
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100, **({"after": after} if after else {})}
            page = c.get("/v1/batches", params=params).json()
            for batch in page["data"]:
                ok: set[str] = set()
                for file_id in (batch.get("output_file_id"),):
                    if file_id:
                        for line in c.get(f"/v1/files/{file_id}/content").text.splitlines():
                            if line.strip():
                                ok.add(json.loads(line)["custom_id"])
                billed.update(ok)
                if batch["status"] in {"validating", "in_progress", "finalizing"}:
                    content = c.get(f"/v1/files/{batch['input_file_id']}/content").text
                    ok |= {json.loads(x)["custom_id"] for x in content.splitlines() if x.strip()}
                live.update(ok)
            if not page.get("has_more") or not page["data"]:
                break
            after = page["data"][-1]["id"]
        after = None
        while True:
            params = {"limit": 100, **({"after_id": after} if after else {})}
            page = c.get("/v1/messages/batches", params=params).json()
            for batch in page["data"]:
                ok = set()
                if batch["processing_status"] == "ended":
                    text = c.get(f"/v1/messages/batches/{batch['id']}/results").text
                    for line in text.splitlines():
                        entry = json.loads(line) if line.strip() else {}
                        if (entry.get("result") or {}).get("type") == "succeeded":
                            ok.add(entry["custom_id"])
                billed.update(ok)
                live.update(ok)
            if not page.get("has_more"):
                break
            after = page["last_id"]
    return sum(1 for n in live.values() if n > 1), sum(1 for n in billed.values() if n > 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs in the chaos phase")
    parser.add_argument("--small", type=int, default=400, help="the small tenant's jobs")
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    parser.add_argument("--home", type=Path, default=ROOT / ".thrifty" / "bench-chaos")
    parser.add_argument("--timeout", type=float, default=3600, help="longest wait for the end")
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(line, flush=True)

    home: Path = args.home.resolve()
    if (home / "run" / "ready.json").exists():
        raise SystemExit(f"a stack may still run under {home}; `THRIFTY_HOME={home} thrifty down`")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    catalog = home / "catalog.toml"
    _catalog(catalog)
    ports = {
        name: int(os.environ.get(f"THRIFTY_{name}_PORT") or _free_port())
        for name in ("PG", "API", "SIMULATOR", "FLOWER", "METRICS")
    }
    redis_port = _free_port()
    env = dict(
        os.environ,
        THRIFTY_HOME=str(home),
        THRIFTY_CATALOG_PATH=str(catalog),
        THRIFTY_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        THRIFTY_STALE_AFTER_SECONDS=str(STALE_AFTER),
        THRIFTY_SIMULATOR_LOSE_CREATE_RATE="0.1",
        THRIFTY_SIMULATOR_EXPIRE_RATE="0.1",
        THRIFTY_SIMULATOR_PROCESSING_SECONDS="3",
        THRIFTY_WEBHOOK_ALLOW_LOOPBACK="true",
        **{f"THRIFTY_{name}_PORT": str(port) for name, port in ports.items()},
    )
    os.environ.update(env)
    os.environ["THRIFTY_DATABASE_URL"] = (
        f"postgresql+psycopg://postgres@127.0.0.1:{ports['PG']}/thrifty"
    )
    sys.path.insert(0, str(ROOT))

    say(f"starting the stack under {home} (log {home / 'logs' / 'up.log'})")
    # SIGTERM unwinds like Ctrl-C, so the stack is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    stack = Stack(home, env)
    try:
        return _run(args, stack, catalog, say)
    finally:
        stack.stop()


def _run(args: argparse.Namespace, stack: Stack, catalog: Path, say: Callable[[str], None]) -> int:
    from sqlalchemy import select, text

    from app.kit.db import get_engine, get_sessionmaker
    from app.models import Job
    from app.tenants import service as tenant_service

    api, sim = stack.info["api_url"], stack.info["simulator_url"]
    names = ["noisy", "bulk-a", "bulk-b", "small"]  # small's keys: small-<seed>-<n>
    keys: dict[str, str] = {}
    with get_sessionmaker()() as session:
        for name in names:
            tenant = tenant_service.get_or_create_tenant(session, name=name)
            keys[name] = tenant_service.issue_api_key(session, tenant=tenant)
        session.commit()
    slow, fast = Receiver(args.slow_seconds), Receiver(0.0)
    _register(api, keys["noisy"], slow.url)
    _register(api, keys["small"], fast.url)

    def small_done(ids: set[str], start: float) -> float:
        """Seconds from ``start`` until every one of ``ids`` was delivered to its receiver."""
        deadline = time.monotonic() + args.timeout
        while True:
            with fast.lock:
                arrived = [fast.arrived[i] for i in ids if i in fast.arrived]
            if len(arrived) == len(ids) or time.monotonic() > deadline:
                return (max(arrived) if arrived else time.monotonic()) - start
            time.sleep(0.5)

    def small_ids(seed: int) -> set[str]:
        with get_sessionmaker()() as session:
            rows = session.execute(
                select(Job.id).where(Job.idempotency_key.like(f"small-{seed}-%"))
            ).scalars()
            return {str(i) for i in rows}

    # 1. The baseline: the small tenant alone, nothing broken (after a warm-up, so that it
    # does not pay for loading the embedder and opening connections).
    _submit(api, keys["small"], _jobs("small", 50, seed=0), say=say)
    small_done(small_ids(0), time.monotonic())
    start = time.monotonic()
    _submit(api, keys["small"], _jobs("small", args.small, seed=1), say=say)
    alone = small_done(small_ids(1), start)
    say(f"baseline: the small tenant's {args.small} jobs alone took {alone:.1f}s")

    # 2. Chaos.
    watch = Watch()
    stop = threading.Event()
    events: list[tuple[float, str]] = []
    t0 = time.monotonic()

    def note(what: str) -> None:
        events.append((time.monotonic() - t0, what))
        say(f"  [{time.monotonic() - t0:6.1f}s] {what}")

    def faults() -> None:
        pools = ["worker", "worker-poll", "worker-ingest", "worker-delivery"]
        leave = f"remove {LEGACY} from the catalog; restart workers and API"
        plan: list[tuple[float, str, Callable[[], None]]] = [
            (10, "429 storm", lambda: _fault(sim, status=429, count=40, retry_after=1)),
            (20, "poison rows", lambda: _poison(api, keys["bulk-a"], note)),
            (25, "SIGKILL Redis", lambda: stack.kill("redis")),
            (40, "500 storm", lambda: _fault(sim, status=500, count=40)),
            (50, leave, lambda: _leave(stack, catalog)),
            (70, "stop Postgres for 5 s", lambda: stack.restart_postgres(5)),
        ]
        rng = random.Random(7)
        next_kill = KILL_EVERY
        while not stop.is_set():
            elapsed = time.monotonic() - t0
            while plan and plan[0][0] <= elapsed:
                _, what, act = plan.pop(0)
                note(what)
                try:
                    act()
                except Exception as exc:  # a fault that fails is reported, not fatal
                    note(f"{what} failed: {exc}")
            if elapsed >= next_kill and elapsed < KILLS_UNTIL and watch.pending:
                pool = rng.choice(pools)
                note(f"SIGKILL {pool}")
                stack.kill(pool)
                next_kill += KILL_EVERY
            stop.wait(0.5)

    threading.Thread(target=faults, daemon=True).start()
    share = args.jobs - args.small
    loads = {"noisy": share // 2, "bulk-a": share // 4, "bulk-b": share - share // 2 - share // 4}
    submitters = [
        threading.Thread(
            target=_submit, args=(api, keys[n], _jobs(n, c, seed=2)), kwargs={"say": say}
        )
        for n, c in loads.items()
    ]
    for thread in submitters:
        thread.start()
    time.sleep(2)
    start = time.monotonic()
    _submit(api, keys["small"], _jobs("small", args.small, seed=2), say=say)
    for thread in submitters:
        thread.join()
    note("every job submitted")
    beside = small_done(small_ids(2), start)
    note(f"the small tenant's jobs beside the noisy one took {beside:.1f}s")

    deadline = time.monotonic() + args.timeout
    while watch.pending and time.monotonic() < deadline:
        time.sleep(2)
    stop.set()
    watch.stop.set()
    wall = time.monotonic() - t0

    with get_engine().connect() as conn:
        counts = dict(conn.execute(text("SELECT state::text, count(*) FROM jobs GROUP BY 1")).all())
        errors = conn.execute(
            text(
                "SELECT left(error, 90), count(*) FROM jobs WHERE state = 'failed'"
                " GROUP BY 1 ORDER BY 2 DESC LIMIT 6"
            )
        ).all()
    duplicated, billed_twice = _simulator_duplicates(sim)
    jobs = sum(counts.values())
    lost = sum(n for state, n in counts.items() if state not in TERMINAL)
    say("\nfaults:\n" + "\n".join(f"{at:6.1f}s {what}" for at, what in events))
    say("failures by reason: " + "; ".join(f"{n} x {e}" for e, n in errors))
    say(f"wall time {wall:.0f}s; stale timeout {STALE_AFTER}s; states {counts}")
    say("\n".join(watch.breakdown(events, t0, stack.home / "logs")))
    watch.dump(stack.home / "watch.jsonl", t0)
    say(f"every sample: {stack.home / 'watch.jsonl'}")
    say(f"jobs={jobs}")
    say(f"completed={counts.get('completed', 0)}")
    say(f"failed={counts.get('failed', 0)}")
    say(f"lost={lost}")
    say(f"duplicated={duplicated}")
    say(f"billed_twice={billed_twice}")
    say(f"stalled_s={watch.stalled:.1f}")
    say(f"small_tenant_alone_s={alone:.1f}")
    say(f"small_tenant_beside_s={beside:.1f}")
    say(f"small_tenant_slowdown={beside / alone:.2f}")
    ok = lost == 0 and duplicated == 0 and billed_twice == 0 and watch.stalled <= STALE_AFTER
    return 0 if ok and beside / alone <= 2 else 1


def _fault(sim: str, **spec: Any) -> None:
    httpx.post(f"{sim}/_simulator/faults", json=spec, timeout=10).raise_for_status()


def _poison(api: str, key: str, note: Callable[[str], None]) -> None:
    """Rows Postgres cannot store are refused at the API; rows it stored but cannot give back
    (written past the API) fail alone at ingest with the reason."""
    from sqlalchemy import select, text

    bad = [
        {"prompt": "x", "deadline": UNREADABLE_DEADLINE},
        {"prompt": "nul \u0000 inside"},
        {"prompt": "x", "priority": 10**9},
        {"document": "x", "instruction": "summarise", "temperature": "hot"},
    ]
    headers = {"Authorization": f"Bearer {key}"}
    codes = [
        httpx.post(f"{api}/v1/jobs", json=b, headers=headers, timeout=30).status_code for b in bad
    ]
    note(f"poison rows at the API answered {codes}")
    from app.kit.db import get_sessionmaker
    from app.models import Job, Tenant

    with get_sessionmaker()() as session:
        tenant = session.scalars(select(Tenant).where(Tenant.name == "bulk-a")).one()
        rows = [
            Job(tenant_id=tenant.id, prompt=f"unreadable {i}", job_metadata={}) for i in range(5)
        ]
        session.add_all(rows)
        session.flush()
        session.execute(
            text("UPDATE jobs SET deadline = CAST(:d AS timestamptz) WHERE id = ANY(:ids)"),
            {"d": UNREADABLE_DEADLINE, "ids": [r.id for r in rows]},
        )
        session.commit()
    note("stored 5 rows whose deadline Postgres cannot give back")


def _leave(stack: Stack, catalog: Path) -> None:
    _remove_legacy(catalog)
    for name in ("worker", "worker-poll", "worker-ingest", "worker-delivery", "api", "beat"):
        stack.kill(name)


if __name__ == "__main__":
    raise SystemExit(main())
