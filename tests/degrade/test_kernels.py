"""Blur kernel families: the invariants of docs/degradation.md section 1."""

import math

import numpy as np
import pytest
import torch
from scipy import special

from ebir_fast.degrade.kernels import (
    FAMILIES,
    KERNEL_SIZE,
    KernelConfig,
    anisotropic_kernels,
    box_kernels,
    defocus_kernels,
    motion_kernels,
    pulse_kernels,
    sample_kernels,
    sinc_kernels,
)

C = KERNEL_SIZE // 2


def _all_families(sinc_prob=0.0):
    return KernelConfig(family_probs=dict.fromkeys(FAMILIES, 1.0), sinc_prob=sinc_prob)


@pytest.mark.parametrize("seed", range(3))
def test_sampled_kernels_sum_to_one_and_are_point_symmetric(seed):
    kernels, _ = sample_kernels(200, _all_families(0.3), torch.Generator().manual_seed(seed))
    assert kernels.shape == (200, KERNEL_SIZE, KERNEL_SIZE)
    assert kernels.dtype == torch.float64
    assert torch.isfinite(kernels).all()
    torch.testing.assert_close(kernels.sum((1, 2)), torch.ones(200, dtype=torch.float64))
    torch.testing.assert_close(kernels, kernels.flip(1, 2), rtol=0, atol=1e-15)


def test_support_is_the_drawn_size_centred_in_the_frame():
    cfg = KernelConfig(sizes=(7,), family_probs={"iso": 1.0}, sigma_range=(3.0, 3.0))
    kernels, _ = sample_kernels(4, cfg, torch.Generator().manual_seed(0))
    inside = torch.zeros(KERNEL_SIZE, KERNEL_SIZE, dtype=torch.bool)
    inside[C - 3 : C + 4, C - 3 : C + 4] = True
    assert (kernels[:, ~inside] == 0).all()
    assert (kernels[:, inside] > 0).all()


def test_pulse_is_the_identity():
    k = pulse_kernels(3)
    assert k[:, C, C].eq(1).all()
    assert k.sum() == 3


def test_isotropic_gaussian_matches_the_formula():
    sigma = torch.tensor([1.7], dtype=torch.float64)
    k = anisotropic_kernels(
        torch.tensor([21]),
        sigma,
        sigma,
        torch.zeros(1),
        torch.ones(1),
        torch.zeros(1, dtype=torch.long),
    )[0]
    ax = np.arange(-C, C + 1)
    g = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * 1.7**2))
    np.testing.assert_allclose(k.numpy(), g / g.sum(), rtol=1e-12)


def test_anisotropic_rotation_by_90_degrees_swaps_the_axes():
    args = (torch.tensor([21]), torch.tensor([3.0]), torch.tensor([1.0]))
    beta, kind = torch.ones(1), torch.zeros(1, dtype=torch.long)
    k0 = anisotropic_kernels(*args, torch.tensor([0.0]), beta, kind)[0]
    k90 = anisotropic_kernels(*args, torch.tensor([math.pi / 2], dtype=torch.float64), beta, kind)[
        0
    ]
    torch.testing.assert_close(k90, k0.T, rtol=0, atol=1e-12)
    # Elongated along x (columns) at theta = 0.
    assert k0[C, C + 3] > k0[C + 3, C]


def test_plateau_and_generalized_shapes():
    s = torch.tensor([2.0], dtype=torch.float64)
    size, theta = torch.tensor([21]), torch.zeros(1)
    plateau = anisotropic_kernels(size, s, s, theta, torch.tensor([1.0]), torch.ones(1).long())[0]
    ax = np.arange(-C, C + 1)
    d2 = (ax[:, None] ** 2 + ax[None, :] ** 2) / 4.0
    ref = 1 / (d2 + 1)
    np.testing.assert_allclose(plateau.numpy(), ref / ref.sum(), rtol=1e-12)
    gen = anisotropic_kernels(size, s, s, theta, torch.tensor([2.0]), torch.zeros(1).long())[0]
    ref = np.exp(-0.5 * d2**2)
    np.testing.assert_allclose(gen.numpy(), ref / ref.sum(), rtol=1e-12)


def test_sinc_matches_scipy_bessel_and_has_negative_lobes():
    wc = 1.3
    k = sinc_kernels(torch.tensor([21]), torch.tensor([wc], dtype=torch.float64))[0].numpy()
    ax = np.arange(-C, C + 1)
    r = np.sqrt(ax[:, None] ** 2 + ax[None, :] ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = wc * special.j1(wc * r) / (2 * np.pi * r)
    ref[C, C] = wc**2 / (4 * np.pi)  # the centre value before normalisation
    # torch.special.bessel_j1 uses a rational approximation good to ~1e-8 absolute.
    np.testing.assert_allclose(k, ref / ref.sum(), rtol=0, atol=5e-8)
    assert k.min() < 0


def test_defocus_box_motion():
    sizes = torch.tensor([9])
    disk = defocus_kernels(sizes, torch.tensor([3.0], dtype=torch.float64))[0]
    assert disk[C, C] == disk.max()
    assert disk[C, C + 4] == 0
    assert disk[C, C + 2] > 0
    box = box_kernels(sizes)[0]
    assert torch.allclose(
        box[C - 4 : C + 5, C - 4 : C + 5], torch.full((9, 9), 1 / 81.0, dtype=torch.float64)
    )
    line = motion_kernels(sizes, torch.tensor([7.0]), torch.tensor([0.0]))[0]
    assert (line[C, C - 3 : C + 4] > 0).all()
    assert line[C + 1 :].abs().sum() == 0


def test_family_probabilities_are_respected():
    cfg = KernelConfig(family_probs={"iso": 1.0}, sinc_prob=0.5)
    _, is_sinc = sample_kernels(4000, cfg, torch.Generator().manual_seed(0))
    assert abs(is_sinc.double().mean().item() - 0.5) < 0.03


def test_same_generator_state_same_kernels():
    a = sample_kernels(16, _all_families(0.1), torch.Generator().manual_seed(5))
    b = sample_kernels(16, _all_families(0.1), torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0])
    assert torch.equal(a[1], b[1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sizes": (8,)}, "sizes"),
        ({"sizes": (23,)}, "sizes"),
        ({"family_probs": {"gaussian": 1.0}}, "family_probs"),
        ({"family_probs": {"iso": 0.0}}, "family_probs"),
        ({"sigma_range": (2.0, 1.0)}, "sigma_range"),
        ({"sinc_prob": 1.5}, "sinc_prob"),
    ],
)
def test_config_errors_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KernelConfig(**kwargs)
