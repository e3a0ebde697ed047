"""ebir-fast: extreme blind image restoration, fast.

Importing the package needs only torch: the compiled kernels, triton and tensorrt are optional and
loaded when first used; a missing piece is reported then, with the reason.
"""

from ebir_fast import ops
from ebir_fast._ext import build_info
from ebir_fast.api import load_pipeline, restore
from ebir_fast.memory import keep_freed_memory

__version__ = "0.1.0"

__all__ = ["__version__", "build_info", "keep_freed_memory", "load_pipeline", "ops", "restore"]
