"""The degradation pipelines: invariants, replay, gradients, odd inputs, errors."""

import dataclasses
import re

import pytest
import torch

from ebir_fast.degrade import (
    PRESETS,
    ParamConfig,
    SecondOrderConfig,
    StageConfig,
    WildConfig,
    create_degrader,
    elq,
    lq,
)
from ebir_fast.degrade.kernels import pulse_kernels, sample_kernels
from ebir_fast.degrade.param import NO_DEGRADATION, REMOVE_ALL
from ebir_fast.degrade.ragged import resize
from ebir_fast.degrade.stages import quantise
from ebir_fast.degrade.wild import wiener_ringing

PRESET_NAMES = sorted(PRESETS)


def _images(b=3, h=48, w=40, seed=0, dtype=torch.float32):
    # Smooth random images (like photos, unlike white noise) so blur and JPEG matter little
    # numerically and a lot visually.
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(b, 3, h // 8 + 2, w // 8 + 2, generator=g, dtype=dtype)
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic").clamp(0, 1)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _on_8bit_grid(x):
    return torch.equal(torch.round(x * 255) / 255, x)


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_output_is_finite_in_range_on_the_8bit_grid(preset):
    d = create_degrader(preset)
    x = _images()
    for seed in range(3):
        y = d(x, _gen(seed))
        assert y.shape == x.shape
        assert y.dtype == x.dtype
        assert torch.isfinite(y).all()
        assert y.min() >= 0
        assert y.max() <= 1
        assert _on_8bit_grid(y)


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_same_seed_same_output_and_replay(preset):
    d = create_degrader(preset)
    x = _images()
    a, b = d(x, _gen(7)), d(x, _gen(7))
    assert torch.equal(a, b)
    params = d.sample(3, (48, 40), _gen(7))
    assert torch.equal(d.apply(x, params), a)
    assert torch.equal(d.apply(x, params), d.apply(x, params))
    assert not torch.equal(d(x, _gen(8)), a)


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_differentiable_replay_matches_and_passes_gradients(preset):
    d = create_degrader(preset)
    x = _images(b=4, seed=1).requires_grad_()
    params = d.sample(4, (48, 40), _gen(3))
    plain = d.apply(x, params)
    assert plain.grad_fn is None  # differentiable=False runs without autograd
    y = d.apply(x, params, differentiable=True)
    # The differentiable replay resizes with F.interpolate (for its backward), the plain one with
    # the batched kernel: equal to float rounding, which can flip a rare 8-bit level.
    levels = ((y - plain).abs() * 255).round()
    assert levels.max() <= 1
    assert (levels > 0).float().mean() < 1e-3
    (y * torch.rand_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad.abs().sum(dim=(1, 2, 3)) > 0).all()  # every sample gets a gradient


def test_gradient_through_every_smooth_stage_matches_finite_differences():
    # Blur and resize are smooth: float64 gradcheck through the ragged resize and the filter.
    x = torch.rand(2, 3, 9, 11, dtype=torch.float64, requires_grad=True)
    kernels, _ = sample_kernels(2, create_degrader("lq").config.stage1.kernel, _gen(0))
    sizes = torch.tensor([[9, 11], [9, 11]])
    out_sizes = torch.tensor([[5, 6], [12, 4]])
    modes = torch.tensor([1, 2])
    from ebir_fast.degrade.stages import blur

    def f(t):
        return resize(blur(t, sizes, kernels), sizes, out_sizes, modes)

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5)


def test_quantise_is_straight_through():
    x = torch.tensor([0.1, 0.5, 0.9, 1.2, -0.1]).view(1, 1, 1, 5).requires_grad_()
    y = quantise(x)
    assert _on_8bit_grid(y.detach())
    y.sum().backward()
    assert x.grad.flatten().tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]  # clamp blocks outside [0, 1]


def test_lq_sizes_are_512_128_512():
    d = create_degrader("lq")
    x = _images(b=2, h=512, w=512)
    params = d.sample(2, (512, 512), _gen(0))
    assert params.final_size.tolist() == [[128, 128], [128, 128]]
    assert d.apply(x, params).shape == (2, 3, 512, 512)
    no_back = create_degrader(dataclasses.replace(lq(), resize_back=False))
    assert no_back(x, _gen(0)).shape == (2, 3, 128, 128)


def test_elq_draws_scales_between_4_and_8():
    params = create_degrader("elq").sample(64, (512, 512), _gen(0))
    final = params.final_size[:, 0].double()
    assert final.min() >= 64
    assert final.max() <= 128
    assert final.std() > 5


def test_tiny_image_with_scale_8_and_one_pixel_results():
    cfg = dataclasses.replace(elq(), scale_range=(8.0, 8.0), resize_back=False)
    d = create_degrader(cfg)
    x = _images(b=4, h=32, w=32)
    for seed in range(4):
        params = d.sample(4, (32, 32), _gen(seed))
        assert (params.stage1.size >= 1).all()
        assert (params.stage2.size >= 1).all()
        y = d.apply(x, params)
        assert y.shape == (4, 3, 4, 4)
        assert torch.isfinite(y).all()
    # Stage-2 sizes of 32 / 8 * s with s < 0.25 round down to 0 and are clamped to 1 pixel.
    many = d.sample(256, (32, 32), _gen(0))
    assert (many.stage2.size == 1).any()
    assert d.apply(_images(b=256, h=32, w=32), many).shape == (256, 3, 4, 4)


