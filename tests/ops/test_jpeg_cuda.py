"""The CUDA JPEG kernel without a GPU: its arithmetic through the CPU emulation, and the compiled
module's entry point (a missing CUDA module fails under EBIR_EXPECT_CUDA_BUILD=1)."""

from __future__ import annotations

import pytest
import torch

from ebir_fast._ext import DTYPE_CODES, extension, extension_error
from ebir_fast.ops import _cpu, jpeg_tables
from ebir_fast.ops.reference import dct_matrix, jpeg_roundtrip_reference
from tests.ops.helpers import cuda_module_or_skip
from tests.ops.test_jpeg import SHAPES, _images, _qualities, _sizes

pytestmark = pytest.mark.skipif(extension_error("_C") is not None, reason="no CPU core")


def emulated(x, quality, sizes):
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    luma, chroma = jpeg_tables(quality, acc)
    tables = torch.stack([luma, chroma], dim=1).contiguous()
    out = torch.zeros_like(x)
    mask = torch.zeros(x.shape, dtype=torch.uint8)
    dct = dct_matrix(acc).contiguous()
    b, _, h, w = x.shape
    extension("_C").jpeg_fwd_emulated(
        (b, h, w, DTYPE_CODES[acc]),
        tables.data_ptr(),
        sizes.contiguous().data_ptr(),
        _cpu.view(x),
        _cpu.view(out),
        mask.data_ptr(),
        dct.data_ptr(),
    )
    return out, mask


@pytest.mark.parametrize("shape", SHAPES)
def test_emulation_matches_reference_in_float64(shape):
    b, h, w = shape
    x, q, sizes = _images(b, h, w, torch.float64), _qualities(b), _sizes(b, h, w)
    out, mask = emulated(x, q, sizes)
    torch.testing.assert_close(out, jpeg_roundtrip_reference(x, q, sizes), rtol=0, atol=1e-12)
    assert mask[0].all()  # smooth content in [0, 1] never reaches the clamp


def test_emulation_in_float32_rounds_like_the_reference_but_rare_ties():
    x, q, sizes = _images(4, 40, 56), _qualities(4), _sizes(4, 40, 56)
    out, _ = emulated(x, q, sizes)
    diff = (out.double() - jpeg_roundtrip_reference(x, q, sizes).double()).abs()
    assert (diff > 1e-6).float().mean() < 2e-3
    assert diff.max() < 0.2


def test_cuda_module_has_the_kernel():
    assert hasattr(cuda_module_or_skip(), "jpeg_fwd")
