"""restore(): every input kind, the weights manifest, errors, caching, threads."""

import json
import threading

import numpy as np
import pytest
import torch
from PIL import Image

import ebir_fast
from ebir_fast.api import clear_cache, load_pipeline, restore
from ebir_fast.weights import ENV_VAR, WeightsNotFoundError, find_manifest, read_manifest


@pytest.fixture(scope="module")
def weights_dir(tiny_base_dir, stage_files, tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    manifest = {
        "base": str(tiny_base_dir),
        "restorer": str(stage_files["restorer"]),
        "projector": str(stage_files["projector"]),
        "tagger": {"kind": "fixed", "prompt": "a photo"},
    }
    (folder / "ebir-fast.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def rgb():
    return torch.rand(3, 24, 40, generator=torch.Generator().manual_seed(0))


def test_restore_is_the_pipeline(weights_dir, rgb):
    pipe = load_pipeline(weights_dir)
    assert load_pipeline(weights_dir) is pipe  # cached
    out = restore(rgb, lfo=1, weights=weights_dir)
    ref = pipe(rgb[None], lfo=1).images[0]
    torch.testing.assert_close(out, ref, atol=0, rtol=0)
    assert pipe.projector is not None
    assert pipe.restorer.text is pipe.projector.text  # one text encoder
    assert pipe.restorer.vae.decoder is pipe.projector.vae.decoder  # one decoder


def test_every_input_kind_round_trips(weights_dir, rgb, tmp_path):
    kw = {"lfo": 0, "weights": weights_dir}
    ref = restore(rgb, **kw)
    u8 = (rgb * 255).round().to(torch.uint8)
    hwc8 = u8.permute(1, 2, 0).numpy()
    # torch
    assert restore(rgb[None], **kw).shape == (1, 3, 24, 40)
    out = restore(u8, **kw)
    assert out.dtype == torch.uint8
    assert out.shape == u8.shape
    assert restore(rgb.double(), **kw).dtype == torch.float64
    # numpy
    for arr in (hwc8, hwc8.astype(np.uint16) * 257, rgb.permute(1, 2, 0).numpy()):
        res = restore(arr, **kw)
        assert res.dtype == arr.dtype
        assert res.shape == arr.shape
        scale = {np.uint8: 255.0, np.uint16: 65535.0}.get(arr.dtype.type, 1.0)
        back = torch.from_numpy(res.astype(np.float32) / scale).permute(2, 0, 1)
        assert (back - ref).abs().max() < 0.02  # same image up to input quantisation
    gray = hwc8[..., 0]
    assert restore(gray, **kw).shape == gray.shape
    rgba = np.concatenate([hwc8, np.full((24, 40, 1), 77, np.uint8)], axis=2)
    res = restore(rgba, **kw)
    assert res.shape == rgba.shape
    assert (res[..., 3] == 77).all()  # alpha passes through
    # PIL
    for mode in ("RGB", "L", "RGBA", "LA", "I;16", "P"):
        img = (
            Image.fromarray(hwc8).convert(mode)
            if mode != "I;16"
            else Image.fromarray(hwc8[..., 0].astype(np.uint16) * 257)
        )
        res = restore(img, **kw)
        assert isinstance(res, Image.Image)
        assert res.size == img.size
        assert res.mode == (mode if mode != "P" else "RGB")
    # a path gives a PIL image
    Image.fromarray(hwc8).save(tmp_path / "x.png")
    res = restore(tmp_path / "x.png", **kw)
    assert isinstance(res, Image.Image)
    assert res.size == (40, 24)


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (np.zeros((0, 0, 3), np.uint8), ValueError, "sides >= 8"),
        (np.zeros((1, 1, 3), np.uint8), ValueError, "sides >= 8"),
        (np.full((16, 16, 3), np.nan, np.float32), ValueError, "NaN"),
        (np.zeros((2, 2, 2, 2, 3), np.uint8), ValueError, "HW or HWC"),
        (np.zeros((16, 16, 3), np.int64), TypeError, "uint8, uint16 or float"),
        (torch.zeros(16, 16), ValueError, "CHW or BCHW"),
        (torch.zeros(3, 16, 16, dtype=torch.int32), TypeError, "uint8"),
        (np.zeros((16, 16, 5), np.uint8), ValueError, "channels"),
        ([1, 2, 3], TypeError, "a path, a PIL image"),
    ],
)
def test_bad_inputs(weights_dir, bad, error, match):
    with pytest.raises(error, match=match):
        restore(bad, weights=weights_dir)


def test_weights_are_found_by_argument_env_and_default(weights_dir, tmp_path, monkeypatch):
    assert find_manifest(weights_dir) == weights_dir / "ebir-fast.json"
    assert find_manifest(weights_dir / "ebir-fast.json") == weights_dir / "ebir-fast.json"
    monkeypatch.setenv(ENV_VAR, str(weights_dir))
    assert find_manifest() == weights_dir / "ebir-fast.json"
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match=r"default folder.*osediff\.pkl"):
        find_manifest()


def test_missing_files_are_named_with_their_source(tmp_path):
    manifest = {
        "base": "sd21-base",
        "restorer": "osediff.pkl",
        "projector": None,
        "tagger": {
            "kind": "dape",
            "ram": "ram_swin_large_14m.pth",
            "tag_list": "ram_tag_list.txt",
            "thresholds": "ram_tag_list_threshold.txt",
            "dape": "DAPE.pth",
        },
    }
    (tmp_path / "ebir-fast.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsNotFoundError) as err:
        restore(np.zeros((16, 16, 3), np.uint8), weights=tmp_path)
    msg = str(err.value)
    for name in ("sd21-base", "osediff.pkl", "ram_swin_large_14m.pth", "DAPE.pth"):
        assert name in msg
    assert "github.com/cswry/OSEDiff" in msg
    assert "recognize_anything_model" in msg


@pytest.mark.parametrize(
    ("manifest", "match"),
    [
        ("[1]", "JSON object"),
        ("{not json", "not valid JSON"),
        (json.dumps({"base": "b"}), "restorer"),
        (json.dumps({"base": "b", "restorer": "r", "tagger": {"kind": "vlm"}}), "kind"),
        (json.dumps({"base": "b", "restorer": "r", "tagger": {"kind": "fixed"}}), "prompt"),
    ],
)
def test_bad_manifests(tmp_path, manifest, match):
    (tmp_path / "ebir-fast.json").write_text(manifest)
    with pytest.raises(ValueError, match=match):
        read_manifest(tmp_path / "ebir-fast.json")


def test_threads_share_one_pipeline(weights_dir, rgb):
    clear_cache()
    expected = restore(rgb, lfo=1, weights=weights_dir)
    results, errors = [None] * 4, []

    def work(i):
        try:
            results[i] = restore(rgb, lfo=1, weights=weights_dir)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for r in results:
        torch.testing.assert_close(r, expected, atol=0, rtol=0)


def test_public_names():
    assert ebir_fast.restore is restore
