"""ONNX export of a loaded pipeline: one graph per engine, cleaned, folded, checked, compared.

For every graph of :mod:`ebir_fast.deploy.graphs`: ``torch.onnx.export(dynamo=True)`` (opset 18),
saved with external data above 2 GB, cleaned with onnx-graphsurgeon (``cleanup().toposort()``),
constants folded with polygraphy, ``onnx.checker``-ed (by path, which works above 2 GB), and run
with ONNX Runtime (CPU) against PyTorch on the export inputs (max abs diff reported). Files are
written to a temporary folder and renamed into place, so a failed export leaves nothing behind.
The folder also gets the tokenizer and ``graphs.json``, which the ONNX Runtime and TensorRT
backends read.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ebir_fast.deploy.graphs import (
    TaggerGraph,
    TextEncoderGraph,
    UnetX0Graph,
    VaeDecoderGraph,
    VaeEncoderGraph,
)

FORMAT_NAME = "ebir-fast-onnx"
FORMAT_VERSION = 1
OPSET = 18
TWO_GB = 2**31 - 1
#: Image sides of the exported graphs are multiples of this (latent sides of 8).
IMAGE_MULTIPLE = 64
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}


@dataclass
class GraphReport:
    name: str
    path: Path
    max_abs_diff: float | None
    size_bytes: int
    sha256: str
    note: str = ""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for p in sorted(path.parent.glob(path.name + "*")):  # the graph and its external data
        with open(p, "rb") as f:
            for chunk in iter(lambda f=f: f.read(1 << 24), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _save(model, path: Path) -> None:
    import onnx

    big = model.ByteSize() > TWO_GB if hasattr(model, "ByteSize") else True
    for old in path.parent.glob(path.name + "*"):
        old.unlink()
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=big,
        all_tensors_to_one_file=True,
        location=path.name + ".data",
    )


def _optimize(path: Path) -> None:
    """graphsurgeon cleanup + toposort, polygraphy constant folding, then the ONNX checker.

    Graphs whose weights exceed 2 GB (the full UNet) skip graphsurgeon and polygraphy: both hold
    several in-memory copies of the weights (about 4x the 3.5 GB here), and the exporter's own
    optimizer (onnxscript, ``optimize=True``) has already folded constants and removed dead
    nodes. Those graphs are still checked.
    """
    import onnx

    weights = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    if weights <= TWO_GB:
        import onnx_graphsurgeon as gs
        from polygraphy.backend.onnx import fold_constants
        from polygraphy.logger import G_LOGGER

        G_LOGGER.module_severity = G_LOGGER.WARNING  # its per-pass folding report is noise here
        graph = gs.import_onnx(onnx.load(str(path)))
        graph.cleanup().toposort()
        model = fold_constants(
            gs.export_onnx(graph),
            allow_onnxruntime_shape_inference=True,
            error_ok=True,
            copy=False,
        )
        del graph
        _save(model, path)
        del model
    onnx.checker.check_model(str(path), full_check=False)


def ort_max_abs_diff(path: Path, module: nn.Module, inputs: dict[str, torch.Tensor]) -> float:
    """Run the graph with ONNX Runtime (CPU) and PyTorch on ``inputs``; max abs difference."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.cpu().numpy() for k, v in inputs.items()})[0]
    with torch.no_grad():
        ref = module(*inputs.values()).float().cpu().numpy()
    return float(np.abs(got.astype(np.float32) - ref).max())


