"""OSEDiff's LoRA placement and the fp32 merge."""

import pytest
import torch

from ebir_fast.models.lora import (
    PEFT_DEFAULT_ALPHA,
    UNET_ADAPTERS,
    add_unet_adapters,
    add_vae_adapter,
    lora_layers,
    merge_lora,
    osediff_targets,
)
from tests.models.sd_helpers import tiny_components

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
)


def _lora_params(model, names, rank):
    total = 0
    for name in names:
        m = model.get_submodule(name)
        if isinstance(m, torch.nn.Linear):
            total += rank * (m.in_features + m.out_features)
        else:  # peft's conv LoRA: A has the kernel, B is 1x1
            kh, kw = m.kernel_size
            total += rank * m.in_channels * kh * kw + m.out_channels * rank
    return total


def test_targets_follow_osediff_rules():
    unet, vae, _, _ = tiny_components()
    t = osediff_targets(unet, vae)
    assert all("down_blocks" in n or "conv_in" in n for n in t.unet_encoder)
    assert all("up_blocks" in n or "conv_out" in n for n in t.unet_decoder)
    assert "conv_in" in t.unet_encoder
    assert "conv_out" in t.unet_decoder
    assert all("down_blocks" not in n and "up_blocks" not in n for n in t.unet_others)
    assert any(n.startswith("mid_block") for n in t.unet_others)
    every = t.unet_encoder + t.unet_decoder + t.unet_others
    assert not any("norm" in n for n in every)
    # time embedding linears match no pattern; attention and conv layers all do.
    assert not any(n.startswith("time_embedding") for n in every)
    assert "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q" in t.unet_encoder
    assert "up_blocks.1.attentions.0.transformer_blocks.0.ff.net.2" in t.unet_decoder
    assert "quant_conv" in t.vae_encoder
    assert "post_quant_conv" not in t.vae_encoder
    assert all(n.startswith("encoder.") or n == "quant_conv" for n in t.vae_encoder)


def test_full_sd21_trainable_count_matches_osediff():
    """OSEDiff reports 8.5 M trainable parameters at rank 4.

    They are the generator's LoRA (UNet + VAE encoder) and full ``conv_in`` plus the LoRA of the
    VSD regulariser UNet, which has the same UNet placement: 2 x 4.06 + 0.37 + 0.01 = 8.49 M.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD21_UNET)
        vae = AutoencoderKL(**SD21_VAE)
    t = osediff_targets(unet, vae)
    lora = _lora_params(unet, t.unet_encoder + t.unet_decoder + t.unet_others, 4)
    lora += _lora_params(vae, t.vae_encoder, 4)
    conv_in = sum(p.numel() for p in unet.conv_in.parameters())
    assert sum(p.numel() for p in unet.parameters()) == pytest.approx(866e6, rel=0.01)
    unet_lora = _lora_params(unet, t.unet_encoder + t.unet_decoder + t.unet_others, 4)
    assert (lora + unet_lora + conv_in) / 1e6 == pytest.approx(8.5, abs=0.05)


def test_adapters_and_merge_match_unmerged():
    unet, vae, _, _ = tiny_components()
    t = osediff_targets(unet, vae)
    add_unet_adapters(unet, t, rank=4)
    add_vae_adapter(vae, t, rank=4)
    assert len(lora_layers(unet)) == len(t.unet_encoder + t.unet_decoder + t.unet_others)
    layer = unet.get_submodule("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q")
    assert set(layer.lora_A) == {"default_encoder"}
    assert layer.scaling["default_encoder"] == PEFT_DEFAULT_ALPHA / 4
    assert set(unet.peft_config) == set(UNET_ADAPTERS)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in unet.named_parameters():
            if "lora_B" in n:  # peft initialises B to zero: make the LoRA do something
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    z = torch.randn(2, 4, 8, 8, generator=gen)
    emb = torch.randn(2, 77, 32, generator=gen)
    t999 = torch.full((2,), 999)
    with torch.no_grad():
        before = unet(z, t999, encoder_hidden_states=emb).sample
        assert merge_lora(unet) == len(t.unet_encoder + t.unet_decoder + t.unet_others)
        after = unet(z, t999, encoder_hidden_states=emb).sample
    assert lora_layers(unet) == []
    assert not any("lora" in n or "base_layer" in n for n, _ in unet.named_parameters())
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


def test_merge_refuses_half_precision():
    unet, vae, _, _ = tiny_components()
    add_vae_adapter(vae, osediff_targets(unet, vae), rank=2)
    with pytest.raises(ValueError, match="float32"):
        merge_lora(vae.half())
