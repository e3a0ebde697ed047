"""Full-size SD-2.1-base, OSEDiff stages and the DAPE tagger with random weights, built in memory.

Random weights cost exactly what real ones do, so these measure speed, never quality. Nothing is
downloaded: the configurations are SD-2.1-base's published ones and RAM Swin-L/384's.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.models.sd_helpers import random_stage_weights, write_tokenizer

from ebir_fast.models.base import BaseModel

SD21_UNET = dict(
    sample_size=64,
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),
    use_linear_projection=True,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    layers_per_block=2,
)
SD21_VAE = dict(
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    latent_channels=4,
    sample_size=768,
    scaling_factor=0.18215,
)
SD21_TEXT = dict(
    vocab_size=49408,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    max_position_embeddings=77,
    hidden_act="gelu",
    projection_dim=512,
    bos_token_id=512,
    eos_token_id=513,
    pad_token_id=513,
)


def sd21_base(tmp: Path, seed: int = 0) -> BaseModel:
    """SD-2.1-base's architecture with random weights (tokenizer: a byte-level stand-in)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    write_tokenizer(tmp / "tokenizer")
    tokenizer = CLIPTokenizer(
        str(tmp / "tokenizer" / "vocab.json"), str(tmp / "tokenizer" / "merges.txt")
    )
    tokenizer.model_max_length = 77
    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    return BaseModel(
        tokenizer=tokenizer,
        text_encoder=CLIPTextModel(CLIPTextConfig(**SD21_TEXT)).eval(),
        unet=UNet2DConditionModel(**SD21_UNET).eval(),
        vae=AutoencoderKL(**SD21_VAE).eval(),
        alphas_cumprod=sched.alphas_cumprod.double(),
        source="random SD-2.1-base architecture",
    )


def stage_weights(base: BaseModel, seed: int):
    """OSEDiff-placed rank-4 LoRA with random values (as a trained checkpoint would be)."""
    return random_stage_weights(base.unet, base.vae, rank=4, seed=seed, scale=0.01)


def dape_tagger(seed: int = 0):
    """RAM Swin-L/384 + Query2Label head with random weights (DAPE's merged LoRA adds nothing)."""
    from ebir_fast.models.ram import RAM_SWIN_L_384, RamTaggingModel
    from ebir_fast.models.tagger import DapeTagger

    torch.manual_seed(seed)
    tags = [f"tag{i}" for i in range(RAM_SWIN_L_384.num_classes)]
    model = RamTaggingModel(RAM_SWIN_L_384, tags)
    return DapeTagger(model)


def timed(fn, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` calls, seconds."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best
