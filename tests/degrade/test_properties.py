"""Property-based tests: any seed, size and point of the preset ranges gives a valid output."""

import dataclasses

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ebir_fast.degrade import PRESETS, create_degrader, elq, lq

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True)


def _check(d, x, seed):
    y = d(x, torch.Generator().manual_seed(seed))
    assert y.shape == (x.shape[0], 3, *d.output_size(tuple(x.shape[-2:])))
    assert torch.isfinite(y).all()
    assert y.min() >= 0
    assert y.max() <= 1
    assert torch.equal(torch.round(y * 255) / 255, y)  # the 1/255 grid
    assert torch.equal(d(x, torch.Generator().manual_seed(seed)), y)  # determinism
    return y


@SETTINGS
@given(
    preset=st.sampled_from(sorted(PRESETS)),
    seed=st.integers(0, 2**63 - 1),
    batch=st.integers(1, 3),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
)
def test_any_seed_and_size(preset, seed, batch, height, width):
    x = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed % 1000))
    _check(create_degrader(preset), x, seed)


def _point(lo_hi, t):
    lo, hi = lo_hi
    v = lo + (hi - lo) * t
    return (v, v)


@SETTINGS
@given(
    base=st.sampled_from([lq, elq]),
    t=st.lists(st.floats(0.0, 1.0), min_size=8, max_size=8),
    seed=st.integers(0, 2**31),
)
def test_every_point_of_the_preset_ranges(base, t, seed):
    # Collapse every range of the preset to one point inside it (extremes included), so the
    # corners of the ranges are exercised, not only typical draws.
    cfg = base()

    def stage(s, offset):
        kernel = dataclasses.replace(
            s.kernel,
            sigma_range=_point(s.kernel.sigma_range, t[offset]),
            betag_range=_point(s.kernel.betag_range, t[offset + 1]),
        )
        return dataclasses.replace(
            s,
            kernel=kernel,
            noise_range=_point(s.noise_range, t[offset + 2]),
            poisson_scale_range=_point(s.poisson_scale_range, t[offset + 2]),
            jpeg_range=_point(s.jpeg_range, t[offset + 3]),
        )

    cfg = dataclasses.replace(
        cfg,
        stage1=stage(cfg.stage1, 0),
        stage2=stage(cfg.stage2, 4),
        scale_range=_point(cfg.scale_range, t[0]),
    )
    x = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(seed))
    _check(create_degrader(cfg), x, seed)
