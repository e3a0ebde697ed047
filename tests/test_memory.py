"""keep_freed_memory: argument checks and its effect where glibc is there (in a subprocess, since
it changes the whole process)."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
