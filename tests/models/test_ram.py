"""RAM's tagging path: key names, the Query2Label head, checkpoint loading, thresholds, input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ebir_fast.models.ram import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RAM_SWIN_L_384,
    RamTaggingModel,
    load_ram,
    preprocess,
    read_thresholds,
)
from tests.models.helpers import TAGS, TINY_RAM, ram_checkpoint, tiny_model, write_tag_files


def _head_keys(layers: int) -> set[str]:
    """RAM's tagging_head entries: BERT layers without embeddings and self-attention."""
    names = [
        "crossattention.self.query",
        "crossattention.self.key",
        "crossattention.self.value",
        "crossattention.output.dense",
        "crossattention.output.LayerNorm",
        "intermediate.dense",
        "output.dense",
        "output.LayerNorm",
    ]
    return {
        f"tagging_head.encoder.layer.{i}.{n}.{p}"
        for i in range(layers)
        for n in names
        for p in ("weight", "bias")
    }


def test_non_backbone_keys_are_rams():
    keys = {k for k in tiny_model().state_dict() if not k.startswith("visual_encoder.")}
    top = {"label_embed", "image_proj.weight", "image_proj.bias", "wordvec_proj.weight"}
    top |= {"wordvec_proj.bias", "fc.weight", "fc.bias"}
    assert keys == top | _head_keys(2)


def test_swin_l_shapes():
    with torch.device("meta"):
        model = RamTaggingModel(RAM_SWIN_L_384)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["label_embed"] == (4585, 512)
    assert shapes["image_proj.weight"] == (512, 1536)
    assert shapes["wordvec_proj.weight"] == (768, 512)
    assert shapes["tagging_head.encoder.layer.1.crossattention.self.key.weight"] == (768, 512)
    assert shapes["tagging_head.encoder.layer.1.crossattention.self.query.weight"] == (768, 768)
    assert shapes["tagging_head.encoder.layer.0.intermediate.dense.weight"] == (3072, 768)
    assert shapes["fc.weight"] == (1, 768)


def _layer_norm(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-12) * norm.weight + norm.bias  # BERT: eps 1e-12


def _naive_logits(model: RamTaggingModel, images: torch.Tensor) -> torch.Tensor:
    """BERT's cross-attention layers written out (explicit softmax, the all-ones mask adds 0)."""
    cfg = model.config
    image = model.image_proj(model.visual_encoder(images))  # [B, T, E]
    h = F.relu(model.wordvec_proj(model.label_embed)).expand(images.shape[0], -1, -1)
    heads, d = cfg.num_heads, cfg.hidden_size // cfg.num_heads
    for layer in model.tagging_head.encoder.layer:
        att = layer.crossattention
        q = att.self.query(h).unflatten(-1, (heads, d)).transpose(1, 2)
        k = att.self.key(image).unflatten(-1, (heads, d)).transpose(1, 2)
        v = att.self.value(image).unflatten(-1, (heads, d)).transpose(1, 2)
        probs = (q @ k.transpose(-1, -2) / math.sqrt(d)).softmax(-1)
        ctx = (probs @ v).transpose(1, 2).flatten(2)
        a = _layer_norm(att.output.dense(ctx) + h, att.output.LayerNorm)
        mid = layer.intermediate.dense(a)
        gelu = 0.5 * mid * (1 + torch.erf(mid / math.sqrt(2)))  # BERT's "gelu": exact
        h = _layer_norm(layer.output.dense(gelu) + a, layer.output.LayerNorm)
    return model.fc(h)[..., 0]


