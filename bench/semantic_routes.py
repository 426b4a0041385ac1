"""The semantic strategy's routes on labelled prompts nobody wrote the routes from.

    python -m bench.semantic_routes [--data DIR]

Embeds the first turn of every question of MT-Bench and the Vicuna bench and every Arena-Hard
v2 prompt (``../shared/data/routing``: each carries a category), matches each against the
catalog's ``[[semantic_routes]]`` with the cache's embedder (as a ``semantic`` tenant's
prompts are matched at ingest) and prints, per source and category, the share of prompts
each route takes and the share left to the rules. A category is a route's own when its
prompts are what the route's utterances describe: every ``coding`` category is the code
route's; no category is the short-lookup route's own (none of the sets holds one-line
factual questions), so every match of that route is counted against it. Ends with
``key=value`` lines: ``code_recall=`` (coding prompts sent to the code route),
``code_false_match=`` (other prompts sent to it), ``lookup_match=`` (prompts sent to the
short-lookup route), ``prompts=``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

from app.catalog.catalog import get_catalog
from app.config import PROJECT_ROOT
from app.embeddings.service import get_embedder
from app.kit.text import normalise
from app.routing.semantic import SemanticRouter

DATA = PROJECT_ROOT.parent / "shared" / "data" / "routing"
SOURCES = {  # file: (name, the field holding the prompt)
    "mt_bench_question.jsonl": ("mt-bench", "turns"),
    "vicuna_bench_question.jsonl": ("vicuna", "turns"),
    "arena_hard_v2_questions.jsonl": ("arena-hard", "prompt"),
}
CODE_CATEGORIES = {"coding"}


def read_prompts(folder: Path) -> list[tuple[str, str, str]]:
    """(source, category, prompt) for every question of the three sets."""
    rows: list[tuple[str, str, str]] = []
    for file, (source, field) in SOURCES.items():
        for line in (folder / file).read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            record = json.loads(line)
            value = record[field]
            prompt = value[0] if isinstance(value, list) else value
            rows.append((source, str(record["category"]), str(prompt)))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)

    catalog = get_catalog()
    embedder = get_embedder()
    router = SemanticRouter(catalog.semantic_routes, embedder, catalog.semantic_none)
    code = next(r.name for r in router.routes if r.tier == "premium")
    rows = read_prompts(args.data)
    matches = router.match(embedder.embed([normalise(p) for _, _, p in rows]))

    names = [r.name for r in router.routes]
    print(f"embedder={embedder.name}")
    for route, threshold in zip(router.routes, router.thresholds, strict=True):
        print(f"route {route.name!r} -> {route.tier}, threshold {threshold}")
    counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for (source, category, _), match in zip(rows, matches, strict=True):
        counts[(source, category)][match.route if match.matched else "rules"] += 1
    header = "".join(f"{n[:28]:>30}" for n in [*names, "left to the rules"])
    print(f"{'source / category':32}{'prompts':>8}{header}")
    for (source, category), counter in sorted(counts.items()):
        total = sum(counter.values())
        cells = "".join(f"{counter[n] / total:>30.2f}" for n in [*names, "rules"])
        print(f"{source + ' / ' + category:32}{total:>8}{cells}")

    coding = [m for (_, c, _), m in zip(rows, matches, strict=True) if c in CODE_CATEGORIES]
    other = [m for (_, c, _), m in zip(rows, matches, strict=True) if c not in CODE_CATEGORIES]
    lookup = [m for m in matches if m.matched and m.route != code]
    print(f"prompts={len(rows)}")
    print(f"code_recall={sum(m.matched and m.route == code for m in coding) / len(coding):.4f}")
    print(f"code_false_match={sum(m.matched and m.route == code for m in other) / len(other):.4f}")
    print(f"lookup_match={len(lookup) / len(rows):.4f}")


if __name__ == "__main__":
    main()
