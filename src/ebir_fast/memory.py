"""Process-wide CPU memory reuse for pipelines that allocate large tensors again and again.

torch's CPU allocator hands large blocks straight to the C library, and glibc serves blocks above
its mmap threshold (at most 32 MiB) with a fresh mapping and returns freed memory to the system.
Every new image-sized tensor then page-faults all of its pages in: for the degradation pipelines
at 8 x 3 x 512 x 512 that is about 40% of the time. :func:`keep_freed_memory` makes glibc serve
them from the heap and keep freed memory for reuse. It changes the whole process (freed memory is
not returned to the system, up to ``max_bytes``), so it is opt-in; ``ebir-fast degrade`` turns it
on for its own process.
"""

from __future__ import annotations

from ebir_fast._ext import extension, extension_error

__all__ = ["keep_freed_memory"]


def keep_freed_memory(max_bytes: int = 2**31 - 1) -> bool:
    """Keep up to ``max_bytes`` of freed memory mapped for reuse (glibc ``mallopt``).

    Returns True when applied, False where it cannot be (not glibc, or the compiled core is
    missing). There is no way back short of restarting the process; call it early, once.
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise TypeError(f"max_bytes: expected an int, got {type(max_bytes).__name__}")
    if not 0 < max_bytes <= 2**31 - 1:
        raise ValueError(f"max_bytes: expected 1 .. {2**31 - 1} (a C int), got {max_bytes}")
    if extension_error("_C") is not None:
        return False
    return bool(extension("_C").keep_freed_memory(max_bytes))
