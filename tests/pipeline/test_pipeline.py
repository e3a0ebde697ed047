"""The two-stage pipeline: LFO call sequence, encoder reuse, prompts, sizes, errors, colour fix."""

import pytest
import torch

from ebir_fast.models.stage import FeedForwardStage
from ebir_fast.models.tiling import Tiling
from ebir_fast.pipeline import EBIRPipeline, adain_color_fix, wavelet_color_fix


class RecordingTagger:
    """Returns a distinct tag string per call and image; records the images it was shown."""

    def __init__(self):
        self.seen = []

    def __call__(self, images):
        self.seen.append(images.clone())
        n = len(self.seen)
        return [f"call{n} img{i}" for i in range(images.shape[0])]


@pytest.fixture(scope="module")
def pipe(tiny_base_dir, stage_files):
    return EBIRPipeline.from_files(tiny_base_dir, stage_files["restorer"], stage_files["projector"])


@pytest.fixture
def images():
    return torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))


def _reset(pipe, tagger=None):
    pipe.tagger = tagger or RecordingTagger()
    for stage in (pipe.projector, pipe.restorer):
        stage.calls = dict.fromkeys(stage.calls, 0)
    return pipe.tagger


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_lfo_call_sequence(pipe, images, k):
    tagger = _reset(pipe)
    out = pipe(images, lfo=k, return_lq=True, color_fix=None)
    f, g = pipe.projector, pipe.restorer
    # f: one VAE encode for the batch, k + 1 UNet passes; Y: k + 2 taggings; g: one pass.
    assert f.calls == {"encode": 1, "unet": k + 1, "decode": k + 1}
    assert g.calls == {"encode": 1, "unet": 1, "decode": 1}
    assert len(tagger.seen) == k + 2
    # c_1 = Y(x_elq); c_{i+1} = Y(x_lq_i); g gets Y(final LQ).
    torch.testing.assert_close(tagger.seen[0], images)
    for i in range(k + 1):
        torch.testing.assert_close(tagger.seen[i + 1], out.lq[i])
    expected = [[f"call{n} img{i}, ," for i in range(2)] for n in range(1, k + 3)]
    assert out.prompts == expected
    assert len(out.lq) == k + 1
    assert out.images.shape == images.shape


def test_lfo_passes_differ_only_by_prompt(pipe, images):
    _reset(pipe)
    out = pipe(images, lfo=2, return_lq=True, color_fix=None)
    # Different prompts give different LQ images from the same latent.
    assert (out.lq[0] - out.lq[1]).abs().max() > 1e-4
    # A fixed prompt makes every pass identical: the reuse of the latent is exact.
    _reset(pipe, lambda x: ["same"] * x.shape[0])
    out = pipe(images, lfo=2, return_lq=True, color_fix=None)
    torch.testing.assert_close(out.lq[0], out.lq[2], atol=0, rtol=0)


def test_lfo_equals_the_written_out_recursion(pipe, images):
    """Eq. 21-22 written with the stages' public calls and a content-dependent tagger."""

    def tagger(x):
        return [f"mean {float(v):.3f}" for v in x.mean((1, 2, 3))]

    _reset(pipe, tagger)
    out = pipe(images, lfo=2, color_fix=None)
    f, g = pipe.projector, pipe.restorer
    c = [t + ", ," for t in tagger(images)]
    for _ in range(2):
        c = [t + ", ," for t in tagger(f.run(f.prepare(images), c))]
    lq = f.run(f.prepare(images), c)
    hq = g.run(g.prepare(lq), [t + ", ," for t in tagger(lq)])
    torch.testing.assert_close(out.images, hq, atol=1e-6, rtol=0)


def test_user_prompts(pipe, images):
    _reset(pipe, lambda x: ["tags"] * x.shape[0])
    out = pipe(images, lfo=0, prompt="sharp photo")
    assert out.prompts[0] == ["tags, sharp photo,"] * 2
    out = pipe(images, lfo=0, prompt=["one", "two"])
    assert out.prompts[-1] == ["tags, one,", "tags, two,"]
    with pytest.raises(ValueError, match="one per image"):
        pipe(images, lfo=0, prompt=["only one"])


def test_restorer_alone_is_osediff(tiny_base_dir, stage_files, images):
    g_only = EBIRPipeline.from_files(tiny_base_dir, stage_files["restorer"])
    assert g_only.projector is None
    out = g_only(images, lfo=0, color_fix=None)
    g = g_only.restorer
    torch.testing.assert_close(out.images, g.run(g.prepare(images), ["" + ", ,"] * 2))
    with pytest.raises(ValueError, match="no projector"):
        g_only(images, lfo=1)


def test_prompt_free_stages():
    up = torch.nn.Upsample(scale_factor=2, mode="nearest")
    pipe = EBIRPipeline(FeedForwardStage(up), FeedForwardStage(torch.nn.Identity()))
    x = torch.rand(1, 3, 13, 21)
    out = pipe(x, lfo=0, color_fix="adain")
    assert out.images.shape == (1, 3, 26, 42)
    assert out.prompts == [None, None]
    with pytest.raises(ValueError, match="takes no prompt"):
        pipe(x, lfo=2)


