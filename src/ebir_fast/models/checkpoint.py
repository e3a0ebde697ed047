"""Checkpoints of a one-step stage: OSEDiff's ``osediff.pkl`` and our safetensors format.

Both hold the same content (:class:`StageWeights`): the LoRA tensors of the UNet (three adapters)
and of the VAE encoder, the fully trained ``unet.conv_in``, the ranks, and the target module
lists. Tensor names are the parameter names of the peft-injected diffusers models, so a checkpoint
loads by name.

- ``osediff.pkl``: a torch pickle with keys ``vae_lora_encoder_modules``,
  ``unet_lora_{encoder,decoder,others}_modules``, ``rank_unet``, ``rank_vae``, ``state_dict_unet``
  (entries containing "lora" or "conv_in") and ``state_dict_vae`` (entries containing "lora").
  Read with ``weights_only=True``: a pickle cannot run code on load. peft's default ``lora_alpha``
  (8) is implied.
- ours (``.safetensors``): tensors ``unet.<name>`` / ``vae.<name>``; the metadata entry
  ``ebir_fast`` holds a JSON header with the format version, ranks, alphas and target lists.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ebir_fast.io import atomic_write
from ebir_fast.models.lora import PEFT_DEFAULT_ALPHA, LoraTargets

FORMAT_NAME = "ebir-fast-stage"
FORMAT_VERSION = 1
_OSEDIFF_KEYS = (
    "vae_lora_encoder_modules",
    "unet_lora_encoder_modules",
    "unet_lora_decoder_modules",
    "unet_lora_others_modules",
    "rank_unet",
    "rank_vae",
    "state_dict_unet",
    "state_dict_vae",
)
_OSEDIFF_SUFFIXES = (".pkl", ".pt", ".pth", ".bin")


@dataclass
class StageWeights:
    """The trained part of a one-step stage (what a checkpoint stores)."""

    targets: LoraTargets
    rank_unet: int
    rank_vae: int
    unet: dict[str, torch.Tensor] = field(repr=False)
    vae: dict[str, torch.Tensor] = field(repr=False)
    alpha_unet: float = PEFT_DEFAULT_ALPHA
    alpha_vae: float = PEFT_DEFAULT_ALPHA

    def __post_init__(self) -> None:
        for name in ("rank_unet", "rank_vae"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")

    def header(self) -> dict:
        """The JSON-serialisable description (everything but the tensors)."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "rank_unet": self.rank_unet,
            "rank_vae": self.rank_vae,
            "alpha_unet": self.alpha_unet,
            "alpha_vae": self.alpha_vae,
            "unet_lora_encoder_modules": list(self.targets.unet_encoder),
            "unet_lora_decoder_modules": list(self.targets.unet_decoder),
            "unet_lora_others_modules": list(self.targets.unet_others),
            "vae_lora_encoder_modules": list(self.targets.vae_encoder),
        }


def _targets(d: dict, where: str) -> LoraTargets:
    out = []
    for key in (
        "unet_lora_encoder_modules",
        "unet_lora_decoder_modules",
        "unet_lora_others_modules",
        "vae_lora_encoder_modules",
    ):
        value = d[key]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{where}: {key!r} must be a list of module names")
        # OSEDiff's VAE scan appends a module once per matching pattern: keep the first.
        out.append(tuple(dict.fromkeys(value)))
    return LoraTargets(*out)


