"""``ebir_fast.restore(img, lfo=2)``: one call from any image kind to its restoration.

Inputs and what comes back (the same kind as given):

- a path (``str`` / ``os.PathLike``): read with :func:`ebir_fast.io.read_image`; returns a PIL
  image (RGB);
- a PIL image: ``L`` / ``I;16`` / ``LA`` come back in their mode, ``RGBA`` keeps its alpha
  channel untouched, anything else comes back RGB;
- a numpy array ``HW`` / ``HWC`` (C = 1, 3 or 4), ``uint8``, ``uint16`` or float in [0, 1]:
  returns the same shape and dtype;
- a torch tensor ``CHW`` or ``BCHW`` (C = 1, 3 or 4), float in [0, 1] or ``uint8``: returns the
  same shape, dtype and device.

Grayscale is restored as RGB and converted back with ITU-R 601 luma; an alpha channel is passed
through unchanged (restoration runs on the colour channels only).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np
import torch

from ebir_fast.weights import find_manifest, read_manifest

_PIPELINES: dict[tuple, tuple[object, threading.Lock]] = {}
_PIPELINES_LOCK = threading.Lock()
_LUMA = (0.299, 0.587, 0.114)


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


BACKENDS = ("torch", "onnxruntime", "tensorrt")


def load_pipeline(
    weights: str | os.PathLike | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    merge: bool = True,
    backend: str = "torch",
):
    """The :class:`~ebir_fast.pipeline.EBIRPipeline` described by a weights manifest (cached).

    ``device`` defaults to CUDA when available; ``dtype`` to float16 on CUDA, float32 otherwise.
    ``backend``: ``"torch"`` (the checkpoints), ``"onnxruntime"`` (the manifest's ``onnx``
    folder) or ``"tensorrt"`` (its ``engines`` folder).
    """
    return _cached_pipeline(weights, device, dtype, merge, backend)[0]


def _cached_pipeline(weights, device, dtype, merge, backend="torch"):
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    path = find_manifest(weights).resolve()
    device = torch.device(device) if device is not None else _default_device()
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    key = (str(path), path.stat().st_mtime_ns, str(device), dtype, merge, backend)
    with _PIPELINES_LOCK:
        if key not in _PIPELINES:
            _PIPELINES[key] = (_build(path, device, dtype, merge, backend), threading.Lock())
        return _PIPELINES[key]


def _build(path, device, dtype, merge, backend="torch"):
    from ebir_fast.models.tagger import DapeTagger, FixedPromptTagger, NullTagger
    from ebir_fast.pipeline import EBIRPipeline

    manifest = read_manifest(path)
    if backend != "torch":
        key = "onnx" if backend == "onnxruntime" else "engines"
        folder = getattr(manifest, key)
        if folder is None:
            raise ValueError(
                f"backend: {backend!r} needs a {key!r} folder in {path} (written by "
                f"{'export/export_onnx.py' if key == 'onnx' else 'export/build_trt.py'})"
            )
        if backend == "onnxruntime":
            from ebir_fast.pipeline.onnxruntime import load_onnx_pipeline

            return load_onnx_pipeline(folder)
        from ebir_fast.deploy.trt_runtime import load_trt_pipeline

        return load_trt_pipeline(folder, device=str(device))
    manifest.check()
    spec = manifest.tagger
    if spec["kind"] == "dape":
        tagger = DapeTagger.from_files(
            spec["ram"],
            spec["tag_list"],
            spec["thresholds"],
            spec.get("dape"),
            device=device,
            dtype=dtype,
        )
    elif spec["kind"] == "fixed":
        tagger = FixedPromptTagger(spec["prompt"])
    else:
        tagger = NullTagger()
    return EBIRPipeline.from_files(
        manifest.base,
        manifest.restorer,
        manifest.projector,
        tagger,
        dtype=dtype,
        device=device,
        merge=merge,
    )


def clear_cache() -> None:
    """Forget the loaded pipelines (their memory is freed when no caller holds them)."""
    with _PIPELINES_LOCK:
        _PIPELINES.clear()


# -- input kinds ----------------------------------------------------------------------------------
class _Converted:
    """An input as a ``[B, 3, H, W]`` float batch plus what is needed to give it back."""

    def __init__(self, rgb: torch.Tensor, back) -> None:
        self.rgb = rgb
        self.back = back  # callable: restored [B, 3, H, W] float in [0, 1] -> the input's kind


def _split_channels(x: torch.Tensor, where: str):  # x: [B, C, H, W] float in [0, 1]
    """RGB part and the alpha (or None) and whether the input was grayscale."""
    c = x.shape[1]
    if c not in (1, 2, 3, 4):
        raise ValueError(f"{where}: expected 1, 2, 3 or 4 channels, got {c}")
    gray = c in (1, 2)
    rgb = x[:, :1].expand(-1, 3, -1, -1) if gray else x[:, :3]
    alpha = x[:, c - 1 :] if c in (2, 4) else None
    return rgb, alpha, gray


def _join_channels(hq: torch.Tensor, alpha, gray: bool) -> torch.Tensor:
    if gray:
        w = torch.tensor(_LUMA, dtype=hq.dtype, device=hq.device).view(1, 3, 1, 1)
        hq = (hq * w).sum(1, keepdim=True)
    if alpha is not None:
        hq = torch.cat([hq, alpha.to(hq)], dim=1)
    return hq


def _from_tensor(img: torch.Tensor, name: str) -> _Converted:
    if img.dim() not in (3, 4):
        raise ValueError(f"{name}: expected a CHW or BCHW tensor, got shape {list(img.shape)}")
    if img.dtype == torch.uint8:
        x = img.float() / 255.0
    elif img.is_floating_point():
        x = img.float()
    else:
        raise TypeError(f"{name}: expected a float tensor in [0, 1] or uint8, got {img.dtype}")
    batched = img.dim() == 4
    x = x if batched else x.unsqueeze(0)
    rgb, alpha, gray = _split_channels(x, name)

    def back(hq: torch.Tensor) -> torch.Tensor:
        out = _join_channels(hq, alpha, gray).to(img.device)
        out = (out * 255).round().to(torch.uint8) if img.dtype == torch.uint8 else out.to(img.dtype)
        return out if batched else out[0]

    return _Converted(rgb, back)


def _from_numpy(img: np.ndarray, name: str) -> _Converted:
    if img.ndim not in (2, 3):
        raise ValueError(f"{name}: expected an HW or HWC array, got shape {img.shape}")
    if img.dtype == np.uint8:
        scale = 255.0
    elif img.dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(img.dtype, np.floating):
        scale = 1.0
    else:
        raise TypeError(f"{name}: expected uint8, uint16 or float in [0, 1], got {img.dtype}")
    hwc = img[:, :, None] if img.ndim == 2 else img
    x = torch.from_numpy(np.ascontiguousarray(hwc).astype(np.float32) / scale)
    rgb, alpha, gray = _split_channels(x.permute(2, 0, 1).unsqueeze(0), name)

    def back(hq: torch.Tensor) -> np.ndarray:
        out = _join_channels(hq, alpha, gray)[0].permute(1, 2, 0).cpu().numpy()
        if scale != 1.0:
            out = np.round(np.clip(out, 0, 1) * scale).astype(img.dtype)
        else:
            out = out.astype(img.dtype)
        return out.reshape(img.shape)

    return _Converted(rgb, back)


def _from_pil(img, name: str) -> _Converted:
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.uint16 if mode.startswith("I;16") else np.int32)
        conv = _from_numpy(np.clip(arr, 0, 65535).astype(np.uint16), name)
        return _Converted(conv.rgb, lambda hq: Image.fromarray(conv.back(hq)))
    keep = mode if mode in ("L", "LA", "RGB", "RGBA") else "RGB"
    conv = _from_numpy(np.asarray(img.convert(keep)), name)
    return _Converted(conv.rgb, lambda hq: Image.fromarray(conv.back(hq), mode=keep))


def _convert(img, name: str = "img") -> _Converted:
    from PIL import Image

    if isinstance(img, torch.Tensor):
        return _from_tensor(img, name)
    if isinstance(img, np.ndarray):
        return _from_numpy(img, name)
    if isinstance(img, Image.Image):
        return _from_pil(img, name)
    if isinstance(img, str | os.PathLike):
        from ebir_fast.io import read_image

        x = read_image(img).unsqueeze(0)
        return _Converted(x, lambda hq: Image.fromarray(_to_uint8_hwc(hq[0]), mode="RGB"))
    raise TypeError(
        f"{name}: expected a path, a PIL image, a numpy array or a torch tensor, got "
        f"{type(img).__name__}"
    )


def _to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    return x.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def restore(
    img,
    lfo: int = 2,
    *,
    prompt: str | Sequence[str] | None = None,
    seed: int | None = None,
    color_fix: str | None = "adain",
    tile="auto",
    weights: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    backend: str = "torch",
    pipeline=None,
):
    """Restore an extremely degraded image with EBIR (``f`` then ``g``, LFO ``lfo`` times).

    Args:
        img: a path, PIL image, numpy array (HW/HWC; uint8, uint16 or float in [0, 1]) or torch
            tensor (CHW/BCHW; float in [0, 1] or uint8); see the module docstring.
        lfo, prompt, seed, color_fix, tile: see :class:`ebir_fast.pipeline.EBIRPipeline`.
        weights: a folder holding ``ebir-fast.json`` (or the manifest); default
            ``$EBIR_FAST_WEIGHTS``, then ``~/.cache/ebir-fast``.
        device, dtype: where and how to run (default CUDA + float16 if available, else CPU +
            float32).
        backend: ``"torch"``, ``"onnxruntime"`` or ``"tensorrt"`` (see :func:`load_pipeline`).
        pipeline: a ready pipeline (overrides ``weights`` / ``device`` / ``dtype``).

    Returns:
        The restored image, of the same kind as ``img`` (a PIL image for a path).
    """
    from ebir_fast.pipeline.ebir import check_images

    conv = _convert(img)
    check_images(conv.rgb, "img")
    if pipeline is not None:
        lock = None
    else:
        pipeline, lock = _cached_pipeline(weights, device, dtype, True, backend)
    kwargs = {"lfo": lfo, "prompt": prompt, "seed": seed, "color_fix": color_fix, "tile": tile}
    if lock is None:
        out = pipeline(conv.rgb, **kwargs)
    else:
        # One call at a time per loaded pipeline: the models are shared, and the call
        # counters, caches and the CUDA allocator are not worth racing on.
        with lock:
            out = pipeline(conv.rgb, **kwargs)
    return conv.back(out.images)