def test_any_size_is_padded_and_cropped_back(pipe):
    _reset(pipe)
    x = torch.rand(1, 3, 37, 45)
    out = pipe(x, lfo=1, return_lq=True)
    assert out.images.shape == x.shape
    assert out.lq[0].shape == x.shape
    assert pipe.tagger.seen[0].shape == x.shape  # the tagger never sees the padding


def test_seed_determinism(pipe, images):
    _reset(pipe, lambda x: ["a"] * x.shape[0])
    a = pipe(images, lfo=1, seed=7).images
    b = pipe(images, lfo=1, seed=7).images
    c = pipe(images, lfo=1, seed=8).images
    d = pipe(images, lfo=1).images
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert (a - c).abs().max() > 1e-4
    torch.testing.assert_close(d, pipe(images, lfo=1).images, atol=0, rtol=0)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.rand(0, 3, 32, 32), "empty"),
        (torch.rand(1, 3, 1, 1), "sides >= 8"),
        (torch.full((1, 3, 16, 16), float("nan")), "NaN"),
        (torch.rand(3, 16, 16), r"\[B, 3, H, W\]"),
        (torch.randint(0, 255, (1, 3, 16, 16)), "floating"),
        (torch.rand(1, 3, 16, 16) * 3, r"\[0, 1\]"),
        ([[0.5]], "torch.Tensor"),
    ],
)
def test_bad_inputs(pipe, bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        pipe(bad)


def test_bad_options(pipe, images):
    for kwargs, match in [
        ({"lfo": -1}, "lfo"),
        ({"lfo": 1.5}, "lfo"),
        ({"color_fix": "histogram"}, "color_fix"),
        ({"tile": 64}, "tile"),
    ]:
        with pytest.raises(ValueError, match=match):
            pipe(images, **kwargs)


def _corr(p, q):
    a, b = (t.flatten() - t.mean() for t in (p, q))
    return float(a @ b / (a.norm() * b.norm()))


def test_tiled_pipeline(pipe):
    _reset(pipe, lambda x: ["a"] * x.shape[0])
    x = torch.rand(1, 3, 10, 10, generator=torch.Generator().manual_seed(1))
    x = torch.nn.functional.interpolate(x, size=(96, 120), mode="bicubic").clamp(0, 1)
    full = pipe(x, lfo=1, tile=None).images
    # Decoder tiles (12 latent px, 2 tiles across) blend to nearly the untiled result.
    dec = pipe(x, lfo=1, tile=Tiling(encoder=1024, decoder=12, latent=96)).images
    assert (dec - full).abs().mean() < 0.06
    # Encoder and UNet tiles this small cut the tiny random networks' receptive fields (and
    # GroupNorm statistics are per tile): the result moves, but stays the same picture. At the
    # default sizes (1024 px, 96 latent) nothing below 768 px is tiled.
    every = pipe(x, lfo=1, tile=Tiling(encoder=64, decoder=12, latent=12, latent_overlap=6))
    assert every.images.shape == full.shape
    assert _corr(every.images, full) > 0.4


def test_adain_matches_source_statistics():
    gen = torch.Generator().manual_seed(0)
    content = torch.rand(2, 3, 20, 30, generator=gen)
    source = torch.rand(2, 3, 10, 12, generator=gen) * 0.3 + 0.5
    out = adain_color_fix(content, source)
    torch.testing.assert_close(out.mean((2, 3)), source.mean((2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        out.std((2, 3), correction=0), source.std((2, 3), correction=0), atol=1e-4, rtol=0
    )


def test_wavelet_keeps_detail_and_takes_colour():
    gen = torch.Generator().manual_seed(0)
    content = torch.rand(1, 3, 64, 64, generator=gen)
    torch.testing.assert_close(wavelet_color_fix(content, content), content, atol=1e-6, rtol=0)
    # A constant colour shift of the source moves the output by exactly that shift.
    shift = torch.tensor([0.1, -0.05, 0.2]).view(1, 3, 1, 1)
    torch.testing.assert_close(
        wavelet_color_fix(content, content + shift), content + shift, atol=1e-5, rtol=0
    )
    with pytest.raises(ValueError, match="size"):
        wavelet_color_fix(content, content[..., :32, :32])


def test_converged_tags_make_further_passes_free(pipe, images):
    """A pass whose prompt repeats an earlier one reuses that LQ image and its tags."""
    seen = []

    def tagger(x):
        seen.append(x.shape[0])
        return ["stable tags"] * x.shape[0]

    _reset(pipe, tagger)
    out = pipe(images, lfo=3, return_lq=True, color_fix=None)
    # c_1 = Y(x_elq); LQ_1 = f(c_1); c_2 = Y(LQ_1) = c_1: every later pass is LQ_1 again.
    assert pipe.projector.calls == {"encode": 1, "unet": 1, "decode": 1}
    assert seen == [2, 2]  # Y(x_elq), Y(LQ_1); g's prompt is Y(LQ_1) too
    assert len(out.lq) == 4
    for lq in out.lq[1:]:
        torch.testing.assert_close(lq, out.lq[0], atol=0, rtol=0)
    assert out.prompts == [["stable tags, ,"] * 2] * 5
