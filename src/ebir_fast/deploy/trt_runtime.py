"""The TensorRT backend: engines behind the pipeline's stage, text and tagger interfaces.

Design (``../shared/docs/deployment.md``): every tensor stays on the GPU across stages, LFO passes
and the tagger; all engines run on one CUDA stream with ``execute_async_v3``; their execution
contexts are created without device memory and share one scratch buffer sized for the largest
engine (they never run concurrently on one stream); after ``warmup`` calls an engine's launch is
captured in a CUDA graph and replayed. Engines are static-shape (one resolution and batch); the
pipeline pads images to multiples of 64, and a padded size other than the engines' is refused.

Before anything is deserialised, every engine's metadata is checked against this machine (TensorRT
flavour and version, GPU compute capability): a mismatch is a clear error, not a crash.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch

from ebir_fast.deploy.trt_build import ENGINES_MANIFEST, gpu_info, import_tensorrt

#: Device-memory alignment of the shared scratch buffer (TensorRT needs 256 bytes).
SCRATCH_ALIGNMENT = 256


class EngineMismatchError(RuntimeError):
    """Engines built for another TensorRT or GPU than this machine's."""


def check_engine_metadata(
    name: str, meta: dict, *, flavour: str, version: str, gpu: dict
) -> list[str]:
    """Why engine ``name`` (its metadata ``meta``) cannot run here; empty if it can."""
    problems = []
    if gpu.get("compute_capability") is None:
        problems.append(f"{name}: this machine has no CUDA GPU")
    if meta.get("flavour") != flavour:
        problems.append(f"{name}: built with {meta.get('flavour')}, this machine runs {flavour}")
    if meta.get("tensorrt_version") != version:
        problems.append(
            f"{name}: built with TensorRT {meta.get('tensorrt_version')}, "
            f"this machine has {version}"
        )
    cc = gpu.get("compute_capability")
    if (
        cc is not None
        and meta.get("flavour") == "tensorrt"
        and meta.get("compute_capability") != cc
    ):
        problems.append(
            f"{name}: built for compute capability {meta.get('compute_capability')} "
            f"({meta.get('gpu')}), this GPU is {cc} ({gpu.get('name')})"
        )
    targets = meta.get("rtx_targets")
    if cc is not None and meta.get("flavour") == "tensorrt-rtx" and targets:
        sm = "SM" + cc.replace(".", "")
        if sm not in targets and not ("CURRENT" in targets and meta.get("gpu") == gpu.get("name")):
            problems.append(f"{name}: built for {targets}, this GPU is {sm} ({gpu.get('name')})")
    return problems


def check_engines(manifest: dict, *, flavour: str, version: str, gpu: dict) -> None:
    """Raise :class:`EngineMismatchError` listing every engine that cannot run here."""
    problems = []
    for name, meta in manifest.get("engines", {}).items():
        problems += check_engine_metadata(name, meta, flavour=flavour, version=version, gpu=gpu)
    if problems:
        raise EngineMismatchError(
            "the engines do not match this machine; rebuild them here with "
            "`python export/build_trt.py`:\n  " + "\n  ".join(problems)
        )


def plan_scratch(sizes: dict[str, int], alignment: int = SCRATCH_ALIGNMENT) -> int:
    """Bytes of the one scratch buffer shared by engines that run one at a time: the largest
    need, rounded up to ``alignment``."""
    if any(s < 0 for s in sizes.values()):
        raise ValueError(f"sizes: expected byte counts >= 0, got {sizes}")
    largest = max(sizes.values(), default=0)
    return -(-largest // alignment) * alignment


_TORCH_DTYPES = {
    "HALF": torch.float16,
    "FLOAT": torch.float32,
    "INT64": torch.int64,
    "INT32": torch.int32,
    "BF16": torch.bfloat16,
}


class TrtEngine:
    """One engine: static input / output buffers on the device, a context without its own
    device memory, and (after warm-up) a CUDA graph of its launch."""

    def __init__(self, path: Path, meta: dict, runtime, trt, device: torch.device, warmup: int):
        self.name = path.stem
        self.meta = meta
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{path}: TensorRT could not deserialise the engine")
        self.context = self.engine.create_execution_context(
            trt.ExecutionContextAllocationStrategy.USER_MANAGED
        )
        self.device_memory_size = int(self.engine.device_memory_size_v2)
        self.buffers: dict[str, torch.Tensor] = {}
        for spec in (meta["inputs"], meta["outputs"]):
            for tensor, info in spec.items():
                buf = torch.empty(info["shape"], dtype=_TORCH_DTYPES[info["dtype"]], device=device)
                self.buffers[tensor] = buf
                self.context.set_tensor_address(tensor, buf.data_ptr())
        self.inputs, self.outputs = list(meta["inputs"]), list(meta["outputs"])
        self.warmup, self.calls = warmup, 0
        self.graph: torch.cuda.CUDAGraph | None = None

    def bind_scratch(self, scratch: torch.Tensor) -> None:
        self.context.set_device_memory(scratch.data_ptr(), scratch.numel())

    def __call__(self, stream: torch.cuda.Stream, **inputs: torch.Tensor) -> torch.Tensor:
        for name in self.inputs:
            src, dst = inputs[name], self.buffers[name]
            if tuple(src.shape) != tuple(dst.shape):
                raise ValueError(
                    f"{self.name}: input {name!r} has shape {list(src.shape)}, the engine was "
                    f"built for {list(dst.shape)}; build engines for this size "
                    "(export_onnx.py --size H W, then build_trt.py)"
                )
            dst.copy_(src, non_blocking=True)
        self.calls += 1
        if self.graph is not None:
            self.graph.replay()
        elif self.calls > self.warmup and self.context.is_stream_capturable(stream.cuda_stream):
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=stream):
                self.context.execute_async_v3(stream.cuda_stream)
            self.graph.replay()
        elif not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"{self.name}: execute_async_v3 failed")
        return self.buffers[self.outputs[0]].clone()


