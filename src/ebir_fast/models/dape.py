"""SeeSR's DAPE (degradation-aware prompt extractor): LoRA on RAM, merged into the weights.

Facts from ``cswry/SeeSR`` (``ram/models/swin_transformer_lora.py``, ``ram/models/bert_lora.py``,
``ram/models/ram_lora.py``, ``basicsr/models/dape_model.py``) and ``microsoft/LoRA``
(``loralib/layers.py``):

- Swin: every ``attn.qkv`` is ``lora.MergedLinear(dim, 3*dim, r=8, enable_lora=[True, False,
  True])``: ``lora_A`` ``[2r, dim]`` and ``lora_B`` ``[2*dim, r]`` hold two groups; group 0
  (``A[:r]``, ``B[:dim]``) updates the query rows ``W[:dim]``, group 1 (``A[r:]``, ``B[dim:]``)
  the value rows ``W[2*dim:]``; the key rows are untouched.
- BERT (every ``BertSelfAttention``): ``query`` and ``key`` are ``lora.Linear(..., r=8)``,
  ``lora_A`` ``[r, in]``, ``lora_B`` ``[out, r]``; ``value`` has no LoRA.
- Scaling ``lora_alpha / r`` with loralib's default ``lora_alpha = 1`` (SeeSR passes none):
  ``W += (B @ A) / 8``. loralib merges this into the weights when the model is put in eval mode.
- ``DAPE.pth`` is a flat dict of every ``lora_`` entry of SeeSR's ``RAMLora`` state dict (saved
  by ``DAPEModel.save_network_lora``), so it also holds LoRA of RAM's captioning branches
  (``tag_encoder``, ``text_decoder``), which DAPE's training never used (their ``lora_B`` stays
  at its zero initialisation). They are skipped, except one case that reaches the tagging path:
- RAM ties the weights of ``tag_encoder.encoder.layer.{i}`` to ``tagging_head.encoder.layer.{i}``
  (``tie_encoder_decoder_weights``), so on ``eval()`` loralib merges both modules' LoRA into
  the same tensor. ``tag_encoder`` cross-attention query/key LoRA of the tied layers is
  therefore added to the tagging head here too (zero in the released file, but exact anyway).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ebir_fast.models.ram import (
    TAGGING_MODULES,
    RamTaggingModel,
    key_list,
    load_weights_file,
    require_file,
)
from ebir_fast.models.swin import SwinBlock

DAPE_SOURCE = (
    "SeeSR's release (github.com/cswry/SeeSR, README: DAPE.pth in preset/models; OSEDiff uses "
    "the same file)"
)
# loralib's default lora_alpha; SeeSR builds every LoRA layer without setting it.
LORALIB_DEFAULT_ALPHA = 1.0


@dataclass
class MergeReport:
    """What :func:`merge_dape` did: merged module names and skipped checkpoint keys."""

    merged: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def load_dape(path: str | Path) -> dict[str, torch.Tensor]:
    """The LoRA entries of ``DAPE.pth`` (flat; a BasicSR ``{"params": ...}`` wrapper is opened)."""
    p = require_file(path, "DAPE LoRA checkpoint", DAPE_SOURCE)
    obj = load_weights_file(p, "DAPE LoRA checkpoint")
    if set(obj) == {"params"} and isinstance(obj["params"], Mapping):
        obj = obj["params"]
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _targets(model: RamTaggingModel) -> dict[str, tuple[nn.Linear, bool]]:
    """Module name -> (linear layer, is Swin's merged qkv) for every DAPE LoRA target."""
    out: dict[str, tuple[nn.Linear, bool]] = {}
    for name, module in model.visual_encoder.named_modules():
        if isinstance(module, SwinBlock):
            out[f"visual_encoder.{name}.attn.qkv"] = (module.attn.qkv, True)
    for i, layer in enumerate(model.tagging_head.encoder.layer):
        proj = layer.crossattention.self
        for part in ("query", "key"):
            out[f"tagging_head.encoder.layer.{i}.crossattention.self.{part}"] = (
                getattr(proj, part),
                False,
            )
    return out


def _lora_delta(
    name: str, a: torch.Tensor, b: torch.Tensor, linear: nn.Linear, merged_qkv: bool
) -> tuple[torch.Tensor, int]:
    """``(B @ A)`` laid out like ``linear.weight`` (fp32), and the rank."""
    out_f, in_f = linear.weight.shape
    groups = 2 if merged_qkv else 1
    rank = b.shape[-1] if b.dim() == 2 else -1
    expected_a = (groups * rank, in_f)
    expected_b = (out_f // 3 * 2 if merged_qkv else out_f, rank)
    if b.dim() != 2 or rank < 1 or tuple(a.shape) != expected_a or tuple(b.shape) != expected_b:
        raise ValueError(
            f"DAPE entries {name}.lora_A / lora_B: expected shapes {list(expected_a)} / "
            f"{list(expected_b)} for a rank-r LoRA of a {in_f} -> {out_f} layer, "
            f"got {list(a.shape)} / {list(b.shape)}"
        )
    a, b = a.float(), b.float()
    if not merged_qkv:
        return b @ a, rank
    dim = out_f // 3
    delta = torch.zeros(out_f, in_f)
    delta[:dim] = b[:dim] @ a[:rank]  # query rows
    delta[2 * dim :] = b[dim:] @ a[rank:]  # value rows
    return delta, rank


def _tied_source(name: str, num_layers: int) -> str | None:
    """The tagging-head module a ``tag_encoder`` LoRA module is weight-tied to, if any."""
    prefix = "tag_encoder.encoder.layer."
    if not name.startswith(prefix):
        return None
    index, _, rest = name[len(prefix) :].partition(".")
    if not index.isdigit() or int(index) >= num_layers:
        return None
    if rest not in ("crossattention.self.query", "crossattention.self.key"):
        return None
    return f"tagging_head.encoder.layer.{index}.{rest}"


@torch.no_grad()
def merge_dape(
    model: RamTaggingModel,
    lora: Mapping[str, torch.Tensor],
    alpha: float = LORALIB_DEFAULT_ALPHA,
) -> MergeReport:
    """Merge DAPE's LoRA into ``model``'s weights in float32: ``W += (alpha / r) * B @ A``.

    Args:
        model: RAM's tagging model with RAM's weights loaded (float32).
        lora: ``DAPE.pth`` entries (``<module>.lora_A`` / ``<module>.lora_B``).
        alpha: loralib's ``lora_alpha`` (SeeSR: the default, 1).
    Raises:
        KeyError: a LoRA target of the tagging path has no entries (names the missing keys), or
            an entry of the tagging path names no LoRA target (names the unexpected keys).
        ValueError: LoRA shapes that do not fit their layer.
    """
    targets = _targets(model)
    num_layers = len(model.tagging_head.encoder.layer)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    report = MergeReport()
    unexpected = []
    for key, value in lora.items():
        module, _, leaf = key.rpartition(".")
        tied = _tied_source(module, num_layers)
        if leaf in ("lora_A", "lora_B") and (module in targets or tied is not None):
            pairs.setdefault(module, {})[leaf] = value
        elif key.split(".", 1)[0] in TAGGING_MODULES:
            unexpected.append(key)
        else:
            report.skipped.append(key)  # RAM's captioning branches: not on the tagging path
    missing = [
        f"{name}.{leaf}"
        for name in targets
        for leaf in ("lora_A", "lora_B")
        if leaf not in pairs.get(name, {})
    ]
    missing += [
        f"{name}.{leaf}"
        for name, entries in pairs.items()
        if name not in targets
        for leaf in ("lora_A", "lora_B")
        if leaf not in entries
    ]
    if missing or unexpected:
        raise KeyError(
            f"DAPE LoRA does not match the tagging model: {len(missing)} missing keys "
            f"{key_list(sorted(missing))}, {len(unexpected)} unexpected keys "
            f"{key_list(sorted(unexpected))}"
        )
    for name, entries in pairs.items():
        target = name if name in targets else _tied_source(name, num_layers)
        linear, merged_qkv = targets[target]
        delta, rank = _lora_delta(name, entries["lora_A"], entries["lora_B"], linear, merged_qkv)
        weight = linear.weight
        weight.copy_((weight.float() + delta.to(weight.device) * (alpha / rank)).to(weight.dtype))
        report.merged.append(name)
    return report
