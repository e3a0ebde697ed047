"""One restoration stage: OSEDiff's one-step SD-2.1 model (or any feed-forward restorer).

The pipeline talks to a stage through two calls, so that work that does not depend on the prompt
is done once per image however many LFO passes follow:

- ``state = stage.prepare(images)``: ``[B, 3, H, W]`` in [0, 1] -> whatever the stage reuses (the
  one-step stage: the scaled VAE-encoder latent);
- ``stage.run(state, prompts)`` -> ``[B, 3, H, W]`` in [0, 1].

:class:`OneStepStage` is OSEDiff's forward: ``z = E(x) * 0.18215`` (posterior mode by default, a
seeded sample on request), ``eps = UNet(z, t=999, text)``, ``x0 = (z - sqrt(1 - a) eps) / sqrt(a)``
with ``a = alphas_cumprod[999]``, ``out = D(x0 / 0.18215).clamp(-1, 1)``. Two stages built from one
base share its text encoder and VAE decoder (neither carries LoRA).
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from ebir_fast.models.base import BaseModel
from ebir_fast.models.checkpoint import StageWeights
from ebir_fast.models.lora import add_unet_adapters, add_vae_adapter, merge_lora
from ebir_fast.models.tiling import Tiling, tiled_map

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@runtime_checkable
class Stage(Protocol):
    """A restoration stage as the pipeline sees it."""

    uses_prompt: bool

    def prepare(self, images: torch.Tensor, **kwargs) -> object: ...

    def run(self, state: object, prompts: Sequence[str] | None, **kwargs) -> torch.Tensor: ...


def compose_prompt(tags: str, user_prompt: str = "") -> str:
    """OSEDiff's prompt: ``f"{tags}, {user_prompt},"``."""
    return f"{tags}, {user_prompt},"


class PromptEncoder(nn.Module):
    """CLIP tokenizer + text encoder with a per-string cache of the embeddings.

    Prompts are tokenised to the tokenizer's ``model_max_length`` (77) with padding and
    truncation. The cache keeps the ``cache_size`` most recently used prompts; it is cleared when
    the module moves to another device or dtype.
    """

    def __init__(self, tokenizer, text_encoder: nn.Module, cache_size: int = 256) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._lock = threading.RLock()
        self.calls = 0  # text-encoder forwards run (cache misses), for tests and profiling

    def __getstate__(self) -> dict:
        # Copies and pickles get a fresh lock and an empty cache.
        state = self.__dict__.copy()
        state.pop("_lock", None)
        state["_cache"] = OrderedDict()
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._lock = threading.RLock()

    @property
    def max_length(self) -> int:
        """Token sequence length: the tokenizer's limit capped by the encoder's positions."""
        positions = self.text_encoder.config.max_position_embeddings
        return min(int(self.tokenizer.model_max_length), int(positions))

    @property
    def device(self) -> torch.device:
        return next(self.text_encoder.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.text_encoder.parameters()).dtype

    @torch.no_grad()
    def forward(self, prompts: Sequence[str]) -> torch.Tensor:  # [B, 77, D]
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise TypeError(f"prompts: expected a sequence of str, got {prompts!r}")
        key_of = lambda p: (p, self.device, self.dtype)  # noqa: E731
        with self._lock:
            todo = list(dict.fromkeys(p for p in prompts if key_of(p) not in self._cache))
        if todo:
            ids = self.tokenizer(
                todo,
                max_length=self.max_length,
                padding="max_length",
                truncation=True,
                return_tensors="pt",
            ).input_ids.to(self.device)
            embeds = self.text_encoder(ids)[0]
            self.calls += 1
            with self._lock:
                for p, e in zip(todo, embeds, strict=True):
                    self._cache[key_of(p)] = e
                    self._cache.move_to_end(key_of(p))
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        with self._lock:
            out = []
            for p in prompts:
                e = self._cache.get(key_of(p))
                if e is None:  # evicted by a concurrent caller: recompute this one
                    e = self.forward([p])[0]
                else:
                    self._cache.move_to_end(key_of(p))
                out.append(e)
        return torch.stack(out)


