"""jpeg_roundtrip: the fused kernels against the reference, the tables, a Pillow sanity check."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from ebir_fast.ops import jpeg_quality_factor, jpeg_roundtrip, jpeg_tables
from ebir_fast.ops.jpeg import JPEG_BACKENDS
from ebir_fast.ops.reference import JPEG_LUMA_TABLE, jpeg_roundtrip_reference
from tests.ops.helpers import fast_backend_params, ragged_sizes

BACKENDS = [p for p in fast_backend_params() if p.values[0] in JPEG_BACKENDS]
SHAPES = [(3, 37, 29), (2, 5, 9), (2, 1, 1), (2, 48, 64), (1, 17, 33)]


def _images(b: int, h: int, w: int, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    """Smooth-ish random images (a blurred noise field), like photo content for a JPEG."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, h, w, generator=g, dtype=torch.float64)
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False).to(dtype)


_sizes = ragged_sizes


def _qualities(b: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, generator=torch.Generator().manual_seed(seed)) * 99 + 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_float64_matches_reference(backend, shape):
    b, h, w = shape
    x, q, sizes = _images(b, h, w, torch.float64), _qualities(b), _sizes(b, h, w)
    expected = jpeg_roundtrip_reference(x, q, sizes)
    torch.testing.assert_close(
        jpeg_roundtrip(x, q, sizes, backend=backend), expected, rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_lower_precisions_match_reference(backend, dtype):
    # Both sides compute in float32 but sum the DCTs in different orders, so a coefficient that
    # lands within an ulp of a rounding tie may quantise differently: rare, and one quantum at most.
    x, q, sizes = _images(4, 40, 56, dtype), _qualities(4), _sizes(4, 40, 56)
    got = jpeg_roundtrip(x, q, sizes, backend=backend).double()
    want = jpeg_roundtrip_reference(x, q, sizes).double()
    ulp = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
    off = (got - want).abs() > ulp
    assert off.float().mean() < 2e-3
    assert (got - want).abs().max() < 0.2


@pytest.mark.parametrize("backend", BACKENDS)
def test_strided_and_channels_last(backend):
    x, q = _images(2, 24, 40), _qualities(2)
    want = jpeg_roundtrip(x, q, backend=backend)
    assert torch.equal(
        jpeg_roundtrip(x.contiguous(memory_format=torch.channels_last), q, backend=backend), want
    )
    wide = torch.zeros(2, 3, 24, 80)
    wide[..., ::2] = x
    assert torch.equal(jpeg_roundtrip(wide[..., ::2], q, backend=backend), want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_reference(backend, shape):
    b, h, w = shape
    x = _images(b, h, w, torch.float64).requires_grad_()
    q, sizes = _qualities(b), _sizes(b, h, w)
    g = torch.randn(b, 3, h, w, dtype=torch.float64)
    (got,) = torch.autograd.grad(jpeg_roundtrip(x, q, sizes, backend=backend), x, g)
    (want,) = torch.autograd.grad(jpeg_roundtrip_reference(x, q, sizes), x, g)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_respects_the_clamp(backend):
    # Saturated pixels (far outside [0, 1]) get no gradient, exactly as the reference's clamp.
    x = _images(1, 16, 16, torch.float64)
    x[..., :4, :4] = 3.0
    x.requires_grad_()
    (got,) = torch.autograd.grad(jpeg_roundtrip(x, 90.0, backend=backend).sum(), x)
    (want,) = torch.autograd.grad(
        jpeg_roundtrip_reference(x, torch.tensor([90.0]), torch.tensor([[16, 16]])).sum(), x
    )
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
def test_extremes_are_finite(backend):
    # Gray content has no chroma to subsample, so q = 100 (tables of ones) is near exact.
    x = _images(2, 32, 32)[:, :1].expand(2, 3, 32, 32)
    lossless = jpeg_roundtrip(x, 100.0, backend=backend)
    assert (lossless - x).abs().max() < 3 / 255
    harsh = jpeg_roundtrip(x, torch.tensor([1.0, 0.5]), backend=backend)
    assert bool(torch.isfinite(harsh).all())
    assert harsh.min() >= 0
    assert harsh.max() <= 1


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
def test_zero_outside_the_extent_and_samples_are_independent(backend):
    x, q = _images(3, 20, 30), torch.tensor([20.0, 50.0, 80.0])
    sizes = torch.tensor([[20, 30], [7, 30], [20, 1]])
    out = jpeg_roundtrip(x, q, sizes, backend=backend)
    assert out[1, :, 7:].abs().sum() == 0
    assert out[2, :, :, 1:].abs().sum() == 0
    alone = jpeg_roundtrip(x[1:2, :, :7], q[1:2], backend=backend)
    torch.testing.assert_close(out[1:2, :, :7], alone, rtol=0, atol=1e-6)


def test_quality_factor_and_tables():
    q = torch.tensor([1.0, 30.0, 50.0, 95.0, 100.0])
    torch.testing.assert_close(
        jpeg_quality_factor(q), torch.tensor([50.0, 5 / 3, 1.0, 0.1, 0.0]), rtol=1e-6, atol=1e-7
    )
    luma, chroma = jpeg_tables(q)
    assert luma.shape == (5, 8, 8)
    assert chroma.shape == (5, 8, 8)
    assert luma.min() >= 1
    assert luma.max() <= 255
    assert torch.equal(luma[-1], torch.ones(8, 8))  # q = 100 (BasicSR divides by zero here)
    assert torch.equal(luma[2], torch.tensor(JPEG_LUMA_TABLE, dtype=torch.float32))
    assert torch.equal(
        luma[0], torch.full((8, 8), 255.0).minimum(torch.tensor(JPEG_LUMA_TABLE) * 50.0)
    )


@pytest.mark.parametrize("quality", [30, 75, 95])
def test_close_to_pillow_on_a_photograph(quality):
    data = pytest.importorskip("skimage.data")
    image = pytest.importorskip("PIL.Image")
    import numpy as np

    photo = data.astronaut()[100:300, 120:352]
    x = torch.from_numpy(photo).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    buf = io.BytesIO()
    image.fromarray(photo).save(buf, "JPEG", quality=quality, subsampling=2)
    pillow = (
        torch.from_numpy(np.array(image.open(buf))).permute(2, 0, 1).unsqueeze(0).float() / 255.0
    )

    def psnr(a, b):
        return float(-10 * torch.log10((a - b).square().mean()))

    ours = jpeg_roundtrip(x, float(quality))
    assert abs(psnr(ours, x) - psnr(pillow, x)) < 1.0
    assert psnr(ours, pillow) > 35.0


@pytest.mark.parametrize(
    ("x", "quality", "sizes", "match"),
    [
        (torch.rand(2, 2, 8, 8), 50.0, None, "3 \\(RGB\\) channels"),
        (torch.rand(2, 3, 8, 8), 0.0, None, r"quality: expected values in \(0, 100\]"),
        (torch.rand(2, 3, 8, 8), 101.0, None, r"quality: expected values in \(0, 100\]"),
        (torch.rand(2, 3, 8, 8), float("nan"), None, "quality"),
        (
            torch.rand(2, 3, 8, 8),
            torch.tensor([50.0, 60.0, 70.0]),
            None,
            r"quality: expected a number or shape \[2\]",
        ),
        (torch.rand(2, 3, 8, 8), "high", None, "quality: expected a number"),
        (torch.rand(2, 3, 8, 8), 50.0, torch.tensor([[8, 9], [8, 8]]), "sizes"),
    ],
)
def test_errors_name_the_argument(x, quality, sizes, match):
    with pytest.raises((ValueError, TypeError), match=match):
        jpeg_roundtrip(x, quality, sizes)


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
def test_inputs_are_clamped_first(backend):
    x = _images(2, 16, 24, torch.float64)
    wild = x.clone()
    wild[0, :, :4] = 1.7
    wild[1, :, :, :3] = -0.4
    clamped = wild.clamp(0, 1)
    q = torch.tensor([40.0, 80.0])
    assert torch.equal(
        jpeg_roundtrip(wild, q, backend=backend), jpeg_roundtrip(clamped, q, backend=backend)
    )
    wild.requires_grad_()
    (grad,) = torch.autograd.grad(jpeg_roundtrip(wild, q, backend=backend).sum(), wild)
    assert grad[0, :, :4].abs().sum() == 0  # no gradient where the input was clamped
    assert grad[1, :, :, :3].abs().sum() == 0
