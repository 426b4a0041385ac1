"""The ONNX Runtime embedder: torch's vectors without torch, its graph exported once per model
version and found again by content hash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.config import PROJECT_ROOT, PROMPT_THRESHOLDS, Settings, get_settings
from app.embeddings import onnx as onnx_embedder
from app.embeddings import service
from app.embeddings.base import EmbeddingError
from app.embeddings.local import LocalEmbedder, bundled_model_path
from app.embeddings.onnx import OnnxEmbedder, ensure_onnx, onnx_file

TEXTS = [
    "How do I bake bread?",
    "How can I bake bread at home without yeast?",
    "Tax on shares",
    "",
    "Ünïcödé café — 東京 naïve résumé 😀",
    # longer than max_seq_length (256 tokens): truncated the same way by both
    " ".join(f"The quarterly revenue of company {i} rose by {i * 3} percent." for i in range(60)),
]


@pytest.fixture(scope="module")
def onnx_model() -> OnnxEmbedder:
    # the test home keeps the export between runs: only a fresh clone's first run exports
    return OnnxEmbedder(bundled_model_path(), home=get_settings().home, name="local:test")


def test_onnx_gives_the_torch_embedders_vectors(onnx_model: OnnxEmbedder) -> None:
    expected = LocalEmbedder().embed(TEXTS)
    got = onnx_model.embed(TEXTS)
    assert got.shape == (len(TEXTS), 384)
    assert got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert float((got * expected).sum(axis=1).min()) > 0.9999
    assert onnx_model.max_seq_length == 256
    # order is kept although batches run longest first; one text alone gives the same vector
    assert np.allclose(onnx_model.embed([TEXTS[2]])[0], got[2], atol=1e-5)
    assert onnx_model.embed([]).shape == (0, 384)


def fake_model(folder: Path, weights: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer.json").write_text("{}")
    return folder


def test_the_graph_is_exported_once_and_again_for_a_new_model_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exports: list[Path] = []

    def exporter(model_dir: Path, target: Path, precision: str) -> None:
        exports.append(target)
        target.write_bytes(b"graph")

    monkeypatch.setattr(onnx_embedder, "run_exporter", exporter)
    model = fake_model(tmp_path / "minilm", b"weights v1")
    home = tmp_path / "home"
    first = ensure_onnx(model, home)
    assert first == onnx_file(model, home)
    assert first.parent.parent == home / "models"
    assert ensure_onnx(model, home) == first
    assert exports == [first]  # cached: not exported again
    assert ensure_onnx(model, home, "int8").name == "model-int8.onnx"
    assert len(exports) == 2

    (model / "model.safetensors").write_bytes(b"weights v2")  # a new model version
    second = ensure_onnx(model, home)
    assert second != first
    assert exports[-1] == second
    assert first.exists()  # the old version's file is left, never used for the new weights

    (model / "tokenizer.json").unlink()
    with pytest.raises(EmbeddingError, match=r"tokenizer\.json"):
        ensure_onnx(model, home)


def test_a_failed_export_is_an_embedding_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = fake_model(tmp_path / "broken", b"not safetensors")
    monkeypatch.setattr(onnx_embedder.sys, "executable", "/bin/false")  # an exporter that fails
    with pytest.raises(EmbeddingError, match="export"):
        ensure_onnx(model, tmp_path / "home")
    assert not onnx_file(model, tmp_path / "home").exists()


def test_the_runtime_is_chosen_by_setting_and_onnx_imports_no_torch(
    onnx_model: OnnxEmbedder,
) -> None:
    assert Settings().embedding_runtime == "onnx-int8"
    torch_one = service.build_embedder(Settings(embedding_runtime="torch"))
    assert isinstance(torch_one, LocalEmbedder)
    assert torch_one.name == service.LOCAL_NAME
    # a fresh process, as a worker's: the cached graph is used and torch is never imported
    probe = (
        "import sys, workers.tasks\n"
        "from app.embeddings.service import get_embedder\n"
        "e = get_embedder(); e.embed(['hello'])\n"
        "print(type(e).__name__, e.name, 'torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True
    )
    assert done.stdout.split() == ["OnnxEmbedder", f"{service.LOCAL_NAME}:int8", "False"]


def test_each_runtime_has_its_own_default_prompt_threshold_and_reports_its_name() -> None:
    assert Settings().cache_prompt_threshold == PROMPT_THRESHOLDS["onnx-int8"] == 0.958
    assert Settings(embedding_runtime="onnx").cache_prompt_threshold == 0.965
    assert Settings(embedding_runtime="torch").cache_prompt_threshold == 0.965
    assert Settings(embedding_backend="openai").cache_prompt_threshold == 0.965
    # a threshold that is set wins over the runtime's
    assert (
        Settings(embedding_runtime="onnx", cache_prompt_threshold=0.9).cache_prompt_threshold == 0.9
    )
    home = get_settings().home
    for runtime in ("onnx", "onnx-int8"):
        settings = Settings(embedding_runtime=runtime, home=home)  # type: ignore[arg-type]
        assert service.build_embedder(settings).name == service.embedder_name(settings)
    assert service.embedder_name(Settings(embedding_runtime="torch")) == service.LOCAL_NAME
    assert service.embedder_name(Settings(embedding_backend="openai")) == (
        "openai:text-embedding-3-small"
    )


def test_a_worker_refuses_a_router_trained_with_another_embedder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from workers import celery_app

    class Router:
        embedder_name = service.LOCAL_NAME  # trained with the fp32 vectors

    monkeypatch.setattr(celery_app, "router_directory", lambda _: tmp_path)
    monkeypatch.setattr(celery_app, "learned_router", lambda _: Router())
    with pytest.raises(celery_app.RouterUnavailable, match="THRIFTY_EMBEDDING_RUNTIME"):
        celery_app._check_router_embedder()  # the default, int8
    monkeypatch.setattr(celery_app, "settings", Settings(embedding_runtime="onnx"))
    celery_app._check_router_embedder()
    monkeypatch.setattr(celery_app, "router_directory", lambda _: None)
    monkeypatch.setattr(celery_app, "settings", Settings())
    celery_app._check_router_embedder()  # no router configured: nothing to check


def test_batches_are_bounded_in_texts_and_padded_tokens(onnx_model: OnnxEmbedder) -> None:
    # longest first: 16 texts at the 256-token limit make 4,096 tokens; short ones go 64 a pass
    lengths = [256] * 40 + [10] * 100
    sizes = [len(run) for run in onnx_model._batches(lengths)]
    assert sizes == [16, 16, 16, 64, 28]
    assert sum(sizes) == len(lengths)
