#!/usr/bin/env python
"""Export the pipeline's graphs to ONNX (logic: ebir_fast.deploy.onnx_export).

    python export/export_onnx.py --weights ~/.cache/ebir-fast --out onnx/            # dynamic, fp32
    python export/export_onnx.py --weights W --out onnx-512-fp16/ --precision fp16 --size 512 512

Dynamic graphs serve ONNX Runtime (backend="onnxruntime"); static fp16 graphs (--size) are what
export/build_trt.py turns into the fastest TensorRT engines. Each graph is checked with
onnx.checker and compared with PyTorch under ONNX Runtime; the max abs difference is printed.
"""

from __future__ import annotations

import argparse
import sys

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--weights",
        default=None,
        help="folder with ebir-fast.json (default: $EBIR_FAST_WEIGHTS, then ~/.cache/ebir-fast)",
    )
    parser.add_argument("--out", required=True, help="folder for the graphs")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="static image size (multiples of 64); default: dynamic",
    )
    parser.add_argument("--batch", type=int, default=1, help="batch of static graphs")
    parser.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime parity")
    args = parser.parse_args(argv)

    from ebir_fast.api import load_pipeline
    from ebir_fast.deploy.onnx_export import export_pipeline
    from ebir_fast.weights import WeightsNotFoundError

    try:
        pipe = load_pipeline(args.weights, device="cpu", dtype=torch.float32)
    except (WeightsNotFoundError, ValueError) as err:
        print(f"export_onnx.py: {err}", file=sys.stderr)
        return 2
    try:
        export_pipeline(
            pipe,
            args.out,
            precision=args.precision,
            image_size=tuple(args.size) if args.size else None,
            batch=args.batch,
            check=not args.no_check,
        )
    except ValueError as err:
        print(f"export_onnx.py: {err}", file=sys.stderr)
        return 2
    print(f"graphs written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
