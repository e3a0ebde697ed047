"""Tiny SD-2-style components (configs from docs/toolchain.md) saved in diffusers layout."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ebir_fast.models.checkpoint import StageWeights
from ebir_fast.models.lora import PEFT_DEFAULT_ALPHA, osediff_targets

TEXT_DIM = 32


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible byte -> printable character table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = list(keep)
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, map(chr, chars), strict=False))


def write_tokenizer(folder: Path) -> None:
    """A byte-level CLIP vocabulary with no merges: every word is spelled out in bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")


def tiny_components(seed: int = 0):
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=(32, 64, 64, 64),
        layers_per_block=1,
        norm_num_groups=8,
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=(2, 4, 4, 4),
        use_linear_projection=True,
    )
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        scaling_factor=0.18215,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=1000,
            hidden_size=TEXT_DIM,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
        )
    )
    sched = DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        prediction_type="epsilon",
    )
    return unet, vae, text, sched


def write_tiny_base(folder: Path, seed: int = 0) -> Path:
    """A tiny SD-2-style model in diffusers layout at ``folder``."""
    unet, vae, text, sched = tiny_components(seed)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text.save_pretrained(folder / "text_encoder")
    sched.save_pretrained(folder / "scheduler")
    write_tokenizer(folder / "tokenizer")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return folder


def random_stage_weights(unet, vae, rank: int = 4, seed: int = 1, scale: float = 0.05):
    """OSEDiff-placed LoRA tensors (and a changed ``conv_in``) with random, non-zero values."""
    import copy

    from ebir_fast.models.lora import add_unet_adapters, add_vae_adapter

    unet, vae = copy.deepcopy(unet), copy.deepcopy(vae)
    targets = osediff_targets(unet, vae)
    add_unet_adapters(unet, targets, rank)
    add_vae_adapter(vae, targets, rank)
    gen = torch.Generator().manual_seed(seed)
    unet_t = {
        n: torch.randn(p.shape, generator=gen) * scale + (p.detach() if "conv_in" in n else 0)
        for n, p in unet.named_parameters()
        if "lora" in n or "conv_in" in n
    }
    vae_t = {
        n: torch.randn(p.shape, generator=gen) * scale
        for n, p in vae.named_parameters()
        if "lora" in n
    }
    return StageWeights(
        targets=targets,
        rank_unet=rank,
        rank_vae=rank,
        unet=unet_t,
        vae=vae_t,
        alpha_unet=PEFT_DEFAULT_ALPHA,
        alpha_vae=PEFT_DEFAULT_ALPHA,
    )
