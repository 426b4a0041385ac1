"""The Celery app: broker settings shared with the API's sender, and the beat schedule."""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_ready

from app.catalog.catalog import get_catalog
from app.config import get_settings
from app.kit import queue
from app.providers.registry import batch_limits, shared_provider
from app.routing.strategies import (
    RouterUnavailable,
    check_configured_router,
    learned_router,
    router_directory,
)
from workers import beat as _beat  # noqa: F401  (tick marks cleared when ticks start)
from workers import metrics as _task_metrics  # noqa: F401  (task duration signals)

log = logging.getLogger(__name__)
settings = get_settings()

celery_app = Celery("thrifty", include=["workers.tasks"])
celery_app.conf.update(
    queue.celery_app_config(),
    # Tasks check state before acting, so a redelivered message is harmless: ack late so a
    # killed worker's message goes back to the queue.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # An ingest process warms its embedder in worker_process_init; give it time to report up.
    worker_proc_alive_timeout=180,
    task_ignore_result=True,
    # Flower follows tasks through the workers' events (received, started, succeeded ...).
    worker_send_task_events=True,
    # No tick is sent while an earlier one of the same task still waits (workers/beat.py).
    beat_scheduler="workers.beat:TickScheduler",
    beat_schedule={
        # A periodic hint older than its interval is dropped (`expires`), not run late: a busy
        # worker must not work through a backlog of ticks ahead of real work (submissions).
        "collect": {
            "task": queue.COLLECT,
            "schedule": settings.collect_interval_seconds,
            "options": {"expires": max(1.0, settings.collect_interval_seconds)},
        },
        "poll-batches": {
            "task": queue.POLL_BATCHES,
            "schedule": settings.poll_interval_seconds,
            "options": {"expires": max(1.0, settings.poll_interval_seconds)},
        },
        "sweep": {
            "task": queue.SWEEP,
            "schedule": settings.sweep_interval_seconds,
            "options": {"expires": max(1.0, settings.sweep_interval_seconds)},
        },
        "dispatch-webhooks": {
            "task": queue.DISPATCH_WEBHOOKS,
            "schedule": settings.webhook_dispatch_interval_seconds,
        },
    },
)
# Redis visibility timeout: an unacked message is redelivered after this long.
celery_app.conf.broker_transport_options = {
    **celery_app.conf.broker_transport_options,
    "visibility_timeout": 3600,
}

app = celery_app


def _queues(argv: list[str]) -> set[str] | None:
    """The queues this worker consumes (``-Q``); None when not given (every queue)."""
    for i, arg in enumerate(argv):
        if arg in ("-Q", "--queues") and i + 1 < len(argv):
            return set(argv[i + 1].split(","))
        if arg.startswith("--queues="):
            return set(arg.split("=", 1)[1].split(","))
    return None


def _consumes_ingest(argv: list[str]) -> bool:
    """Whether this worker consumes the ingest queue (every queue when ``-Q`` is not given)."""
    queues = _queues(argv)
    return queues is None or queue.TASK_QUEUES[queue.INGEST] in queues


def _load_embedder(*, warm: bool) -> None:
    """Load the embedder (``warm``: and run one forward pass, so the first job does not wait
    for it either); processes of other pools never load it."""
    from app.embeddings import service as embedding_service

    try:
        if settings.embedding_backend == "local":
            # one intra-op thread per process: the pool's processes share the cores, and
            # more threads than cores per process only contend
            embedding_service.set_threads(1)
        embedder = embedding_service.get_embedder()
        if warm:
            embedder.embed(["warm up"])
    except Exception:  # the first ingest reports it (and the exact layer works without)
        log.warning("could not load the embedder ahead of time", exc_info=True)


def _prepare_onnx() -> None:
    """Before the pool forks: export the ONNX graph if this home has none yet (once, not in
    every process) and import the runtime, so each process only opens its session."""
    try:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401

        from app.embeddings.local import bundled_model_path
        from app.embeddings.onnx import ensure_onnx

        int8 = settings.embedding_runtime == "onnx-int8"
        model_dir = settings.embedding_model_path or bundled_model_path()
        ensure_onnx(model_dir, settings.home, "int8" if int8 else "fp32")
    except Exception:  # each process tries again, and reports it
        log.warning("could not prepare the ONNX embedder ahead of time", exc_info=True)


def _check_router_embedder() -> None:
    """A trained router scores the vectors of the embedder it was trained with: with another
    (an upgrade to the int8 default, a new model) every learned job would fall back to the
    rules, so the worker stops at start with the remedy instead."""
    from app.embeddings.service import embedder_name

    catalog = get_catalog()
    if router_directory(catalog) is None:
        return
    trained, running = learned_router(catalog).embedder_name, embedder_name(settings)
    if trained != running:
        raise RouterUnavailable(
            f"the router in {router_directory(catalog)} was trained with embedder {trained}; "
            f"this worker embeds with {running}: retrain it (`thrifty router train`) or set "
            "THRIFTY_EMBEDDING_RUNTIME to the runtime it was trained with (onnx: "
            "local:all-MiniLM-L6-v2)"
        )


@worker_init.connect
def _prepare_worker(**_: Any) -> None:
    # Ingest routes with the trained router the catalog names: one that does not load stops
    # the worker here, with the reason, instead of failing every job later (SystemExit:
    # Celery logs and swallows the Exceptions of signal handlers).
    if _consumes_ingest(sys.argv):
        try:
            check_configured_router(get_catalog())
            _check_router_embedder()
        except RouterUnavailable as exc:
            log.critical("%s", exc)
            raise SystemExit(f"thrifty worker: {exc}") from exc
    # A worker of the ingest pool alone prepares the embedder once, in its main process,
    # before the pool forks, so a restarted pool is ready at once instead of each process
    # importing torch and reading the weights (minutes on a loaded machine). With torch the
    # model itself is loaded here and inherited (its pages shared, copy-on-write); with ONNX
    # Runtime (the default) the graph is exported if missing and each process opens its own
    # session, which takes well under a second (an inference session is not fork-safe).
    # The ONNX export is done here for any worker that consumes ingest (a worker of every
    # queue too, as the benches run one): done in each process instead, the first ingest
    # waited for it (8 s in bench.ingest's first run on a new home). Loading torch here is
    # left to an ingest-only worker, so one that serves other queues answers them first.
    if not _consumes_ingest(sys.argv):
        return
    if settings.embedding_backend == "local" and settings.embedding_runtime != "torch":
        _prepare_onnx()
    elif _queues(sys.argv) == {queue.TASK_QUEUES[queue.INGEST]}:
        _load_embedder(warm=False)


@worker_process_init.connect
def _prepare_process(**_: Any) -> None:
    if _consumes_ingest(sys.argv):
        _load_embedder(warm=True)
    # Each pool process builds its provider clients once, at start, not in its first task.
    try:
        catalog = get_catalog()
        for name in batch_limits(catalog):
            shared_provider(catalog, name)
    except Exception:  # the first task that needs a client reports the problem
        log.warning("could not build the provider clients ahead of time", exc_info=True)


@worker_ready.connect
def _redrive_on_start(**_: Any) -> None:
    # A worker that starts may replace one that was SIGKILLed holding messages (acked late,
    # they come back only after the broker's visibility timeout): re-drive at once instead of
    # waiting for the sweeper's stale timeout.
    try:
        celery_app.send_task(queue.SWEEP, kwargs={"redrive": True})
    except Exception:  # the periodic sweep comes anyway
        log.warning("could not ask for a re-drive at start", exc_info=True)
