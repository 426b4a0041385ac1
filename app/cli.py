"""The ``thrifty`` command."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from app.config import get_settings

if TYPE_CHECKING:
    from app.stack.embedded import StackInfo


def _say(message: str) -> None:
    print(message, flush=True)


def _print_access(info: StackInfo) -> None:
    user, password = info.flower_auth
    _say("\nThrifty is running:")
    _say(f"  API          {info.api_url}")
    _say(f"  API docs     {info.docs_url}")
    _say(f"  Flower       {info.flower_url}  (user {user}, password {password})")
    _say(f"  metrics      {info.api_url}/metrics")
    _say(f"  simulator    {info.simulator_url}/v1")
    _say(f"  database     {info.database_url}")
    _say(f"  broker       {info.redis_url}")
    _say(
        f"  API key      {info.api_key}   (tenant 'dev'; also in {get_settings().home}/dev-api-key)"
    )


def cmd_up(args: argparse.Namespace) -> int:
    from app.stack.embedded import EmbeddedStack

    stack = EmbeddedStack(get_settings())
    if stack.already_running():
        _say("a Thrifty stack is already running; stop it with `thrifty down`")
        return 1
    info = stack.start(say=_say)
    _print_access(info)
    if args.detach:
        _say("\nLeft running in the background; stop it with `thrifty down`.")
        return 0
    _say("\nPress Ctrl-C to stop.")
    _wait_for_signal()
    _say("stopping...")
    stack.stop()
    return 0


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    stop.wait()


def cmd_down(args: argparse.Namespace) -> int:
    from app.stack.embedded import stop_running

    _say("stopped" if stop_running(get_settings()) else "no running stack found; Postgres stopped")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from app.demo.run import run
    from app.stack.embedded import EmbeddedStack

    stack = EmbeddedStack(get_settings())
    if stack.already_running():
        _say("a Thrifty stack is already running; stop it with `thrifty down` first")
        return 1
    _say("Starting the embedded stack...")
    # SIGTERM unwinds like Ctrl-C, so the stack is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    info = stack.start(say=_say)
    try:
        _print_access(info)
        ok = run(info, count=args.count, say=_say)
        _say(f"\nAPI docs: {info.docs_url}   Flower: {info.flower_url}")
        if args.keep_running:
            _say("\nKept running (--keep-running). Press Ctrl-C to stop.")
            _wait_for_signal()
    finally:
        _say("\nstopping the stack...")
        stack.stop()
    if not args.keep_running:
        _say("stopped. Run `thrifty demo --keep-running` or `thrifty up` to keep it up.")
    return 0 if ok else 1


def cmd_simulator(args: argparse.Namespace) -> int:
    from app.simulator.server import serve, settings_from_args

    serve(args.host, args.port, settings_from_args(args))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from app.stack.embedded import migrate

    migrate(get_settings().database_url)
    _say("database is at the newest revision")
    return 0


def cmd_tenant_create(args: argparse.Namespace) -> int:
    from app.kit.db import session_scope
    from app.tenants import service as tenant_service

    with session_scope() as session:
        tenant = tenant_service.get_or_create_tenant(session, name=args.name)
        key = tenant_service.issue_api_key(session, tenant=tenant)
    _say(f"tenant={args.name}")
    _say(f"api_key={key}")
    return 0


def _data_dir() -> Path:
    """The shared evaluation data beside the repository (``<repo>/../shared/data``)."""
    from app.config import PROJECT_ROOT

    return PROJECT_ROOT.parent / "shared" / "data"


def cmd_eval_cache(args: argparse.Namespace) -> int:
    from app.cache import evaluation
    from app.stack.database import migrated_database

    if args.pairs is None and not args.documents:
        print("thrifty: give --pairs FILE, or --documents for the document set", file=sys.stderr)
        return 2
    try:
        plan = evaluation.prepare(
            pairs_path=args.pairs,
            documents=args.documents,
            data_dir=args.data_dir or _data_dir(),
            limit=args.limit,
            verifier_path=args.verifier,
            say=_say,
        )
        with migrated_database(_say) as sessions:
            evaluation.evaluate(plan, sessions=sessions, shared=args.shared, say=_say)
    except (OSError, ValueError) as exc:
        print(f"thrifty: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_cache_train(args: argparse.Namespace) -> int:
    from app.cache.training import train_command

    try:
        train_command(
            pairs_path=args.pairs,
            out=args.out,
            holdout=args.holdout,
            epochs=args.epochs,
            limit=args.limit,
            target_fhr=args.target_fhr,
            say=_say,
        )
    except (OSError, ValueError) as exc:
        print(f"thrifty: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thrifty", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the embedded stack (Ctrl-C stops it)")
    up.add_argument("--detach", action="store_true", help="leave it running in the background")
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop a stack left running by `thrifty up --detach`")
    down.set_defaults(func=cmd_down)

    demo = sub.add_parser("demo", help="start the stack and summarise the sample documents")
    demo.add_argument("--count", type=int, default=200, help="documents to submit (max 200)")
    demo.add_argument("--keep-running", action="store_true", help="leave the stack up afterwards")
    demo.set_defaults(func=cmd_demo)

    sim = sub.add_parser(
        "simulator", help="serve the provider simulator (OpenAI and Anthropic APIs)"
    )
    from app.simulator.server import add_arguments as add_simulator_arguments

    add_simulator_arguments(sim, default_port=8100)
    sim.set_defaults(func=cmd_simulator)

    mig = sub.add_parser("migrate", help="apply database migrations (THRIFTY_DATABASE_URL)")
    mig.set_defaults(func=cmd_migrate)

    tenant = sub.add_parser("tenant", help="manage tenants").add_subparsers(
        dest="tenant_command", required=True
    )
    create = tenant.add_parser("create", help="create a tenant (or reuse it) and issue an API key")
    create.add_argument("name")
    create.set_defaults(func=cmd_tenant_create)

    evaluation = sub.add_parser("eval", help="measure parts of Thrifty on labelled data")
    targets = evaluation.add_subparsers(dest="eval_command", required=True)
    cache_eval = targets.add_parser(
        "cache", help="precision, recall and false-hit rate of the cache on labelled pairs"
    )
    cache_eval.add_argument("--pairs", type=Path, help="JSON lines: a, b, and same or score")
    cache_eval.add_argument(
        "--documents",
        action="store_true",
        help="a and b are documents (the document path); without --pairs, build the "
        "near-duplicate set from the docs data",
    )
    cache_eval.add_argument("--limit", type=int, help="use only the first N pairs (articles)")
    cache_eval.add_argument("--data-dir", type=Path, help="default: <repo>/../shared/data")
    cache_eval.add_argument(
        "--verifier", type=Path, help="a verifier from `thrifty cache train` (default: configured)"
    )
    cache_eval.add_argument(
        "--shared",
        action="store_true",
        help="store every a in one scope (a lookup may land on another pair's entry); "
        "default: each pair in a scope of its own",
    )
    cache_eval.set_defaults(func=cmd_eval_cache)

    cache = sub.add_parser("cache", help="semantic cache tools").add_subparsers(
        dest="cache_command", required=True
    )
    train = cache.add_parser(
        "train", help="train a short-prompt verifier on labelled pairs (and report it)"
    )
    train.add_argument("--pairs", type=Path, required=True, help="JSON lines: a, b, same|score")
    train.add_argument("--out", type=Path, default=Path(".thrifty/verifier"))
    train.add_argument("--holdout", type=float, default=0.3, help="share of pairs kept for eval")
    train.add_argument("--epochs", type=int, default=1)
    train.add_argument("--limit", type=int, help="train on at most N pairs")
    train.add_argument(
        "--target-fhr", type=float, default=0.005, help="false-hit rate to calibrate the cut for"
    )
    train.set_defaults(func=cmd_cache_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except RuntimeError as exc:
        print(f"thrifty: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