class OneStepStage(nn.Module):
    """OSEDiff's one-step restorer: VAE encoder (+LoRA), UNet at t = 999 (+LoRA), VAE decoder.

    Build it with :meth:`from_base`. Images are ``[B, 3, H, W]`` in [0, 1] with ``H, W``
    multiples of 8 (the pipeline pads); internally OSEDiff's [-1, 1].
    """

    uses_prompt = True

    def __init__(
        self,
        unet: nn.Module,
        vae: nn.Module,
        text: PromptEncoder,
        alphas_cumprod: torch.Tensor,
        timestep: int = 999,
    ) -> None:
        super().__init__()
        self.unet = unet.eval().requires_grad_(False)
        self.vae = vae.eval().requires_grad_(False)
        self.text = text
        self.timestep = int(timestep)
        self.alphas_cumprod = alphas_cumprod
        a = float(alphas_cumprod[self.timestep])
        self.sqrt_a = a**0.5
        self.sqrt_1ma = (1.0 - a) ** 0.5
        self.scaling = float(vae.config.scaling_factor)
        self.calls = {"encode": 0, "unet": 0, "decode": 0}

    @classmethod
    def from_base(
        cls,
        base: BaseModel,
        weights: StageWeights | None,
        *,
        merge: bool = True,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        text: PromptEncoder | None = None,
        decoder_from: OneStepStage | None = None,
        copy_unet: bool = True,
    ) -> OneStepStage:
        """A stage from the base model and its trained weights (None: plain SD-2.1, no LoRA).

        Args:
            merge: fold the LoRA into the weights (in float32, before the cast).
            text: a shared :class:`PromptEncoder` (default: a new one on ``base``'s encoder).
            decoder_from: share this stage's VAE decoder instead of holding another copy.
            copy_unet: deep-copy the base UNet (False hands it over: the last stage built from
                a base may take it and save one UNet's memory).
        """
        if dtype not in _DTYPES:
            raise ValueError(f"dtype: expected one of {_DTYPES}, got {dtype}")
        unet = copy.deepcopy(base.unet) if copy_unet else base.unet
        vae = copy.deepcopy(base.vae)
        if decoder_from is not None:
            vae.decoder = decoder_from.vae.decoder
            vae.post_quant_conv = decoder_from.vae.post_quant_conv
        unet.float()
        vae.float()
        if weights is not None:
            load_weights(unet, vae, weights)
            if merge:
                merge_lora(unet)
                merge_lora(vae)
        if text is None:
            text = PromptEncoder(base.tokenizer, base.text_encoder)
        text.to(device=device, dtype=dtype)
        stage = cls(unet, vae, text, base.alphas_cumprod)
        return stage.to(device=device, dtype=dtype)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    # -- the primitives (inputs in OSEDiff's [-1, 1] / scaled-latent conventions) --------------
    def encode_moments(self, x: torch.Tensor) -> torch.Tensor:  # [B, 2 * 4, H / 8, W / 8]
        """VAE encoder + ``quant_conv``: the posterior's mean and log-variance."""
        self.calls["encode"] += 1
        h = self.vae.encoder(x.to(self.vae.dtype))
        return self.vae.quant_conv(h) if self.vae.quant_conv is not None else h

    def latent(
        self, moments: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:  # [B, 4, h, w] scaled latent
        """The posterior's mode (``generator=None``) or a sample from it, times the scaling."""
        mean, logvar = moments.float().chunk(2, dim=1)
        if generator is not None:
            std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
            noise = torch.randn(mean.shape, generator=generator, device=generator.device)
            mean = mean + std * noise.to(mean.device)
        return (mean * self.scaling).to(self.unet.dtype)

    def eps(self, z: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:  # [B, 4, h, w]
        """The UNet's noise prediction at t = 999 (``embeds [B, 77, D]``)."""
        self.calls["unet"] += 1
        t = torch.full((z.shape[0],), self.timestep, device=z.device, dtype=torch.long)
        dtype = self.unet.dtype
        return self.unet(z.to(dtype), t, encoder_hidden_states=embeds.to(dtype)).sample

    def x0(self, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """One DDPM step from t = 999 to the clean latent (in float32, then the model dtype)."""
        return ((z.float() - self.sqrt_1ma * eps.float()) / self.sqrt_a).to(self.vae.dtype)

    def decode(self, x0: torch.Tensor) -> torch.Tensor:  # [B, 3, 8h, 8w] in [-1, 1]
        """VAE decoder on ``x0 / scaling``, clamped to [-1, 1]."""
        self.calls["decode"] += 1
        z = x0.to(self.vae.dtype) / self.scaling
        if self.vae.post_quant_conv is not None:
            z = self.vae.post_quant_conv(z)
        return self.vae.decoder(z).clamp(-1, 1)

    # -- the Stage interface ------------------------------------------------------------------
    @torch.no_grad()
    def prepare(
        self,
        images: torch.Tensor,  # [B, 3, H, W] in [0, 1], H and W multiples of 8
        *,
        generator: torch.Generator | None = None,
        tiling: Tiling | None = None,
    ) -> torch.Tensor:  # [B, 4, H / 8, W / 8]
        """The scaled VAE latent of ``images`` (reused by every pass of this stage)."""
        x = images.to(self.device) * 2 - 1
        if tiling is None:
            moments = self.encode_moments(x)
        else:
            moments = tiled_map(
                self.encode_moments, x, tiling.encoder, tiling.encoder_overlap, 1 / 8
            )
        return self.latent(moments, generator)

    @torch.no_grad()
    def run(
        self,
        z: torch.Tensor,  # [B, 4, h, w] from prepare()
        prompts: Sequence[str] | None,
        *,
        tiling: Tiling | None = None,
    ) -> torch.Tensor:  # [B, 3, 8h, 8w] in [0, 1], float32
        """UNet at t = 999 with ``prompts`` (one per image), x0, VAE decode."""
        if prompts is None or len(prompts) != z.shape[0]:
            raise ValueError(
                f"prompts: expected {z.shape[0]} prompt strings (one per image), got {prompts!r}"
            )
        embeds = self.text(list(prompts))
        h, w = z.shape[-2:]
        if tiling is None or (h <= tiling.latent and w <= tiling.latent):
            eps = self.eps(z, embeds)
        else:  # per image, so that each tile is conditioned on its own image's prompt
            eps = torch.cat(
                [
                    tiled_map(
                        lambda t, e=embeds[i : i + 1]: self.eps(t, e),
                        z[i : i + 1],
                        tiling.latent,
                        tiling.latent_overlap,
                    )
                    for i in range(z.shape[0])
                ]
            )
        x0 = self.x0(z, eps)
        if tiling is None:
            out = self.decode(x0)
        else:
            out = tiled_map(self.decode, x0, tiling.decoder, tiling.decoder_overlap, 8)
        return out.float().add(1).mul(0.5)


class FeedForwardStage(nn.Module):
    """Any prompt-free restorer ``module([B, 3, H, W] in [0, 1]) -> [B, 3, H', W']``.

    For example Real-ESRGAN's RRDBNet as ``g``; LFO needs a stage that takes prompts.
    """

    uses_prompt = False

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.eval().requires_grad_(False)

    @torch.no_grad()
    def prepare(self, images: torch.Tensor, **kwargs) -> torch.Tensor:
        return images

    @torch.no_grad()
    def run(self, state: torch.Tensor, prompts=None, **kwargs) -> torch.Tensor:
        p = next(self.module.parameters(), None)
        x = state if p is None else state.to(device=p.device, dtype=p.dtype)
        return self.module(x).float().clamp(0, 1)


@torch.no_grad()
def load_weights(unet: nn.Module, vae: nn.Module, weights: StageWeights) -> None:
    """Inject ``weights``' adapters into float32 ``unet`` / ``vae`` and copy its tensors by name.

    Strict both ways: every LoRA / ``conv_in`` parameter of the models must be in the checkpoint
    with the same shape, and every checkpoint tensor must belong to one of them.
    """
    add_unet_adapters(unet, weights.targets, weights.rank_unet, weights.alpha_unet)
    add_vae_adapter(vae, weights.targets, weights.rank_vae, weights.alpha_vae)
    for label, model, tensors, wanted in (
        ("unet", unet, weights.unet, lambda n: "lora" in n or "conv_in" in n),
        ("vae", vae, weights.vae, lambda n: "lora" in n),
    ):
        params = {n: p for n, p in model.named_parameters() if wanted(n)}
        missing = sorted(set(params) - set(tensors))
        unexpected = sorted(set(tensors) - set(params))
        if missing or unexpected:
            raise ValueError(
                f"weights: the {label} checkpoint does not match the model: "
                f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                f"(e.g. {unexpected[:3]}); is it for this base model?"
            )
        for n, p in params.items():
            t = tensors[n]
            if t.shape != p.shape:
                raise ValueError(
                    f"weights: {label} tensor {n!r} has shape {list(t.shape)}, the model "
                    f"expects {list(p.shape)}"
                )
            p.copy_(t.to(p.dtype))


def extract_weights(unet: nn.Module, vae: nn.Module, template: StageWeights) -> StageWeights:
    """The trained tensors of adapter-injected ``unet`` / ``vae`` as a :class:`StageWeights`."""
    return StageWeights(
        targets=template.targets,
        rank_unet=template.rank_unet,
        rank_vae=template.rank_vae,
        alpha_unet=template.alpha_unet,
        alpha_vae=template.alpha_vae,
        unet={
            n: p.detach().cpu().clone()
            for n, p in unet.named_parameters()
            if "lora" in n or "conv_in" in n
        },
        vae={n: p.detach().cpu().clone() for n, p in vae.named_parameters() if "lora" in n},
    )
