"""Prompt extractors ("taggers"): images in, one prompt string per image out.

- :class:`DapeTagger`: RAM Swin-L/384 + Query2Label head with SeeSR's DAPE LoRA merged at load.
- :class:`FixedPromptTagger`: the same user prompt for every image.
- :class:`NullTagger`: the empty (null) prompt.

Every tagger satisfies the :class:`Tagger` protocol: ``tagger(images) -> list[str]`` with
``images`` ``[B, 3, H, W]`` in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from ebir_fast.models.dape import LORALIB_DEFAULT_ALPHA, load_dape, merge_dape
from ebir_fast.models.ram import RAM_SWIN_L_384, RamConfig, RamTaggingModel, load_ram, preprocess


@runtime_checkable
class Tagger(Protocol):
    """Maps a batch of images to one prompt per image."""

    def __call__(self, images: torch.Tensor) -> list[str]:
        """``images``: ``[B, 3, H, W]`` in [0, 1] -> ``B`` prompt strings."""
        ...


def _batch_size(images: torch.Tensor) -> int:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images: expected a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(
            "images: expected a floating [B, 3, H, W] tensor in [0, 1], got "
            f"{images.dtype} of shape {list(images.shape)}"
        )
    return images.shape[0]


class NullTagger:
    """The null prompt (an empty string) for every image."""

    def __call__(self, images: torch.Tensor) -> list[str]:
        return [""] * _batch_size(images)

    def __repr__(self) -> str:
        return "NullTagger()"


class FixedPromptTagger:
    """The same user-given prompt for every image."""

    def __init__(self, prompt: str) -> None:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt: expected a str, got {type(prompt).__name__}")
        self.prompt = prompt

    def __call__(self, images: torch.Tensor) -> list[str]:
        return [self.prompt] * _batch_size(images)

    def __repr__(self) -> str:
        return f"FixedPromptTagger({self.prompt!r})"


class DapeTagger:
    """DAPE tags: RAM's tagging model (with DAPE's LoRA merged) on images resized to 384.

    Args:
        model: a loaded :class:`RamTaggingModel` (see :meth:`from_files`); it is moved to
            ``device`` / ``dtype`` and frozen.
        device: where the model runs (default: where it already is).
        dtype: the model's compute dtype (float32, float16 or bfloat16).
        antialias: antialias the resize to 384 (see :func:`ebir_fast.models.ram.preprocess`;
            False reproduces SeeSR / OSEDiff's pinned torchvision).
        exclude: class indices never reported (RAM's ``delete_tag_index``; SeeSR: none).
        max_batch: images per forward pass (bounds peak memory; None = the whole batch).
    """

    def __init__(
        self,
        model: RamTaggingModel,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        antialias: bool = False,
        exclude: Sequence[int] = (),
        max_batch: int | None = None,
    ) -> None:
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype: expected float32, float16 or bfloat16, got {dtype}")
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch: expected None or >= 1, got {max_batch}")
        bad = [i for i in exclude if not 0 <= i < model.config.num_classes]
        if bad:
            raise ValueError(
                f"exclude: expected class indices in [0, {model.config.num_classes}), got {bad}"
            )
        if device is None:
            device = model.fc.weight.device
        # Thresholds stay float32: only the network is cast.
        thresholds = model.class_threshold.clone()
        self.model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.model.class_threshold = thresholds.to(device)
        self.antialias = antialias
        self.exclude = tuple(exclude)
        self.max_batch = max_batch

    @classmethod
    def from_files(
        cls,
        ram_checkpoint: str | Path,
        tag_list: str | Path,
        thresholds: str | Path,
        dape_checkpoint: str | Path | None,
        *,
        config: RamConfig = RAM_SWIN_L_384,
        lora_alpha: float = LORALIB_DEFAULT_ALPHA,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        **kwargs,
    ) -> DapeTagger:
        """Load RAM, merge DAPE's LoRA in float32, then cast to ``dtype`` on ``device``.

        Args:
            ram_checkpoint: ``ram_swin_large_14m.pth``.
            tag_list: ``ram_tag_list.txt``.
            thresholds: ``ram_tag_list_threshold.txt``.
            dape_checkpoint: ``DAPE.pth``; None gives plain RAM tags.
            config: the architecture (default RAM Swin-L/384).
            lora_alpha: loralib's ``lora_alpha`` of DAPE's LoRA (SeeSR: 1).
            device, dtype, kwargs: see the class.
        """
        model = load_ram(ram_checkpoint, tag_list, thresholds, config)
        if dape_checkpoint is not None:
            merge_dape(model, load_dape(dape_checkpoint), alpha=lora_alpha)
        return cls(model, device=device, dtype=dtype, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.fc.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.fc.weight.dtype

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Tag logits: ``[B, 3, H, W]`` in [0, 1] -> ``[B, num_classes]`` float32."""
        b = _batch_size(images)
        step = self.max_batch or max(b, 1)
        size = self.model.config.swin.image_size
        out = []
        for start in range(0, b, step):
            chunk = images[start : start + step].to(self.device)
            x = preprocess(chunk, size, antialias=self.antialias).to(self.dtype)
            out.append(self.model(x).float())
        if not out:
            return torch.empty(0, self.model.config.num_classes, device=self.device)
        return torch.cat(out)

    def __call__(self, images: torch.Tensor) -> list[str]:
        """``images``: ``[B, 3, H, W]`` in [0, 1] -> per image, its tags joined by ``", "``."""
        return self.model.tags_from_logits(self.logits(images), exclude=self.exclude)

    def __repr__(self) -> str:
        return f"DapeTagger(device={self.device}, dtype={self.dtype})"
