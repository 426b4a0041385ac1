"""``thrifty simulator``: the provider simulator (OpenAI and Anthropic APIs) on one port.

Every flag but ``--port`` also reads ``THRIFTY_SIMULATOR_<FLAG>``, so the simulator that
``thrifty up`` starts can be configured from the environment; a flag given wins.
"""

from __future__ import annotations

from typing import Annotated

import typer

from app.simulator.common import SimulatorSettings

app = typer.Typer()

_DEFAULTS = SimulatorSettings()


def _env(flag: str) -> str:
    return f"THRIFTY_SIMULATOR_{flag.upper()}"


@app.command(help="serve the provider simulator (OpenAI and Anthropic APIs)")
def simulator(
    host: Annotated[str, typer.Option(envvar=_env("host"), help="address to listen on")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="port to listen on")] = 8100,
    validating_seconds: Annotated[
        float,
        typer.Option(envvar=_env("validating_seconds"), help="how long a batch stays validating"),
    ] = _DEFAULTS.validating_seconds,
    processing_seconds: Annotated[
        float, typer.Option(envvar=_env("processing_seconds"), help="batch processing time")
    ] = _DEFAULTS.processing_seconds,
    finalizing_seconds: Annotated[
        float,
        typer.Option(
            envvar=_env("finalizing_seconds"), help="how long a finished batch stays finalizing"
        ),
    ] = _DEFAULTS.finalizing_seconds,
    cancelling_seconds: Annotated[
        float,
        typer.Option(
            envvar=_env("cancelling_seconds"), help="how long a cancelled batch stays cancelling"
        ),
    ] = _DEFAULTS.cancelling_seconds,
    expire_after_seconds: Annotated[
        float | None,
        typer.Option(
            envvar=_env("expire_after_seconds"),
            help="unfinished batches expire this long after creation "
            "(default: the 24 h completion window)",
        ),
    ] = _DEFAULTS.expire_after_seconds,
    latency_seconds: Annotated[
        float, typer.Option(envvar=_env("latency_seconds"), help="delay added to every API call")
    ] = _DEFAULTS.latency_seconds,
    error_rate: Annotated[
        float,
        typer.Option(
            envvar=_env("error_rate"),
            help="share of requests (batch lines, realtime calls) answered 400",
        ),
    ] = _DEFAULTS.error_rate,
    rate_limit_rate: Annotated[
        float,
        typer.Option(envvar=_env("rate_limit_rate"), help="share of API calls answered 429"),
    ] = _DEFAULTS.rate_limit_rate,
    server_error_rate: Annotated[
        float,
        typer.Option(envvar=_env("server_error_rate"), help="share of API calls answered 500"),
    ] = _DEFAULTS.server_error_rate,
    lose_create_rate: Annotated[
        float,
        typer.Option(
            envvar=_env("lose_create_rate"),
            help="share of batch creates carried out whose answer is then lost",
        ),
    ] = _DEFAULTS.lose_create_rate,
    expire_rate: Annotated[
        float,
        typer.Option(
            envvar=_env("expire_rate"),
            help="share of (OpenAI) batches that expire half-way through processing",
        ),
    ] = _DEFAULTS.expire_rate,
    retry_after_seconds: Annotated[
        float,
        typer.Option(
            envvar=_env("retry_after_seconds"), help="retry-after sent with injected 429s"
        ),
    ] = _DEFAULTS.retry_after_seconds,
    embedding_dimensions: Annotated[
        int,
        typer.Option(
            envvar=_env("embedding_dimensions"), help="embedding size when a request gives none"
        ),
    ] = _DEFAULTS.embedding_dimensions,
    flex_latency_seconds: Annotated[
        float,
        typer.Option(
            envvar=_env("flex_latency_seconds"),
            help='delay added to every flex call (service_tier: "flex")',
        ),
    ] = _DEFAULTS.flex_latency_seconds,
    flex_unavailable_rate: Annotated[
        float,
        typer.Option(
            envvar=_env("flex_unavailable_rate"),
            help="share of flex calls answered 429 resource_unavailable",
        ),
    ] = _DEFAULTS.flex_unavailable_rate,
    flex_models: Annotated[
        str | None,
        typer.Option(
            envvar=_env("flex_models"),
            help="comma-separated models that offer flex (others answer 400); default: all",
        ),
    ] = None,
    removed_models: Annotated[
        str,
        typer.Option(
            envvar=_env("removed_models"),
            help="comma-separated models no longer served (404 model_not_found)",
        ),
    ] = "",
    refuse_marker: Annotated[
        str | None,
        typer.Option(
            envvar=_env("refuse_marker"),
            help="refuse prompts containing this text (OpenAI: 400 content_policy_violation; "
            "Anthropic: a message with stop_reason refusal)",
        ),
    ] = None,
    context_limits: Annotated[
        str,
        typer.Option(
            envvar=_env("context_limits"),
            help="comma-separated MODEL=TOKENS context windows (400 context_length_exceeded)",
        ),
    ] = "",
    seed: Annotated[
        int, typer.Option(envvar=_env("seed"), help="seed for output order and injected failures")
    ] = _DEFAULTS.seed,
) -> None:
    from app.simulator.server import serve

    try:
        settings = SimulatorSettings(
            validating_seconds=validating_seconds,
            processing_seconds=processing_seconds,
            finalizing_seconds=finalizing_seconds,
            cancelling_seconds=cancelling_seconds,
            expire_after_seconds=expire_after_seconds,
            latency_seconds=latency_seconds,
            error_rate=error_rate,
            rate_limit_rate=rate_limit_rate,
            server_error_rate=server_error_rate,
            retry_after_seconds=retry_after_seconds,
            lose_create_rate=lose_create_rate,
            expire_rate=expire_rate,
            embedding_dimensions=embedding_dimensions,
            flex_latency_seconds=flex_latency_seconds,
            flex_unavailable_rate=flex_unavailable_rate,
            flex_models=_names(flex_models) if flex_models is not None else None,
            removed_models=_names(removed_models),
            refuse_marker=refuse_marker or None,
            context_limits=tuple(
                (name, int(tokens))
                for name, _, tokens in (item.partition("=") for item in _names(context_limits))
            ),
            seed=seed,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    serve(host, port, settings)


def _names(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())
