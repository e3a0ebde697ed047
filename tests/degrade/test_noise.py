"""Noise: per-sample unique-level counts, gray noise, Poisson statistics, replay."""

import numpy as np
import pytest
import torch

from ebir_fast.degrade.noise import unique_levels
from ebir_fast.degrade.ragged import full_sizes
from ebir_fast.degrade.stages import NoiseParams, apply_noise


def test_unique_levels_matches_torch_unique_per_sample():
    g = torch.Generator().manual_seed(0)
    x8 = torch.randint(0, 256, (3, 3, 20, 30), generator=g)
    x8[1] = torch.randint(10, 14, (3, 20, 30), generator=g)
    x8[2] = 7
    sizes = torch.tensor([[20, 30], [5, 7], [20, 30]])
    got = unique_levels(x8, sizes)
    want = [x8[b, :, : sizes[b, 0], : sizes[b, 1]].unique().numel() for b in range(3)]
    assert got.tolist() == want
    assert want[2] == 1


def test_vals_is_256_for_a_typical_photo():
    from skimage import data

    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].double()
    count = unique_levels(img, full_sizes(img))
    assert 2.0 ** np.ceil(np.log2(count.item())) == 256


def _params(gaussian, sigma, gray, scale, seed=0):
    f64 = torch.float64
    return NoiseParams(
        torch.tensor(gaussian),
        torch.tensor(sigma, dtype=f64),
        torch.tensor(gray),
        torch.tensor(scale, dtype=f64),
        seed,
    )


def test_gray_noise_is_equal_across_channels():
    x = torch.full((4, 3, 8, 8), 0.5)
    y = apply_noise(
        x,
        full_sizes(x),
        _params(
            [True] * 2 + [False] * 2, [10.0] * 4, [True, False, True, False], [1.0] * 4, seed=3
        ),
    )
    n = y - x
    assert torch.equal(n[0, 0], n[0, 1])
    assert torch.equal(n[0, 0], n[0, 2])
    assert not torch.equal(n[1, 0], n[1, 1])
    assert torch.equal(n[2, 0], n[2, 2])


def test_gaussian_noise_statistics():
    x = torch.full((2, 3, 128, 128), 0.5)
    n = (
        apply_noise(
            x,
            full_sizes(x),
            _params([True, True], [10.0, 20.0], [False, False], [1.0, 1.0], seed=5),
        )
        - x
    )
    for b, sigma in enumerate((10.0, 20.0)):
        assert abs(n[b].std().item() * 255 / sigma - 1) < 0.02
        assert abs(n[b].mean().item()) < 3e-3 * sigma / 255 * 10


def test_poisson_noise_statistics_and_gray():
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.1
    n = (
        apply_noise(
            x, full_sizes(x), _params([False, False], [0.0, 0.0], [False, True], [1.0, 1.0])
        )
        - x
    )
    # Poisson(lam)/vals - lam/vals has variance x8 / vals (vals = 256 here), on top of the
    # rounding of x to 8 bits (variance 1 / (12 * 255^2)).
    x8 = torch.round(x[0] * 255) / 255
    ratio = (n[0].var() / (x8.mean() / 256 + 1 / (12 * 255**2))).item()
    assert 0.9 < ratio < 1.1
    assert abs(n.mean().item()) < 2e-3


def test_apply_noise_replays_and_respects_extents():
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    sizes = torch.tensor([[16, 16], [9, 5], [1, 1]])
    x = x * (torch.arange(16).view(1, 1, -1, 1) < sizes[:, 0].view(-1, 1, 1, 1))
    x = x * (torch.arange(16).view(1, 1, 1, -1) < sizes[:, 1].view(-1, 1, 1, 1))
    p = NoiseParams(
        gaussian=torch.tensor([True, False, True]),
        sigma=torch.tensor([20.0, 20.0, 20.0], dtype=torch.float64),
        gray=torch.tensor([False, True, True]),
        poisson_scale=torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64),
        seed=11,
    )
    a, b = apply_noise(x, sizes, p), apply_noise(x, sizes, p)
    assert torch.equal(a, b)
    assert a.min() >= 0
    assert a.max() <= 1
    assert a[1, :, 9:].abs().sum() == 0
    assert a[1, :, :, 5:].abs().sum() == 0
    assert a[2, :, 1:].abs().sum() == 0
    assert not torch.equal(a[0], x[0])
    inactive = apply_noise(x, sizes, p, active=torch.tensor([False, False, False]))
    assert torch.equal(inactive, x.clamp(0, 1))


def test_gaussian_noise_passes_gradients_poisson_does_not():
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64).mul(0.5).add(0.25).requires_grad_()
    p = NoiseParams(
        torch.tensor([True, False]),
        torch.tensor([5.0, 5.0], dtype=torch.float64),
        torch.tensor([False, False]),
        torch.tensor([1.0, 1.0], dtype=torch.float64),
        0,
    )
    apply_noise(x, full_sizes(x), p).sum().backward()
    # d/dx clamp(x + n) = 1 inside [0, 1] for both: Poisson noise is drawn from x.detach()
    assert torch.isfinite(x.grad).all()
    assert (x.grad > 0).float().mean() > 0.9


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_noise_keeps_dtype(dtype):
    x = torch.rand(2, 3, 8, 8, dtype=dtype)
    p = NoiseParams(
        torch.tensor([True, False]),
        torch.tensor([5.0, 5.0], dtype=torch.float64),
        torch.tensor([True, True]),
        torch.tensor([1.0, 1.0], dtype=torch.float64),
        0,
    )
    assert apply_noise(x, full_sizes(x), p).dtype == dtype
