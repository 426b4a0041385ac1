"""The cache owns ``cache_entries``, ``cache_settings`` and ``job_embeddings``: it reads no
other domain's table (what it needs of a job comes in the caller's request or CacheWrite)."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

# What app/cache may take from app.models: its own tables, the cache-mode enum, helpers.
ALLOWED = {"CacheEntry", "CacheSettings", "JobEmbedding", "CacheMode", "utcnow",
           "EMBEDDING_DIMENSIONS"}  # fmt: skip


def test_the_cache_uses_only_its_own_tables() -> None:
    used: dict[str, set[str]] = {}
    for path in sorted((ROOT / "app" / "cache").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("app.models"):
                used[path.name] = used.get(path.name, set()) | {a.name for a in node.names}
    assert {name: names - ALLOWED for name, names in used.items() if names - ALLOWED} == {}
