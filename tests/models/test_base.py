"""Loading SD-2.1-base: folders, missing files, the v-prediction model, the hub offline."""

import json
import shutil

import pytest

from ebir_fast.models.base import load_base, missing_files


def test_loads_a_diffusers_folder(tiny_base_dir):
    base = load_base(tiny_base_dir)
    assert base.unet.config.cross_attention_dim == base.text_encoder.config.hidden_size
    assert float(base.alphas_cumprod[999]) == pytest.approx(0.00466, abs=2e-5)
    assert missing_files(tiny_base_dir) == []


def test_missing_files_are_listed(tiny_base_dir, tmp_path):
    folder = tmp_path / "base"
    shutil.copytree(tiny_base_dir, folder)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (folder / "tokenizer" / "merges.txt").unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_base(folder)
    msg = str(err.value)
    assert "tokenizer/merges.txt" in msg
    assert "unet/diffusion_pytorch_model.safetensors" in msg
    assert "stable-diffusion-2-1-base" in msg  # where to get it


def test_v_prediction_model_is_refused(tiny_base_dir, tmp_path):
    folder = tmp_path / "v"
    shutil.copytree(tiny_base_dir, folder)
    cfg_path = folder / "scheduler" / "scheduler_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["prediction_type"] = "v_prediction"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"v_prediction.*SD-2\.1-base"):
        load_base(folder)


def test_hub_id_offline_and_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Hugging Face hub.*mirror"):
        load_base("nobody/no-such-model", local_files_only=True)
    with pytest.raises(FileNotFoundError, match="neither a folder nor a hub id"):
        load_base(tmp_path / "nothing-here")
