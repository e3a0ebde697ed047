"""DAPE LoRA merge against an explicit unmerged LoRA forward; the three taggers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ebir_fast.models.dape import load_dape, merge_dape
from ebir_fast.models.ram import preprocess
from ebir_fast.models.tagger import DapeTagger, FixedPromptTagger, NullTagger, Tagger
from tests.models.helpers import (
    TAGS,
    TINY_RAM,
    dape_lora,
    ram_checkpoint,
    tiny_model,
    write_tag_files,
)


class _LoraLinear(nn.Module):
    """loralib's unmerged forward: ``base(x) + (x @ A^T @ B^T) * alpha / r``."""

    def __init__(self, base: nn.Linear, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        super().__init__()
        self.base, self.pairs = base, pairs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        for a, b in self.pairs:
            out = out + (x @ a.T @ b.T) * (1.0 / a.shape[0])
        return out


class _LoraMergedQKV(nn.Module):
    """loralib's MergedLinear with enable_lora=[True, False, True], unmerged: two groups of
    rank r whose outputs land in the query and value slices; the key slice gets nothing."""

    def __init__(self, base: nn.Linear, a: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.base, self.a, self.b = base, a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim, r = self.base.in_features, self.b.shape[1]
        after_a = x @ self.a.T  # [..., 2r]
        q = after_a[..., :r] @ self.b[:dim].T
        v = after_a[..., r:] @ self.b[dim:].T
        zeros = torch.zeros_like(q)
        return self.base(x) + torch.cat([q, zeros, v], -1) * (1.0 / r)


def _unmerged(model, lora):
    """A copy of ``model`` computing the LoRA updates explicitly in the forward."""
    model = copy.deepcopy(model)
    modules = dict(model.named_modules())
    for name, module in list(modules.items()):
        if f"{name}.lora_A" not in lora:
            continue
        parent_name, _, attr = name.rpartition(".")
        a, b = lora[f"{name}.lora_A"], lora[f"{name}.lora_B"]
        if attr == "qkv":
            wrapped = _LoraMergedQKV(module, a, b)
        else:
            pairs = [(a, b)]
            tied = "tag_encoder" + name[len("tagging_head") :]
            if f"{tied}.lora_A" in lora:
                pairs.append((lora[f"{tied}.lora_A"], lora[f"{tied}.lora_B"]))
            wrapped = _LoraLinear(module, pairs)
        setattr(modules[parent_name], attr, wrapped)
    return model


def test_merged_equals_unmerged_lora_forward():
    model = tiny_model()
    lora = dape_lora(model, rank=3)
    images = preprocess(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5)), 32)
    with torch.no_grad():
        expected = _unmerged(model, lora)(images)
        before = model(images)
        report = merge_dape(model, lora)
        merged = model(images)
    assert len(report.merged) == 4 + 4  # 4 Swin blocks, 2 layers x (query, key)
    assert (merged - before).abs().max() > 1e-2  # the LoRA changes the logits
    torch.testing.assert_close(merged, expected, atol=1e-5, rtol=1e-5)


def test_tied_tag_encoder_lora_is_added_and_captioning_lora_skipped():
    """SeeSR ties tag_encoder layers 0-1 to the tagging head, so their LoRA merges there too."""
    model = tiny_model()
    lora = dape_lora(model, rank=2)
    gen = torch.Generator().manual_seed(9)
    tied = "tag_encoder.encoder.layer.1.crossattention.self.key"
    lora[f"{tied}.lora_A"] = torch.randn(2, 12, generator=gen)
    lora[f"{tied}.lora_B"] = torch.randn(16, 2, generator=gen)
    untied = [
        "tag_encoder.encoder.layer.5.crossattention.self.key.lora_A",  # beyond the tied layers
        "tag_encoder.encoder.layer.0.attention.self.query.lora_B",  # the head has no self-attn
        "text_decoder.bert.encoder.layer.0.crossattention.self.query.lora_A",
    ]
    lora.update({k: torch.full((3, 3), 1e3) for k in untied})
    images = preprocess(torch.rand(1, 3, 32, 32), 32)
    with torch.no_grad():
        expected = _unmerged(model, lora)(images)
        report = merge_dape(model, lora)
        torch.testing.assert_close(model(images), expected, atol=1e-5, rtol=1e-5)
    assert tied in report.merged
    assert sorted(report.skipped) == sorted(untied)


def test_scaling_is_alpha_over_rank():
    model = tiny_model()
    lora = dape_lora(model, rank=4)
    name = "tagging_head.encoder.layer.0.crossattention.self.query"
    weight = model.tagging_head.encoder.layer[0].crossattention.self.query.weight
    before = weight.detach().clone()
    merge_dape(model, lora, alpha=2.0)
    delta = lora[f"{name}.lora_B"] @ lora[f"{name}.lora_A"]
    torch.testing.assert_close(weight.detach(), before + delta * (2.0 / 4))


def test_qkv_key_rows_are_untouched():
    model = tiny_model()
    qkv = model.visual_encoder.layers[1].blocks[0].attn.qkv
    before = qkv.weight.detach().clone()
    merge_dape(model, dape_lora(model))
    dim = qkv.in_features
    torch.testing.assert_close(qkv.weight[dim : 2 * dim], before[dim : 2 * dim], atol=0, rtol=0)
    assert (qkv.weight[:dim] - before[:dim]).abs().max() > 0
    assert (qkv.weight[2 * dim :] - before[2 * dim :]).abs().max() > 0


def test_missing_lora_keys_are_named():
    model = tiny_model()
    lora = dape_lora(model)
    del lora["visual_encoder.layers.1.blocks.1.attn.qkv.lora_B"]
    with pytest.raises(KeyError, match=r"1 missing keys \['visual_encoder\.layers\.1\.blocks\.1"):
        merge_dape(model, lora)


