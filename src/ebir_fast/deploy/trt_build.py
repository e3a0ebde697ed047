"""TensorRT engines from the exported graphs (``python export/build_trt.py``).

Uses ``tensorrt`` when installed (GPU machines), else TensorRT for RTX (``tensorrt_rtx_bindings``,
from the ``tensorrt-rtx-cu13-libs`` / ``-bindings`` wheels), which builds engines on a machine
without a GPU for a chosen compute capability. Networks are strongly typed (the graph's fp16 or
fp32 types decide the precision), parsed with the native InstanceNorm flag; builder optimisation
level, a timing cache reused across builds, refit, and an optional dynamic profile are options.
Every engine gets a metadata JSON beside it (TensorRT flavour and version, GPU and compute
capability, precision, tensor shapes, hashes of the source graph and of the checkpoints); the
runtime refuses engines whose metadata does not match its machine. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ebir_fast.io import atomic_write

ENGINES_MANIFEST = "engines.json"
RTX_CAPABILITIES = ("SM75", "SM80", "SM86", "SM89", "SM120", "SM121")


class TensorRTUnavailableError(ImportError):
    """Neither TensorRT nor TensorRT for RTX can be imported."""


def import_tensorrt(prefer: str | None = None):
    """``(module, flavour)``: ``tensorrt`` if installed, else TensorRT for RTX.

    ``prefer`` forces ``"tensorrt"`` or ``"tensorrt-rtx"``.
    """
    errors = []
    order = ("tensorrt", "tensorrt-rtx") if prefer in (None, "tensorrt") else ("tensorrt-rtx",)
    if prefer == "tensorrt":
        order = ("tensorrt",)
    for flavour in order:
        try:
            if flavour == "tensorrt":
                import tensorrt as trt
            else:
                import tensorrt_rtx_bindings as trt
            return trt, flavour
        except ImportError as err:
            errors.append(f"{flavour}: {err}")
    raise TensorRTUnavailableError(
        "TensorRT is not installed: on a GPU machine `pip install tensorrt` (NVIDIA's index); "
        "anywhere, TensorRT for RTX: `pip install tensorrt-rtx-cu13-libs "
        "tensorrt-rtx-cu13-bindings`. (" + "; ".join(errors) + ")"
    )


@dataclass
class BuildOptions:
    """Engine build settings.

    Attributes:
        opt_level: builder optimisation level (0-5; 3 is TensorRT's default, 5 searches most).
        timing_cache: file to read and update (per GPU); None disables reuse.
        refit: build refittable engines (weights can be swapped without a rebuild).
        profiles: for graphs with dynamic dimensions, ``{input: (min, opt, max)}`` shapes.
        compute_capabilities: TensorRT for RTX targets (e.g. ``("SM89",)``); default: the GPU
            present, else ``("SM89",)``. Ignored by TensorRT (it builds for the present GPU).
        workspace_gib: workspace memory pool limit (None: TensorRT's default).
    """

    opt_level: int = 3
    timing_cache: Path | None = None
    refit: bool = False
    profiles: dict[str, tuple[tuple[int, ...], ...]] = field(default_factory=dict)
    compute_capabilities: tuple[str, ...] | None = None
    workspace_gib: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.opt_level <= 5:
            raise ValueError(f"opt_level: expected 0 to 5, got {self.opt_level}")
        for cc in self.compute_capabilities or ():
            if cc not in RTX_CAPABILITIES:
                raise ValueError(
                    f"compute_capabilities: expected names from {RTX_CAPABILITIES}, got {cc!r}"
                )


def sha256_file(path: Path) -> str:
    """Hash of a file and, for an ONNX graph, its external data."""
    digest = hashlib.sha256()
    for p in sorted(path.parent.glob(path.name + "*")):
        if p.suffix in (".json", ".engine", ".tmp"):
            continue
        with open(p, "rb") as f:
            for chunk in iter(lambda f=f: f.read(1 << 24), b""):
                digest.update(chunk)
    return digest.hexdigest()


def gpu_info() -> dict:
    """The present CUDA GPU's name and compute capability (None without one)."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return {"name": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}
    except Exception:  # a broken driver is "no GPU" for building purposes
        pass
    return {"name": None, "compute_capability": None}


class _Logger:
    """TensorRT logger that forwards warnings and errors to ``log``."""

    def __init__(self, trt, log: Callable[[str], None]):
        base = trt.ILogger

        class Forward(base):  # type: ignore[misc, valid-type]
            def __init__(self):
                base.__init__(self)

            def log(self, severity, msg):
                if severity <= trt.ILogger.Severity.WARNING:
                    log(f"  [TensorRT {severity.name}] {msg}")

        self.logger = Forward()


def _dims(shape) -> list[int]:
    return [int(d) for d in shape]


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    options: BuildOptions | None = None,
    *,
    extra_metadata: dict | None = None,
    prefer: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Build one engine from one ONNX graph; write it and ``<engine>.json``; return the metadata."""
    options = options or BuildOptions()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"onnx_path: no ONNX graph at {onnx_path}")
    trt, flavour = import_tensorrt(prefer)
    logger = _Logger(trt, log).logger
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if hasattr(trt, "OnnxParserFlag"):
        parser.set_flag(trt.OnnxParserFlag.NATIVE_INSTANCENORM)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError(f"onnx_path: TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.builder_optimization_level = options.opt_level
    if options.workspace_gib is not None:
        config.set_memory_pool_limit(
            trt.MemoryPoolType.WORKSPACE, int(options.workspace_gib * 2**30)
        )
    if options.refit:
        config.set_flag(trt.BuilderFlag.REFIT)
    gpu = gpu_info()
    targets = None
    if flavour == "tensorrt-rtx":
        targets = list(options.compute_capabilities or (["CURRENT"] if gpu["name"] else ["SM89"]))
        config.num_compute_capabilities = len(targets)
        for i, cc in enumerate(targets):
            config.set_compute_capability(getattr(trt.ComputeCapability, cc), i)
    cache = None
    if options.timing_cache is not None and flavour == "tensorrt-rtx" and gpu["name"] is None:
        log("  note: no GPU: TensorRT for RTX times no tactics here, the timing cache is skipped")
    elif options.timing_cache is not None and hasattr(config, "create_timing_cache"):
        blob = options.timing_cache.read_bytes() if options.timing_cache.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    dynamic = [t.name for t in inputs if any(d < 0 for d in t.shape)]
    if dynamic:
        absent = [n for n in dynamic if n not in options.profiles]
        if absent:
            raise ValueError(
                f"profiles: {onnx_path.name} has dynamic inputs {absent}; give (min, opt, max) "
                "shapes for them, or export static graphs (export_onnx.py --size H W), which "
                "give the fastest engines"
            )
        profile = builder.create_optimization_profile()
        for name in dynamic:
            lo, opt, hi = options.profiles[name]
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    log(f"building {engine_path.name} from {onnx_path.name} ({flavour} {trt.__version__})")
    start = time.perf_counter()
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log)")
    data = bytes(blob)
    atomic_write(engine_path, lambda f: f.write(data))
    if cache is not None:
        cache_blob = bytes(config.get_timing_cache().serialize())
        atomic_write(options.timing_cache, lambda f: f.write(cache_blob))
    meta = {
        "flavour": flavour,
        "tensorrt_version": trt.__version__,
        "gpu": gpu["name"],
        "compute_capability": gpu["compute_capability"] if flavour == "tensorrt" else None,
        "rtx_targets": targets,
        "inputs": {
            t.name: {"shape": _dims(t.shape), "dtype": str(t.dtype).split(".")[-1]} for t in inputs
        },
        "outputs": {
            network.get_output(i).name: {
                "shape": _dims(network.get_output(i).shape),
                "dtype": str(network.get_output(i).dtype).split(".")[-1],
            }
            for i in range(network.num_outputs)
        },
        "profiles": {k: [list(s) for s in v] for k, v in options.profiles.items() if k in dynamic},
        "onnx": onnx_path.name,
        "onnx_sha256": sha256_file(onnx_path),
        "opt_level": options.opt_level,
        "refit": options.refit,
        "built_on": f"{platform.node()} ({platform.machine()})",
        "build_seconds": round(time.perf_counter() - start, 2),
        "engine_bytes": len(data),
        **(extra_metadata or {}),
    }
    text = json.dumps(meta, indent=2).encode()
    atomic_write(engine_path.with_suffix(".json"), lambda f: f.write(text))
    log(f"  {engine_path.name}: {len(data) / 2**20:.1f} MiB in {meta['build_seconds']} s")
    return meta


def build_engines(
    onnx_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: BuildOptions | None = None,
    *,
    graphs: list[str] | None = None,
    prefer: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, dict]:
    """Build an engine for every graph of an export folder (``graphs.json``) into ``out_dir``.

    ``out_dir`` gets ``<graph>.engine`` + ``<graph>.json`` per graph, the tokenizer, and
    ``engines.json`` (the export manifest plus every engine's metadata) for the runtime.
    """
    import shutil

    onnx_dir, out = Path(onnx_dir), Path(out_dir)
    manifest_path = onnx_dir / "graphs.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"onnx_dir: {onnx_dir} has no graphs.json; run export/export_onnx.py first"
        )
    manifest = json.loads(manifest_path.read_text())
    names = list(manifest["graphs"]) if graphs is None else graphs
    unknown = [n for n in names if n not in manifest["graphs"]]
    if unknown:
        raise ValueError(
            f"graphs: {unknown} are not in {manifest_path} ({list(manifest['graphs'])})"
        )
    if manifest.get("image_size") is None:
        log("note: dynamic graphs; static ones (export_onnx.py --size H W) build faster engines")
    out.mkdir(parents=True, exist_ok=True)
    extra = {
        "precision": manifest["precision"],
        "image_size": manifest.get("image_size"),
        "checkpoints": manifest.get("checkpoints", {}),
    }
    engines = {}
    for name in names:
        meta = build_engine(
            onnx_dir / manifest["graphs"][name]["file"],
            out / f"{name}.engine",
            options,
            extra_metadata=extra,
            prefer=prefer,
            log=log,
        )
        engines[name] = meta
    if (onnx_dir / "tokenizer").is_dir():
        shutil.copytree(onnx_dir / "tokenizer", out / "tokenizer", dirs_exist_ok=True)
    summary = {**manifest, "engines": engines}
    text = json.dumps(summary, indent=2).encode()
    atomic_write(out / ENGINES_MANIFEST, lambda f: f.write(text))
    return engines
