"""The interface every degradation pipeline implements: sample, apply, or both at once."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch


class Degrader(ABC):
    """A batched, replayable degradation pipeline.

    ``params = d.sample(batch_size, image_size, generator)`` draws every random choice (CPU
    tensors; the same generator state gives the same draws on any machine);
    ``d.apply(images, params)`` replays them on the images' device; ``d(images, generator)`` does
    both. With ``differentiable=True`` gradients flow through blur, resize, additive noise (a fixed
    field), JPEG and the 8-bit rounding (straight-through); Poisson noise is drawn from the
    detached image.
    """

    @abstractmethod
    def sample(
        self,
        batch_size: int,
        image_size: tuple[int, int],
        generator: torch.Generator | None = None,
    ) -> Any:
        """Draw the parameters of a batch of ``batch_size`` images of ``image_size`` (H, W)."""

    @abstractmethod
    def _apply(self, images: torch.Tensor, params: Any) -> torch.Tensor: ...

    @abstractmethod
    def output_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of the degraded images for inputs of ``image_size``."""

    def apply(
        self,
        images: torch.Tensor,  # [B, 3, H, W] in [0, 1]
        params: Any,
        differentiable: bool = False,
    ) -> torch.Tensor:  # [B, 3, *output_size(H, W)] in [0, 1]
        """Degrade ``images`` with the draws in ``params`` (from :meth:`sample`)."""
        check_images(images)
        if tuple(images.shape[-2:]) != tuple(params.image_size) or (
            images.shape[0] != params.batch_size
        ):
            raise ValueError(
                f"images: params were drawn for {params.batch_size} images of size "
                f"{tuple(params.image_size)}, got shape {tuple(images.shape)}"
            )
        if differentiable:
            return self._apply(images, params)
        with torch.no_grad():
            return self._apply(images, params)

    def __call__(
        self,
        images: torch.Tensor,  # [B, 3, H, W] in [0, 1]
        generator: torch.Generator | None = None,
        differentiable: bool = False,
    ) -> torch.Tensor:
        """Sample parameters with ``generator`` (a CPU generator) and apply them."""
        check_images(images)
        params = self.sample(images.shape[0], tuple(images.shape[-2:]), generator)
        return self.apply(images, params, differentiable)

    @staticmethod
    def _check_sample_args(
        batch_size: int, image_size: tuple[int, int], generator: torch.Generator | None
    ) -> tuple[int, tuple[int, int]]:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        try:
            h, w = (int(v) for v in image_size)
        except (TypeError, ValueError):
            raise ValueError(f"image_size: expected (H, W), got {image_size!r}") from None
        if h < 1 or w < 1:
            raise ValueError(f"image_size: expected positive (H, W), got {image_size!r}")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(
                f"generator: expected a CPU torch.Generator (draws are made on the CPU so they "
                f"replay on any device), got one on {generator.device}"
            )
        return batch_size, (h, w)


def check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images: expected a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images: expected RGB images [B, 3, H, W], got shape {tuple(images.shape)}"
        )
    if not images.is_floating_point():
        raise ValueError(
            f"images: expected a floating dtype with values in [0, 1], got {images.dtype}"
        )