def test_unexpected_lora_keys_are_named():
    model = tiny_model()
    lora = dape_lora(model)
    lora["tagging_head.encoder.layer.0.crossattention.self.value.lora_A"] = torch.zeros(3, 12)
    with pytest.raises(KeyError, match=r"1 unexpected keys \['tagging_head.*value\.lora_A'\]"):
        merge_dape(model, lora)


def test_wrong_lora_shape_is_named():
    model = tiny_model()
    lora = dape_lora(model, rank=3)
    lora["visual_encoder.layers.0.blocks.0.attn.qkv.lora_A"] = torch.zeros(3, 8)
    with pytest.raises(
        ValueError, match=r"layers\.0\.blocks\.0\.attn\.qkv.*expected shapes \[6, 8\]"
    ):
        merge_dape(model, lora)


def test_missing_dape_file_names_its_source(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"DAPE LoRA checkpoint not found.*cswry/SeeSR"):
        load_dape(tmp_path / "DAPE.pth")


def _write_files(tmp_path, model, lora, thresholds):
    torch.save(ram_checkpoint(model), tmp_path / "ram_swin_large_14m.pth")
    torch.save(lora, tmp_path / "DAPE.pth")
    return write_tag_files(tmp_path, thresholds)


def test_dape_tagger_end_to_end(tmp_path):
    model = tiny_model(seed=7)
    lora = dape_lora(model, seed=8)
    images = torch.rand(4, 3, 40, 36, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        reference = _unmerged(model, lora)(preprocess(images, 32))
    probs = torch.sigmoid(reference.double())
    # Class k's threshold lies between its (k % 3 + 1)-th and (k % 3 + 2)-th smallest
    # probability over the batch: 3, 2 or 1 images have the tag, with a margin far above the
    # merge's rounding.
    ranked = probs.sort(0).values
    cut = torch.arange(10) % 3
    lower, upper = ranked[cut, torch.arange(10)], ranked[cut + 1, torch.arange(10)]
    assert (upper - lower).min() > 1e-5
    thresholds = ((lower + upper) / 2).tolist()
    tag_list, threshold_file = _write_files(tmp_path, model, lora, thresholds)
    tagger = DapeTagger.from_files(
        tmp_path / "ram_swin_large_14m.pth",
        tag_list,
        threshold_file,
        tmp_path / "DAPE.pth",
        config=TINY_RAM,
    )
    assert isinstance(tagger, Tagger)
    torch.testing.assert_close(tagger.logits(images), reference, atol=1e-5, rtol=1e-5)
    expected = [
        ", ".join(TAGS[k] for k in range(10) if probs[i, k] > thresholds[k]) for i in range(4)
    ]
    got = tagger(images)
    assert got == expected
    assert sum(len(s.split(", ")) for s in got if s) == 3 * 4 + 2 * 3 + 1 * 3
    chunked = DapeTagger(copy.deepcopy(tagger.model), max_batch=3)
    assert chunked(images) == got
    assert tagger(images[2:3]) == got[2:3]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dape_tagger_low_precision(dtype):
    model = tiny_model()
    merge_dape(model, dape_lora(model))
    reference = DapeTagger(copy.deepcopy(model)).logits(torch.rand(2, 3, 32, 32))
    tagger = DapeTagger(model, dtype=dtype)
    assert tagger.dtype == dtype
    assert tagger.model.class_threshold.dtype == torch.float32
    logits = tagger.logits(torch.rand(2, 3, 32, 32))
    assert logits.dtype == torch.float32
    assert logits.shape == reference.shape
    assert torch.isfinite(logits).all()
    assert len(tagger(torch.rand(2, 3, 32, 32))) == 2


def test_plain_ram_without_dape(tmp_path):
    model = tiny_model()
    tag_list, threshold_file = _write_files(tmp_path, model, {}, None)
    tagger = DapeTagger.from_files(
        tmp_path / "ram_swin_large_14m.pth", tag_list, threshold_file, None, config=TINY_RAM
    )
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(tagger.logits(images), model(preprocess(images, 32)))


def test_fixed_and_null_taggers():
    images = torch.rand(3, 3, 8, 8)
    assert FixedPromptTagger("a red car")(images) == ["a red car"] * 3
    assert NullTagger()(images) == ["", "", ""]
    assert isinstance(NullTagger(), Tagger)
    assert isinstance(FixedPromptTagger("x"), Tagger)
    with pytest.raises(TypeError, match="prompt: expected a str, got int"):
        FixedPromptTagger(3)


@pytest.mark.parametrize(
    "images",
    [torch.rand(3, 8, 8), torch.rand(1, 1, 8, 8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8)],
)
def test_taggers_check_images(images):
    with pytest.raises(ValueError, match=r"images: expected a floating \[B, 3, H, W\] tensor"):
        NullTagger()(images)
    with pytest.raises(ValueError, match=r"images: expected a floating \[B, 3, H, W\] tensor"):
        DapeTagger(tiny_model())(images)


def test_dape_tagger_argument_errors():
    with pytest.raises(ValueError, match="dtype: expected float32, float16 or bfloat16"):
        DapeTagger(tiny_model(), dtype=torch.float64)
    with pytest.raises(
        ValueError, match=r"exclude: expected class indices in \[0, 10\), got \[10\]"
    ):
        DapeTagger(tiny_model(), exclude=[10])
    with pytest.raises(ValueError, match="max_batch: expected None or >= 1, got 0"):
        DapeTagger(tiny_model(), max_batch=0)
