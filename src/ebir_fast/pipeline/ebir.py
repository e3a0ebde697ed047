"""The two-stage EBIR pipeline: projector ``f`` (ELQ -> LQ), restorer ``g`` (LQ -> HQ), with LFO.

Look Forward Once (the paper's Eq. 21-22), with ``Y`` the tagger and ``k = lfo``::

    c_1 = Y(x_elq)
    for i in 1..k:  x_lq_i = f(x_elq; c_i);  c_{i+1} = Y(x_lq_i)
    x_lq = f(x_elq; c_{k+1});  x_hq = g(x_lq; Y(x_lq))

so ``f`` runs ``k + 1`` times and ``Y`` ``k + 2`` times. Only the prompt changes between the passes
of ``f``, so its VAE-encoder latent of ``x_elq`` is computed once and reused (the paper recomputes
it), and text embeddings are cached per prompt string. Without a projector the pipeline is ``g``
alone (the OSEDiff baseline).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ebir_fast.models.stage import Stage, compose_prompt
from ebir_fast.models.tagger import NullTagger, Tagger
from ebir_fast.models.tiling import Tiling
from ebir_fast.pipeline import color as _color

#: Smallest accepted image side (the VAE reduces 8 px to one latent pixel).
MIN_SIDE = 8


@dataclass
class PipelineOutput:
    """What :class:`EBIRPipeline` returns.

    Attributes:
        images: ``[B, 3, H, W]`` float32 in [0, 1], the restored (HQ) images.
        prompts: the prompt of every stage pass, in order: ``f`` passes ``1 .. k + 1``, then
            ``g``; each a list with one string per image (``None`` for a prompt-free stage).
        lq: the LQ image of every ``f`` pass (``[B, 3, H, W]`` each; only when requested).
    """

    images: torch.Tensor
    prompts: list[list[str] | None] = field(default_factory=list)
    lq: list[torch.Tensor] | None = None


def _pad(x: torch.Tensor, multiple: int = 8) -> tuple[torch.Tensor, int, int]:
    """Pad the bottom / right to a multiple of ``multiple`` by mirroring (replicating when too
    small to mirror)."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x, h, w
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), h, w


