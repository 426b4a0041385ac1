"""Memory of the API under concurrent large bodies, and a burst against the rate limit.

    python -m bench.bodies [--bodies 6] [--mib 63] [--pg-port 18452] [--api-port 18450]

Starts embedded Postgres (``THRIFTY_HOME``, default ``.thrifty/bench-bodies``) and, twice,
one uvicorn API process: once as shipped (``THRIFTY_MAX_LARGE_BODIES=2``) and once as the
baseline with the gate wide open (as many places as bodies, what the API did before). Each
time ``--bodies`` clients post a ``--mib`` MiB list of jobs at once; the last job of each
list is invalid, so every body is read, parsed and validated in full and then refused
(422) — nothing is stored, the workers have nothing to do. The API's resident memory is
sampled every 20 ms. Then a burst of requests from one tenant against a limit of 60 a
minute counts the 429s. Ends with ``key=value`` lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _body(mib: int) -> bytes:
    # 10,000 jobs (the most one request takes), their documents filling the size.
    count = 10_000
    sentence = "The quick brown fox jumps over the lazy dog. "
    document = sentence * (mib * 1024 * 1024 // count // len(sentence))
    jobs = [{"document": document} for _ in range(count - 1)] + [{"document": ""}]
    return json.dumps(jobs).encode()


def _run_api(env: dict[str, str], port: int, log: Path) -> tuple[object, int]:
    import subprocess

    argv = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/healthz"
    for _ in range(300):
        try:
            if httpx.get(url, timeout=1).status_code in (200, 503):
                return proc, proc.pid
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the API did not start; see {log}")


def _measure(*, env: dict[str, str], port: int, key: str, body: bytes, bodies: int,
             log: Path) -> dict[str, float]:  # fmt: skip
    proc, pid = _run_api(env, port, log)
    try:
        idle = _rss_mib(pid)
        peak = idle
        statuses: list[int] = []
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _rss_mib(pid))
                time.sleep(0.02)

        def post() -> None:
            response = httpx.post(
                f"http://127.0.0.1:{port}/v1/jobs",
                content=body,
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                timeout=600,
            )
            statuses.append(response.status_code)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        clients = [threading.Thread(target=post) for _ in range(bodies)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        seconds = time.monotonic() - started
        done.set()
        sampler.join()
        assert statuses == [422] * bodies, statuses
        return {"idle_mib": idle, "peak_mib": peak, "seconds": seconds}
    finally:
        proc.terminate()  # type: ignore[attr-defined]
        proc.wait(timeout=30)  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bodies", type=int, default=6)
    parser.add_argument("--mib", type=int, default=63)
    parser.add_argument("--pg-port", type=int, default=18452)
    parser.add_argument("--api-port", type=int, default=18450)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    args = parser.parse_args()

    home = Path(os.environ.get("THRIFTY_HOME", ROOT / ".thrifty" / "bench-bodies"))
    home.mkdir(parents=True, exist_ok=True)
    database_url = f"postgresql+psycopg://postgres@127.0.0.1:{args.pg_port}/thrifty_bench"
    os.environ.update(THRIFTY_DATABASE_URL=database_url, THRIFTY_REDIS_URL=args.redis_url)
    from app.stack.embedded import migrate
    from app.stack.postgres import EmbeddedPostgres

    postgres = EmbeddedPostgres(home / "pgdata", args.pg_port)
    postgres.start()
    try:
        postgres.ensure_database("thrifty_bench", recreate=True)
        migrate(database_url)
        from app.kit.db import session_scope
        from app.tenants import service as tenant_service

        with session_scope() as session:
            tenant = tenant_service.get_or_create_tenant(session, name="bench")
            key = tenant_service.issue_api_key(session, tenant=tenant)

        body = _body(args.mib)
        print(f"{args.bodies} concurrent bodies of {len(body) / 2**20:.1f} MiB each")
        base_env = {**os.environ, "THRIFTY_ENVIRONMENT": "development",
                    "THRIFTY_TENANT_JOBS_PER_MINUTE": "10000000"}  # fmt: skip
        gated = _measure(env={**base_env, "THRIFTY_MAX_LARGE_BODIES": "2"},
                         port=args.api_port, key=key, body=body, bodies=args.bodies,
                         log=home / "api-gated.log")  # fmt: skip
        print(f"  gated (2 at a time): idle {gated['idle_mib']:.0f} MiB, "
              f"peak {gated['peak_mib']:.0f} MiB, {gated['seconds']:.1f} s")  # fmt: skip
        open_ = _measure(env={**base_env, "THRIFTY_MAX_LARGE_BODIES": str(args.bodies)},
                         port=args.api_port, key=key, body=body, bodies=args.bodies,
                         log=home / "api-open.log")  # fmt: skip
        print(f"  baseline (all at once): idle {open_['idle_mib']:.0f} MiB, "
              f"peak {open_['peak_mib']:.0f} MiB, {open_['seconds']:.1f} s")  # fmt: skip

        limited_env = {**base_env, "THRIFTY_TENANT_REQUESTS_PER_MINUTE": "60"}
        proc, _ = _run_api(limited_env, args.api_port, home / "api-burst.log")
        try:
            codes: list[int] = []
            retry_after: set[str] = set()
            with httpx.Client(headers={"Authorization": f"Bearer {key}"}) as client:
                for _ in range(200):
                    response = client.get(f"http://127.0.0.1:{args.api_port}/v1/keys")
                    codes.append(response.status_code)
                    if response.status_code == 429:
                        retry_after.add(response.headers.get("retry-after", "missing"))
        finally:
            proc.terminate()  # type: ignore[attr-defined]
            proc.wait(timeout=30)  # type: ignore[attr-defined]
        print(f"  burst of 200 requests at 60/min: {codes.count(200)} ok, {codes.count(429)} 429")
    finally:
        postgres.stop()

    print(f"bodies={args.bodies}")
    print(f"body_mib={len(body) / 2**20:.1f}")
    print(f"api_idle_mib={gated['idle_mib']:.0f}")
    print(f"api_peak_mib={gated['peak_mib']:.0f}")
    print(f"api_peak_mib_baseline={open_['peak_mib']:.0f}")
    print(f"burst_ok={codes.count(200)}")
    print(f"burst_429={codes.count(429)}")
    print(f"burst_retry_after_present={'missing' not in retry_after}")


if __name__ == "__main__":
    main()
