"""Tiny RAM / DAPE configurations and synthetic files written with the real key names."""

from __future__ import annotations

from pathlib import Path

import torch

from ebir_fast.models.ram import RamConfig, RamTaggingModel
from ebir_fast.models.swin import SwinConfig

TINY_SWIN = SwinConfig(
    image_size=32, patch_size=4, embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=4
)
TINY_RAM = RamConfig(
    swin=TINY_SWIN,
    num_classes=10,
    label_width=12,
    hidden_size=16,
    num_heads=2,
    intermediate_size=24,
    num_layers=2,
)
TAGS = [f"tag {i}" for i in range(TINY_RAM.num_classes)]


def randomize(module: torch.nn.Module, seed: int = 0, scale: float = 0.5) -> torch.nn.Module:
    """Every parameter drawn from N(0, scale^2): no term of the forward is trivial."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return module.eval()


def tiny_model(seed: int = 0) -> RamTaggingModel:
    return randomize(RamTaggingModel(TINY_RAM, TAGS), seed)


def ram_checkpoint(model: RamTaggingModel) -> dict:
    """A RAM-style file: state dict under "model", Swin's derived buffers, captioning branches."""
    state = dict(model.state_dict())
    for name, buf in model.visual_encoder.named_buffers():
        state[f"visual_encoder.{name}"] = buf.clone()
    # Entries of RAM's captioning branches, which the tagging path must skip.
    state["tag_encoder.encoder.layer.0.attention.self.query.weight"] = torch.zeros(4, 4)
    state["text_decoder.cls.predictions.bias"] = torch.zeros(7)
    return {"model": state, "epoch": 5}


def dape_lora(model: RamTaggingModel, rank: int = 3, seed: int = 1) -> dict[str, torch.Tensor]:
    """A DAPE-style flat LoRA dict for ``model`` with SeeSR's key names and shapes."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, module in model.named_modules():
        if name.endswith("attn.qkv"):
            dim = module.in_features
            out[f"{name}.lora_A"] = torch.randn(2 * rank, dim, generator=gen)
            out[f"{name}.lora_B"] = torch.randn(2 * dim, rank, generator=gen)
        elif name.endswith(("crossattention.self.query", "crossattention.self.key")):
            out[f"{name}.lora_A"] = torch.randn(rank, module.in_features, generator=gen)
            out[f"{name}.lora_B"] = torch.randn(module.out_features, rank, generator=gen)
    return out


def write_tag_files(folder: Path, thresholds: list[float] | None = None) -> tuple[Path, Path]:
    tag_list = folder / "ram_tag_list.txt"
    tag_list.write_text("\n".join(TAGS) + "\n", encoding="utf-8")
    threshold_file = folder / "ram_tag_list_threshold.txt"
    if thresholds is None:
        thresholds = [0.5] * TINY_RAM.num_classes
    threshold_file.write_text("\n".join(map(str, thresholds)) + "\n", encoding="utf-8")
    return tag_list, threshold_file
