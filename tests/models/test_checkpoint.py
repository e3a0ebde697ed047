"""Stage checkpoints: OSEDiff's pickle, our safetensors, conversion, strict loading."""

import json

import pytest
import torch

from ebir_fast.models.base import load_base
from ebir_fast.models.checkpoint import (
    StageWeights,
    convert,
    load_osediff,
    load_safetensors,
    load_stage_weights,
    save_osediff,
    save_safetensors,
)
from ebir_fast.models.stage import OneStepStage, extract_weights, load_weights
from tests.models.sd_helpers import random_stage_weights, tiny_components


def _same(a: StageWeights, b: StageWeights) -> None:
    assert a.header() == b.header()
    for x, y in ((a.unet, b.unet), (a.vae, b.vae)):
        assert x.keys() == y.keys()
        for k in x:
            torch.testing.assert_close(x[k], y[k], atol=0, rtol=0)


@pytest.fixture(scope="module")
def weights():
    unet, vae, _, _ = tiny_components()
    return random_stage_weights(unet, vae, rank=3, seed=5)


def test_osediff_pickle_with_osediffs_keys_loads_and_reproduces_parameters(
    weights, tiny_base_dir, tmp_path
):
    # Written by hand with exactly the keys OSEDiff's save_model() writes (not via our writer).
    ckpt = {
        "vae_lora_encoder_modules": list(weights.targets.vae_encoder) * 2,  # OSEDiff repeats
        "unet_lora_encoder_modules": list(weights.targets.unet_encoder),
        "unet_lora_decoder_modules": list(weights.targets.unet_decoder),
        "unet_lora_others_modules": list(weights.targets.unet_others),
        "rank_unet": 3,
        "rank_vae": 3,
        "state_dict_unet": weights.unet,
        "state_dict_vae": weights.vae,
    }
    torch.save(ckpt, tmp_path / "osediff.pkl")
    loaded = load_stage_weights(tmp_path / "osediff.pkl")
    _same(loaded, weights)
    stage = OneStepStage.from_base(load_base(tiny_base_dir), loaded, merge=False)
    params = dict(stage.unet.named_parameters())
    for k, v in weights.unet.items():
        torch.testing.assert_close(params[k], v, atol=0, rtol=0)
    vae_params = dict(stage.vae.named_parameters())
    for k, v in weights.vae.items():
        torch.testing.assert_close(vae_params[k], v, atol=0, rtol=0)
    # ... and extracting them again gives the checkpoint back.
    _same(extract_weights(stage.unet, stage.vae, loaded), weights)


def test_round_trips_and_conversion(weights, tmp_path):
    save_safetensors(weights, tmp_path / "a.safetensors")
    _same(load_safetensors(tmp_path / "a.safetensors"), weights)
    convert(tmp_path / "a.safetensors", tmp_path / "b.pkl")
    _same(load_osediff(tmp_path / "b.pkl"), weights)
    convert(tmp_path / "b.pkl", tmp_path / "c.safetensors")
    _same(load_stage_weights(tmp_path / "c.safetensors"), weights)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "b.pkl", "c.safetensors"]


def test_safetensors_header(weights, tmp_path):
    from safetensors import safe_open

    save_safetensors(weights, tmp_path / "s.safetensors")
    with safe_open(str(tmp_path / "s.safetensors"), framework="pt") as f:
        header = json.loads(f.metadata()["ebir_fast"])
        keys = list(f.keys())
    assert header["format"] == "ebir-fast-stage"
    assert header["version"] == 1
    assert header["rank_unet"] == 3
    assert header["alpha_unet"] == 8
    assert header["unet_lora_encoder_modules"] == list(weights.targets.unet_encoder)
    assert all(k.startswith(("unet.", "vae.")) for k in keys)
    assert "unet.conv_in.base_layer.weight" in keys


def test_osediff_format_refuses_other_alphas(weights, tmp_path):
    odd = StageWeights(**{**weights.__dict__, "alpha_unet": 4.0})
    with pytest.raises(ValueError, match="lora_alpha"):
        save_osediff(odd, tmp_path / "x.pkl")
    assert not (tmp_path / "x.pkl").exists()


def test_bad_files_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no stage checkpoint"):
        load_stage_weights(tmp_path / "missing.pkl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match=r"\.safetensors"):
        load_stage_weights(tmp_path / "x.txt")
    torch.save({"rank_unet": 4}, tmp_path / "partial.pkl")
    with pytest.raises(ValueError, match="missing keys"):
        load_stage_weights(tmp_path / "partial.pkl")
    torch.save([1, 2], tmp_path / "list.pkl")
    with pytest.raises(ValueError, match="list"):
        load_stage_weights(tmp_path / "list.pkl")
    # A pickle that would run code is refused by weights_only loading.
    torch.save({"x": StageWeights}, tmp_path / "code.pkl")
    with pytest.raises(ValueError, match="weights_only"):
        load_stage_weights(tmp_path / "code.pkl")
    from safetensors.torch import save_file

    save_file({"unet.a": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="metadata header"):
        load_stage_weights(tmp_path / "plain.safetensors")


def test_strict_loading(weights):
    unet, vae, _, _ = tiny_components()
    partial = StageWeights(**{**weights.__dict__, "unet": dict(list(weights.unet.items())[1:])})
    with pytest.raises(ValueError, match="1 missing"):
        load_weights(unet, vae, partial)
    unet, vae, _, _ = tiny_components()
    key = next(k for k in weights.unet if "lora_A" in k)
    bad = dict(weights.unet)
    bad[key] = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="shape"):
        load_weights(unet, vae, StageWeights(**{**weights.__dict__, "unet": bad}))
