"""The ops layer: fused kernels with one dispatcher and a pure-PyTorch reference beside each.

Backends: "cuda" (compiled CUDA kernels), "triton", "cpu" (compiled C++/OpenMP kernels) and
"reference" (pure PyTorch). ``backend="auto"`` picks the fastest one that can run; the
``EBIR_FAST_BACKEND`` environment variable overrides "auto".
"""

from ebir_fast.ops._dispatch import (
    BACKENDS,
    BackendUnavailableError,
    available_backends,
    resolve_backend,
)
from ebir_fast.ops._gaussian import MAX_KERNEL_SIZE, default_kernel_size, gaussian_taps
from ebir_fast.ops.blur import BlurMSELoss, GaussianBlur, blur_mse, gaussian_blur
from ebir_fast.ops.filter2d import MAX_FILTER_SIZE, filter2d
from ebir_fast.ops.jpeg import jpeg_roundtrip
from ebir_fast.ops.noise import add_noise
from ebir_fast.ops.quantize import quantize_8bit
from ebir_fast.ops.reference import jpeg_quality_factor, jpeg_tables
from ebir_fast.ops.resize import resize_ragged

__all__ = [
    "BACKENDS",
    "MAX_FILTER_SIZE",
    "MAX_KERNEL_SIZE",
    "BackendUnavailableError",
    "BlurMSELoss",
    "GaussianBlur",
    "add_noise",
    "available_backends",
    "blur_mse",
    "default_kernel_size",
    "filter2d",
    "gaussian_blur",
    "gaussian_taps",
    "jpeg_quality_factor",
    "jpeg_roundtrip",
    "jpeg_tables",
    "quantize_8bit",
    "resize_ragged",
    "resolve_backend",
]
