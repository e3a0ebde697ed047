"""keep_freed_memory: argument checks and its effect where glibc is there (in a subprocess, since
it changes the whole process)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from ebir_fast import keep_freed_memory
from ebir_fast._ext import extension_error
from ebir_fast.memory import cpu_cache_info, empty_cpu_cache, set_cpu_cache_limit
from ebir_fast.ops._cpu import POOL_MIN_BYTES, empty_like


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (2**31, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_errors_name_the_argument(value, error):
    with pytest.raises(error, match="max_bytes"):
        keep_freed_memory(value)


def test_applies_in_a_fresh_process():
    code = (
        "import ebir_fast, platform\n"
        "ok = ebir_fast.keep_freed_memory()\n"
        "glibc = platform.libc_ver()[0] == 'glibc'\n"
        "from ebir_fast._ext import extension_error\n"
        "assert ok == (glibc and extension_error('_C') is None), (ok, glibc)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


needs_core = pytest.mark.skipif(extension_error("_C") is not None, reason="needs ebir_fast._C")


@pytest.fixture
def cache():
    """The CPU block cache, empty, with its limit restored afterwards."""
    limit = cpu_cache_info()["limit"]
    empty_cpu_cache()
    yield
    set_cpu_cache_limit(limit)
    empty_cpu_cache()


@needs_core
@pytest.mark.parametrize("channels_last", [False, True])
def test_empty_like_keeps_torch_semantics(cache, channels_last):
    x = torch.rand(2, 3, 512, 1024)  # 12 MiB: from the cache
    assert x.nbytes >= POOL_MIN_BYTES
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    want, got = torch.empty_like(x), empty_like(x)
    assert (got.shape, got.dtype, got.stride()) == (want.shape, want.dtype, want.stride())
    assert got.data_ptr() % (2 << 20) == 0  # on a huge-page boundary
    sized = empty_like(x.double(), 1, 3, 700, 700)
    assert (sized.shape, sized.dtype, sized.is_contiguous()) == (
        (1, 3, 700, 700),
        torch.float64,
        True,
    )
    got.fill_(2.0)
    sized.fill_(3.0)  # two live tensors never share memory
    assert bool((got == 2.0).all())
    small = empty_like(torch.rand(4, 4))  # below the threshold: torch's own allocation
    assert small.shape == (4, 4)
    assert cpu_cache_info()["misses"] >= 2


@needs_core
def test_blocks_are_reused_only_after_their_storage_dies(cache):
    x = torch.rand(4, 3, 512, 512)  # 12 MiB
    t = empty_like(x)
    ptr, view = t.data_ptr(), t[1:]
    del t
    assert cpu_cache_info()["cached_blocks"] == 0  # the view still holds the storage
    del view
    assert cpu_cache_info()["cached_blocks"] == 1
    hits = cpu_cache_info()["hits"]
    again = empty_like(x)
    assert again.data_ptr() == ptr
    assert cpu_cache_info()["hits"] == hits + 1
    del again
    bigger = empty_like(x, 8, 3, 512, 512)  # twice the size: the cached block does not fit
    assert cpu_cache_info()["cached_blocks"] == 1
    smaller = empty_like(x, 4, 3, 500, 512)  # within 25%: reused
    assert smaller.data_ptr() == ptr
    del bigger, smaller


@needs_core
def test_limit_and_empty(cache):
    x = torch.rand(4, 3, 512, 512)
    set_cpu_cache_limit(0)
    t = empty_like(x)
    del t
    assert cpu_cache_info()["cached_bytes"] == 0  # returned to the system at once
    set_cpu_cache_limit(64 << 20)
    blocks = [empty_like(x, 4, 3, 512, 512 + 64 * i) for i in range(6)]  # ~12-21 MiB each
    del blocks
    info = cpu_cache_info()
    assert 0 < info["cached_bytes"] <= 64 << 20
    empty_cpu_cache()
    assert cpu_cache_info()["cached_bytes"] == 0
    with pytest.raises(ValueError, match="max_bytes"):
        set_cpu_cache_limit(-1)
    with pytest.raises(TypeError, match="max_bytes"):
        set_cpu_cache_limit(1.5)


@needs_core
def test_cached_tensors_cross_processes():
    """Pooled outputs pickle and travel from DataLoader workers (forked after the cache is used)."""
    import pickle

    from torch.utils.data import DataLoader, Dataset

    x = torch.rand(2, 3, 512, 512)
    assert torch.equal(pickle.loads(pickle.dumps(empty_like(x).copy_(x))), x)

    class Batches(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return empty_like(x).copy_(x) + i

    for i, batch in enumerate(DataLoader(Batches(), batch_size=None, num_workers=2)):
        assert torch.equal(batch, x + i)
