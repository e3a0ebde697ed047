"""Image files in and out: decoding to float tensors, atomic PNG writes, folder listings.

Shared by the command line and, later, ``restore()``. Writes never leave a half-written file: the
image goes to a temporary file in the destination folder and is renamed over the target.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

#: File extensions read as images (lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: str | os.PathLike) -> torch.Tensor:  # [3, H, W] float32 in [0, 1]
    """Decode an image file to RGB in [0, 1].

    EXIF orientation is applied; grayscale is repeated to three channels; an alpha channel is
    composited onto white (transparent regions of photos and graphics are usually meant as
    background); 16-bit grayscale keeps its precision, while 16-bit colour PNGs arrive as 8-bit
    (Pillow decodes 48/64-bit PNGs to 8 bits per channel). Any decoder failure propagates
    (``OSError``, ``PIL.UnidentifiedImageError``, ...), so callers can skip the file.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img, dtype=np.float64) / 65535.0
            return torch.from_numpy(arr).float().clamp(0, 1).unsqueeze(0).expand(3, -1, -1).clone()
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255.0)


def to_uint8(image: torch.Tensor) -> np.ndarray:  # [H, W, 3] uint8
    """``image [3, H, W]`` in [0, 1] as 8-bit HWC, rounded to nearest."""
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image: expected a [3, H, W] tensor, got {shape}")
    arr = image.detach().float().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return arr.permute(1, 2, 0).cpu().numpy()


def write_png(path: str | os.PathLike, image: torch.Tensor) -> None:
    """Write ``image [3, H, W]`` in [0, 1] as an 8-bit RGB PNG, atomically."""
    from PIL import Image

    data = Image.fromarray(to_uint8(image), mode="RGB")
    atomic_write(path, lambda f: data.save(f, format="PNG"))


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``.

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        # mkstemp makes the file private (0600); give it the permissions open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` (by extension), sorted by their relative path."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"input: expected a folder of images, got {str(root)!r}")
    pattern = "**/*" if recursive else "*"
    files = [
        p
        for p in root.glob(pattern)
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())