def _file_sha256(path: str | os.PathLike) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_images(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """Validate a ``[B, 3, H, W]`` float batch in [0, 1] (NaN, range, size, rank, dtype)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{name}: expected shape [B, 3, H, W], got {list(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{name}: expected a floating tensor in [0, 1], got {images.dtype}")
    b, _, h, w = images.shape
    if b == 0:
        raise ValueError(f"{name}: the batch is empty (shape {list(images.shape)})")
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ValueError(f"{name}: expected sides >= {MIN_SIDE} px, got {h}x{w}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"{name}: expected values in [0, 1], got [{lo:.4g}, {hi:.4g}]")
    return images.float().clamp(0, 1)


def _user_prompts(prompt: str | Sequence[str] | None, batch: int) -> list[str]:
    if prompt is None:
        return [""] * batch
    if isinstance(prompt, str):
        return [prompt] * batch
    prompts = list(prompt)
    if len(prompts) != batch or not all(isinstance(p, str) for p in prompts):
        raise ValueError(
            f"prompt: expected None, a str or {batch} strings (one per image), got {prompt!r}"
        )
    return prompts


class EBIRPipeline:
    """``f -> g`` with Look Forward Once.

    Args:
        restorer: ``g``, LQ -> HQ (an OSEDiff :class:`~ebir_fast.models.stage.OneStepStage` or
            a prompt-free :class:`~ebir_fast.models.stage.FeedForwardStage`).
        projector: ``f``, ELQ -> LQ; None runs ``g`` alone.
        tagger: ``Y`` (default: the null prompt).
    """

    def __init__(
        self, restorer: Stage, projector: Stage | None = None, tagger: Tagger | None = None
    ) -> None:
        for name, stage in (("restorer", restorer), ("projector", projector)):
            if stage is not None and not isinstance(stage, Stage):
                raise TypeError(
                    f"{name}: expected a stage with prepare()/run() and uses_prompt, got "
                    f"{type(stage).__name__}"
                )
        self.restorer = restorer
        self.projector = projector
        self.tagger = tagger if tagger is not None else NullTagger()
        #: Where the weights came from (checkpoint hashes), recorded by exports and engines.
        self.sources: dict[str, str] = {}

    @classmethod
    def from_files(
        cls,
        base: str | os.PathLike,
        restorer: str | os.PathLike,
        projector: str | os.PathLike | None = None,
        tagger: Tagger | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        merge: bool = True,
        local_files_only: bool = False,
    ) -> EBIRPipeline:
        """Build both stages on one SD-2.1-base (shared text encoder and VAE decoder).

        Args:
            base: a diffusers SD-2.1-base folder or hub id.
            restorer: ``g``'s checkpoint (``osediff.pkl`` or our ``.safetensors``).
            projector: ``f``'s checkpoint, or None for ``g`` alone.
            merge: fold the LoRA into the weights (fast; False keeps peft layers).
        """
        from ebir_fast.models.base import load_base
        from ebir_fast.models.checkpoint import load_stage_weights
        from ebir_fast.models.stage import OneStepStage

        g_weights = load_stage_weights(restorer)
        f_weights = None if projector is None else load_stage_weights(projector)
        base_model = load_base(base, local_files_only=local_files_only)
        common = {"merge": merge, "dtype": dtype, "device": device}
        f = None
        if f_weights is not None:
            f = OneStepStage.from_base(base_model, f_weights, **common)
        # g takes the base's own UNet (no third copy) and shares f's text encoder and decoder.
        g = OneStepStage.from_base(
            base_model,
            g_weights,
            text=None if f is None else f.text,
            decoder_from=f,
            copy_unet=False,
            **common,
        )
        pipe = cls(g, f, tagger)
        pipe.sources = {"base": str(base), "restorer": _file_sha256(restorer)}
        if projector is not None:
            pipe.sources["projector"] = _file_sha256(projector)
        return pipe

    def _project(self, xp, x, hw, lfo, user, gen, tiling, out):
        """``f`` with LFO; returns the final LQ batch (padded) and ``g``'s prompts.

        Exact reuse beyond the paper's recursion: ``f``'s latent is encoded once, and a pass
        whose prompt for an image equals an earlier pass's prompt for it reproduces that pass's
        LQ image (same latent, same prompt), so the image is neither restored nor tagged again.
        Once the tags of an image stop changing, its remaining LFO passes cost nothing.
        """
        f, (h, w), b = self.projector, hw, x.shape[0]
        state = f.prepare(xp, generator=gen, tiling=tiling)  # once, reused by every pass
        lq_of: list[dict[str, torch.Tensor]] = [{} for _ in range(b)]  # prompt -> LQ image
        tags_of: list[dict[str, str]] = [{} for _ in range(b)]  # prompt -> Y(that LQ image)
        prompts = self._tag(x, user)
        for i in range(lfo + 1):
            need = [j for j in range(b) if prompts[j] not in lq_of[j]]
            if need:
                sub = state if len(need) == b else state[need]
                res = f.run(sub, [prompts[j] for j in need], tiling=tiling)
                for n, j in enumerate(need):
                    lq_of[j][prompts[j]] = res[n : n + 1]
            lq = torch.cat([lq_of[j][prompts[j]] for j in range(b)])
            out.prompts.append(prompts)
            if out.lq is not None:
                out.lq.append(lq[..., :h, :w])
            if i == lfo and not self.restorer.uses_prompt:
                return lq, None
            need = [j for j in range(b) if prompts[j] not in tags_of[j]]
            if need:
                new = self._tag(lq[need][..., :h, :w], [user[j] for j in need])
                for j, p in zip(need, new, strict=True):
                    tags_of[j][prompts[j]] = p
            prompts = [tags_of[j][prompts[j]] for j in range(b)]
        return lq, prompts  # after the last pass, prompts = Y(final LQ): g's prompt

    def _tag(self, images: torch.Tensor, user: list[str]) -> list[str]:
        tags = self.tagger(images)
        return [compose_prompt(t, u) for t, u in zip(tags, user, strict=True)]

    def __call__(
        self,
        images: torch.Tensor,  # [B, 3, H, W] in [0, 1]
        lfo: int = 2,
        prompt: str | Sequence[str] | None = None,
        seed: int | None = None,
        color_fix: str | None = "adain",
        tile: Tiling | str | None = "auto",
        return_lq: bool = False,
    ) -> PipelineOutput:
        """Restore ``images``.

        Args:
            lfo: Look Forward Once passes ``k`` (0 = none; the paper's best is 2). Needs a
                projector that takes prompts.
            prompt: a user prompt appended to every image's tags (OSEDiff's
                ``"{tags}, {prompt},"``), or one per image.
            seed: None takes the VAE posterior's mode (deterministic); an int samples the
                posterior with that seed (OSEDiff samples, unseeded).
            color_fix: ``"adain"`` (OSEDiff's default), ``"wavelet"`` or None, against the input.
            tile: ``"auto"`` (OSEDiff's tile sizes, used when the image exceeds them), a
                :class:`Tiling`, or None (never tile).
            return_lq: also return every intermediate LQ image.
        """
        x = check_images(images)
        if isinstance(lfo, bool) or not isinstance(lfo, int) or lfo < 0:
            raise ValueError(f"lfo: expected an int >= 0, got {lfo!r}")
        if color_fix not in (*_color.COLOR_FIXES, None):
            raise ValueError(
                f"color_fix: expected one of {_color.COLOR_FIXES} or None, got {color_fix!r}"
            )
        if lfo > 0 and (self.projector is None or not self.projector.uses_prompt):
            why = (
                "there is no projector (g alone)"
                if self.projector is None
                else "the projector takes no prompt"
            )
            raise ValueError(f"lfo: LFO re-runs the projector with a new prompt, but {why}; use 0")
        if tile == "auto":
            tiling = Tiling()
        elif tile is None or isinstance(tile, Tiling):
            tiling = tile
        else:
            raise ValueError(f"tile: expected 'auto', a Tiling or None, got {tile!r}")
        b = x.shape[0]
        user = _user_prompts(prompt, b)
        gen = None if seed is None else torch.Generator().manual_seed(int(seed))
        multiple = max(getattr(s, "size_multiple", 8) for s in (self.restorer, self.projector) if s)
        xp, h, w = _pad(x, multiple)
        out = PipelineOutput(images=x, lq=[] if return_lq else None)

        if self.projector is None:
            lq = xp
            g_prompts = self._tag(x, user) if self.restorer.uses_prompt else None
        elif not self.projector.uses_prompt:
            lq = self.projector.run(self.projector.prepare(xp, generator=gen, tiling=tiling), None)
            out.prompts.append(None)
            if out.lq is not None:
                out.lq.append(lq[..., :h, :w])
            g_prompts = self._tag(lq[..., :h, :w], user) if self.restorer.uses_prompt else None
        else:
            lq, g_prompts = self._project(xp, x, (h, w), lfo, user, gen, tiling, out)
        g = self.restorer
        hq = g.run(g.prepare(lq, generator=gen, tiling=tiling), g_prompts, tiling=tiling)
        out.prompts.append(g_prompts)
        # A feed-forward g may upscale: crop the padding at its scale, and compare colours with
        # the input brought to the output's size.
        scale = hq.shape[-2] // lq.shape[-2]
        hq = hq[..., : h * scale, : w * scale].float().clamp(0, 1)
        source = x if scale == 1 else F.interpolate(x, size=hq.shape[-2:], mode="bicubic")
        out.images = _color.color_fix(hq, source.clamp(0, 1), color_fix)
        return out