@pytest.mark.parametrize("preset", PRESET_NAMES)
@pytest.mark.parametrize("size", [(5, 7), (1, 17), (33, 2)])
def test_odd_and_degenerate_sizes(preset, size):
    d = create_degrader(preset)
    x = torch.rand(2, 3, *size)
    y = d(x, _gen(1))
    assert y.shape == (2, 3, *d.output_size(size))
    assert torch.isfinite(y).all()


def test_float64_and_half_inputs():
    d = create_degrader("lq")
    for dtype in (torch.float64, torch.bfloat16):
        x = _images(dtype=dtype)
        y = d(x, _gen(0))
        assert y.dtype == dtype
        assert torch.isfinite(y).all()


def test_custom_configs_are_dataclass_instances():
    cfg = dataclasses.replace(lq(), stage2=dataclasses.replace(StageConfig(), blur_prob=0.0))
    assert create_degrader(cfg)(_images(), _gen(0)).shape == (3, 3, 48, 40)
    for name, factory in PRESETS.items():
        assert dataclasses.is_dataclass(factory()), name


def test_elq_is_wider_than_lq_everywhere():
    a, b = lq(), elq()
    for stage in ("stage1", "stage2"):
        sa, sb = getattr(a, stage), getattr(b, stage)
        assert sb.kernel.sigma_range[1] > sa.kernel.sigma_range[1]
        assert sb.resize_range[0] < sa.resize_range[0]
        assert sb.noise_range[1] > sa.noise_range[1]
        assert sb.jpeg_range[0] < sa.jpeg_range[0]
    assert b.scale_range[1] > a.scale_range[1]


# ---- wild ----------------------------------------------------------------------------------------


def test_wild_orders_are_permutations():
    p = create_degrader("wild").sample(32, (32, 32), _gen(0))
    for order, n in ((p.order1, 4), (p.order2, 2), (p.order3, 3)):
        assert torch.equal(order.sort(dim=1).values, torch.arange(n).expand(32, n))
    assert len({tuple(r) for r in p.order1.tolist()}) > 5  # per-sample orders


def test_wiener_ringing():
    x = _images(b=2, h=40, w=40, dtype=torch.float64)
    # A pulse kernel: X = Y / (1 + K).
    torch.testing.assert_close(wiener_ringing(x, pulse_kernels(2), 0.006, 20), x / 1.006)
    # Deconvolving a blurred smooth image brings it closer to the original.
    kernels, _ = sample_kernels(2, create_degrader("lq").config.stage1.kernel, _gen(2))
    from ebir_fast.degrade.stages import blur

    blurred = blur(x, torch.tensor([[40, 40]] * 2), kernels)
    restored = wiener_ringing(blurred, kernels, 0.006, 20)
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    assert (restored - x)[inner].abs().mean() < (blurred - x)[inner].abs().mean()


# ---- param (SPIRE) ----------------------------------------------------------------------------

PROMPT = re.compile(
    r"^(Deblur with sigma \d\.\d; ?)?(Upsample to \d\.\dx; ?)?(Denoise with sigma 0\.\d\d; ?)?"
    r"(Dejpeg with quality \d\d; ?)?$"
)


def test_param_prompts_describe_the_draws():
    d = create_degrader("param")
    p = d.sample(64, (32, 32), _gen(0))
    assert len(p.prompts) == 64
    for i, text in enumerate(p.prompts):
        if p.realesrgan[i]:
            assert text == REMOVE_ALL
            continue
        if text == NO_DEGRADATION:
            assert not (p.blur[i])
            assert not (p.down[i])
            assert not (p.noise[i])
            assert not (p.jpeg[i])
            continue
        assert PROMPT.match(text), text
        assert ("Deblur" in text) == bool(p.blur[i])
        assert ("Upsample" in text) == bool(p.down[i])
        if p.blur[i]:
            assert f"sigma {p.sigma[i].item():.1f}" in text
        if p.jpeg[i]:
            assert f"quality {round(p.quality[i].item())}" in text
    assert REMOVE_ALL in p.prompts


def test_param_without_steps_is_the_identity_on_8bit_images():
    cfg = ParamConfig(step_prob=0.0, realesrgan_prob=0.0)
    x = quantise(_images())
    d = create_degrader(cfg)
    p = d.sample(3, (48, 40), _gen(0))
    assert p.prompts == [NO_DEGRADATION] * 3
    assert torch.equal(d.apply(x, p), x)


# ---- errors --------------------------------------------------------------------------------------


def test_errors_name_the_argument():
    d = create_degrader("lq")
    with pytest.raises(ValueError, match="preset"):
        create_degrader("extreme")
    with pytest.raises(TypeError, match="preset"):
        create_degrader(42)
    with pytest.raises(ValueError, match="images"):
        d(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="images"):
        d(torch.randint(0, 255, (2, 3, 8, 8)))
    params = d.sample(2, (16, 16), _gen(0))
    with pytest.raises(ValueError, match=r"images: params were drawn for 2 images of size"):
        d.apply(torch.rand(2, 3, 16, 17), params)
    with pytest.raises(ValueError, match="batch_size"):
        d.sample(0, (16, 16))
    with pytest.raises(ValueError, match="image_size"):
        d.sample(2, (16, 0))
    with pytest.raises(ValueError, match="scale_range"):
        SecondOrderConfig(scale_range=(2.0, 4.0), resize_back=False)
    with pytest.raises(ValueError, match="resize_prob"):
        StageConfig(resize_prob=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="jpeg_range"):
        StageConfig(jpeg_range=(0.0, 50.0))
    with pytest.raises(ValueError, match="wiener_k"):
        WildConfig(wiener_k=0.0)
