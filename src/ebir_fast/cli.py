"""The ``ebir-fast`` command: ``restore``, ``degrade`` (training triplets), ``convert`` (stage
checkpoints) and ``info`` (what this install runs).

Each command is one function taking the parsed arguments and returning the exit code; ``main``
parses and dispatches, so more commands are one parser and one function each.

``degrade`` runs the degraders one file per call: the pipelines draw one noise-field seed per
batch (``NoiseParams.seed``), so params sampled per file cannot be concatenated into a batch
without making a file's noise depend on its batch; per-file calls keep every output a function of
(seed, relative path, settings) only.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

PRESET_NAMES = ("lq", "elq", "wild", "param")


class UsageError(Exception):
    """A command cannot run as asked; the message says why (exit code 2)."""


def _stream_seed(seed: int, name: str, which: str) -> int:
    """A 63-bit seed from (run seed, file, purpose): reproducible and independent of file order."""
    digest = hashlib.sha256(f"{seed}\0{name}\0{which}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def hq_crop(image: torch.Tensor, size: int, crop: str, seed: int) -> torch.Tensor:
    """``image [3, H, W]`` -> ``[3, size, size]``: short side resized to ``size`` (antialiased
    bicubic, up or down), then a centre crop or a crop at a position drawn from ``seed``."""
    _, h, w = image.shape
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        image = F.interpolate(
            image.unsqueeze(0), size=(nh, nw), mode="bicubic", antialias=True, align_corners=False
        )[0].clamp(0, 1)
    if crop == "center":
        top, left = (nh - size) // 2, (nw - size) // 2
    else:
        g = torch.Generator().manual_seed(seed)
        top = int(torch.randint(nh - size + 1, (), generator=g))
        left = int(torch.randint(nw - size + 1, (), generator=g))
    return image[:, top : top + size, left : left + size]


def _settings(args: argparse.Namespace) -> dict:
    from ebir_fast import __version__
    from ebir_fast.degrade import create_degrader

    def config(name):
        return dataclasses.asdict(create_degrader(name).config)

    return {
        "preset": args.preset,
        "lq_preset": args.lq_preset,
        "seed": args.seed,
        "size": args.size,
        "crop": args.crop,
        "config": config(args.preset),
        "lq_config": config(args.lq_preset),
        "ebir_fast": __version__,
    }


#: Settings that must match the manifest to resume (the configs too: a package upgrade that
#: changes a preset's ranges would otherwise mix two distributions in one folder).
_COMPARED = ("preset", "lq_preset", "seed", "size", "crop", "config", "lq_config")


def _check_manifest(
    path: Path, settings: dict, overwrite: bool, compared: tuple[str, ...] | None = None
) -> None:
    from ebir_fast.io import atomic_write

    if path.exists() and not overwrite:
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {path} ({exc}); use --overwrite") from exc
        new = json.loads(json.dumps(settings, default=str))  # compare as stored (lists, str)
        keys = _COMPARED if compared is None else compared
        diff = {k: (old.get(k), new[k]) for k in keys if old.get(k) != new[k]}
        if diff:
            text = ", ".join(
                f"{k}: {a!r} there, {b!r} now"
                if k not in ("config", "lq_config")
                else f"{k}: preset parameters differ"
                for k, (a, b) in diff.items()
            )
            raise UsageError(
                f"{path.parent} was made with other settings ({text}); "
                f"use another output folder or --overwrite"
            )
    data = json.dumps(settings, indent=2, default=str).encode()
    atomic_write(path, lambda f: f.write(data))


def cmd_degrade(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ebir_fast.degrade import create_degrader
    from ebir_fast.io import atomic_write, list_images, read_image, write_png

    root, out = Path(args.input_dir), Path(args.output_dir)
    try:
        files = list_images(root, recursive=not args.no_recursive)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from exc
    if not files:
        print(f"ebir-fast degrade: no images found in {root}", file=sys.stderr)
        return 1
    names = [f.relative_to(root).with_suffix("").as_posix() for f in files]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise UsageError(
            f"files that differ only in extension would write the same outputs: "
            f"{', '.join(clashes)}; rename them"
        )
    out.mkdir(parents=True, exist_ok=True)
    _check_manifest(out / "degrade.json", _settings(args), args.overwrite)
    from ebir_fast.memory import keep_freed_memory

    keep_freed_memory()  # this process only degrades: reuse image-sized blocks (memory.py)
    device = torch.device(args.device)
    elq_degrader = create_degrader(args.preset)
    lq_degrader = create_degrader(args.lq_preset)
    written = skipped = unreadable = 0
    bar = tqdm(list(zip(files, names, strict=True)), unit="img", disable=args.quiet)
    for path, name in bar:
        targets = {kind: out / kind / f"{name}.png" for kind in ("hq", "lq", "elq")}
        prompt_path = out / "prompts" / f"{name}.txt"
        needed = [*targets.values(), *([prompt_path] if args.preset == "param" else [])]
        if not args.overwrite and all(p.exists() for p in needed):
            skipped += 1
            continue
        try:
            image = read_image(path)
        except Exception as exc:  # any decoder failure: report, count, go on
            unreadable += 1
            bar.write(f"warning: skipping {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        hq = hq_crop(image, args.size, args.crop, _stream_seed(args.seed, name, "crop"))
        batch = hq.unsqueeze(0).to(device)
        with torch.no_grad():
            lq = lq_degrader(
                batch, torch.Generator().manual_seed(_stream_seed(args.seed, name, "lq"))
            )
            gen = torch.Generator().manual_seed(_stream_seed(args.seed, name, "elq"))
            params = elq_degrader.sample(1, (args.size, args.size), gen)
            elq = elq_degrader.apply(batch, params)
        write_png(targets["hq"], hq)
        write_png(targets["lq"], lq[0].cpu())
        if args.preset == "param":
            text = (params.prompts[0] + "\n").encode()
            atomic_write(prompt_path, lambda f, text=text: f.write(text))
        write_png(targets["elq"], elq[0].cpu())  # last: its presence marks the triplet done
        written += 1
    if args.preset == "param":
        _write_prompt_index(out, names)
    print(f"{written} written, {skipped} skipped (already done), {unreadable} unreadable")
    return 1 if written + skipped == 0 else 0


def _write_prompt_index(out: Path, names: list[str]) -> None:
    """``prompts.jsonl``: one ``{"name", "prompt"}`` line per finished file, in name order.

    Rebuilt from the per-file ``prompts/<name>.txt`` (each written atomically with its triplet)
    at the end of every run, so it is complete after a resume and never half-written.
    """
    from ebir_fast.io import atomic_write

    lines = []
    for name in names:
        path = out / "prompts" / f"{name}.txt"
        if path.exists() and (out / "elq" / f"{name}.png").exists():
            prompt = path.read_text().rstrip("\n")
            lines.append(json.dumps({"name": name, "prompt": prompt}) + "\n")
    data = "".join(lines).encode()
    atomic_write(out / "prompts.jsonl", lambda f: f.write(data))


def _restore_jobs(inputs: list[str], out: Path) -> list[tuple[Path, Path]]:
    """(input file, output PNG) pairs: files by name, folders by their relative paths."""
    from ebir_fast.io import list_images

    jobs = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            jobs += [(f, out / f.relative_to(path).with_suffix(".png")) for f in list_images(path)]
        elif path.is_file():
            jobs.append((path, out / f"{path.stem}.png"))
        else:
            raise UsageError(f"INPUT: {item} is neither a file nor a folder")
    targets = [t for _, t in jobs]
    clashes = sorted({str(t) for t in targets if targets.count(t) > 1})
    if clashes:
        raise UsageError(f"several inputs would write the same output: {', '.join(clashes)}")
    return jobs


_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def cmd_restore(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ebir_fast.api import load_pipeline
    from ebir_fast.io import read_image, write_png
    from ebir_fast.weights import WeightsNotFoundError

    out = Path(args.output)
    jobs = _restore_jobs(args.inputs, out)
    if not jobs:
        print("ebir-fast restore: no images found", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "command": "restore",
        "lfo": args.lfo,
        "prompt": args.prompt,
        "seed": args.seed,
        "color_fix": args.color_fix,
        "tile": not args.no_tile,
        "weights": str(Path(args.weights).resolve()) if args.weights else None,
    }
    _check_manifest(out / "restore.json", settings, args.overwrite, tuple(settings))
    todo = [(src, dst) for src, dst in jobs if args.overwrite or not dst.exists()]
    skipped = len(jobs) - len(todo)
    written = unreadable = 0
    if todo:
        try:
            pipe = load_pipeline(args.weights, device=args.device, dtype=_DTYPES.get(args.dtype))
        except (WeightsNotFoundError, ValueError) as exc:
            raise UsageError(str(exc)) from exc
        color_fix = None if args.color_fix == "none" else args.color_fix
        bar = tqdm(todo, unit="img", disable=args.quiet)
        for src, dst in bar:
            try:
                image = read_image(src)
            except Exception as exc:  # any decoder failure: report, count, go on
                unreadable += 1
                bar.write(f"warning: skipping {src}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            result = pipe(
                image.unsqueeze(0),
                lfo=args.lfo,
                prompt=args.prompt,
                seed=args.seed,
                color_fix=color_fix,
                tile=None if args.no_tile else "auto",
            )
            write_png(dst, result.images[0].cpu())
            written += 1
    print(f"{written} written, {skipped} skipped (already done), {unreadable} unreadable")
    return 1 if written + skipped == 0 else 0


def cmd_convert(args: argparse.Namespace) -> int:
    from ebir_fast.models.checkpoint import convert

    try:
        weights = convert(args.src, args.dst)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    print(
        f"{args.src} -> {args.dst}: {len(weights.unet)} UNet and {len(weights.vae)} VAE tensors, "
        f"rank {weights.rank_unet} / {weights.rank_vae}"
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from ebir_fast import __version__, build_info
    from ebir_fast.degrade import PRESETS
    from ebir_fast.ops import available_backends

    print(f"ebir-fast {__version__}")
    for key, value in build_info().items():
        print(f"  {key}: {value}")
    for device in ("cpu", "cuda"):
        print(f"backends for {device} tensors:")
        for name, status in available_backends(device).items():
            print(f"  {name}: {status}")
    print(f"degradation presets: {', '.join(PRESETS)}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ebir-fast", description="Extreme blind image restoration, fast."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "degrade",
        help="write HQ / LQ / ELQ training triplets from a folder of photos",
        description=(
            "For every image under INPUT_DIR: an HQ crop (short side resized to --size, then a "
            "crop), its LQ version (--lq-preset) and its extremely degraded version (--preset), "
            "as 8-bit PNGs OUTPUT_DIR/{hq,lq,elq}/<relative name>.png; with --preset param the "
            "restoration prompt goes to OUTPUT_DIR/prompts/<name>.txt and all of them to "
            "OUTPUT_DIR/prompts.jsonl. Images smaller than --size are upscaled. Grayscale "
            "becomes RGB, transparency is composited on white, EXIF orientation is applied. "
            "Settings are recorded in OUTPUT_DIR/degrade.json; resuming with other settings is "
            "refused unless --overwrite. Exit code 0 when at least one file is written or "
            "already done, 1 when none could be, 2 for bad arguments. Each file's randomness "
            "comes from (--seed, its relative path), so runs are reproducible in any order. "
            "Finished files are skipped, so an interrupted run resumes; unreadable files are "
            "reported and counted; every file is written to a temporary name and renamed."
        ),
    )
    p.add_argument("input_dir", help="folder of images (searched recursively)")
    p.add_argument("output_dir", help="folder for the triplets (created if needed)")
    p.add_argument("--preset", choices=PRESET_NAMES, default="elq", help="ELQ degradation")
    p.add_argument("--lq-preset", choices=PRESET_NAMES, default="lq", help="LQ degradation")
    p.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    p.add_argument("--size", type=_positive, default=512, help="HQ crop size in pixels")
    p.add_argument("--crop", choices=("center", "random"), default="center", help="HQ crop")
    p.add_argument("--device", default="cpu", help="device that degrades (cpu, cuda, cuda:1)")
    p.add_argument("--no-recursive", action="store_true", help="only the top folder")
    p.add_argument("--overwrite", action="store_true", help="redo finished files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_degrade)

    p = sub.add_parser(
        "restore",
        help="restore images with EBIR (projector f, restorer g, Look Forward Once)",
        description=(
            "Restore every INPUT (files, or folders searched recursively) to OUTPUT/<name>.png "
            "(8-bit RGB; folders keep their relative paths). Weights come from --weights (a "
            "folder with ebir-fast.json), $EBIR_FAST_WEIGHTS or ~/.cache/ebir-fast. Finished "
            "outputs are skipped, so an interrupted run resumes (settings are recorded in "
            "OUTPUT/restore.json; resuming with other settings is refused unless --overwrite); "
            "unreadable files are reported and counted; every file is written to a temporary "
            "name and renamed. Exit code 0 when at least one image is written or already done, "
            "1 when none could be, 2 for bad arguments or missing weights."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("-o", "--output", required=True, help="output folder (created if needed)")
    p.add_argument("--lfo", type=int, default=2, help="Look Forward Once passes (default 2)")
    p.add_argument("--prompt", default=None, help="text appended to every image's tags")
    p.add_argument(
        "--seed", type=int, default=None, help="sample the VAE posterior (default: mode)"
    )
    p.add_argument("--color-fix", choices=("adain", "wavelet", "none"), default="adain")
    p.add_argument("--no-tile", action="store_true", help="never tile (more memory)")
    p.add_argument("--weights", default=None, help="folder holding ebir-fast.json")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--dtype", choices=tuple(_DTYPES), default=None, help="default fp16 on CUDA, fp32 on CPU"
    )
    p.add_argument("--overwrite", action="store_true", help="redo finished files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_restore)

    p = sub.add_parser(
        "convert",
        help="convert a stage checkpoint between osediff.pkl and .safetensors",
        description="The format of each file follows its suffix (.pkl/.pt/.pth or .safetensors).",
    )
    p.add_argument("src", help="osediff.pkl or stage .safetensors")
    p.add_argument("dst", help="file to write (atomically)")
    p.set_defaults(run=cmd_convert)

    p = sub.add_parser("info", help="version, compiled kernels and backends of this install")
    p.set_defaults(run=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ebir-fast`` and ``python -m ebir_fast``; returns the exit code."""
    args = build_parser().parse_args(argv)
    if hasattr(args, "device"):
        try:
            device = torch.device(args.device)
        except (RuntimeError, ValueError) as exc:
            print(
                f"ebir-fast: --device: expected cpu, cuda or cuda:N, got {args.device!r} ({exc})",
                file=sys.stderr,
            )
            return 2
        if device.type not in ("cpu", "cuda"):
            print(
                f"ebir-fast: --device: expected cpu, cuda or cuda:N, got {args.device!r}",
                file=sys.stderr,
            )
            return 2
        if device.type == "cuda" and not torch.cuda.is_available():
            print(f"ebir-fast: --device {args.device}: CUDA is not available here", file=sys.stderr)
            return 2
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        try:
            return args.run(args)
        except UsageError as exc:
            print(f"ebir-fast {args.command}: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