def export_graph(
    module: nn.Module,
    inputs: dict[str, torch.Tensor],
    output_name: str,
    path: Path,
    dynamic_shapes: dict | None,
    *,
    check: bool = True,
) -> float | None:
    """Export ``module(*inputs)`` to ``path``, optimise it, and return the ORT-vs-torch error."""
    module = module.eval()
    with torch.no_grad():
        program = torch.onnx.export(
            module,
            tuple(inputs.values()),
            dynamo=True,
            opset_version=OPSET,
            input_names=list(inputs),
            output_names=[output_name],
            dynamic_shapes=dynamic_shapes,
            optimize=True,
            verbose=False,
        )
    program.save(str(path), external_data=_params_bytes(module) > TWO_GB // 2)
    _optimize(path)
    return ort_max_abs_diff(path, module, inputs) if check else None


def _params_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _dims(static: bool):
    """Dynamic batch and spatial dims (latent sides multiples of 8) unless ``static``."""
    if static:
        return None, None, None
    d = torch.export.Dim
    return d("batch", min=1, max=64), 8 * d("h8", min=1, max=512), 8 * d("w8", min=1, max=512)


def export_pipeline(
    pipe,
    out_dir: str | os.PathLike,
    *,
    precision: str = "fp32",
    image_size: tuple[int, int] | None = None,
    batch: int = 1,
    check: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, GraphReport]:
    """Export every graph of ``pipe`` (an :class:`~ebir_fast.pipeline.EBIRPipeline` of
    :class:`~ebir_fast.models.stage.OneStepStage` stages) to ``out_dir``.

    Args:
        precision: ``"fp32"`` or ``"fp16"`` (weights and activations; the models are copied
            and cast one at a time).
        image_size: ``(H, W)`` (multiples of 64) for static graphs, as engines want them; None
            exports dynamic batch and sizes (ONNX Runtime).
        batch: the batch of static graphs (and of the export inputs).
        check: compare every graph with PyTorch under ONNX Runtime (CPU).
    Returns:
        One :class:`GraphReport` per graph, also written to ``graphs.json``.
    """
    from ebir_fast.models.stage import OneStepStage

    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {tuple(PRECISIONS)}, got {precision!r}")
    for name, stage in (("restorer", pipe.restorer), ("projector", pipe.projector)):
        if stage is not None and not isinstance(stage, OneStepStage):
            raise TypeError(f"pipe.{name}: export needs a OneStepStage, got {type(stage).__name__}")
    if image_size is not None and (
        len(image_size) != 2 or any(s < IMAGE_MULTIPLE or s % IMAGE_MULTIPLE for s in image_size)
    ):
        raise ValueError(
            f"image_size: expected (H, W), multiples of {IMAGE_MULTIPLE}, got {image_size!r}"
        )
    if batch < 1 or (image_size is None and batch < 2):
        # torch.export specialises dimensions of size 1: dynamic graphs are traced at batch 2.
        batch = max(batch, 1 if image_size is not None else 2)
    dtype = PRECISIONS[precision]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".export-"))
    static = image_size is not None
    h, w = image_size if static else (128, 192)
    bdim, hdim, wdim = _dims(static)
    gen = torch.Generator().manual_seed(0)
    g = pipe.restorer
    text_dim = g.text.text_encoder.config.hidden_size
    max_len = g.text.max_length
    image = torch.rand(batch, 3, h, w, generator=gen)
    latent = torch.randn(batch, 4, h // 8, w // 8, generator=gen)
    text = torch.randn(batch, max_len, text_dim, generator=gen)
    ids = torch.randint(0, g.text.text_encoder.config.vocab_size, (batch, max_len), generator=gen)

    def cast(m: nn.Module) -> nn.Module:
        return copy.deepcopy(m).to(dtype) if dtype != torch.float32 else m

    def cast_stage(s: OneStepStage, unet: bool = True) -> OneStepStage:
        """A copy of the parts a graph needs in ``dtype`` (the text encoder stays shared)."""
        if dtype == torch.float32:
            return s
        u = cast(s.unet) if unet else s.unet
        return OneStepStage(u, cast(s.vae), s.text, s.alphas_cumprod, s.timestep)

    def as_dtype(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype) if t.is_floating_point() else t

    jobs: list[tuple[str, Callable[[], nn.Module], dict, str, dict | None]] = []
    stages = {"g": g} if pipe.projector is None else {"f": pipe.projector, "g": g}
    for key, stage in stages.items():
        jobs.append(
            (
                f"{key}_vae_encoder",
                lambda s=stage: VaeEncoderGraph(cast_stage(s, unet=False)),
                {"image": image},
                "latent",
                None if static else {"image": {0: bdim, 2: 8 * hdim, 3: 8 * wdim}},
            )
        )
        jobs.append(
            (
                f"{key}_unet",
                lambda s=stage: UnetX0Graph(cast_stage(s)),
                {"latent": latent, "text": text},
                "x0",
                None if static else {"latent": {0: bdim, 2: hdim, 3: wdim}, "text": {0: bdim}},
            )
        )
    jobs.append(
        (
            "vae_decoder",
            lambda: VaeDecoderGraph(cast_stage(g, unet=False)),
            {"x0": latent},
            "image",
            None if static else {"x0": {0: bdim, 2: hdim, 3: wdim}},
        )
    )
    jobs.append(
        (
            "text_encoder",
            lambda: TextEncoderGraph(cast(g.text.text_encoder)),
            {"input_ids": ids},
            "text",
            None if static else {"input_ids": {0: bdim}},
        )
    )
    tagger_meta = _tagger_meta(pipe.tagger)
    if tagger_meta["kind"] == "dape":
        model = pipe.tagger.model
        size = model.config.swin.image_size
        pixels = torch.randn(batch, 3, size, size, generator=gen)
        jobs.append(
            (
                "tagger",
                lambda: TaggerGraph(cast(model)),
                {"pixels": pixels},
                "logits",
                None if static else {"pixels": {0: bdim}},
            )
        )
    reports: dict[str, GraphReport] = {}
    try:
        for name, make, inputs, output, dyn in jobs:
            log(f"exporting {name} ({precision}{', static ' + str(image_size) if static else ''})")
            module = make()
            inputs = {k: as_dtype(v) for k, v in inputs.items()}
            path = tmp / f"{name}.onnx"
            note = ""
            try:
                diff = export_graph(module, inputs, output, path, dyn, check=check)
            except Exception as err:
                if not (check and dtype == torch.float16 and "NOT_IMPLEMENTED" in str(err)):
                    raise
                # ONNX Runtime's CPU provider lacks some float16 kernels: the graph is valid.
                diff, note = None, "float16 parity needs a GPU provider"
                _optimize(path) if path.exists() else None
            del module
            reports[name] = GraphReport(
                name,
                out / path.name,
                diff,
                sum(p.stat().st_size for p in tmp.glob(path.name + "*")),
                _sha256(path),
                note,
            )
            log(
                f"  {name}: max abs diff vs PyTorch "
                + (f"{diff:.3g}" if diff is not None else note or "not checked")
            )
        g.text.tokenizer.save_pretrained(str(tmp / "tokenizer"))
        manifest = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "precision": precision,
            "opset": OPSET,
            "image_multiple": IMAGE_MULTIPLE,
            "image_size": list(image_size) if static else None,
            "batch": batch if static else None,
            "text": {"max_length": max_len, "dim": text_dim},
            "stages": sorted(stages),
            "checkpoints": dict(getattr(pipe, "sources", {})),
            "tagger": tagger_meta,
            "graphs": {
                r.name: {
                    "file": r.path.name,
                    "sha256": r.sha256,
                    "bytes": r.size_bytes,
                    "max_abs_diff": r.max_abs_diff,
                    "note": r.note,
                }
                for r in reports.values()
            },
        }
        (tmp / "graphs.json").write_text(json.dumps(manifest, indent=2))
        for item in sorted(tmp.iterdir()):
            target = out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return reports


def _tagger_meta(tagger) -> dict:
    """How the backends rebuild the tagger: DAPE (graph + tags + thresholds), fixed or null."""
    from ebir_fast.models.tagger import DapeTagger, FixedPromptTagger, NullTagger

    if isinstance(tagger, DapeTagger):
        m = tagger.model
        return {
            "kind": "dape",
            "image_size": m.config.swin.image_size,
            "antialias": tagger.antialias,
            "exclude": list(tagger.exclude),
            "tags": list(m.tag_list),
            "thresholds": [float(t) for t in m.class_threshold.float().cpu()],
        }
    if isinstance(tagger, FixedPromptTagger):
        return {"kind": "fixed", "prompt": tagger.prompt}
    if isinstance(tagger, NullTagger):
        return {"kind": "null"}
    raise TypeError(
        f"pipe.tagger: export supports DapeTagger, FixedPromptTagger and NullTagger, got "
        f"{type(tagger).__name__}"
    )
