"""The modules exported as ONNX graphs: one per engine, with the pipeline's pre/post-processing
folded in where it removes work (``* 2 - 1``, the latent scaling, t = 999, the x0 formula).

- ``{f,g}_vae_encoder``: ``image [B, 3, H, W]`` in [0, 1] -> ``latent [B, 4, H/8, W/8]``
  (the posterior's mode, scaled);
- ``{f,g}_unet``: ``latent``, ``text [B, 77, D]`` -> ``x0 [B, 4, h, w]`` (one step from 999);
- ``vae_decoder``: ``x0 [B, 4, h, w]`` -> ``image [B, 3, 8h, 8w]`` in [0, 1];
- ``text_encoder``: ``input_ids [B, 77]`` int64 -> ``text [B, 77, D]``;
- ``tagger``: ``pixels [B, 3, S, S]`` (RAM-normalised) -> ``logits [B, classes]``.

Latent sides are multiples of 8 (images of 64): the SD UNet's up-sampling branches on the size,
and a graph must not.
"""

from __future__ import annotations

import torch
from torch import nn

from ebir_fast.models.stage import OneStepStage


class VaeEncoderGraph(nn.Module):
    """Image in [0, 1] -> the scaled posterior mode (deterministic engines)."""

    def __init__(self, stage: OneStepStage) -> None:
        super().__init__()
        self.stage = stage

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        moments = self.stage.encode_moments(image * 2 - 1)
        return moments[:, : moments.shape[1] // 2] * self.stage.scaling


class UnetX0Graph(nn.Module):
    """Scaled latent + text embeddings -> x0, the one-step prediction from t = 999."""

    def __init__(self, stage: OneStepStage) -> None:
        super().__init__()
        self.stage = stage

    def forward(self, latent: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        eps = self.stage.eps(latent, text)
        return (latent - self.stage.sqrt_1ma * eps) / self.stage.sqrt_a


class VaeDecoderGraph(nn.Module):
    """x0 -> image in [0, 1]."""

    def __init__(self, stage: OneStepStage) -> None:
        super().__init__()
        self.stage = stage

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        return self.stage.decode(x0) * 0.5 + 0.5


class TextEncoderGraph(nn.Module):
    """CLIP token ids -> last hidden states (what the UNet attends to)."""

    def __init__(self, text_encoder: nn.Module) -> None:
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(input_ids)[0]


class TaggerGraph(nn.Module):
    """RAM-normalised pixels -> tag logits (thresholds are applied outside, in float32)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels)
