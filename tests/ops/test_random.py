"""Counter-based uniforms, Poisson sampling by inversion, and the per-sample level histogram."""

from __future__ import annotations

import pytest
import torch

from ebir_fast.ops.random import POISSON_BACKENDS, level_histogram, poisson_levels
from ebir_fast.ops.reference import counter_uniform_reference, poisson_cdf_tables, stream_key
from tests.ops.helpers import fast_backend_params

BACKENDS = [p for p in fast_backend_params() if p.values[0] in POISSON_BACKENDS]


def test_stream_key_is_splitmix64():
    # SplitMix64's finaliser of 0 and 1 (outputs of the reference C implementation by Vigna for
    # state 0 - gamma and 1 - gamma, i.e. mix(0) and mix(1)).
    assert stream_key(0) == 0
    assert stream_key(1) == 0x5692161D100B05E5


def test_uniforms_are_a_pure_function_of_the_counter():
    whole = counter_uniform_reference(5, 1000)
    assert torch.equal(counter_uniform_reference(5, 300, offset=700), whole[700:])
    assert not torch.equal(counter_uniform_reference(6, 1000), whole)
    assert bool(((whole > 0) & (whole < 1)).all())
    big = counter_uniform_reference(11, 200_000)
    assert abs(float(big.mean()) - 0.5) < 3e-3
    assert abs(float(big.var()) - 1 / 12) < 2e-3
    hist = torch.histc(big.float(), bins=20, min=0, max=1)
    assert float(((hist - 10_000) ** 2 / 10_000).sum()) < 43.8  # chi-square, 19 dof, p = 0.001


@pytest.mark.parametrize("backend", BACKENDS)
def test_cpu_kernel_reproduces_the_reference_exactly(backend):
    g = torch.Generator().manual_seed(0)
    levels = torch.randint(0, 256, (3, 3, 17, 9), generator=g).float()
    scale = torch.tensor([1.0, 256 / 255, 4 / 255], dtype=torch.float64)
    got = poisson_levels(levels, scale, seed=9, offset=5, backend=backend)
    want = poisson_levels(levels, scale, seed=9, offset=5, backend="reference")
    assert torch.equal(got, want)


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
@pytest.mark.parametrize("rate", [0.0, 0.1, 1.0, 5.0, 9.9, 50.0, 256.0])
def test_poisson_moments(backend, rate):
    # level 255 with scale rate / 255 gives the rate exactly.
    n = 40_000
    levels = torch.full((1, n), 255.0)
    counts = poisson_levels(
        levels, torch.tensor([rate / 255.0], dtype=torch.float64), 3, backend=backend
    )
    assert counts.dtype == torch.float32
    if rate == 0.0:
        assert counts.abs().sum() == 0
        return
    se = (rate / n) ** 0.5
    assert abs(float(counts.mean()) - rate) < 5 * se
    assert abs(float(counts.var()) / rate - 1) < 0.06


def test_poisson_goodness_of_fit():
    stats = pytest.importorskip("scipy.stats")
    n, rate = 50_000, 7.0
    counts = poisson_levels(torch.full((1, n), 255.0), torch.tensor([rate / 255.0]), 17).long()
    observed = torch.bincount(counts.flatten(), minlength=30)[:20].double()
    expected = torch.tensor(stats.poisson.pmf(range(20), rate)) * n
    keep = expected > 5
    chi2 = float(((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum())
    assert chi2 < stats.chi2.ppf(0.999, int(keep.sum()) - 1)


def test_cdf_tables_end_in_one_and_cover_the_tail():
    cdf = poisson_cdf_tables(torch.tensor([0.0, 1.0, 256 / 255]))
    assert cdf.shape[:2] == (3, 256)
    assert torch.equal(cdf[..., -1], torch.ones(3, 256))
    assert bool((cdf[..., 1:] >= cdf[..., :-1]).all())
    assert float(cdf[0, 255, 0]) == 1.0  # rate 0: always 0
    assert float(1 - cdf[2, 255, -2]) < 1e-12  # the truncated tail is lost in the rounding


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
def test_level_histogram(backend):
    g = torch.Generator().manual_seed(1)
    levels = torch.randint(0, 256, (3, 3, 11, 13), generator=g).float()
    sizes = torch.tensor([[11, 13], [4, 7], [1, 1]])
    hist = level_histogram(levels, sizes, backend=backend)
    for b, (h, w) in enumerate(sizes.tolist()):
        want = torch.bincount(levels[b, :, :h, :w].long().flatten(), minlength=256)
        assert torch.equal(hist[b], want)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"levels: expected integer values in 0\.\.255"):
        poisson_levels(torch.full((1, 4), 256.0), torch.ones(1), 0)
    with pytest.raises(ValueError, match="levels: expected integer values"):
        poisson_levels(torch.full((1, 4), 1.5), torch.ones(1), 0)
    with pytest.raises(ValueError, match=r"rate_scale: expected a \[2\] tensor"):
        poisson_levels(torch.zeros(2, 4), torch.ones(3), 0)
    with pytest.raises(ValueError, match="rate_scale: expected finite values >= 0"):
        poisson_levels(torch.zeros(1, 4), torch.tensor([-1.0]), 0)
