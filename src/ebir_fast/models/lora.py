"""OSEDiff's LoRA placement on the SD UNet and VAE encoder, and merging it into the weights.

OSEDiff (``osediff.py``, ``initialize_unet`` / ``initialize_vae``) lists its targets as full
module names built by scanning ``named_parameters()``: every weight (not bias, not norm) whose name
contains one of the patterns below. The UNet list is split into three peft adapters by location;
the VAE gets one adapter on its encoder and ``quant_conv``. peft's ``LoraConfig`` is used with its
default ``lora_alpha`` (8), so the LoRA scale is ``8 / rank``. Adapters are injected with peft, so
parameter names are exactly OSEDiff's and its checkpoints load by name.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

#: Substrings that select a UNet weight as a LoRA target (OSEDiff's ``l_grep``).
UNET_PATTERNS = (
    "to_k",
    "to_q",
    "to_v",
    "to_out.0",
    "conv",
    "conv1",
    "conv2",
    "conv_in",
    "conv_shortcut",
    "conv_out",
    "proj_out",
    "proj_in",
    "ff.net.2",
    "ff.net.0.proj",
)
#: Substrings that select a VAE encoder weight as a LoRA target.
VAE_PATTERNS = (
    "conv1",
    "conv2",
    "conv_in",
    "conv_shortcut",
    "conv",
    "conv_out",
    "to_k",
    "to_q",
    "to_v",
    "to_out.0",
)
#: The UNet adapters, in OSEDiff's order, and the VAE's.
UNET_ADAPTERS = ("default_encoder", "default_decoder", "default_others")
VAE_ADAPTER = "default_encoder"
#: peft's default ``lora_alpha``, which OSEDiff never overrides.
PEFT_DEFAULT_ALPHA = 8.0


@dataclass(frozen=True)
class LoraTargets:
    """Full module names that carry LoRA, per adapter (OSEDiff's checkpoint lists)."""

    unet_encoder: tuple[str, ...]
    unet_decoder: tuple[str, ...]
    unet_others: tuple[str, ...]
    vae_encoder: tuple[str, ...]

    @property
    def unet(self) -> dict[str, tuple[str, ...]]:
        lists = (self.unet_encoder, self.unet_decoder, self.unet_others)
        return dict(zip(UNET_ADAPTERS, lists, strict=True))


def _weight_modules(model: nn.Module) -> list[str]:
    return [
        n.removesuffix(".weight")
        for n, _ in model.named_parameters()
        if n.endswith(".weight") and "bias" not in n and "norm" not in n
    ]


def osediff_targets(unet: nn.Module, vae: nn.Module) -> LoraTargets:
    """The LoRA targets OSEDiff trains on ``unet`` / ``vae`` (plain diffusers models)."""
    enc: list[str] = []
    dec: list[str] = []
    others: list[str] = []
    for name in _weight_modules(unet):
        if not any(p in name for p in UNET_PATTERNS):
            continue
        if "down_blocks" in name or "conv_in" in name:
            enc.append(name)
        elif "up_blocks" in name or "conv_out" in name:
            dec.append(name)
        else:
            others.append(name)
    vae_enc = [
        name
        for name in _weight_modules(vae)
        if (name.startswith("encoder.") and any(p in name for p in VAE_PATTERNS))
        or name == "quant_conv"
    ]
    return LoraTargets(tuple(enc), tuple(dec), tuple(others), tuple(vae_enc))


def _config(rank: int, alpha: float, targets: Sequence[str]):
    from peft import LoraConfig

    return LoraConfig(
        r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=list(targets)
    )


def add_unet_adapters(
    unet: nn.Module, targets: LoraTargets, rank: int, alpha: float = PEFT_DEFAULT_ALPHA
) -> None:
    """Inject OSEDiff's three UNet adapters (peft) and activate all of them."""
    with warnings.catch_warnings():
        # peft warns that a second adapter joins the first: three adapters is OSEDiff's design.
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        for name, modules in targets.unet.items():
            if modules:
                unet.add_adapter(_config(rank, alpha, modules), adapter_name=name)
    unet.set_adapters([n for n, m in targets.unet.items() if m])


def add_vae_adapter(
    vae: nn.Module, targets: LoraTargets, rank: int, alpha: float = PEFT_DEFAULT_ALPHA
) -> None:
    """Inject OSEDiff's VAE-encoder adapter (peft) and activate it."""
    if targets.vae_encoder:
        vae.add_adapter(_config(rank, alpha, targets.vae_encoder), adapter_name=VAE_ADAPTER)
        vae.set_adapter(VAE_ADAPTER)


def lora_layers(model: nn.Module) -> list[str]:
    """Names of the modules of ``model`` that carry peft LoRA layers."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [n for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]


@torch.no_grad()
def merge_lora(model: nn.Module) -> int:
    """Fold every active LoRA into its base weight (in float32) and remove the LoRA layers.

    The model must be float32 (merge first, then cast: a float16 merge rounds the update away).
    diffusers models with injected adapters have no ``merge_and_unload``; this is the equivalent.
    Returns the number of layers merged.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:
        raise ValueError(f"model: expected float32 parameters to merge LoRA, got {sorted(dtypes)}")
    merged = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, BaseTunerLayer):
            continue
        module.merge(adapter_names=list(module.active_adapters))
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
        merged += 1
    # diffusers remembers that adapters were loaded; after unloading there are none.
    if hasattr(model, "_hf_peft_config_loaded"):
        model._hf_peft_config_loaded = False
    if hasattr(model, "peft_config"):
        del model.peft_config
    return merged
