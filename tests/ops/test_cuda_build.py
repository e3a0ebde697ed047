"""The CUDA kernels without a GPU: their arithmetic, and the compiled module.

The kernels' per-element arithmetic (csrc/include/ebir/blur_elements.h) also runs serially on the
CPU, through ebir_fast._C.blur_*_emulated, with the kernels' grid order and reduction trees: these
tests check that emulation against the reference and the CPU kernels. ebir_fast._C_cuda itself
imports without a driver, so its architectures and its ELF images are checked too; with a GPU the
kernels must reproduce the emulation bit for bit. Set EBIR_EXPECT_CUDA_BUILD=1 (CI does) to make a
missing ebir_fast._C_cuda a failure instead of a skip.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
from types import ModuleType

import pytest
import torch

from ebir_fast._ext import DTYPE_CODES, extension, extension_error
from ebir_fast.ops import _cpu
from ebir_fast.ops._gaussian import accumulation_dtype, gaussian_taps
from ebir_fast.ops.reference import (
    blur_mse_reference,
    gaussian_blur_adjoint_reference,
    gaussian_blur_reference,
)
from tests.ops.helpers import assert_close

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
LAYOUTS = ["contiguous", "channels_last", "strided"]

# (shape, sigma, kernel_size): several 32x8 tiles per plane and a partial last tile both ways;
# radius 9 > H, W (the reflection repeats); a single row; the largest radius, 127; radius 0.
CASES = [
    ((2, 3, 37, 41), 2.0, 13),
    ((1, 1, 5, 7), 3.0, 19),
    ((1, 1, 1, 9), 2.0, 13),
    ((1, 1, 20, 150), 40.0, 255),
    ((2, 1, 4, 5), 0.5, 1),
]

#: Emulation against the CPU kernels, relative to the largest magnitude: the same order of
#: operations, so a few ulps of float32/float64 where FMA contraction differs, and at most one ulp
#: of the output dtype where those ulps flip a rounding.
TIGHT = {
    torch.float32: 1e-6,
    torch.float64: 1e-14,
    torch.float16: torch.finfo(torch.float16).eps,
    torch.bfloat16: torch.finfo(torch.bfloat16).eps,
}

EXPECT_CUDA_BUILD = os.environ.get("EBIR_EXPECT_CUDA_BUILD", "") == "1"
DEFAULT_ARCHITECTURES = ("sm_80", "sm_90")


@pytest.fixture(scope="module", autouse=True)
def _cpu_core():
    """The CPU module runs the emulation; EBIR_FAST_NO_EXTENSION=1 turns it off."""
    if extension_error("_C"):
        pytest.skip(extension_error("_C"))


def _in_layout(t: torch.Tensor, layout: str) -> torch.Tensor:  # [B, C, H, W] -> same values
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last)
    if layout == "strided":
        # Every stride non-trivial: a permuted buffer, every other column.
        b, c, h, w = t.shape
        view = t.new_empty((h, c, 2 * w, b)).permute(3, 1, 0, 2)[..., ::2]
        return view.copy_(t)
    return t


def _image(shape, dtype, gen) -> torch.Tensor:  # [B, C, H, W], contiguous
    return torch.rand(shape, generator=gen, dtype=torch.float64).to(dtype)


def _output(shape, dtype, layout) -> torch.Tensor:  # [B, C, H, W], NaN so unwritten elements show
    return _in_layout(torch.full(shape, float("nan"), dtype=dtype), layout)


def _workspace(shape, taps: torch.Tensor) -> torch.Tensor:  # [bytes], uint8
    nbytes = extension("_C").cuda_workspace_bytes(shape, DTYPE_CODES[taps.dtype])
    return torch.empty(nbytes, dtype=torch.uint8)


def emulated_fwd(
    x: torch.Tensor,  # [B, C, H, W]
    y: torch.Tensor | None,  # [B, C, H, W]
    taps: torch.Tensor,  # [2R + 1], accumulation dtype
    out: torch.Tensor,  # [B, C, H, W], written
    sumsq: torch.Tensor | None,  # [B], accumulation dtype, written
) -> None:
    """_cpu.blur_fwd's contract, computed as the CUDA kernels compute it."""
    shape = _cpu.shape(x, taps)
    workspace = _workspace(shape, taps)  # held: the kernels only see its address
    extension("_C").blur_fwd_emulated(
        shape,
        _cpu.view(x),
        _cpu.view(y),
        taps.data_ptr(),
        _cpu.view(out),
        0 if sumsq is None else sumsq.data_ptr(),
        workspace.data_ptr(),
    )


