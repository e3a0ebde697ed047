"""One dispatcher for every op: which backend runs, and why another cannot.

``backend="auto"`` (the default) follows ``EBIR_FAST_BACKEND`` when it is set, then picks:
CUDA tensors -> "cuda", else "triton", else "reference"; CPU tensors -> "cpu", else "reference".
An explicit backend that cannot run raises BackendUnavailableError with the reason; an automatic
fall-back to the reference warns once, since it is much slower.
"""

from __future__ import annotations

import functools
import importlib
import os
import warnings
from types import ModuleType

import torch

from ebir_fast import _ext

BACKENDS = ("auto", "cuda", "triton", "cpu", "reference")
ENV_VAR = "EBIR_FAST_BACKEND"

_LAUNCHERS = {
    "cpu": "ebir_fast.ops._cpu",
    "cuda": "ebir_fast.ops._cuda",
    "triton": "ebir_fast.ops.triton.blur",
}


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here; the message says why."""


def triton_interpreted() -> bool:
    """True when Triton kernels run in the CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "") not in ("", "0")


@functools.cache
def _triton_error() -> str | None:
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        return f"triton is not installed ({exc}); `pip install triton`"
    return None


def backend_error(name: str, device_type: str) -> str | None:
    """Why ``name`` cannot run on tensors of ``device_type``, or None when it can."""
    if name == "reference":
        return None
    if name == "cpu":
        if device_type != "cpu":
            return f"backend 'cpu' runs on CPU tensors, got {device_type} tensors"
        return _ext.extension_error("_C")
    if name == "cuda":
        if device_type != "cuda":
            return f"backend 'cuda' runs on CUDA tensors, got {device_type} tensors"
        return _ext.extension_error("_C_cuda")
    if name == "triton":
        if device_type == "cpu" and not triton_interpreted():
            return (
                "backend 'triton' runs on CUDA tensors, or on CPU tensors with TRITON_INTERPRET=1"
            )
        if device_type not in ("cpu", "cuda"):
            return f"backend 'triton' runs on CUDA tensors, got {device_type} tensors"
        return _triton_error()
    raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {name!r}")


def available_backends(device: torch.device | str = "cpu") -> dict[str, str]:
    """For each concrete backend: "available" or the reason it cannot run on ``device``."""
    device_type = torch.device(device).type
    return {
        name: backend_error(name, device_type) or "available" for name in BACKENDS if name != "auto"
    }


@functools.cache
def _warn_fallback(device_type: str, reason: str) -> None:
    warnings.warn(
        f"ebir_fast: no fast kernel for {device_type} tensors ({reason}); using the PyTorch "
        f"reference, which is much slower",
        RuntimeWarning,
        stacklevel=4,
    )


def _auto(device_type: str, supported: tuple[str, ...]) -> str:
    preferred = {"cuda": ("cuda", "triton"), "cpu": ("cpu",)}.get(device_type, ())
    reasons = []
    for name in preferred:
        if name not in supported:
            continue
        reason = backend_error(name, device_type)
        if reason is None:
            return name
        reasons.append(reason)
    _warn_fallback(device_type, "; ".join(reasons) or "no kernel for this device")
    return "reference"


@torch.compiler.assume_constant_result
def resolve_backend(backend: str, device_type: str, supported: tuple[str, ...] = BACKENDS) -> str:
    """The concrete backend for ``backend`` on ``device_type`` tensors, or an error saying why.

    ``supported``: the backends the op has kernels for ("reference" always runs).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        backend = os.environ.get(ENV_VAR, "") or "auto"
        if backend not in BACKENDS:
            raise ValueError(f"{ENV_VAR}: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return _auto(device_type, supported)
    if backend not in supported and backend != "reference":
        raise BackendUnavailableError(
            f"backend {backend!r} has no kernel for this op; it has {', '.join(supported)}"
        )
    reason = backend_error(backend, device_type)
    if reason is not None:
        raise BackendUnavailableError(reason)
    return backend


def launcher(backend: str, op: str = "blur") -> ModuleType:
    """The module with the launchers of ``op`` for a concrete compiled backend: one module per
    backend for the compiled extensions, one Triton module per op."""
    if backend not in _LAUNCHERS:
        raise ValueError(f"backend: expected one of {', '.join(_LAUNCHERS)}, got {backend!r}")
    if backend == "triton":
        return importlib.import_module(f"ebir_fast.ops.triton.{op}")
    return importlib.import_module(_LAUNCHERS[backend])