def _tensors(d, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(d, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items()
    ):
        raise ValueError(f"{where}: expected a dict of name -> tensor")
    return dict(d)


def load_osediff(path: str | os.PathLike) -> StageWeights:
    """Read an OSEDiff checkpoint (``osediff.pkl``) safely (``weights_only=True``)."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # unpickling refusals and corrupt files
        raise ValueError(
            f"path: {path} is not a loadable OSEDiff checkpoint (read with weights_only=True): "
            f"{err}"
        ) from err
    if not isinstance(ckpt, dict):
        raise ValueError(f"path: {path} holds a {type(ckpt).__name__}, expected OSEDiff's dict")
    missing = [k for k in _OSEDIFF_KEYS if k not in ckpt]
    if missing:
        raise ValueError(f"path: {path} is not an OSEDiff checkpoint; missing keys {missing}")
    return StageWeights(
        targets=_targets(ckpt, str(path)),
        rank_unet=ckpt["rank_unet"],
        rank_vae=ckpt["rank_vae"],
        unet=_tensors(ckpt["state_dict_unet"], f"{path}: state_dict_unet"),
        vae=_tensors(ckpt["state_dict_vae"], f"{path}: state_dict_vae"),
    )


def save_osediff(weights: StageWeights, path: str | os.PathLike) -> None:
    """Write ``weights`` as an OSEDiff ``osediff.pkl`` (atomically).

    OSEDiff's format has no alpha field: it implies peft's default (8), so other alphas refuse.
    """
    if weights.alpha_unet != PEFT_DEFAULT_ALPHA or weights.alpha_vae != PEFT_DEFAULT_ALPHA:
        raise ValueError(
            f"weights: OSEDiff's format implies lora_alpha = {PEFT_DEFAULT_ALPHA:g}, got "
            f"{weights.alpha_unet:g} (unet) / {weights.alpha_vae:g} (vae); save as safetensors"
        )
    header = weights.header()
    ckpt = {k: header[k] for k in _OSEDIFF_KEYS if k in header}
    ckpt["state_dict_unet"] = {k: v.contiguous() for k, v in weights.unet.items()}
    ckpt["state_dict_vae"] = {k: v.contiguous() for k, v in weights.vae.items()}
    atomic_write(path, lambda f: torch.save(ckpt, f))


def save_safetensors(weights: StageWeights, path: str | os.PathLike) -> None:
    """Write ``weights`` in our safetensors format (atomically)."""
    from safetensors.torch import save

    tensors = {f"unet.{k}": v.contiguous() for k, v in weights.unet.items()}
    tensors.update({f"vae.{k}": v.contiguous() for k, v in weights.vae.items()})
    data = save(tensors, metadata={"ebir_fast": json.dumps(weights.header())})
    atomic_write(path, lambda f: f.write(data))


def load_safetensors(path: str | os.PathLike) -> StageWeights:
    """Read a stage written by :func:`save_safetensors`."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(f"path: {path} is not a readable safetensors file: {err}") from err
    if "ebir_fast" not in meta:
        raise ValueError(
            f"path: {path} has no 'ebir_fast' metadata header; expected a stage saved by "
            "ebir_fast.models.checkpoint.save_safetensors"
        )
    header = json.loads(meta["ebir_fast"])
    if header.get("format") != FORMAT_NAME or header.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"path: {path} is format {header.get('format')!r} version {header.get('version')!r}; "
            f"expected {FORMAT_NAME!r} version {FORMAT_VERSION}"
        )
    unet = {k[5:]: v for k, v in tensors.items() if k.startswith("unet.")}
    vae = {k[4:]: v for k, v in tensors.items() if k.startswith("vae.")}
    stray = [k for k in tensors if not k.startswith(("unet.", "vae."))]
    if stray:
        raise ValueError(f"path: {path} has tensors outside 'unet.' / 'vae.': {stray[:5]}")
    return StageWeights(
        targets=_targets(header, str(path)),
        rank_unet=header["rank_unet"],
        rank_vae=header["rank_vae"],
        unet=unet,
        vae=vae,
        alpha_unet=float(header["alpha_unet"]),
        alpha_vae=float(header["alpha_vae"]),
    )


def load_stage_weights(path: str | os.PathLike) -> StageWeights:
    """Read either format, chosen by the file suffix (``.safetensors`` or a torch pickle)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no stage checkpoint at {path}")
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    if path.suffix in _OSEDIFF_SUFFIXES:
        return load_osediff(path)
    raise ValueError(
        "path: expected a .safetensors stage or an OSEDiff pickle "
        f"({', '.join(_OSEDIFF_SUFFIXES)}), got {path.name!r}"
    )


def convert(src: str | os.PathLike, dst: str | os.PathLike) -> StageWeights:
    """Convert a stage checkpoint between the two formats (chosen by the suffixes)."""
    weights = load_stage_weights(src)
    if Path(dst).suffix == ".safetensors":
        save_safetensors(weights, dst)
    elif Path(dst).suffix in _OSEDIFF_SUFFIXES:
        save_osediff(weights, dst)
    else:
        raise ValueError(f"dst: expected a .safetensors or .pkl file name, got {Path(dst).name!r}")
    return weights
