"""Lazy access to the compiled extension modules, remembering why one could not be loaded.

``ebir_fast._C`` holds the torch-free C++ CPU kernels and is always built from source;
``ebir_fast._C_cuda`` holds the CUDA kernels and exists only when the build found a CUDA compiler.
Set ``EBIR_FAST_NO_EXTENSION=1`` to behave as a pure-Python install (the references are used).
"""

from __future__ import annotations

import functools
import importlib
import os
from types import ModuleType

import torch

# dtype codes shared with csrc/include/ebir/common.h (enum DType).
DTYPE_CODES: dict[torch.dtype, int] = {
    torch.float32: 0,
    torch.float64: 1,
    torch.float16: 2,
    torch.bfloat16: 3,
}

_HINTS = {
    "_C": "reinstall ebir-fast from source with a C++17 compiler (`pip install -v .` shows why)",
    "_C_cuda": (
        "ebir-fast was built without its CUDA kernels; rebuild on a machine with nvcc, e.g. "
        "`EBIR_CUDA=ON pip install -v .`"
    ),
}


class ExtensionUnavailableError(RuntimeError):
    """A compiled part of ebir-fast is missing; the message says why and how to get it."""


@functools.cache
def _load(name: str) -> tuple[ModuleType | None, str | None]:
    if os.environ.get("EBIR_FAST_NO_EXTENSION", "") not in ("", "0"):
        return None, f"ebir_fast.{name} is disabled by EBIR_FAST_NO_EXTENSION"
    try:
        return importlib.import_module(f"ebir_fast.{name}"), None
    except ImportError as exc:
        return None, f"ebir_fast.{name} could not be imported ({exc}); {_HINTS[name]}"


def extension(name: str) -> ModuleType:
    """The compiled module ``name`` ("_C" or "_C_cuda"), or ExtensionUnavailableError."""
    module, reason = _load(name)
    if module is None:
        raise ExtensionUnavailableError(reason)
    return module


def extension_error(name: str) -> str | None:
    """Why ``name`` cannot be loaded, or None when it can."""
    return _load(name)[1]


def build_info() -> dict[str, object]:
    """What this installation can run: compiled modules, OpenMP, CPU ISA, CUDA, triton."""
    info: dict[str, object] = {"torch": torch.__version__}
    cpu, cpu_err = _load("_C")
    info["cpu_extension"] = cpu_err or "available"
    if cpu is not None:
        info["openmp"] = bool(cpu.has_openmp)
        info["cpu_isa"] = cpu.cpu_isa()
        info["cpu_wide_vectors"] = bool(cpu.cpu_wide_vectors())
    cuda, cuda_err = _load("_C_cuda")
    info["cuda_extension"] = cuda_err or "available"
    if cuda is not None:
        info["cuda_architectures"] = list(cuda.architectures)
    info["cuda_device"] = torch.cuda.is_available()
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = "not installed"
    return info
