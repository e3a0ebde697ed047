"""The benchmark's per-image baseline agrees with the batched pipeline when the noise is off.

Both run the same draws; noise fields come from different random streams, so the comparison sets
every sample's noise to Gaussian with sigma 0. What remains (blur, resize, JPEG, the final step's
order, rounding) must agree up to float rounding (the batched resize kernel and F.interpolate
differ by ~1e-6), which can flip a rare 8-bit level or a JPEG coefficient.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from ebir_fast.degrade import create_degrader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.baselines.per_image_degrade import degrade_batch


def _silence(noise) -> None:
    noise.gaussian[:] = True
    noise.sigma[:] = 0.0


@pytest.mark.parametrize("preset", ["lq", "elq"])
def test_baseline_matches_the_batched_pipeline_without_noise(preset):
    degrader = create_degrader(preset)
    x = torch.nn.functional.avg_pool2d(torch.rand(3, 3, 64, 64), 3, 1, 1)
    for seed in range(3):
        params = degrader.sample(3, (64, 64), torch.Generator().manual_seed(seed))
        _silence(params.stage1.noise)
        _silence(params.stage2.noise)
        ours = degrader.apply(x, params)
        theirs = torch.stack(degrade_batch(x, params))
        assert theirs.shape == ours.shape
        levels = ((ours - theirs).abs() * 255).round()
        assert (levels > 0).float().mean() < 1e-2, (preset, seed)
        assert levels.max() <= 2


def test_baseline_output_is_8bit_and_in_range():
    degrader = create_degrader("elq")
    x = torch.rand(2, 3, 48, 40)
    params = degrader.sample(2, (48, 40), torch.Generator().manual_seed(0))
    for img in degrade_batch(x, params):
        assert img.shape == (3, 48, 40)
        assert img.min() >= 0
        assert img.max() <= 1
        assert torch.equal(img, torch.round(img * 255) / 255)
