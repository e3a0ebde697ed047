"""RAM's tagging path: Swin backbone -> image_proj -> Query2Label head -> per-class thresholds.

This is the part of the Recognize Anything Model that SeeSR's DAPE and OSEDiff run to turn an
image into a prompt (``generate_tag``); RAM's captioning branches (``tag_encoder``,
``text_decoder``) are not built, and their checkpoint entries are skipped at load.

Facts from ``xinyu1205/recognize-anything`` (``ram/models/ram.py``, ``bert.py``,
``configs/q2l_config.json``, ``configs/swin/config_swinL_384.json``) and SeeSR's copy
(``ram/models/ram_lora.py``):

- ``image_embeds = image_proj(visual_encoder(image))``: Swin-L/384 tokens (1536) -> 512.
- Label queries: ``relu(wordvec_proj(label_embed))``, ``label_embed`` ``[4585, 512]``,
  ``wordvec_proj`` 512 -> 768 (an identity when the head width is 512).
- ``tagging_head``: a BERT with its embeddings and self-attention deleted (Query2Label): 2 layers
  of cross-attention (4 heads, queries from the labels, keys/values from ``image_embeds``; the
  all-ones image mask adds 0), output dense + residual LayerNorm (eps 1e-12), then the feed-
  forward (768 -> 3072, exact GELU -> 768) + residual LayerNorm.
- ``logits = fc(head_output).squeeze(-1)``; a tag is on if ``sigmoid(logit) > threshold[class]``
  with thresholds 0.68 overridden per class by ``ram_tag_list_threshold.txt`` (one float a line).
- Tags are joined with ``", "`` in class order (SeeSR's ``RAMLora.generate_tag``; upstream RAM
  joins with ``" | "``); no class is deleted (``delete_tag_index=[]``).
- Checkpoint: ``torch.load(path)["model"]``; RAM's loader renames ``vision_multi`` to
  ``tagging_head`` and deletes Swin's ``relative_position_index`` / ``attn_mask`` buffers.
- Input: ``Resize((384, 384))`` (bilinear) and ImageNet mean/std normalisation on a [0, 1] tensor.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ebir_fast.models.swin import SWIN_L_384, SwinConfig, SwinTransformer, split_derived_buffers

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Top-level modules of RAM that the tagging path uses; every other checkpoint entry is skipped.
TAGGING_MODULES = (
    "visual_encoder",
    "image_proj",
    "label_embed",
    "wordvec_proj",
    "tagging_head",
    "fc",
)

RAM_SOURCE = (
    "RAM's release: ram_swin_large_14m.pth from the Hugging Face model repository "
    "xinyu1205/recognize_anything_model (also the space xinyu1205/recognize-anything)"
)
TAG_FILES_SOURCE = (
    "the recognize-anything repository (github.com/xinyu1205/recognize-anything), "
    "ram/data/ram_tag_list.txt and ram/data/ram_tag_list_threshold.txt"
)


@dataclass(frozen=True)
class RamConfig:
    """Architecture of RAM's tagging path.

    Attributes:
        swin: the image backbone.
        num_classes: number of tags (lines of the tag list).
        label_width: width of ``label_embed`` and of ``image_proj``'s output (RAM: 512).
        hidden_size: width of the tagging head (RAM: 768).
        num_heads: cross-attention heads of the tagging head (RAM: 4).
        intermediate_size: feed-forward width of the tagging head (RAM: 3072).
        num_layers: tagging head layers (RAM: 2).
        layer_norm_eps: LayerNorm epsilon of the tagging head (BERT: 1e-12).
        default_threshold: threshold of classes the threshold file does not list (RAM: 0.68).
    """

    swin: SwinConfig = SWIN_L_384
    num_classes: int = 4585
    label_width: int = 512
    hidden_size: int = 768
    num_heads: int = 4
    intermediate_size: int = 3072
    num_layers: int = 2
    layer_norm_eps: float = 1e-12
    default_threshold: float = 0.68

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"num_heads: expected a divisor of hidden_size={self.hidden_size}, "
                f"got {self.num_heads}"
            )


RAM_SWIN_L_384 = RamConfig()


class _CrossAttentionProjections(nn.Module):
    """``crossattention.self``: queries from the labels, keys and values from the image."""

    def __init__(self, cfg: RamConfig) -> None:
        super().__init__()
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.label_width, cfg.hidden_size)
        self.value = nn.Linear(cfg.label_width, cfg.hidden_size)


class _DenseNorm(nn.Module):
    """BERT's ``*.output``: dense projection, then LayerNorm of (projection + residual)."""

    def __init__(self, width_in: int, cfg: RamConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _CrossAttention(nn.Module):
    def __init__(self, cfg: RamConfig) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        # BERT's module is named "self"; the key names of the checkpoint need it.
        self.self = _CrossAttentionProjections(cfg)
        self.output = _DenseNorm(cfg.hidden_size, cfg)

    def forward(self, labels: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``labels``: ``[B, K, D]``, ``image``: ``[B, T, E]`` -> ``[B, K, D]``."""
        b, k, d = labels.shape
        h = self.num_heads

        def heads(x: torch.Tensor) -> torch.Tensor:  # [B, n, D] -> [B, heads, n, D/heads]
            return x.view(b, -1, h, d // h).transpose(1, 2)

        proj = self.self
        ctx = F.scaled_dot_product_attention(
            heads(proj.query(labels)), heads(proj.key(image)), heads(proj.value(image))
        )
        return self.output(ctx.transpose(1, 2).reshape(b, k, d), labels)


class _Intermediate(nn.Module):
    """BERT's ``intermediate``: the first feed-forward projection (GELU applied by the layer)."""

    def __init__(self, cfg: RamConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)


class _TaggingLayer(nn.Module):
    """One Query2Label layer: cross-attention then feed-forward, each with a residual norm."""

    def __init__(self, cfg: RamConfig) -> None:
        super().__init__()
        self.crossattention = _CrossAttention(cfg)
        self.intermediate = _Intermediate(cfg)
        self.output = _DenseNorm(cfg.intermediate_size, cfg)

    def forward(self, labels: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        x = self.crossattention(labels, image)
        return self.output(F.gelu(self.intermediate.dense(x)), x)


class _TaggingEncoder(nn.Module):
    def __init__(self, cfg: RamConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_TaggingLayer(cfg) for _ in range(cfg.num_layers))


class TaggingHead(nn.Module):
    """RAM's ``tagging_head`` (keys ``encoder.layer.{i}.{crossattention,intermediate,output}``)."""

    def __init__(self, cfg: RamConfig) -> None:
        super().__init__()
        self.encoder = _TaggingEncoder(cfg)

    def forward(self, labels: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``labels``: ``[B, K, D]`` queries, ``image``: ``[B, T, E]`` -> ``[B, K, D]``."""
        for layer in self.encoder.layer:
            labels = layer(labels, image)
        return labels


class RamTaggingModel(nn.Module):
    """RAM's tagging network with its tag names and per-class thresholds.

    The parameter names are RAM's checkpoint keys (see :data:`TAGGING_MODULES`). Build it with
    :func:`load_ram` for real weights; the constructor gives an untrained model of ``config``.
    """

    def __init__(
        self, config: RamConfig = RAM_SWIN_L_384, tag_list: Sequence[str] | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.visual_encoder = SwinTransformer(config.swin)
        self.image_proj = nn.Linear(config.swin.num_features, config.label_width)
        self.label_embed = nn.Parameter(torch.zeros(config.num_classes, config.label_width))
        if config.hidden_size != config.label_width:
            self.wordvec_proj: nn.Module = nn.Linear(config.label_width, config.hidden_size)
        else:
            self.wordvec_proj = nn.Identity()
        self.tagging_head = TaggingHead(config)
        self.fc = nn.Linear(config.hidden_size, 1)
        thresholds = torch.full((config.num_classes,), config.default_threshold)
        self.register_buffer("class_threshold", thresholds, persistent=False)
        if tag_list is None:
            tag_list = [f"tag{i}" for i in range(config.num_classes)]
        self.tag_list = _check_tag_list(tag_list, config.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Tag logits of normalised images.

        Args:
            images: ``[B, 3, S, S]``, ``S = config.swin.image_size``, normalised with ImageNet
                mean/std (see :func:`preprocess`).
        Returns:
            ``[B, num_classes]`` logits.
        """
        image_embeds = self.image_proj(self.visual_encoder(images))  # [B, 1 + L, E]
        labels = F.relu(self.wordvec_proj(self.label_embed))  # [K, D]
        labels = labels.unsqueeze(0).expand(images.shape[0], -1, -1)
        return self.fc(self.tagging_head(labels, image_embeds)).squeeze(-1)

    def set_thresholds(self, thresholds: torch.Tensor) -> None:
        """Replace the per-class thresholds (``[num_classes]``, probabilities in [0, 1])."""
        expected = (self.config.num_classes,)
        if tuple(thresholds.shape) != expected:
            raise ValueError(
                f"thresholds: expected shape {list(expected)}, got {list(thresholds.shape)}"
            )
        self.class_threshold.copy_(thresholds)

    def tags_from_logits(self, logits: torch.Tensor, exclude: Sequence[int] = ()) -> list[str]:
        """Threshold ``[B, num_classes]`` logits per class; tags joined by ``", "`` per image.

        The sigmoid and comparison run in float32 whatever the model's dtype.
        """
        on = torch.sigmoid(logits.float()) > self.class_threshold.float()
        if exclude:
            on[:, list(exclude)] = False
        on = on.cpu()
        return [", ".join(self.tag_list[i] for i in row.nonzero().flatten().tolist()) for row in on]


def preprocess(images: torch.Tensor, size: int, antialias: bool = False) -> torch.Tensor:
    """RAM's input transform on a tensor: bilinear resize to ``size x size``, ImageNet norm.

    Args:
        images: ``[B, 3, H, W]`` in [0, 1], any float dtype.
        size: output side (RAM: 384).
        antialias: low-pass before down-scaling. SeeSR and OSEDiff call torchvision's
            ``Resize((384, 384))`` on tensors with torch 2.0.1, whose torchvision (0.15) does
            not antialias tensors by default; newer torchvision does (default True from 0.17).
            False reproduces the pinned environments.
    Returns:
        ``[B, 3, size, size]`` float32.
    """
    x = images.float()
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias
        )
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _check_tag_list(tag_list: Sequence[str], num_classes: int) -> list[str]:
    if len(tag_list) != num_classes:
        raise ValueError(
            f"tag_list: expected {num_classes} tags (one per class), got {len(tag_list)}"
        )
    return list(tag_list)


def require_file(path: str | Path, what: str, source: str) -> Path:
    """``path`` as a Path if it is a file, else a FileNotFoundError saying where it comes from."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} not found: {str(p)!r}. It comes from {source}.")
    return p


def read_tag_list(path: str | Path) -> list[str]:
    """Tag names, one per line (RAM's ``ram_tag_list.txt``, 4585 lines)."""
    p = require_file(path, "RAM tag list", TAG_FILES_SOURCE)
    return p.read_text(encoding="utf-8").splitlines()


def read_thresholds(path: str | Path, num_classes: int, default: float = 0.68) -> torch.Tensor:
    """Per-class thresholds: ``default`` overridden line by line by the file's floats.

    Returns:
        ``[num_classes]`` float32.
    """
    p = require_file(path, "RAM threshold file", TAG_FILES_SOURCE)
    lines = p.read_text(encoding="utf-8").splitlines()
    if len(lines) > num_classes:
        raise ValueError(
            f"threshold file {str(p)!r}: expected at most {num_classes} lines (one per class), "
            f"got {len(lines)}"
        )
    out = torch.full((num_classes,), default, dtype=torch.float32)
    for i, line in enumerate(lines):
        try:
            out[i] = float(line.strip())
        except ValueError:
            raise ValueError(
                f"threshold file {str(p)!r}, line {i + 1}: expected a number, got {line!r}"
            ) from None
    return out


def load_weights_file(path: Path, what: str) -> Mapping[str, object]:
    """``torch.load(path, weights_only=True)``, memory-mapped when the file format allows it."""
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(err):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{what} {str(path)!r} holds objects other than tensors and plain containers, so it "
            f"cannot be loaded with weights_only=True: {err}"
        ) from err
    if not isinstance(obj, Mapping):
        raise ValueError(f"{what} {str(path)!r}: expected a dict, got {type(obj).__name__}")
    return obj


def tagging_state_dict(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """The tagging-path entries of a RAM checkpoint, renamed as RAM's loader does.

    Accepts the file's top-level dict (state dict under ``"model"``) or a flat state dict.
    """
    state = checkpoint.get("model", checkpoint)
    if not isinstance(state, Mapping) or not any(
        str(k).startswith("visual_encoder.") for k in state
    ):
        raise ValueError(
            "RAM checkpoint: expected a state dict under 'model' (or at the top level) with "
            f"'visual_encoder.*' entries, got top-level keys {sorted(map(str, checkpoint))[:10]}"
        )
    out = {}
    for key, value in state.items():
        if key.startswith("vision_multi."):  # an earlier name of the tagging head
            key = "tagging_head." + key[len("vision_multi.") :]
        if key.split(".", 1)[0] in TAGGING_MODULES and isinstance(value, torch.Tensor):
            out[key] = value
    return out


def load_tagging_weights(model: RamTaggingModel, state: Mapping[str, torch.Tensor]) -> None:
    """Load the tagging-path entries strictly, with errors that name the offending keys."""
    state = split_derived_buffers(model.visual_encoder, state, prefix="visual_encoder.")
    ours = model.state_dict()
    missing = sorted(set(ours) - set(state))
    unexpected = sorted(set(state) - set(ours))
    if missing or unexpected:
        raise KeyError(
            f"RAM checkpoint does not match the tagging model ({model.config}): "
            f"{len(missing)} missing keys {key_list(missing)}, "
            f"{len(unexpected)} unexpected keys {key_list(unexpected)}"
        )
    for key, value in state.items():
        if value.shape != ours[key].shape:
            raise ValueError(
                f"RAM checkpoint entry {key!r}: expected shape {list(ours[key].shape)}, "
                f"got {list(value.shape)}"
            )
    model.load_state_dict(state, strict=True)


def key_list(keys: list[str], n: int = 8) -> str:
    """The first ``n`` keys for an error message."""
    return str(keys[:n])[:-1] + (", ...]" if len(keys) > n else "]")


def load_ram(
    checkpoint_path: str | Path,
    tag_list_path: str | Path,
    threshold_path: str | Path,
    config: RamConfig = RAM_SWIN_L_384,
) -> RamTaggingModel:
    """RAM's tagging model in float32 on the CPU from the user's files.

    Args:
        checkpoint_path: ``ram_swin_large_14m.pth`` (or a checkpoint with the same keys).
        tag_list_path: ``ram_tag_list.txt``.
        threshold_path: ``ram_tag_list_threshold.txt``.
        config: the architecture; the default is RAM Swin-L/384.
    """
    ckpt_file = require_file(checkpoint_path, "RAM checkpoint", RAM_SOURCE)
    tags = read_tag_list(tag_list_path)
    thresholds = read_thresholds(threshold_path, config.num_classes, config.default_threshold)
    model = RamTaggingModel(config, _check_tag_list(tags, config.num_classes))
    checkpoint = load_weights_file(ckpt_file, "RAM checkpoint")
    load_tagging_weights(model, tagging_state_dict(checkpoint))
    model.set_thresholds(thresholds)
    return model.eval().requires_grad_(False)
