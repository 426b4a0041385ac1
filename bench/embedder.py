"""Embedder benchmark: the local model through torch (sentence-transformers), ONNX Runtime fp32
and ONNX Runtime int8 (dynamic quantisation), side by side on the same prompts.

    python -m bench.embedder [--pairs 1000] [--rounds 2] [--threads 1]
                             [--runtimes torch,onnx,onnx-int8]

The prompts are both sides of the first ``--pairs`` question pairs of
``<repo>/../shared/data/paraphrase/qqp_dev.jsonl`` (read in place). Each runtime runs in a
process of its own, as a worker's pool process would, started and loaded one at a time:
``load_s`` is from its first import of the embedder to its first vector (the ONNX graphs are
exported, and that time reported, before, as ``make deps`` or a worker's start would). Then
the processes take turns, ``--rounds`` times, embedding every prompt in one ``embed`` call
with ``--threads`` intra-op threads (a worker's process uses 1), so a busy machine slows
them alike; ``per_s`` is a runtime's best round, ``rss_mb`` its resident set after the last
round and ``peak_mb`` its high-water mark. Drift compares each ONNX vector with the torch
vector of the same prompt (cosine: min, median); ``flips`` counts the pairs whose decision
at the default prompt threshold (cosine >= THRIFTY_CACHE_PROMPT_THRESHOLD) differs from
torch's. Ends with ``key=value`` lines.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.config import PROJECT_ROOT, get_settings

DATA = PROJECT_ROOT.parent / "shared" / "data"
RUNTIMES = ("torch", "onnx", "onnx-int8")


def say(message: str) -> None:
    print(message, flush=True)


def load_pairs(limit: int) -> list[tuple[str, str]]:
    return [(a, b) for a, b, _ in labelled_pairs(limit)]


def labelled_pairs(limit: int) -> list[tuple[str, str, bool]]:
    pairs: list[tuple[str, str, bool]] = []
    with (DATA / "paraphrase" / "qqp_dev.jsonl").open() as f:
        for line in f:
            row = json.loads(line)
            a, b = " ".join(str(row["a"]).split()), " ".join(str(row["b"]).split())
            pairs.append((a, b, bool(row["same"])))
            if len(pairs) == limit:
                break
    return pairs


def memory_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def child(runtime: str, texts_file: Path, out: Path, threads: int) -> None:
    """One runtime in this fresh process: load and one forward pass, then a timed pass over
    every text each time the parent writes a line (so runtimes alternate under the same load)."""
    started = time.perf_counter()
    from app.config import Settings
    from app.embeddings import service

    settings = Settings(embedding_backend="local", embedding_runtime=runtime)  # type: ignore[arg-type]
    if runtime == "torch":
        import torch

        torch.set_num_threads(threads)
    service.set_threads(threads)
    embedder = service.build_embedder(settings)
    embedder.embed(["warm up"])
    print(json.dumps({"load_s": time.perf_counter() - started}), flush=True)
    texts: list[str] = json.loads(texts_file.read_text())
    for _ in sys.stdin:
        started = time.perf_counter()
        vectors = embedder.embed(texts)
        seconds = time.perf_counter() - started
        np.save(out, vectors)
        rss, peak = memory_mb()
        print(json.dumps({"per_s": len(texts) / seconds, "rss": rss, "peak": peak}), flush=True)


class Child:
    """A runtime's process: started (and loaded) alone, then timed round by round."""

    def __init__(self, runtime: str, texts_file: Path, out: Path, threads: int) -> None:
        command = [sys.executable, "-m", "bench.embedder", "--child", runtime, "--texts",
                   str(texts_file), "--out", str(out), "--threads", str(threads)]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.load_s = float(self._read()["load_s"])
        self.rates: list[float] = []
        self.rss = self.peak = 0.0

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.process.args} ended: {self.process.wait()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def round(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        result = self._read()
        self.rates.append(float(result["per_s"]))
        self.rss, self.peak = float(result["rss"]), float(result["peak"])

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description="torch vs ONNX Runtime embedder")
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--child", choices=RUNTIMES)
    parser.add_argument("--texts", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.texts, args.out, args.threads)
        return
    from app.embeddings.local import bundled_model_path
    from app.embeddings.onnx import ensure_onnx, onnx_file

    settings = get_settings()
    runtimes = [r for r in args.runtimes.split(",") if r]
    model_dir = settings.embedding_model_path or bundled_model_path()
    for precision in ("fp32", "int8"):
        if "onnx-int8" in runtimes or precision == "fp32":
            fresh = not onnx_file(model_dir, settings.home, precision).exists()  # type: ignore[arg-type]
            started = time.perf_counter()
            path = ensure_onnx(model_dir, settings.home, precision)  # type: ignore[arg-type]
            took = f"exported in {time.perf_counter() - started:.1f}s" if fresh else "cached"
            say(f"{precision} graph: {path} ({path.stat().st_size / 1e6:.0f} MB, {took})")
    labelled = labelled_pairs(args.pairs)
    pairs = [(a, b) for a, b, _ in labelled]
    same_meaning = np.array([same for _, _, same in labelled])
    texts = [t for pair in pairs for t in pair]
    threshold = settings.cache_prompt_threshold
    say(f"{len(texts)} prompts ({len(pairs)} qqp_dev pairs), {args.threads} thread(s), "
        f"threshold {threshold}")  # fmt: skip
    vectors: dict[str, np.ndarray] = {}
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        texts_file = Path(tmp) / "texts.json"
        texts_file.write_text(json.dumps(texts))
        children = {r: Child(r, texts_file, Path(tmp) / f"{r}.npy", args.threads) for r in runtimes}
        for _ in range(args.rounds):
            for c in children.values():
                c.round()
        for runtime, c in children.items():
            c.close()
            vectors[runtime] = np.load(Path(tmp) / f"{runtime}.npy")
            # the best round: the one least slowed by the rest of the machine
            results[runtime] = {"load_s": c.load_s, "per_s": max(c.rates), "rss": c.rss,
                                "peak": c.peak}  # fmt: skip
            say(f"{runtime:9} load {c.load_s:5.1f}s  {max(c.rates):6.0f} embeddings/s (rounds: "
                f"{', '.join(f'{r:.0f}' for r in c.rates)})  rss {c.rss:4.0f} MB  "
                f"peak {c.peak:4.0f} MB")  # fmt: skip
    lines: dict[str, str] = {}
    for runtime in runtimes:
        key = runtime.replace("-", "_")
        r = results[runtime]
        lines[f"{key}_load_s"] = f"{r['load_s']:.2f}"
        lines[f"{key}_per_s"] = f"{r['per_s']:.0f}"
        lines[f"{key}_rss_mb"] = f"{r['rss']:.0f}"
        lines[f"{key}_peak_mb"] = f"{r['peak']:.0f}"
    if "torch" in vectors:
        base = vectors["torch"]
        base_same = (base[0::2] * base[1::2]).sum(axis=1) >= threshold
        for runtime in [r for r in runtimes if r != "torch"]:
            key = runtime.replace("-", "_")
            other = vectors[runtime]
            cosine = (base * other).sum(axis=1)
            same = (other[0::2] * other[1::2]).sum(axis=1) >= threshold
            flips = int((same != base_same).sum())
            # what the flips do at the threshold alone (before the verifier): hits on
            # different-meaning pairs gained, hits on same-meaning pairs lost
            false_hits = int((same & ~base_same & ~same_meaning).sum())
            lost_hits = int((~same & base_same & same_meaning).sum())
            say(f"{runtime} drift against torch: cosine min {cosine.min():.6f} median "
                f"{np.median(cosine):.6f}; {flips} of {len(pairs)} pair decisions differ "
                f"({int(base_same.sum())} pairs at or above {threshold} with torch): "
                f"{false_hits} new hits on different-meaning pairs, {lost_hits} lost on "
                f"same-meaning ones")  # fmt: skip
            lines[f"{key}_cosine_min"] = f"{cosine.min():.6f}"
            lines[f"{key}_cosine_median"] = f"{np.median(cosine):.6f}"
            lines[f"{key}_flips"] = str(flips)
            lines[f"{key}_new_false_hits"] = str(false_hits)
            if "torch" in results:
                speedup = results[runtime]["per_s"] / results["torch"]["per_s"]
                lines[f"{key}_speedup"] = f"{speedup:.2f}"
    for key, value in lines.items():
        print(f"{key}={value}")


if __name__ == "__main__":
    main()
