"""The Stable Diffusion 2.1-base components a one-step stage is built on, and loading them.

Loaded from a local diffusers folder (``tokenizer/``, ``text_encoder/``, ``unet/``, ``vae/``,
``scheduler/``) or a Hugging Face hub id. Stability removed
``stabilityai/stable-diffusion-2-1-base`` from the hub; mirrors exist (e.g.
``Manojb/stable-diffusion-2-1-base``). The 768 px v-prediction ``stable-diffusion-2-1`` is a
different model that OSEDiff was not trained on (its one-step output is blurry): it is detected
and refused.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

#: Files a diffusers SD folder must hold (weights: any one of the listed names).
REQUIRED_FILES = {
    "scheduler": ("scheduler_config.json",),
    "tokenizer": ("vocab.json", "merges.txt"),
    "text_encoder": ("config.json",),
    "unet": ("config.json",),
    "vae": ("config.json",),
}
WEIGHT_FILES = {
    "text_encoder": ("model.safetensors", "pytorch_model.bin"),
    "unet": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
    "vae": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
}
BASE_MODEL_HELP = (
    "OSEDiff and EBIR are built on Stable Diffusion 2.1-base (512 px, epsilon prediction). "
    "Stability removed 'stabilityai/stable-diffusion-2-1-base' from the Hugging Face hub; download "
    "a mirror such as 'Manojb/stable-diffusion-2-1-base' (e.g. `hf download "
    "Manojb/stable-diffusion-2-1-base --local-dir sd21-base`) and pass that folder."
)


@dataclass
class BaseModel:
    """SD-2.1-base: tokenizer, CLIP text encoder, UNet, VAE and the DDPM noise schedule."""

    tokenizer: object
    text_encoder: torch.nn.Module
    unet: torch.nn.Module
    vae: torch.nn.Module
    alphas_cumprod: torch.Tensor  # [T] float64
    source: str = ""


def missing_files(folder: str | os.PathLike) -> list[str]:
    """The files of a diffusers SD folder that ``folder`` lacks (relative paths)."""
    root = Path(folder)
    missing = [
        f"{sub}/{name}"
        for sub, names in REQUIRED_FILES.items()
        for name in names
        if not (root / sub / name).is_file()
    ]
    for sub, names in WEIGHT_FILES.items():
        if not any((root / sub / n).is_file() for n in names):
            missing.append(f"{sub}/{' or '.join(names)}")
    return missing


def check_epsilon_base(folder: str | os.PathLike) -> None:
    """Refuse the 768 v-prediction SD-2.1 (and anything not epsilon-predicting)."""
    root = Path(folder)
    sched = json.loads((root / "scheduler" / "scheduler_config.json").read_text())
    unet = json.loads((root / "unet" / "config.json").read_text())
    prediction = sched.get("prediction_type", "epsilon")
    if prediction != "epsilon" or unet.get("sample_size") == 96:
        raise ValueError(
            f"base: {root} is a {prediction} model with {8 * unet.get('sample_size', 0)} px "
            "training size (e.g. the 768 'stable-diffusion-2-1'); one-step OSEDiff stages need "
            "the epsilon-prediction 512 px SD-2.1-base, whose x0 formula they use. "
            f"{BASE_MODEL_HELP}"
        )


def expected_files() -> list[str]:
    """The files a diffusers SD folder must hold (weights: one of the names joined by 'or')."""
    out = [f"{sub}/{name}" for sub, names in REQUIRED_FILES.items() for name in names]
    out += [f"{sub}/{' or '.join(names)}" for sub, names in WEIGHT_FILES.items()]
    return out


def resolve_base(path_or_id: str | os.PathLike, *, local_files_only: bool = False) -> Path:
    """A local folder for ``path_or_id``: the folder itself, or a hub snapshot (downloaded)."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    text = str(path_or_id)
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        raise FileNotFoundError(
            f"base: {text!r} is neither a folder nor a hub id 'owner/name'. {BASE_MODEL_HELP}"
        )
    try:
        from huggingface_hub import snapshot_download

        patterns = [f"{s}/{n}" for s, names in REQUIRED_FILES.items() for n in names]
        patterns += [f"{s}/{n}" for s, names in WEIGHT_FILES.items() for n in names]
        return Path(
            snapshot_download(
                text,
                allow_patterns=[*patterns, "model_index.json"],
                local_files_only=local_files_only,
            )
        )
    except Exception as err:  # offline, unknown repo, gated, ...
        raise FileNotFoundError(
            f"base: could not get {text!r} from the Hugging Face hub ({type(err).__name__}: "
            f"{err}). A base folder holds {', '.join(expected_files())}. {BASE_MODEL_HELP}"
        ) from err


def load_base(path_or_id: str | os.PathLike, *, local_files_only: bool = False) -> BaseModel:
    """Load SD-2.1-base in float32 on the CPU from a diffusers folder or a hub id.

    Raises:
        FileNotFoundError: the folder is missing files (they are listed) or the hub is offline.
        ValueError: the model is the v-prediction SD-2.1 (or otherwise not epsilon-predicting).
    """
    folder = resolve_base(path_or_id, local_files_only=local_files_only)
    missing = missing_files(folder)
    if missing:
        raise FileNotFoundError(
            f"base: {folder} is not a complete diffusers Stable Diffusion folder; missing "
            f"{', '.join(missing)}. {BASE_MODEL_HELP}"
        )
    check_epsilon_base(folder)
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer
    from transformers.utils import logging as tf_logging

    # transformers draws a progress bar per loaded model: noise in a CLI and in logs.
    bars = tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()
    try:
        scheduler = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
        return BaseModel(
            tokenizer=CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer"),
            text_encoder=CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").eval(),
            unet=UNet2DConditionModel.from_pretrained(folder, subfolder="unet").eval(),
            vae=AutoencoderKL.from_pretrained(folder, subfolder="vae").eval(),
            alphas_cumprod=scheduler.alphas_cumprod.double(),
            source=str(folder),
        )
    finally:
        if bars:
            tf_logging.enable_progress_bar()