class TrtRuntime:
    """Every engine of a build folder, one stream, one shared scratch buffer."""

    def __init__(self, folder: Path, device: str = "cuda", warmup: int = 2) -> None:
        manifest = json.loads((folder / ENGINES_MANIFEST).read_text())
        flavours = {m["flavour"] for m in manifest["engines"].values()}
        trt, flavour = import_tensorrt(flavours.pop() if len(flavours) == 1 else None)
        check_engines(manifest, flavour=flavour, version=trt.__version__, gpu=gpu_info())
        self.manifest = manifest
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(device=self.device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        self.engines = {
            name: TrtEngine(folder / f"{name}.engine", meta, runtime, trt, self.device, warmup)
            for name, meta in manifest["engines"].items()
        }
        size = plan_scratch({n: e.device_memory_size for n, e in self.engines.items()})
        self.scratch = torch.empty(size, dtype=torch.uint8, device=self.device)
        for e in self.engines.values():
            e.bind_scratch(self.scratch)

    def __call__(self, name: str, **inputs: torch.Tensor) -> torch.Tensor:
        engine = self.engines[name]
        # The engines' inputs are produced on the current stream; order the engine after them.
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            out = engine(self.stream, **{k: v.to(self.device) for k, v in inputs.items()})
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        return out


def _batched(run, batch: int, **inputs: torch.Tensor) -> torch.Tensor:
    """Run a fixed-batch engine over a larger batch in chunks of ``batch``."""
    n = next(iter(inputs.values())).shape[0]
    if n == batch:
        return run(**inputs)
    if n % batch:
        raise ValueError(f"batch: the engines take batches of {batch}, got {n} images")
    return torch.cat(
        [run(**{k: v[i : i + batch] for k, v in inputs.items()}) for i in range(0, n, batch)]
    )


class TrtPromptEncoder:
    """Tokenizer + text engine; embeddings cached per prompt, on the device."""

    def __init__(self, tokenizer, runtime: TrtRuntime, max_length: int, cache_size: int = 256):
        self.tokenizer, self.runtime, self.max_length = tokenizer, runtime, max_length
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.batch = runtime.manifest["engines"]["text_encoder"]["inputs"]["input_ids"]["shape"][0]

    def __call__(self, prompts: Sequence[str]) -> torch.Tensor:
        for p in dict.fromkeys(prompts):
            if p not in self._cache:
                ids = self.tokenizer(
                    [p] * self.batch,
                    max_length=self.max_length,
                    padding="max_length",
                    truncation=True,
                    return_tensors="pt",
                ).input_ids
                self._cache[p] = self.runtime("text_encoder", input_ids=ids)[0]
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(p)
        return torch.stack([self._cache[p] for p in prompts])


class TrtOneStepStage:
    """An OSEDiff stage from its encoder / UNet engines and the shared decoder engine."""

    uses_prompt = True
    size_multiple = 64

    def __init__(self, key: str, runtime: TrtRuntime, text: TrtPromptEncoder) -> None:
        self.key, self.runtime, self.text = key, runtime, text
        meta = runtime.manifest["engines"][f"{key}_vae_encoder"]["inputs"]["image"]["shape"]
        self.batch, self.image_size = meta[0], tuple(meta[2:])

    @property
    def calls(self) -> dict[str, int]:
        e = self.runtime.engines
        return {
            "encode": e[f"{self.key}_vae_encoder"].calls,
            "unet": e[f"{self.key}_unet"].calls,
            "decode": e["vae_decoder"].calls,
        }

    def _check(self, images: torch.Tensor, tiling) -> None:
        if tuple(images.shape[-2:]) != self.image_size:
            raise ValueError(
                f"images: the engines were built for {self.image_size[0]}x{self.image_size[1]} "
                f"(after padding to multiples of 64), got {images.shape[-2]}x{images.shape[-1]}; "
                "build engines for this size (export_onnx.py --size H W, then build_trt.py)"
            )

    def prepare(self, images: torch.Tensor, *, generator=None, tiling=None) -> torch.Tensor:
        if generator is not None:
            raise ValueError("seed: the engines compute the VAE posterior's mode; use seed=None")
        self._check(images, tiling)
        run = lambda **kw: self.runtime(f"{self.key}_vae_encoder", **kw)  # noqa: E731
        return _batched(run, self.batch, image=images)

    def run(self, z: torch.Tensor, prompts: Sequence[str] | None, *, tiling=None) -> torch.Tensor:
        if prompts is None or len(prompts) != z.shape[0]:
            raise ValueError(
                f"prompts: expected {z.shape[0]} prompt strings (one per image), got {prompts!r}"
            )
        text = self.text(list(prompts))
        unet = lambda **kw: self.runtime(f"{self.key}_unet", **kw)  # noqa: E731
        x0 = _batched(unet, self.batch, latent=z, text=text)
        dec = lambda **kw: self.runtime("vae_decoder", **kw)  # noqa: E731
        return _batched(dec, self.batch, x0=x0).float().clamp(0, 1)


class TrtDapeTagger:
    """DAPE tags from the tagger engine; preprocessing and thresholds on the device."""

    def __init__(self, runtime: TrtRuntime, meta: dict) -> None:
        self.runtime = runtime
        self.size, self.antialias = int(meta["image_size"]), bool(meta["antialias"])
        self.tags = list(meta["tags"])
        self.thresholds = torch.tensor(meta["thresholds"], device=runtime.device)
        self.exclude = list(meta.get("exclude", ()))
        pixels = runtime.manifest["engines"]["tagger"]["inputs"]["pixels"]
        self.batch, self.dtype = pixels["shape"][0], _TORCH_DTYPES[pixels["dtype"]]

    def __call__(self, images: torch.Tensor) -> list[str]:
        from ebir_fast.models.ram import preprocess

        x = preprocess(images.to(self.runtime.device), self.size, antialias=self.antialias)
        run = lambda **kw: self.runtime("tagger", **kw)  # noqa: E731
        logits = _batched(run, self.batch, pixels=x.to(self.dtype))
        on = torch.sigmoid(logits.float()) > self.thresholds
        if self.exclude:
            on[:, self.exclude] = False
        on = on.cpu()
        return [", ".join(self.tags[i] for i in row.nonzero().flatten().tolist()) for row in on]


def load_trt_pipeline(folder: str | Path, device: str = "cuda", warmup: int = 2):
    """An :class:`~ebir_fast.pipeline.EBIRPipeline` running the engines built into ``folder``."""
    from transformers import CLIPTokenizer

    from ebir_fast.models.tagger import FixedPromptTagger, NullTagger
    from ebir_fast.pipeline.ebir import EBIRPipeline

    folder = Path(folder)
    if not (folder / ENGINES_MANIFEST).is_file():
        raise FileNotFoundError(
            f"folder: {folder} has no {ENGINES_MANIFEST}; build engines with export/build_trt.py"
        )
    if not torch.cuda.is_available():
        raise RuntimeError(
            "TensorRT engines run on a CUDA GPU and this machine has none (engines can be built "
            "without one, with TensorRT for RTX, but not run); use backend='onnxruntime' here"
        )
    runtime = TrtRuntime(folder, device, warmup)
    meta = runtime.manifest
    tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
    text = TrtPromptEncoder(tokenizer, runtime, meta["text"]["max_length"])
    stages = {k: TrtOneStepStage(k, runtime, text) for k in meta["stages"]}
    spec = meta["tagger"]
    if spec["kind"] == "dape":
        tagger = TrtDapeTagger(runtime, spec)
    elif spec["kind"] == "fixed":
        tagger = FixedPromptTagger(spec["prompt"])
    else:
        tagger = NullTagger()
    return EBIRPipeline(stages["g"], stages.get("f"), tagger)
