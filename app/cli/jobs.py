"""``thrifty submit FILE.jsonl``, ``thrifty status GROUP_ID`` and ``thrifty stats``: the API
over HTTP (app/cli/client.py), with a progress bar and tables for people and ``key=value``
lines for scripts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.cli.client import ApiError, call, client
from app.cli.console import console, fail, say

app = typer.Typer()

# Jobs per POST /v1/jobs: the API's limit per request.
REQUEST_SIZE = 10_000
STATES = ("queued", "waiting", "batched", "submitted", "completed", "failed", "cancelled")
LAYERS = ("cache", "coalescing", "routing", "batching", "prompt_cache")


def read_jobs(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """The job objects of a JSONL file with their line numbers, and what is wrong with the
    lines that are not jobs (each checked as the API checks it)."""
    from pydantic import ValidationError

    from app.jobs.schemas import JobIn

    jobs: list[tuple[int, dict[str, Any]]] = []
    problems: list[str] = []
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                item = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                problems.append(f"line {number}: not JSON ({exc})")
                continue
            if not isinstance(item, dict):
                problems.append(f"line {number}: not a job object")
                continue
            try:
                JobIn.model_validate(item)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                problems.append(f"line {number}: {where + ': ' if where else ''}{first['msg']}")
                continue
            jobs.append((number, item))
    return jobs, problems


def _chunks(jobs: list[tuple[int, dict[str, Any]]]) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    for start in range(0, len(jobs), REQUEST_SIZE):
        yield jobs[start : start + REQUEST_SIZE]


def _server_problems(exc: ApiError, chunk: list[tuple[int, dict[str, Any]]]) -> list[str]:
    """The API's 422 for a request, as the file's line numbers."""
    found = []
    for detail in exc.details or []:
        loc = detail.get("loc") or []
        if loc and isinstance(loc[0], int) and 0 <= loc[0] < len(chunk):
            where = ".".join(str(part) for part in loc[1:])
            found.append(
                f"line {chunk[loc[0]][0]}: {where + ': ' if where else ''}{detail['message']}"
            )
    return found or [exc.message]


@app.command(help="submit the jobs of a JSONL file (one job object a line)")
def submit(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, show_default=False)],
    wait: Annotated[bool, typer.Option("--wait", help="wait until every job has ended")] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="write the ended jobs here as JSONL (implies --wait)"),
    ] = None,
) -> None:
    jobs, problems = read_jobs(file)
    if problems:
        for problem in problems:
            fail(f"{file}: {problem}")
        fail(f"{len(problems)} bad line(s); nothing was submitted")
        raise typer.Exit(1)
    if not jobs:
        fail(f"{file}: no jobs")
        raise typer.Exit(1)
    groups: list[str] = []
    order: list[str] = []
    try:
        with client() as http:
            for chunk in _chunks(jobs):
                try:
                    answer = call(http, "POST", "/v1/jobs", json=[item for _, item in chunk])
                except ApiError as exc:
                    for problem in (
                        _server_problems(exc, chunk) if exc.status == 422 else [exc.message]
                    ):
                        fail(f"{file}: {problem}")
                    fail(
                        f"request of lines {chunk[0][0]}-{chunk[-1][0]} refused; "
                        f"{len(groups)} earlier request(s) were stored"
                    )
                    raise typer.Exit(1) from None
                groups.append(answer["group_id"])
                order.extend(job["id"] for job in answer["jobs"])
            say(f"submitted={len(order)}")
            for group in groups:
                say(f"group_id={group}")
            if not (wait or output):
                return
            totals = _follow(http, groups, total=len(order))
            if output:
                _write_results(http, groups, order, output)
    except ApiError as exc:
        fail(exc.message)
        raise typer.Exit(1) from None
    for state in ("completed", "failed", "cancelled"):
        say(f"{state}={totals['counts'].get(state, 0)}")
    say(f"cost_usd={usd(totals['cost'])}")
    say(f"naive_cost_usd={usd(totals['naive'])}")
    if output:
        say(f"output={output}")


def usd(amount: Decimal) -> str:
    """A sum of the API's money strings as they are written: ``0.000000000000``, not
    ``0E-12`` (what adding zeros with 12 places gives)."""
    return format(amount, "f")


def _totals(http: Any, groups: list[str]) -> dict[str, Any]:
    counts: dict[str, int] = dict.fromkeys(STATES, 0)
    cost = naive = Decimal(0)
    done = True
    for group in groups:
        body = call(http, "GET", f"/v1/groups/{group}")
        for state, count in body["counts"].items():
            counts[state] = counts.get(state, 0) + count
        cost += Decimal(body["cost"]["cost_usd"])
        naive += Decimal(body["cost"]["naive_cost_usd"])
        done = done and body["done"]
    return {"counts": counts, "cost": cost, "naive": naive, "done": done}


def _follow(http: Any, groups: list[str], *, total: int) -> dict[str, Any]:
    """Poll the groups until every job has ended, with a progress bar of states and cost."""
    columns = (
        TextColumn("[bold]jobs"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[states]}"),
        TextColumn("cost ${task.fields[cost]} (naive ${task.fields[naive]})"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("jobs", total=total, states="", cost="0", naive="0")
        while True:
            totals = _totals(http, groups)
            counts = totals["counts"]
            ended = sum(counts[s] for s in ("completed", "failed", "cancelled"))
            states = " ".join(f"{s} {counts[s]}" for s in STATES if counts[s])
            cost, naive = f"{totals['cost']:.6f}", f"{totals['naive']:.6f}"
            progress.update(task, completed=ended, states=states, cost=cost, naive=naive)
            if totals["done"]:
                return totals
            time.sleep(1.0)


def _write_results(http: Any, groups: list[str], order: list[str], output: Path) -> None:
    """The ended jobs as JSONL, in the order of the input file's lines."""
    by_id: dict[str, bytes] = {}
    for group in groups:
        with http.stream("GET", f"/v1/groups/{group}/results") as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.strip():
                    by_id[orjson.loads(line)["id"]] = line.encode()
    with output.open("wb") as fh:
        for job_id in order:
            if job_id in by_id:
                fh.write(by_id[job_id] + b"\n")


