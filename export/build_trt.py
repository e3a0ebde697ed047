#!/usr/bin/env python
"""Build TensorRT engines from exported graphs (logic: ebir_fast.deploy.trt_build).

    python export/export_onnx.py --out onnx-512/ --precision fp16 --size 512 512
    python export/build_trt.py --onnx onnx-512/ --out engines-512/ --opt-level 5

Uses `tensorrt` when installed, else TensorRT for RTX (`pip install tensorrt-rtx-cu13-libs
tensorrt-rtx-cu13-bindings`), which also builds on machines without a GPU (for the compute
capabilities given by --compute-capability). A metadata JSON is written beside every engine and
engines.json for the runtime (backend="tensorrt").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _profile(text: str) -> tuple[str, tuple[tuple[int, ...], ...]]:
    """``name:1x4x64x64:1x4x64x64:1x4x128x128`` -> (name, (min, opt, max))."""
    try:
        name, *shapes = text.split(":")
        dims = tuple(tuple(int(d) for d in s.split("x")) for s in shapes)
        if len(dims) != 3:
            raise ValueError
        return name, dims
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected NAME:MIN:OPT:MAX with shapes like 1x4x64x64, got {text!r}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    from ebir_fast.deploy.trt_build import (
        RTX_CAPABILITIES,
        BuildOptions,
        TensorRTUnavailableError,
        build_engines,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", required=True, help="folder written by export_onnx.py")
    parser.add_argument("--out", required=True, help="folder for the engines")
    parser.add_argument("--graphs", nargs="+", default=None, help="only these graphs")
    parser.add_argument("--opt-level", type=int, default=3, help="builder optimisation level 0-5")
    parser.add_argument(
        "--timing-cache", default=None, help="timing cache file (default: OUT/timing.cache)"
    )
    parser.add_argument("--refit", action="store_true", help="refittable engines")
    parser.add_argument(
        "--profile",
        type=_profile,
        action="append",
        default=[],
        help="dynamic input shapes NAME:MIN:OPT:MAX (dynamic graphs only)",
    )
    parser.add_argument(
        "--compute-capability",
        nargs="+",
        choices=RTX_CAPABILITIES,
        default=None,
        help="TensorRT for RTX targets (default: this GPU, else SM89)",
    )
    parser.add_argument("--workspace-gib", type=float, default=None)
    parser.add_argument("--prefer", choices=("tensorrt", "tensorrt-rtx"), default=None)
    args = parser.parse_args(argv)
    try:
        options = BuildOptions(
            opt_level=args.opt_level,
            timing_cache=Path(args.timing_cache or Path(args.out) / "timing.cache"),
            refit=args.refit,
            profiles=dict(args.profile),
            compute_capabilities=tuple(args.compute_capability or ()) or None,
            workspace_gib=args.workspace_gib,
        )
        build_engines(args.onnx, args.out, options, graphs=args.graphs, prefer=args.prefer)
    except (TensorRTUnavailableError, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"build_trt.py: {err}", file=sys.stderr)
        return 2
    print(f"engines written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