def emulated_bwd(
    grad: torch.Tensor,  # [B, C, H, W]
    taps: torch.Tensor,  # [2R + 1], accumulation dtype
    scale: torch.Tensor | None,  # [B], accumulation dtype
    out_x: torch.Tensor,  # [B, C, H, W], written
    out_y: torch.Tensor | None,  # [B, C, H, W], written
) -> None:
    """_cpu.blur_bwd's contract, computed as the CUDA kernels compute it."""
    shape = _cpu.shape(grad, taps)
    workspace = _workspace(shape, taps)
    extension("_C").blur_bwd_emulated(
        shape,
        _cpu.view(grad),
        taps.data_ptr(),
        0 if scale is None else scale.data_ptr(),
        _cpu.view(out_x),
        _cpu.view(out_y),
        workspace.data_ptr(),
    )


def assert_tight(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    a, e = actual.double(), expected.double()
    atol = TIGHT[dtype] * float(e.abs().max().clamp_min(1e-30))
    torch.testing.assert_close(a, e, rtol=0.0, atol=atol)


# The references are slow (the adjoint is autograd through float64 convolutions), so each test
# computes them once and checks every layout against them.
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "sigma", "kernel_size"), CASES, ids=str)
def test_emulated_forward(shape, sigma, kernel_size, dtype):
    gen = torch.Generator().manual_seed(0)
    acc = accumulation_dtype(dtype)
    taps = gaussian_taps(sigma, kernel_size, acc)
    x, y = _image(shape, dtype, gen), _image(shape, dtype, gen)
    blurred = gaussian_blur_reference(x, sigma, kernel_size)  # [B, C, H, W], dtype
    blurred_diff = gaussian_blur_reference(x.to(acc) - y.to(acc), sigma, kernel_size)  # acc
    n = shape[1] * shape[2] * shape[3]
    sums = blur_mse_reference(x, y, sigma, kernel_size, reduction="none") * n  # [B], acc
    for layout in LAYOUTS:
        xl, yl = _in_layout(x, layout), _in_layout(y, layout)

        # gaussian_blur: x alone, no sum of squares.
        out, expected = _output(shape, dtype, layout), _output(shape, dtype, layout)
        emulated_fwd(xl, None, taps, out, None)
        _cpu.blur_fwd(xl, None, taps, expected, None)
        assert_close(out, blurred, dtype)
        assert_tight(out, expected, dtype)

        # blur_mse: the blurred difference, in the accumulation dtype, and its sums of squares.
        out, expected = _output(shape, acc, layout), _output(shape, acc, layout)
        sumsq, expected_sumsq = torch.full_like(sums, float("nan")), torch.empty_like(sums)
        emulated_fwd(xl, yl, taps, out, sumsq)
        _cpu.blur_fwd(xl, yl, taps, expected, expected_sumsq)
        assert_close(out, blurred_diff, acc)
        assert_tight(out, expected, acc)
        torch.testing.assert_close(sumsq, sums, rtol=10 * TIGHT[acc], atol=0.0)
        torch.testing.assert_close(sumsq, expected_sumsq, rtol=TIGHT[acc], atol=0.0)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("shape", "sigma", "kernel_size"), CASES, ids=str)
def test_emulated_backward(shape, sigma, kernel_size, dtype):
    gen = torch.Generator().manual_seed(1)
    acc = accumulation_dtype(dtype)
    taps = gaussian_taps(sigma, kernel_size, acc)
    # gaussian_blur's backward: a gradient of x's dtype. blur_mse's: an accumulation-dtype
    # gradient, scaled per sample, into x and y.
    grad = _image(shape, dtype, gen)
    grad_acc = _image(shape, acc, gen) - 0.5
    scale = torch.linspace(-2.0, 3.0, shape[0], dtype=acc)  # [B]
    adjoint = gaussian_blur_adjoint_reference(grad, sigma, kernel_size)  # [B, C, H, W], dtype
    adjoint_acc = gaussian_blur_adjoint_reference(grad_acc, sigma, kernel_size)  # acc
    scaled = adjoint_acc * scale.view(-1, 1, 1, 1)
    for layout in LAYOUTS:
        out_x, expected = _output(shape, dtype, layout), _output(shape, dtype, layout)
        emulated_bwd(_in_layout(grad, layout), taps, None, out_x, None)
        _cpu.blur_bwd(_in_layout(grad, layout), taps, None, expected, None)
        assert_close(out_x, adjoint, dtype)
        assert_tight(out_x, expected, dtype)

        gl = _in_layout(grad_acc, layout)
        out_x, out_y = _output(shape, dtype, layout), _output(shape, dtype, layout)
        expected_x, expected_y = _output(shape, dtype, layout), _output(shape, dtype, layout)
        emulated_bwd(gl, taps, scale, out_x, out_y)
        _cpu.blur_bwd(gl, taps, scale, expected_x, expected_y)
        assert_close(out_x, scaled, dtype)
        assert torch.equal(out_y, -out_x)
        assert_tight(out_x, expected_x, dtype)
        assert_tight(out_y, expected_y, dtype)


