"""``thrifty eval cache`` and ``thrifty cache train``: their figures are ``key=value`` lines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.console import fail, say

eval_app = typer.Typer(no_args_is_help=True)
app = typer.Typer(no_args_is_help=True)


def _data_dir() -> Path:
    """The shared evaluation data beside the repository (``<repo>/../shared/data``)."""
    from app.config import PROJECT_ROOT

    return PROJECT_ROOT.parent / "shared" / "data"


@eval_app.command(
    "cache", help="precision, recall and false-hit rate of the cache on labelled pairs"
)
def eval_cache(
    pairs: Annotated[Path | None, typer.Option(help="JSON lines: a, b, and same or score")] = None,
    documents: Annotated[
        bool,
        typer.Option(
            "--documents",
            help="a and b are documents (the document path); without --pairs, build the "
            "near-duplicate set from the docs data",
        ),
    ] = False,
    limit: Annotated[int | None, typer.Option(help="use only the first N pairs (articles)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="default: <repo>/../shared/data")] = None,
    verifier: Annotated[
        Path | None,
        typer.Option(help="a verifier from `thrifty cache train` (default: configured)"),
    ] = None,
    shared: Annotated[
        bool,
        typer.Option(
            "--shared",
            help="store every a in one scope (a lookup may land on another pair's entry); "
            "default: each pair in a scope of its own",
        ),
    ] = False,
) -> None:
    from app.cache import evaluation
    from app.stack.database import migrated_database

    if pairs is None and not documents:
        fail("give --pairs FILE, or --documents for the document set")
        raise typer.Exit(2)
    try:
        plan = evaluation.prepare(
            pairs_path=pairs,
            documents=documents,
            data_dir=data_dir or _data_dir(),
            limit=limit,
            verifier_path=verifier,
            say=say,
        )
        with migrated_database(say) as sessions:
            evaluation.evaluate(plan, sessions=sessions, shared=shared, say=say)
    except (OSError, ValueError) as exc:
        fail(str(exc))
        raise typer.Exit(2) from exc


@app.command(help="train a short-prompt verifier on labelled pairs (and report it)")
def train(
    pairs: Annotated[Path, typer.Option(help="JSON lines: a, b, same|score", show_default=False)],
    out: Annotated[Path, typer.Option()] = Path(".thrifty/verifier"),
    holdout: Annotated[float, typer.Option(help="share of pairs kept for eval")] = 0.3,
    epochs: Annotated[int, typer.Option()] = 1,
    limit: Annotated[int | None, typer.Option(help="train on at most N pairs")] = None,
    target_fhr: Annotated[
        float, typer.Option(help="false-hit rate to calibrate the cut for")
    ] = 0.005,
) -> None:
    from app.cache.training import train_command

    try:
        train_command(
            pairs_path=pairs,
            out=out,
            holdout=holdout,
            epochs=epochs,
            limit=limit,
            target_fhr=target_fhr,
            say=say,
        )
    except (OSError, ValueError) as exc:
        fail(str(exc))
        raise typer.Exit(2) from exc