def test_head_matches_written_out_bert():
    model = tiny_model()
    images = preprocess(torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3)), 32)
    with torch.no_grad():
        torch.testing.assert_close(
            model(images), _naive_logits(model, images), atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize("layout", ["model", "flat", "vision_multi", "legacy_format"])
def test_synthetic_checkpoint_loads_strictly_and_reproduces(tmp_path, layout):
    source = tiny_model(seed=4)
    ckpt = ram_checkpoint(source)
    if layout == "flat":
        ckpt = ckpt["model"]
    elif layout == "vision_multi":  # the tagging head's earlier name, renamed by RAM's loader
        state = ckpt["model"]
        for key in [k for k in state if k.startswith("tagging_head.")]:
            state["vision_multi." + key[len("tagging_head.") :]] = state.pop(key)
    # Files written by torch < 1.6 (not zip-based) cannot be memory-mapped: the loader falls back.
    torch.save(ckpt, tmp_path / "ram.pth", _use_new_zipfile_serialization=layout != "legacy_format")
    tag_list, thresholds = write_tag_files(tmp_path)
    model = load_ram(tmp_path / "ram.pth", tag_list, thresholds, TINY_RAM)
    assert model.tag_list == TAGS
    assert not any(p.requires_grad for p in model.parameters())
    images = preprocess(torch.rand(2, 3, 32, 32), 32)
    with torch.no_grad():
        torch.testing.assert_close(model(images), source(images), atol=0, rtol=0)


def _load_with(tmp_path, mutate):
    ckpt = ram_checkpoint(tiny_model())
    mutate(ckpt["model"])
    torch.save(ckpt, tmp_path / "ram.pth")
    tag_list, thresholds = write_tag_files(tmp_path)
    return load_ram(tmp_path / "ram.pth", tag_list, thresholds, TINY_RAM)


def test_missing_key_is_named(tmp_path):
    key = "tagging_head.encoder.layer.1.output.LayerNorm.bias"
    with pytest.raises(KeyError, match=r"1 missing keys \['tagging_head\.encoder\.layer\.1\."):
        _load_with(tmp_path, lambda s: s.pop(key))


def test_unexpected_key_is_named(tmp_path):
    key = "tagging_head.encoder.layer.2.output.dense.weight"
    with pytest.raises(KeyError, match=r"1 unexpected keys \['tagging_head\.encoder\.layer\.2"):
        _load_with(tmp_path, lambda s: s.update({key: torch.zeros(1)}))


def test_shape_mismatch_is_named(tmp_path):
    with pytest.raises(
        ValueError, match=r"'label_embed': expected shape \[10, 12\], got \[11, 12\]"
    ):
        _load_with(tmp_path, lambda s: s.update({"label_embed": torch.zeros(11, 12)}))


def test_not_a_ram_checkpoint(tmp_path):
    torch.save({"state_dict": {"a": torch.zeros(1)}}, tmp_path / "other.pth")
    tag_list, thresholds = write_tag_files(tmp_path)
    with pytest.raises(ValueError, match=r"expected a state dict under 'model'.*\['state_dict'\]"):
        load_ram(tmp_path / "other.pth", tag_list, thresholds, TINY_RAM)


class _Opaque:
    pass


def test_pickled_objects_are_refused(tmp_path):
    ckpt = ram_checkpoint(tiny_model())
    ckpt["args"] = _Opaque()
    torch.save(ckpt, tmp_path / "ram.pth")
    tag_list, thresholds = write_tag_files(tmp_path)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_ram(tmp_path / "ram.pth", tag_list, thresholds, TINY_RAM)


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("ckpt", r"RAM checkpoint not found: .*ram\.pth.*recognize_anything_model"),
        ("tags", r"RAM tag list not found: .*ram_tag_list\.txt.*xinyu1205/recognize-anything"),
        ("thresholds", r"RAM threshold file not found: .*ram_tag_list_threshold\.txt"),
    ],
)
def test_missing_files_name_the_file_and_its_source(tmp_path, missing, message):
    torch.save(ram_checkpoint(tiny_model()), tmp_path / "ram.pth")
    tag_list, thresholds = write_tag_files(tmp_path)
    {"ckpt": tmp_path / "ram.pth", "tags": tag_list, "thresholds": thresholds}[missing].unlink()
    with pytest.raises(FileNotFoundError, match=message):
        load_ram(tmp_path / "ram.pth", tag_list, thresholds, TINY_RAM)


def test_tag_list_length_must_match(tmp_path):
    torch.save(ram_checkpoint(tiny_model()), tmp_path / "ram.pth")
    tag_list, thresholds = write_tag_files(tmp_path)
    tag_list.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"tag_list: expected 10 tags \(one per class\), got 2"):
        load_ram(tmp_path / "ram.pth", tag_list, thresholds, TINY_RAM)


def test_threshold_file_overrides_the_default_per_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("0.65\n0.8\n1\n", encoding="utf-8")
    expected = torch.tensor([0.65, 0.8, 1.0] + [0.68] * 4)
    torch.testing.assert_close(read_thresholds(path, 7), expected)


def test_threshold_file_errors(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("0.5\n0.5\n0.5\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected at most 2 lines"):
        read_thresholds(path, 2)
    path.write_text("0.5\nhigh\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2: expected a number, got 'high'"):
        read_thresholds(path, 2)


def test_thresholds_apply_per_class():
    model = tiny_model()
    model.set_thresholds(torch.tensor([0.5, 0.7, 0.71, 0.9, 0.2, 0.5, 0.5, 0.5, 0.5, 0.99]))
    p = torch.tensor(
        [
            [0.6, 0.705, 0.705, 0.95, 0.1, 0.5, 0.4, 0.4, 0.4, 0.995],
            [0.4, 0.69, 0.72, 0.85, 0.3, 0.4, 0.4, 0.4, 0.6, 0.4],
        ],
        dtype=torch.float64,
    )
    logits = torch.log(p / (1 - p)).float()
    # Strictly greater: class 5 at exactly its threshold (sigmoid(0) = 0.5) stays off.
    assert model.tags_from_logits(logits) == [
        "tag 0, tag 1, tag 3, tag 9",
        "tag 2, tag 4, tag 8",
    ]
    assert model.tags_from_logits(logits, exclude=[1, 9]) == ["tag 0, tag 3", "tag 2, tag 4, tag 8"]
    assert model.tags_from_logits(torch.full((1, 10), -20.0)) == [""]


def test_preprocess_resizes_and_normalises():
    images = torch.full((2, 3, 20, 28), 0.25)
    out = preprocess(images, 32)
    assert out.shape == (2, 3, 32, 32)
    assert out.dtype == torch.float32
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    expected = ((0.25 - mean) / std).view(1, 3, 1, 1).expand(2, 3, 32, 32)
    torch.testing.assert_close(out, expected)
    ramp = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64)
    plain = preprocess(ramp, 32)
    assert not torch.equal(plain, preprocess(ramp.flip(-1), 32))
    unnorm = plain * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    torch.testing.assert_close(unnorm, F.interpolate(ramp, size=(32, 32), mode="bilinear"))