def test_workspace_bytes():
    def aligned(nbytes: int) -> int:
        return (nbytes + 255) // 256 * 256

    shape = (2, 3, 37, 41, 6)  # B, C, H, W, radius
    partials = 2 * 3 * 2 * 5  # planes * 32x8 tiles per plane
    for acc in (torch.float32, torch.float64):
        size = acc.itemsize
        nbytes = extension("_C").cuda_workspace_bytes(shape, DTYPE_CODES[acc])
        assert nbytes == aligned(2 * 3 * 37 * 41 * size) + aligned(partials * size)
    with pytest.raises(ValueError, match="float32 or float64"):
        extension("_C").cuda_workspace_bytes(shape, DTYPE_CODES[torch.float16])
    with pytest.raises(ValueError, match="positive"):
        extension("_C").cuda_workspace_bytes((2, 3, 0, 41, 6), DTYPE_CODES[torch.float32])


# ---- the compiled CUDA module --------------------------------------------------------------------


def _import_cuda_module() -> tuple[ModuleType | None, str]:
    try:
        return importlib.import_module("ebir_fast._C_cuda"), ""
    except ImportError as exc:
        return None, f"ebir_fast._C_cuda is not importable ({exc})"


@pytest.fixture(scope="module")
def cuda_module() -> ModuleType:
    module, error = _import_cuda_module()
    if module is None:
        pytest.skip(error)  # test_cuda_module_built fails instead when the build was expected
    return module


def _cuobjdump() -> str | None:
    """cuobjdump from PATH, else from the nvidia-cuda-cuobjdump wheel."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    try:
        files = importlib.metadata.files("nvidia-cuda-cuobjdump") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    return next((str(f.locate()) for f in files if f.name == "cuobjdump"), None)


def test_cuda_module_built():
    module, error = _import_cuda_module()
    if module is None:
        if EXPECT_CUDA_BUILD:
            pytest.fail(f"EBIR_EXPECT_CUDA_BUILD=1 but {error}")
        pytest.skip(error)


def test_cuda_architectures(cuda_module):
    assert set(DEFAULT_ARCHITECTURES) <= set(cuda_module.architectures)


def test_cuda_workspace_bytes_match_emulation(cuda_module):
    emulated = extension("_C").cuda_workspace_bytes
    for shape in [(2, 3, 37, 41, 6), (1, 1, 1, 9, 127)]:
        for code in (DTYPE_CODES[torch.float32], DTYPE_CODES[torch.float64]):
            assert cuda_module.workspace_bytes(shape, code) == emulated(shape, code)


def test_cuda_elf_images(cuda_module):
    tool = _cuobjdump()
    if tool is None:
        pytest.skip("no cuobjdump (PATH or `pip install nvidia-cuda-cuobjdump`)")
    listing = subprocess.run(
        [tool, "--list-elf", cuda_module.__file__], capture_output=True, text=True, check=True
    ).stdout
    images = set(re.findall(r"\.(sm_\d+[a-z]?)\.cubin", listing))
    assert set(DEFAULT_ARCHITECTURES) <= images, listing


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gpu_matches_emulation_bitwise(cuda_module, dtype):
    from ebir_fast.ops import _cuda

    shape, sigma, kernel_size = CASES[0]
    gen = torch.Generator().manual_seed(2)
    acc = accumulation_dtype(dtype)
    taps = gaussian_taps(sigma, kernel_size, acc)
    x, y = (_in_layout(_image(shape, dtype, gen), "strided") for _ in range(2))
    scale = torch.linspace(-2.0, 3.0, shape[0], dtype=acc)

    out, sumsq = torch.empty(shape, dtype=acc), torch.empty(shape[0], dtype=acc)
    emulated_fwd(x, y, taps, out, sumsq)
    out_x, out_y = torch.empty(shape, dtype=dtype), torch.empty(shape, dtype=dtype)
    emulated_bwd(out, taps, scale, out_x, out_y)

    taps_g = taps.cuda()
    out_g, sumsq_g = torch.empty_like(out, device="cuda"), torch.empty_like(sumsq, device="cuda")
    _cuda.blur_fwd(x.cuda(), y.cuda(), taps_g, out_g, sumsq_g)
    out_xg, out_yg = torch.empty_like(out_x, device="cuda"), torch.empty_like(out_y, device="cuda")
    _cuda.blur_bwd(out_g, taps_g, scale.cuda(), out_xg, out_yg)
    torch.cuda.synchronize()
    assert torch.equal(out_g.cpu(), out)
    assert torch.equal(sumsq_g.cpu(), sumsq)
    assert torch.equal(out_xg.cpu(), out_x)
    assert torch.equal(out_yg.cpu(), out_y)
