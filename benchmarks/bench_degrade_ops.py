"""The degradation ops' fast paths against their references and the per-image way.

Setup: 8 x 3 x 512 x 512 float32 photographs (as bench_degrade.py), CPU, 2 threads, one run.
- filter2d: per-sample kernels of support 13 zero-padded to 21 (anisotropic Gaussians, not
  separable) and isotropic Gaussians (separable), forward and forward+backward; against the
  reference (one grouped conv2d) and a per-image reflect-pad + conv2d loop (BasicSR's filter2D).
- jpeg_roundtrip: per-sample qualities 30 - 95; against the reference and a per-image loop of it.
- add_noise: all-Gaussian and all-Poisson batches; against the reference and the per-image torch
  way (torch.randn; torch.unique + torch.poisson).
Run: ``python -m pytest benchmarks/bench_degrade_ops.py``; ratios are printed at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_degrade import median_ms, photos

from ebir_fast.degrade.kernels import anisotropic_kernels
from ebir_fast.ops import add_noise, available_backends, filter2d, jpeg_roundtrip
from ebir_fast.ops.reference import mirror_pad

SECTION = "degrade_ops CPU benchmark"
B = 8

if available_backends("cpu")["cpu"] != "available":
    pytest.skip(available_backends("cpu")["cpu"], allow_module_level=True)


def _kernels(kind: str) -> torch.Tensor:  # [B, 21, 21] float32
    g = torch.Generator().manual_seed(0)
    beta, gaussian = torch.ones(B, dtype=torch.float64), torch.zeros(B, dtype=torch.long)
    if kind == "iso":
        sigma = torch.rand(B, generator=g, dtype=torch.float64) * 2 + 1
        theta = torch.zeros(B, dtype=torch.float64)
        k = anisotropic_kernels(torch.full((B,), 13), sigma, sigma, theta, beta, gaussian)
    else:
        s1 = torch.rand(B, generator=g, dtype=torch.float64) * 2 + 1
        s2 = torch.rand(B, generator=g, dtype=torch.float64) * 2 + 0.5
        theta = torch.rand(B, generator=g, dtype=torch.float64) * torch.pi
        k = anisotropic_kernels(torch.full((B,), 13), s1, s2, theta, beta, gaussian)
    return k.float()


def _per_image_filter(x, kernels):
    out = []
    for img, k in zip(x, kernels, strict=True):
        p = mirror_pad(mirror_pad(img.unsqueeze(0), 10, -2), 10, -1)
        out.append(F.conv2d(p, k.expand(3, 1, 21, 21), groups=3))
    return torch.cat(out)


@pytest.fixture(scope="module")
def images():
    pytest.importorskip("skimage")
    return photos()


@pytest.mark.parametrize("kind", ["aniso", "iso"])
def test_filter2d(report, images, kind):
    k = _kernels(kind)
    sizes = torch.tensor([[512, 512]] * B)
    times = {
        "cpu": median_ms(lambda: filter2d(images, k, sizes, backend="cpu")),
        "reference": median_ms(lambda: filter2d(images, k, sizes, backend="reference")),
        "per-image conv2d": median_ms(lambda: _per_image_filter(images, k)),
    }
    xg = images.clone().requires_grad_()

    def fwd_bwd(backend):
        def run():
            xg.grad = None
            filter2d(xg, k, sizes, backend=backend).sum().backward()

        return run

    times["cpu fwd+bwd"] = median_ms(fwd_bwd("cpu"), 3)
    times["reference fwd+bwd"] = median_ms(fwd_bwd("reference"), 3)
    report.record(SECTION, f"filter2d {kind}", times)
    ours, ref, loop = times["cpu"], times["reference"], times["per-image conv2d"]
    ours_b, ref_b = times["cpu fwd+bwd"], times["reference fwd+bwd"]
    report.summary(
        SECTION,
        f"filter2d {kind} (support 13 of 21): cpu {ours:.1f} ms, reference {ref:.1f} ms "
        f"({ref / ours:.1f}x), per-image conv2d {loop:.1f} ms ({loop / ours:.1f}x); fwd+bwd cpu "
        f"{ours_b:.1f} ms vs reference {ref_b:.1f} ms ({ref_b / ours_b:.1f}x)",
    )


def test_jpeg(report, images):
    q = torch.linspace(30, 95, B)
    times = {
        "cpu": median_ms(lambda: jpeg_roundtrip(images, q, backend="cpu")),
        "reference": median_ms(lambda: jpeg_roundtrip(images, q, backend="reference")),
        "per-image reference": median_ms(
            lambda: [
                jpeg_roundtrip(images[i : i + 1], q[i : i + 1], backend="reference")
                for i in range(B)
            ]
        ),
    }
    report.record(SECTION, "jpeg", times)
    ours, ref, loop = times["cpu"], times["reference"], times["per-image reference"]
    report.summary(
        SECTION,
        f"jpeg_roundtrip: cpu {ours:.1f} ms, reference {ref:.1f} ms ({ref / ours:.1f}x), "
        f"per-image {loop:.1f} ms ({loop / ours:.1f}x)",
    )


def _per_image_noise(x, kind):
    out = []
    for img in x:
        if kind == 1:
            out.append((img + torch.randn(img.shape) * 0.1).clamp(0, 1))
        else:
            x8 = torch.round(img * 255) / 255
            vals = 2.0 ** torch.ceil(torch.log2(torch.tensor(float(len(torch.unique(x8))))))
            out.append((img + torch.poisson(x8 * vals) / vals - x8).clamp(0, 1))
    return out


@pytest.mark.parametrize("kind", [1, 2], ids=["gaussian", "poisson"])
def test_add_noise(report, images, kind):
    kinds = torch.full((B,), kind)
    sigma = torch.full((B,), 0.1, dtype=torch.float64)
    gray = torch.zeros(B, dtype=torch.bool)
    scale = torch.ones(B, dtype=torch.float64)

    def ours(backend):
        return lambda: add_noise(images, None, kinds, sigma, gray, scale, 3, backend=backend)

    times = {
        "cpu": median_ms(ours("cpu")),
        "reference": median_ms(ours("reference"), 1),
        "per-image torch": median_ms(lambda: _per_image_noise(images, kind), 3),
    }
    name = "gaussian" if kind == 1 else "poisson"
    report.record(SECTION, f"add_noise {name}", times)
    report.summary(
        SECTION,
        f"add_noise {name}: cpu {times['cpu']:.1f} ms, reference {times['reference']:.1f} ms "
        f"({times['reference'] / times['cpu']:.1f}x), per-image torch "
        f"{times['per-image torch']:.1f} ms ({times['per-image torch'] / times['cpu']:.1f}x)",
    )
