"""The layering of docs/architecture.md, checked on the source: imports point down, one
writer for the jobs table, modules small enough to read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"

# Packages (or top-level modules) of `app`, bottom layer first. A module may import its own
# package and anything in a lower layer, never a sibling of its own layer or a higher one.
LAYERS: list[set[str]] = [
    {"config"},
    {"kit"},
    {"models"},
    {"catalog", "tenants"},
    {"providers"},
    {"embeddings", "routing", "accounting"},
    {"cache", "delivery", "ledger"},
    {"jobs"},
    {"batching"},
    {"intake"},
    {"frontdoor"},
]
# The edge: the HTTP app, the CLI, the embedded stack, the simulator. They may import each
# other and everything above; nothing in a layer imports them.
EDGE = {"main", "metrics", "health", "cli", "demo", "stack", "simulator"}
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}

# Statements that write the jobs table.
JOB_WRITES = re.compile(
    r"update\(Job\b|insert\(Job\b|delete\(Job\b|Job\.__table__|\bJob\.metadata\b"
    r"|(?i:INSERT\s+INTO\s+jobs\b|UPDATE\s+jobs\b|DELETE\s+FROM\s+jobs\b)"
)
MAX_LINES = 450
# Each table's model and the domain that owns it. Another domain asks the owner; ``Tenant``
# is the authenticated principal every service takes, so anyone may hold one.
TABLE_OWNERS = {
    "Job": "jobs",
    "JobGroup": "jobs",
    "ProviderBatch": "batching",
    "CacheEntry": "cache",
    "CacheSettings": "cache",
    "JobEmbedding": "cache",
    "WebhookEndpoint": "delivery",
    "WebhookSecret": "delivery",
    "WebhookDelivery": "delivery",
    "WebhookAttempt": "delivery",
    "ApiKey": "tenants",
    "CostRecord": "ledger",
    "CostRollup": "ledger",
    "CostDayRollup": "ledger",
    "CostGroupRollup": "ledger",
    "CostGroupTotal": "ledger",
    "CostPeak": "ledger",
    "SupersededLine": "ledger",
    "OpenAIFile": "frontdoor",
    "OpenAIFilePart": "frontdoor",
    "OpenAIBatch": "frontdoor",
    "OpenAIBatchLine": "frontdoor",
}


def _modules() -> list[Path]:
    return sorted(path for path in APP.rglob("*.py") if path != APP / "__init__.py")


def _package(path: Path) -> str:
    parts = path.relative_to(APP).with_suffix("").parts
    return parts[0]


def _imports(path: Path) -> set[str]:
    """Every ``app.*`` / ``workers`` module the file imports, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] in {"app", "workers"}}


def _violations() -> list[str]:
    problems: list[str] = []
    for path in _modules():
        package = _package(path)
        where = path.relative_to(ROOT)
        if package not in LAYER_OF and package not in EDGE:
            problems.append(f"{where}: package {package!r} has no layer in docs/architecture.md")
            continue
        for name in sorted(_imports(path)):
            parts = name.split(".")
            if parts[0] == "workers":
                problems.append(f"{where} imports {name}: app never imports workers")
                continue
            if len(parts) < 2:
                continue
            target = parts[1]
            if target == package:
                continue
            if target in EDGE:
                if package not in EDGE:
                    problems.append(f"{where} imports {name}: only the edge imports the edge")
                continue
            if package in EDGE:
                continue
            if target not in LAYER_OF:
                problems.append(f"{where} imports {name}: {target!r} has no layer")
            elif LAYER_OF[target] >= LAYER_OF[package]:
                problems.append(
                    f"{where} imports {name}: {package} (layer {LAYER_OF[package]}) may not "
                    f"import {target} (layer {LAYER_OF[target]})"
                )
    return problems


def test_imports_point_down() -> None:
    assert _violations() == []


def test_only_the_jobs_domain_writes_the_jobs_table() -> None:
    writers = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _modules()
        if _package(path) not in {"jobs", "models"}
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if JOB_WRITES.search(line)
    ]
    assert writers == []


def test_domains_touch_only_their_own_tables() -> None:
    strays = []
    for path in _modules():
        package = _package(path)
        if package == "models" or package in EDGE:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("app.models"):
                for alias in node.names:
                    owner = TABLE_OWNERS.get(alias.name)
                    if owner is not None and owner != package:
                        strays.append(f"{path.relative_to(ROOT)} uses {alias.name} ({owner}'s)")
    assert strays == []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_readable(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{lines} lines: split it at its seams"
