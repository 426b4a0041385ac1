"""``thrifty router train`` and ``thrifty eval router``: figures end in ``key=value`` lines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.cache import eval_app
from app.cli.console import fail, say

app = typer.Typer(no_args_is_help=True)


@app.command(help="train the learned router on outcome data (prompt, weak_correct, strong_correct)")
def train(
    outcomes: Annotated[Path, typer.Option(help="JSON lines of outcomes", show_default=False)],
    out: Annotated[Path, typer.Option(help="directory to write the router to")] = Path(
        ".thrifty/router"
    ),
) -> None:
    from app.embeddings.service import get_embedder
    from app.routing.training import train_command

    try:
        train_command(outcomes_path=outcomes, out=out, embedder=get_embedder(), say=say)
    except (OSError, ValueError) as exc:
        fail(str(exc))
        raise typer.Exit(2) from exc


@eval_app.command("router", help="RouteLLM's figures for a trained router on outcome data")
def eval_router(
    router: Annotated[Path, typer.Option(help="a directory from `thrifty router train`")],
    outcomes: Annotated[Path, typer.Option(help="JSON lines of outcomes", show_default=False)],
    target_share: Annotated[
        float, typer.Option(help="share of strong calls the training threshold aims at")
    ] = 0.5,
    weak_model: Annotated[
        str | None, typer.Option(help="catalog model of the weak side (default: catalog)")
    ] = None,
    strong_model: Annotated[
        str | None, typer.Option(help="catalog model of the strong side (default: catalog)")
    ] = None,
    output_tokens: Annotated[
        int, typer.Option(help="answer tokens assumed per prompt when pricing the mix")
    ] = 256,
) -> None:
    from app.embeddings.service import get_embedder
    from app.routing.evaluation import evaluate_command

    if not 0 <= target_share <= 1:
        fail("--target-share must be within [0, 1]")
        raise typer.Exit(2)
    try:
        evaluate_command(
            router_dir=router,
            outcomes_path=outcomes,
            target_share=target_share,
            weak_model=weak_model,
            strong_model=strong_model,
            output_tokens=output_tokens,
            embedder=get_embedder(),
            say=say,
        )
    except (OSError, ValueError, KeyError) as exc:
        fail(str(exc))
        raise typer.Exit(2) from exc
