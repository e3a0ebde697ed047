"""The one-step stage against diffusers' own components, merged vs unmerged, dtypes, seeds."""

import pytest
import torch

from ebir_fast.models.base import load_base
from ebir_fast.models.checkpoint import load_stage_weights
from ebir_fast.models.stage import FeedForwardStage, OneStepStage, PromptEncoder, compose_prompt
from ebir_fast.models.tiling import Tiling, tile_starts, tiled_map

PROMPTS = ["a cat, ,", "a dog on grass, ,"]


@pytest.fixture(scope="module")
def base(tiny_base_dir):
    return load_base(tiny_base_dir)


@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(3)
    return torch.rand(2, 3, 48, 64, generator=gen)


@pytest.fixture(scope="module")
def stages(base, stage_files):
    w = load_stage_weights(stage_files["restorer"])
    return {
        "merged": OneStepStage.from_base(base, w, merge=True),
        "unmerged": OneStepStage.from_base(base, w, merge=False),
    }


def test_forward_is_osediffs_one_step_formula(base, images):
    """Plain SD (no LoRA) against a written-out forward on diffusers' modules."""
    stage = OneStepStage.from_base(base, None)
    out = stage.run(stage.prepare(images), PROMPTS)
    with torch.no_grad():
        ids = base.tokenizer(
            PROMPTS, max_length=77, padding="max_length", truncation=True, return_tensors="pt"
        ).input_ids
        emb = base.text_encoder(ids)[0]
        sf = base.vae.config.scaling_factor
        z = base.vae.encode(images * 2 - 1).latent_dist.mode() * sf
        eps = base.unet(z, torch.tensor([999]), encoder_hidden_states=emb).sample
        a = base.alphas_cumprod[999].item()
        x0 = (z - (1 - a) ** 0.5 * eps) / a**0.5
        ref = base.vae.decode(x0 / sf).sample.clamp(-1, 1) * 0.5 + 0.5
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    assert out.shape == images.shape
    assert out.dtype == torch.float32


def test_merged_matches_unmerged(stages, images):
    outs = {k: s.run(s.prepare(images), PROMPTS) for k, s in stages.items()}
    torch.testing.assert_close(outs["merged"], outs["unmerged"], atol=1e-5, rtol=0)
    assert not any("lora" in n for n, _ in stages["merged"].named_parameters())


def test_lora_changes_the_output(base, stages, images):
    plain = OneStepStage.from_base(base, None)
    a = plain.run(plain.prepare(images), PROMPTS)
    b = stages["merged"].run(stages["merged"].prepare(images), PROMPTS)
    assert (a - b).abs().max() > 1e-2


def test_posterior_mode_by_default_and_seeded_samples(stages, images):
    s = stages["merged"]
    torch.testing.assert_close(s.prepare(images), s.prepare(images), atol=0, rtol=0)
    one = s.prepare(images, generator=torch.Generator().manual_seed(1))
    again = s.prepare(images, generator=torch.Generator().manual_seed(1))
    other = s.prepare(images, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(one, again, atol=0, rtol=0)
    assert (one - other).abs().max() > 1e-4
    assert (one - s.prepare(images)).abs().max() > 1e-4


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precisions_follow_float32(base, stage_files, images, dtype):
    w = load_stage_weights(stage_files["restorer"])
    ref = OneStepStage.from_base(base, w)
    low = OneStepStage.from_base(base, w, dtype=dtype)
    assert low.dtype == dtype
    assert low.text.dtype == dtype
    a = ref.run(ref.prepare(images), PROMPTS)
    b = low.run(low.prepare(images), PROMPTS)
    assert b.dtype == torch.float32
    assert (a - b).abs().mean() < 0.03


def test_prompt_encoder_caches_per_string(base):
    enc = PromptEncoder(base.tokenizer, base.text_encoder, cache_size=3)
    a = enc(["x", "y", "x"])
    assert enc.calls == 1
    assert a.shape == (3, 77, 32)
    torch.testing.assert_close(a[0], a[2], atol=0, rtol=0)
    enc(["y", "x"])
    assert enc.calls == 1
    enc(["z", "w"])  # evicts the least recently used
    assert enc.calls == 2
    assert len(enc._cache) == 3
    with pytest.raises(TypeError, match="prompts"):
        enc("not a list")
    assert compose_prompt("cat, dog", "sharp") == "cat, dog, sharp,"


def test_run_checks_prompts(stages, images):
    s = stages["merged"]
    with pytest.raises(ValueError, match="2 prompt strings"):
        s.run(s.prepare(images), ["only one"])


def test_feed_forward_stage():
    module = torch.nn.Upsample(scale_factor=2)
    module.register_parameter("p", torch.nn.Parameter(torch.zeros(1)))
    stage = FeedForwardStage(module)
    x = torch.rand(1, 3, 8, 8)
    assert stage.uses_prompt is False
    assert stage.run(stage.prepare(x)).shape == (1, 3, 16, 16)


def test_tile_starts_cover_the_image():
    assert tile_starts(10, 16, 4) == [0]
    assert tile_starts(40, 16, 4) == [0, 12, 24]
    for size, tile, overlap in [(100, 32, 8), (33, 32, 8), (97, 24, 0)]:
        starts = tile_starts(size, tile, overlap)
        covered = torch.zeros(size, dtype=torch.bool)
        for s in starts:
            covered[s : s + tile] = True
        assert covered.all()
        assert starts[-1] == size - tile


def test_tiled_map_of_a_pointwise_map_is_exact():
    x = torch.randn(2, 3, 37, 53)
    out = tiled_map(lambda t: t * 2 + 1, x, tile=16, overlap=6)
    torch.testing.assert_close(out, x * 2 + 1, atol=1e-5, rtol=0)
    up = tiled_map(lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2), x, 16, 6, 2)
    torch.testing.assert_close(up, x.repeat_interleave(2, -1).repeat_interleave(2, -2))


def test_tiled_decoder_is_close_to_untiled(stages):
    s = stages["merged"]
    gen = torch.Generator().manual_seed(4)
    # A smooth image: tiles differ only where the receptive fields are cut.
    x = torch.rand(1, 3, 12, 12, generator=gen)
    x = torch.nn.functional.interpolate(x, size=128, mode="bicubic").clamp(0, 1)
    z = s.prepare(x)
    full = s.run(z, PROMPTS[:1])
    tiled = s.run(z, PROMPTS[:1], tiling=Tiling(decoder=12))  # 2 x 2 decoder tiles
    # Per-tile GroupNorm statistics and the mid-block attention leave ~0.02 on random weights.
    assert (full - tiled).abs().mean() < 0.03
