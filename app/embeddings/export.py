"""Export a sentence-transformers model directory to ONNX (the only place torch is used for it).

    python -m app.embeddings.export MODEL_DIR TARGET.onnx [--int8]
    python -m app.embeddings.export            # the configured model, into THRIFTY_HOME

Run by ``app/embeddings/onnx.py`` in a child process when the cached file is absent, and by
``scripts/bootstrap.sh`` so a fresh install's first worker does not wait for it. The graph
takes ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the model has them) with
dynamic batch and sequence axes and returns the last hidden state; pooling stays in numpy.
``--int8`` writes ONNX Runtime's dynamic int8 quantisation of the fp32 graph (which it
exports first, beside it, when missing).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

OPSET = 17


def export_fp32(model_dir: Path, target: Path) -> None:
    import torch
    from transformers import AutoModel

    # eager attention: the plain BERT pattern ONNX Runtime's fusions recognise (SDPA's
    # traced mask arithmetic is not fused into its Attention operator)
    model: Any = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    names = ["input_ids", "attention_mask"]
    if getattr(model.config, "type_vocab_size", 0):
        names.append("token_type_ids")

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.inner(**dict(zip(names, inputs, strict=True)))[0]
            return out

    sample = tuple(torch.ones(2, 8, dtype=torch.long) for _ in names)
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
    with torch.no_grad():
        torch.onnx.export(
            LastHidden(),
            sample,
            str(target),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def quantise_int8(model_dir: Path, source: Path, target: Path) -> None:
    """Fuse the BERT graph (attention, layer norms, GELU), then quantise its weights to int8
    per output channel (per tensor drifted about three times as far: docs/benchmarks.md)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers import optimizer

    fused = target.with_name(f".fused-{target.name}")
    try:
        config = json.loads((model_dir / "config.json").read_text())
        optimizer.optimize_model(
            str(source),
            model_type="bert",
            num_heads=int(config["num_attention_heads"]),
            hidden_size=int(config["hidden_size"]),
            opt_level=1,
        ).save_model_to_file(str(fused))
        quantize_dynamic(
            str(fused),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            # the fused operators' outputs have no inferred type: they are float
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        fused.unlink(missing_ok=True)


def export(model_dir: Path, target: Path, *, int8: bool = False) -> Path:
    """Write ``target`` atomically (a temporary file renamed into place)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".export-", suffix=".onnx", dir=target.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        if int8:
            fp32 = target.with_name("model.onnx")
            if not fp32.exists():
                export(model_dir, fp32)
            quantise_int8(model_dir, fp32, temporary)
        else:
            export_fp32(model_dir, temporary)
        temporary.chmod(0o644)  # mkstemp's file is private to its owner
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", type=Path)
    parser.add_argument("target", nargs="?", type=Path)
    parser.add_argument("--int8", action="store_true")
    args = parser.parse_args(argv)
    if args.model_dir is None:
        from app.config import get_settings
        from app.embeddings.local import bundled_model_path
        from app.embeddings.onnx import ensure_onnx

        settings = get_settings()
        model_dir = settings.embedding_model_path or bundled_model_path()
        int8 = settings.embedding_runtime == "onnx-int8"
        print(ensure_onnx(model_dir, settings.home, "int8" if int8 else "fp32"))
        return
    if args.target is None:
        parser.error("give TARGET with MODEL_DIR")
    export(args.model_dir, args.target, int8=args.int8)


if __name__ == "__main__":
    main()
