"""Where ``restore()`` finds its weights: one manifest file, ``ebir-fast.json``.

The folder is, in order: the ``weights`` argument (a folder or the manifest itself), the
``EBIR_FAST_WEIGHTS`` environment variable, ``$XDG_CACHE_HOME/ebir-fast`` (``~/.cache/ebir-fast``).
Paths in the manifest are relative to it::

    {
      "base": "sd21-base",                 # diffusers SD-2.1-base folder (or a hub id)
      "restorer": "osediff.pkl",           # g: OSEDiff's checkpoint or our .safetensors
      "projector": "ebir_projector.safetensors",   # f; null runs g alone (OSEDiff)
      "tagger": {"kind": "dape", "ram": "ram_swin_large_14m.pth",
                 "tag_list": "ram_tag_list.txt", "thresholds": "ram_tag_list_threshold.txt",
                 "dape": "DAPE.pth"},      # or {"kind": "null"} / {"kind": "fixed", "prompt": ...}
      "onnx": "onnx",                      # optional: export_onnx.py output (onnxruntime)
      "engines": "engines-512"             # optional: build_trt.py output (tensorrt)
    }
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST = "ebir-fast.json"
ENV_VAR = "EBIR_FAST_WEIGHTS"
TAGGER_KINDS = ("dape", "null", "fixed")

#: Where each file comes from (shown when it is missing).
SOURCES = {
    "base": "Stable Diffusion 2.1-base in diffusers layout, e.g. `hf download "
    "Manojb/stable-diffusion-2-1-base --local-dir sd21-base` (Stability's own repo was removed)",
    "restorer": "OSEDiff's released checkpoint `preset/models/osediff.pkl` from "
    "https://github.com/cswry/OSEDiff",
    "projector": "the EBIR projector f: the paper released no weights; train it (our training "
    'module) or set "projector": null to run OSEDiff alone',
    "ram": "`ram_swin_large_14m.pth` from https://huggingface.co/xinyu1205/recognize_anything_model",
    "tag_list": "`ram_tag_list.txt` from https://github.com/xinyu1205/recognize-anything "
    "(ram/data/)",
    "thresholds": "`ram_tag_list_threshold.txt` from "
    "https://github.com/xinyu1205/recognize-anything (ram/data/)",
    "dape": "SeeSR's `DAPE.pth` (see https://github.com/cswry/SeeSR, 'preset/models')",
}


class WeightsNotFoundError(FileNotFoundError):
    """The manifest or files it names are missing; the message says which and where from."""


@dataclass
class Manifest:
    """A parsed ``ebir-fast.json`` with paths resolved against its folder."""

    path: Path
    base: str
    restorer: Path
    projector: Path | None
    tagger: dict = field(default_factory=lambda: {"kind": "null"})
    onnx: Path | None = None  # graphs from export/export_onnx.py (backend="onnxruntime")
    engines: Path | None = None  # engines from export/build_trt.py (backend="tensorrt")

    def files(self) -> dict[str, Path]:
        """Every local file or folder the manifest needs, by role."""
        out = {"restorer": self.restorer}
        if Path(self.base).exists() or not _looks_like_hub_id(self.base):
            out["base"] = Path(self.base)
        if self.projector is not None:
            out["projector"] = self.projector
        if self.tagger["kind"] == "dape":
            for key in ("ram", "tag_list", "thresholds", "dape"):
                if self.tagger.get(key) is not None:
                    out[key] = Path(self.tagger[key])
        return out

    def check(self) -> None:
        """Raise :class:`WeightsNotFoundError` listing every missing file and its source."""
        missing = [(role, p) for role, p in self.files().items() if not p.exists()]
        if missing:
            lines = "\n".join(
                f"  - {role}: {p}\n      get it: {SOURCES[role]}" for role, p in missing
            )
            raise WeightsNotFoundError(
                f"weights: {self.path} names files that do not exist:\n{lines}"
            )


def _looks_like_hub_id(text: str) -> bool:
    return text.count("/") == 1 and not text.startswith((".", "/", "~"))


def default_folder() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "ebir-fast"


def find_manifest(weights: str | os.PathLike | None = None) -> Path:
    """The manifest path from the argument, the environment or the default folder."""
    if weights is not None:
        origin, path = "weights argument", Path(weights).expanduser()
    elif os.environ.get(ENV_VAR):
        origin, path = f"${ENV_VAR}", Path(os.environ[ENV_VAR]).expanduser()
    else:
        origin, path = "default folder", default_folder()
    manifest = path / MANIFEST if path.is_dir() or path.suffix != ".json" else path
    if not manifest.is_file():
        example = json.dumps(
            {
                "base": "sd21-base",
                "restorer": "osediff.pkl",
                "projector": None,
                "tagger": {"kind": "null"},
            }
        )
        raise WeightsNotFoundError(
            f"weights: no manifest at {manifest} ({origin}). Put the weights in one folder with "
            f"an {MANIFEST} naming them (e.g. {example}) and pass the folder as weights=..., set "
            f"{ENV_VAR}, or use {default_folder()}. Files: "
            + "; ".join(f"{role}: {src}" for role, src in SOURCES.items())
        )
    return manifest


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Parse and validate a manifest (not the files it names: see :meth:`Manifest.check`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"weights: {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"weights: {path} must hold a JSON object, got {type(data).__name__}")
    for key in ("base", "restorer"):
        if not isinstance(data.get(key), str):
            raise ValueError(f"weights: {path} needs a string {key!r} ({SOURCES[key]})")
    root = path.parent

    def local(p: str | None) -> Path | None:
        return None if p is None else (root / Path(p).expanduser())

    base = data["base"]
    if (root / base).exists() or not _looks_like_hub_id(base):
        base = str(root / base)
    tagger = data.get("tagger", {"kind": "null"})
    if not isinstance(tagger, dict) or tagger.get("kind") not in TAGGER_KINDS:
        raise ValueError(
            f"weights: {path}: 'tagger' must be an object with 'kind' in {TAGGER_KINDS}, "
            f"got {tagger!r}"
        )
    if tagger["kind"] == "fixed" and not isinstance(tagger.get("prompt"), str):
        raise ValueError(f"weights: {path}: a 'fixed' tagger needs a string 'prompt'")
    if tagger["kind"] == "dape":
        absent = [k for k in ("ram", "tag_list", "thresholds") if not tagger.get(k)]
        if absent:
            raise ValueError(f"weights: {path}: the 'dape' tagger needs {absent}")
        tagger = {k: (str(local(v)) if k in SOURCES and v else v) for k, v in tagger.items()}
    projector = data.get("projector")
    if projector is not None and not isinstance(projector, str):
        raise ValueError(f"weights: {path}: 'projector' must be a path or null")
    for key in ("onnx", "engines"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ValueError(f"weights: {path}: {key!r} must be a folder path or null")
    return Manifest(
        path=path,
        base=base,
        restorer=local(data["restorer"]),
        projector=local(projector),
        tagger=tagger,
        onnx=local(data.get("onnx")),
        engines=local(data.get("engines")),
    )
