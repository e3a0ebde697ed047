"""keep_freed_memory: argument checks and its effect where glibc is there (in a subprocess, since
it changes the whole process)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from ebir_fast import keep_freed_memory


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


def _thp_available() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


@pytest.mark.parametrize("channels_last", [False, True])
def test_empty_like_keeps_torch_semantics(channels_last):
    from ebir_fast.ops._cpu import HUGE_PAGE_MIN_BYTES, empty_like

    x = torch.rand(2, 3, 512, 1024)  # 12 MiB: above the huge-page size
    assert x.nbytes >= HUGE_PAGE_MIN_BYTES
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    want = torch.empty_like(x)
    got = empty_like(x)
    assert (got.shape, got.dtype, got.stride()) == (want.shape, want.dtype, want.stride())
    sized = empty_like(x.double(), 1, 3, 5, 7)
    assert (sized.shape, sized.dtype) == ((1, 3, 5, 7), torch.float64)


def test_advise_huge_pages_takes_the_aligned_interior():
    from ebir_fast._ext import extension, extension_error

    if extension_error("_C") is not None:
        pytest.skip(extension_error("_C"))
    advise = extension("_C").advise_huge_pages
    small = torch.empty(1024)
    assert advise(small.data_ptr(), small.nbytes) is False  # no whole 2 MiB page inside
    assert advise(small.data_ptr(), 0) is False
    big = torch.empty(16 << 20, dtype=torch.uint8)
    expected = sys.platform.startswith("linux") and _thp_available()
    assert advise(big.data_ptr(), big.nbytes) is expected
    big.fill_(1)  # the block stays ordinary memory
    assert int(big.sum()) == big.numel()