@app.command(help="a group's jobs by state, usage and cost")
def status(group_id: Annotated[str, typer.Argument(show_default=False)]) -> None:
    try:
        with client() as http:
            body = call(http, "GET", f"/v1/groups/{group_id}")
    except ApiError as exc:
        fail(exc.message)
        raise typer.Exit(1) from None
    table = Table(title=f"group {group_id}", title_justify="left", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for state in STATES:
        table.add_row(state, str(body["counts"].get(state, 0)))
    table.add_row("cache hits", str(body["cache_hits"]))
    table.add_row(
        "tokens", f"{body['usage']['input_tokens']} in / {body['usage']['output_tokens']} out"
    )
    for name in ("cost_usd", "naive_cost_usd", "saved_usd"):
        table.add_row(name, f"${body['cost'][name]}")
    console.print(table)
    say(f"done={str(body['done']).lower()}")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


@app.command(help="cost per request, latency, throughput and savings by layer")
def stats(
    since: Annotated[
        str, typer.Option(help="start: a duration before now (24h, 7d) or ISO time")
    ] = "24h",
    until: Annotated[str | None, typer.Option(help="end (default now)")] = None,
) -> None:
    params = {"since": since, **({"until": until} if until else {})}
    try:
        with client() as http:
            body = call(http, "GET", "/v1/stats", params=params)
    except ApiError as exc:
        fail(exc.message)
        raise typer.Exit(1) from None
    console.print(stats_table(body))


def stats_table(body: dict[str, Any]) -> Table:
    """``/v1/stats`` as a table of CPR, LPR, throughput and savings by layer."""
    table = Table(title=f"{body['since']} - {body['until']}", title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    jobs = body["jobs"]
    ended = f"{jobs['completed']} completed, {jobs['failed']} failed, {jobs['cancelled']} cancelled"
    table.add_row("jobs", f"{jobs['total']} ({ended})")
    table.add_row("cost", f"${body['cost_usd']}")
    table.add_row("naive cost", f"${body['naive_cost_usd']}")
    table.add_row("CPR (cost per request)", f"${body['cpr_usd']}" if body["cpr_usd"] else "-")
    table.add_row("naive CPR", f"${body['naive_cpr_usd']}" if body["naive_cpr_usd"] else "-")
    lpr = body["lpr_seconds"]
    table.add_row(
        "LPR p50 / p95 / p99", " / ".join(_seconds(lpr[q]) for q in ("p50", "p95", "p99"))
    )
    for mode, values in body["lpr_seconds_by_mode"].items():
        table.add_row(f"  {mode}", " / ".join(_seconds(values[q]) for q in ("p50", "p95", "p99")))
    table.add_row("deadlines met", _rate(body["deadlines"]["met_rate"]))
    table.add_row("throughput", f"{body['throughput_jobs_per_s']:.4f} jobs/s")
    peak = body["peak_minute_jobs_per_s"]
    table.add_row("peak minute", "-" if peak is None else f"{peak:.3f} jobs/s")
    hits = body["cache_hit_rate"]
    kinds = f"exact {_rate(hits['exact'])}, semantic {_rate(hits['semantic'])}"
    table.add_row("cache hit rate", f"{_rate(hits['total'])} ({kinds})")
    for layer in LAYERS:
        table.add_row(f"saved by {layer.replace('_', ' ')}", f"${body['savings_usd'][layer]}")
    table.add_row("saved in all", f"${body['saved_usd']}")
    return table
