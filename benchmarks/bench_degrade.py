"""Batched degradation vs the per-image baseline, with a per-stage breakdown.

Setup (issue 3): presets ``lq`` and ``elq``, batch 8, 3 x 512 x 512 photographs (scikit-image's,
centre-cropped and resized; JPEG and Poisson costs depend on content), CPU, 2 threads. Ours:
``degrader.apply(images, params)`` on the whole batch. Baseline: the same draws run one image at a
time in plain PyTorch (benchmarks/baselines/per_image_degrade.py, the way OSEDiff's loader does
it). Goal: >= 6x images per second. Stage times come from the ``degrade.<stage>`` profiler labels
both sides carry.

Run: ``python -m pytest benchmarks/bench_degrade.py`` or ``python benchmarks/bench_degrade.py``.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.baselines.per_image_degrade import degrade_batch

from ebir_fast import keep_freed_memory
from ebir_fast.degrade import create_degrader
from ebir_fast.ops import available_backends
from ebir_fast.ops._dispatch import resolve_backend
from ebir_fast.ops.filter2d import FILTER2D_BACKENDS
from ebir_fast.ops.jpeg import JPEG_BACKENDS

BATCH, SIZE = 8, 512
PRESETS = ("lq", "elq")
STAGES = ("blur", "resize", "noise", "jpeg", "quantise")
GOAL = 6.0
SECTION = "degrade CPU benchmark"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def photos(batch: int = BATCH, size: int = SIZE) -> torch.Tensor:  # [B, 3, size, size]
    from skimage import data

    out = []
    for i in range(batch):
        img = torch.from_numpy(getattr(data, PHOTOS[i % len(PHOTOS)])()).permute(2, 0, 1)
        img = img.float().div(255.0)
        side = min(img.shape[1:])
        top, left = (img.shape[1] - side) // 2, (img.shape[2] - side) // 2
        crop = img[:, top : top + side, left : left + side].unsqueeze(0)
        if i >= len(PHOTOS):
            crop = crop.flip(-1)
        out.append(F.interpolate(crop, size=(size, size), mode="bicubic", antialias=True))
    return torch.cat(out).clamp(0, 1)


def stage_times(run) -> dict[str, float]:
    """Milliseconds per call spent under each ``degrade.<stage>`` label."""
    with torch.profiler.profile() as prof:
        run()
    times = dict.fromkeys(STAGES, 0.0)
    for event in prof.key_averages():
        if event.key.startswith("degrade."):
            times[event.key.removeprefix("degrade.")] = event.cpu_time_total / 1000.0
    return times


def median_ms(run, repeats: int = 5) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000.0)
    return sorted(times)[len(times) // 2]


def page_faults(run) -> int:
    """Minor page faults of one call (fresh memory being mapped in, a cost of the allocator)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    run()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def compare(preset: str, images: torch.Tensor, repeats: int = 5) -> dict:
    degrader = create_degrader(preset)
    params = degrader.sample(
        images.shape[0], tuple(images.shape[-2:]), torch.Generator().manual_seed(0)
    )
    resize_back = degrader.config.resize_back

    def ours():
        return degrader.apply(images, params)

    def baseline():
        return degrade_batch(images, params, resize_back)

    result = {"ours_ms": median_ms(ours, repeats), "baseline_ms": median_ms(baseline, repeats)}
    result["ratio"] = result["baseline_ms"] / result["ours_ms"]
    result["faults_ours"], result["faults_baseline"] = page_faults(ours), page_faults(baseline)
    result["stages_ours_ms"] = stage_times(ours)
    result["stages_baseline_ms"] = stage_times(baseline)
    return result


def backends_line() -> str:
    return (
        f"filter2d backend {resolve_backend('auto', 'cpu', FILTER2D_BACKENDS)}, "
        f"jpeg backend {resolve_backend('auto', 'cpu', JPEG_BACKENDS)}, "
        f"cpu kernels {available_backends('cpu')['cpu']}"
    )


def table(preset: str, r: dict, batch: int) -> list[str]:
    lines = [
        f"{preset}: {batch} x 3 x {SIZE} x {SIZE}: ours {r['ours_ms']:.0f} ms "
        f"({1000 * batch / r['ours_ms']:.1f} img/s), per-image baseline {r['baseline_ms']:.0f} ms "
        f"({1000 * batch / r['baseline_ms']:.1f} img/s): {r['ratio']:.1f}x (goal {GOAL:.0f}x); "
        f"page faults per call {r['faults_ours']} vs {r['faults_baseline']}",
        "| stage | ours ms | baseline ms | ratio |",
        "|---|---|---|---|",
    ]
    for s in STAGES:
        a, b = r["stages_ours_ms"][s], r["stages_baseline_ms"][s]
        lines.append(f"| {s} | {a:.1f} | {b:.1f} | {b / a if a else float('nan'):.1f}x |")
    return lines


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    pytest.importorskip("skimage")
    return photos()


@pytest.mark.parametrize("preset", PRESETS)
def test_degrade_speed(benchmark, report, images, preset):
    result = compare(preset, images)
    degrader = create_degrader(preset)
    params = degrader.sample(BATCH, (SIZE, SIZE), torch.Generator().manual_seed(0))
    benchmark.pedantic(lambda: degrader.apply(images, params), rounds=3, iterations=1)
    report.record(SECTION, preset, result)
    if preset == PRESETS[0]:
        report.summary(SECTION, backends_line())
    for line in table(preset, result, BATCH):
        report.summary(SECTION, line)


def test_degrade_speed_with_memory_kept(report, images):
    """The same comparison after ebir_fast.keep_freed_memory() (process-wide, so it runs last)."""
    if not keep_freed_memory():
        pytest.skip("keep_freed_memory() is not available here (glibc and the compiled core)")
    report.summary(SECTION, "with ebir_fast.keep_freed_memory() (both sides):")
    for preset in PRESETS:
        result = compare(preset, images)
        report.record(SECTION, f"{preset} keep_freed_memory", result)
        for line in table(preset, result, BATCH):
            report.summary(SECTION, line)


if __name__ == "__main__":
    from benchmarks.conftest import THREADS, setup_line

    torch.set_num_threads(THREADS)
    print(f"setup: {setup_line()}")
    print(backends_line())
    imgs = photos()
    for name in PRESETS:
        print("\n".join(table(name, compare(name, imgs), BATCH)))
    if keep_freed_memory():
        print("with ebir_fast.keep_freed_memory() (both sides):")
        for name in PRESETS:
            print("\n".join(table(name, compare(name, imgs), BATCH)))
