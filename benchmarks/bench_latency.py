"""Latency of the two-stage pipeline with LFO on a CUDA GPU: PyTorch eager, torch.compile,
ONNX Runtime (CUDA provider) and TensorRT, beside the paper's Table 5.

One command on a GPU machine (``pip install -e ".[test,deploy]" tensorrt`` first)::

    python benchmarks/bench_latency.py            # 512 x 512, lfo = 0..3, fp16

It builds the full SD-2.1-base architecture with random weights for both stages and RAM
Swin-L/384 as the tagger (the cost of real weights, nothing about quality), exports and builds
what each backend needs into a temporary folder, and times ``pipe(image, lfo=k)`` (median of
``--runs`` after ``--warmup``, with a prompt that changes every pass so no pass is skipped).
Results go to ``benchmarks/results/latency.json`` and ``latency.md``. Without a GPU it says so and
exits (``pytest`` reports a skip).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_pipeline import PAPER_TABLE5, ChangingPrompts, photo
from benchmarks.sd_random import dape_tagger, sd21_base, stage_weights

RESULTS = Path(__file__).parent / "results"
BACKENDS = ("eager", "compile", "onnxruntime", "tensorrt")
NO_GPU = "needs a CUDA GPU; this machine has none"


def _build_torch(tmp: Path, dtype: torch.dtype):
    from ebir_fast.models.stage import OneStepStage
    from ebir_fast.pipeline import EBIRPipeline

    base = sd21_base(tmp)
    f_w, g_w = stage_weights(base, 1), stage_weights(base, 2)
    f = OneStepStage.from_base(base, f_w, dtype=dtype, device="cuda")
    g = OneStepStage.from_base(
        base, g_w, dtype=dtype, device="cuda", text=f.text, decoder_from=f, copy_unet=False
    )
    tagger = dape_tagger()
    from ebir_fast.models.tagger import DapeTagger

    return EBIRPipeline(g, f, DapeTagger(tagger.model, device="cuda", dtype=dtype))


def _compiled(pipe):
    for stage in (pipe.projector, pipe.restorer):
        stage.unet = torch.compile(stage.unet, mode="max-autotune-no-cudagraphs")
        stage.vae.encoder = torch.compile(stage.vae.encoder)
    pipe.restorer.vae.decoder = torch.compile(pipe.restorer.vae.decoder)
    return pipe


def _time(pipe, x, k: int, warmup: int, runs: int) -> float:
    dape = pipe.tagger
    pipe.tagger = ChangingPrompts(dape)
    for _ in range(warmup):
        pipe(x, lfo=k, tile=None)
    samples = []
    for _ in range(runs):
        torch.cuda.synchronize()
        t = time.perf_counter()
        pipe(x, lfo=k, tile=None)
        torch.cuda.synchronize()
        samples.append(time.perf_counter() - t)
    pipe.tagger = dape
    return statistics.median(samples)


def measure(size: int, warmup: int, runs: int, backends=BACKENDS, log=print) -> dict:
    from ebir_fast.deploy.onnx_export import export_pipeline

    x = photo(size).cuda()
    results: dict[str, dict[int, float] | str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pipe = _build_torch(tmp, torch.float16)
        if "eager" in backends:
            results["eager"] = {k: _time(pipe, x, k, warmup, runs) for k in range(4)}
            log(f"eager: {results['eager']}")
        if "onnxruntime" in backends:
            try:
                from ebir_fast.pipeline.onnxruntime import load_onnx_pipeline

                export_pipeline(pipe, tmp / "onnx", precision="fp16", check=False, log=log)
                ort = load_onnx_pipeline(tmp / "onnx", providers=["CUDAExecutionProvider"])
                results["onnxruntime"] = {k: _time(ort, x, k, warmup, runs) for k in range(4)}
                del ort
            except Exception as err:  # e.g. onnxruntime-gpu missing: say so in the table
                results["onnxruntime"] = f"not run: {type(err).__name__}: {err}"
            log(f"onnxruntime: {results['onnxruntime']}")
        if "tensorrt" in backends:
            try:
                from ebir_fast.deploy.trt_build import BuildOptions, build_engines
                from ebir_fast.deploy.trt_runtime import load_trt_pipeline

                export_pipeline(
                    pipe,
                    tmp / "onnx-static",
                    precision="fp16",
                    image_size=(size, size),
                    check=False,
                    log=log,
                )
                build_engines(
                    tmp / "onnx-static", tmp / "engines", BuildOptions(opt_level=3), log=log
                )
                trt = load_trt_pipeline(tmp / "engines")
                results["tensorrt"] = {k: _time(trt, x, k, warmup, runs) for k in range(4)}
                del trt
            except Exception as err:
                results["tensorrt"] = f"not run: {type(err).__name__}: {err}"
            log(f"tensorrt: {results['tensorrt']}")
        if "compile" in backends:
            results["compile"] = {k: _time(_compiled(pipe), x, k, warmup, runs) for k in range(4)}
            log(f"compile: {results['compile']}")
    return results


def markdown(results: dict, size: int) -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    lines = [
        f"Latency per image, {size}x{size}, fp16, {gpu}, random weights (seconds, median)",
        "",
        "| backend | lfo=0 | lfo=1 | lfo=2 | lfo=3 | lfo=2 / lfo=0 |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in results.items():
        if isinstance(row, str):
            lines.append(f"| {name} | {row} | | | | |")
            continue
        cells = " | ".join(f"{row[k]:.4f}" for k in range(4))
        lines.append(f"| {name} | {cells} | {row[2] / row[0]:.2f} |")
    paper = " | ".join(f"{PAPER_TABLE5[k]:.4f}" for k in range(4))
    lines.append(
        f"| paper Table 5 (GPU not stated) | {paper} | {PAPER_TABLE5[2] / PAPER_TABLE5[0]:.2f} |"
    )
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)
def test_latency():
    results = measure(512, warmup=2, runs=5)
    _write(results, 512)


def _write(results: dict, size: int) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latency.json").write_text(json.dumps({"size": size, "results": results}, indent=2))
    (RESULTS / "latency.md").write_text(markdown(results, size))
    print(markdown(results, size))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(f"bench_latency.py: skipped: {NO_GPU}")
        return 0
    _write(measure(args.size, args.warmup, args.runs, tuple(args.backends)), args.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
