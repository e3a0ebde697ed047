"""CPU memory reuse for pipelines that allocate large tensors again and again.

torch's CPU allocator hands large blocks straight to the C library, and glibc serves blocks above
its mmap threshold (at most 32 MiB) with a fresh mapping and returns freed memory to the system.
Every new image-sized tensor then page-faults all of its pages in: for the degradation pipelines
at 8 x 3 x 512 x 512 that was about 40% of the time.

- The CPU kernels' large outputs come from a block cache of their own (on by default, at most
  :func:`set_cpu_cache_limit` bytes kept unused, 1 GiB unless changed): blocks are mapped once, on
  huge pages where the kernel offers them, and reused when the tensor owning one dies. Those
  tensors are ordinary CPU tensors, except that their storage cannot grow (``resize_`` to a larger
  size fails, as for ``torch.from_numpy``). :func:`cpu_cache_info` and :func:`empty_cpu_cache`
  inspect and release it.
- :func:`keep_freed_memory` does the same for every allocation of the process (torch's own
  included) through glibc's settings. It changes the whole process (freed memory is not returned
  to the system, up to ``max_bytes``), so it is opt-in; ``ebir-fast degrade`` turns it on for its
  own process.
"""

from __future__ import annotations

from ebir_fast._ext import extension, extension_error

__all__ = ["cpu_cache_info", "empty_cpu_cache", "keep_freed_memory", "set_cpu_cache_limit"]


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


def cpu_cache_info() -> dict[str, int]:
    """The CPU block cache: ``cached_bytes`` and ``cached_blocks`` kept unused, its ``limit``, and
    the ``hits`` / ``misses`` of its requests so far (all 0 without the compiled core)."""
    if extension_error("_C") is not None:
        return dict.fromkeys(("cached_bytes", "cached_blocks", "limit", "hits", "misses"), 0)
    return {k: int(v) for k, v in extension("_C").pool_stats().items()}


def empty_cpu_cache() -> None:
    """Return every unused block of the CPU cache to the system (blocks in use stay)."""
    if extension_error("_C") is None:
        extension("_C").pool_empty()


def set_cpu_cache_limit(max_bytes: int) -> None:
    """Keep at most ``max_bytes`` of unused blocks in the CPU cache (0: return each block to the
    system as soon as its tensor dies; the blocks are still on huge pages). Default 1 GiB."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise TypeError(f"max_bytes: expected an int, got {type(max_bytes).__name__}")
    if max_bytes < 0:
        raise ValueError(f"max_bytes: expected >= 0, got {max_bytes}")
    if extension_error("_C") is None:
        extension("_C").pool_set_limit(max_bytes)
