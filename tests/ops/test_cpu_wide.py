"""The CPU kernels' 64-byte (AVX-512) row kernels give the same bits as the 32-byte ones.

On an x86-64-v4 machine the filter rows run in zmm registers unless ``EBIR_FAST_CPU_WIDE=0``; each
output is summed in the same order either way, so a subprocess with the wide path off must
reproduce this process's results exactly, forward and backward.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from ebir_fast import build_info
from ebir_fast.ops import available_backends

pytestmark = [
    pytest.mark.skipif(
        available_backends("cpu")["cpu"] != "available", reason="CPU extension not built"
    ),
    pytest.mark.skipif(
        not build_info().get("cpu_wide_vectors", False),
        reason="no AVX-512 (x86-64-v4) here: the 32-byte kernels are the only path",
    ),
]

# Widths that leave every kind of row tail (whole 48-float blocks, 16- and 8-wide vectors, scalars)
# and kernels that take the block path (21 x 21, support 13) and the separable path.
_SCRIPT = """
import sys, torch
from ebir_fast.ops import filter2d
from ebir_fast.degrade.kernels import anisotropic_kernels
torch.manual_seed(0)
out = {}
for dtype in (torch.float32, torch.float64):
    for w in (203, 64, 37):
        x = torch.rand(3, 3, 29, w, dtype=dtype, requires_grad=True)
        sizes = torch.tensor([[29, w], [17, w - 5], [29, 9]])
        n = torch.full((3,), 13)
        s1 = torch.tensor([2.5, 1.2, 3.0], dtype=torch.float64)
        s2 = torch.tensor([0.7, 1.2, 3.0], dtype=torch.float64)
        theta = torch.tensor([0.6, 0.0, 0.0], dtype=torch.float64)
        one, zero = torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.long)
        kernels = {
            "dense21": torch.rand(3, 21, 21, dtype=dtype),
            "aniso13": anisotropic_kernels(n, s1, s2, theta, one, zero).to(dtype),
            "iso13": anisotropic_kernels(n, s2, s2, 0 * theta, one, zero).to(dtype),
        }
        for name, k in kernels.items():
            k = k.clone().requires_grad_()
            y = filter2d(x, k, sizes)
            gx, gk = torch.autograd.grad((y * torch.linspace(-1, 1, w, dtype=dtype)).sum(), (x, k))
            out[f"{dtype}-{w}-{name}"] = (y.detach(), gx, gk)
torch.save(out, sys.argv[1])
"""


def _run(path, wide: bool) -> dict:
    env = {**os.environ, "EBIR_FAST_CPU_WIDE": "1" if wide else "0"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT), str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return torch.load(path, weights_only=True)


def test_wide_and_narrow_filter2d_agree_bit_for_bit(tmp_path):
    wide = _run(tmp_path / "wide.pt", wide=True)
    narrow = _run(tmp_path / "narrow.pt", wide=False)
    assert wide.keys() == narrow.keys()
    assert len(wide) == 18
    for key in wide:
        for a, b in zip(wide[key], narrow[key], strict=True):
            assert torch.equal(a, b), key


def test_the_switch_is_reported():
    code = "import ebir_fast; print(ebir_fast.build_info()['cpu_wide_vectors'])"
    env = {**os.environ, "EBIR_FAST_CPU_WIDE": "0"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
