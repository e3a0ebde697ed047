"""Image I/O: every input kind decodes to RGB in [0, 1]; writes are atomic."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from ebir_fast.io import list_images, read_image, to_uint8, write_png


def test_rgb_gray_rgba_and_16bit(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    x = read_image(tmp_path / "rgb.png")
    assert x.shape == (3, 7, 9)
    assert x.dtype == torch.float32
    assert np.array_equal((x * 255).round().byte().permute(1, 2, 0).numpy(), rgb)

    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    g = read_image(tmp_path / "gray.png")
    assert torch.equal(g[0], g[1])
    assert torch.equal(g[0], g[2])

    rgba = np.concatenate([rgb, np.zeros((7, 9, 1), np.uint8)], axis=2)
    rgba[0, 0, 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    a = read_image(tmp_path / "rgba.png")
    assert torch.equal(a[:, 1, 1], torch.ones(3))  # transparent: composited on white
    assert torch.allclose(a[:, 0, 0] * 255, torch.tensor(rgb[0, 0], dtype=torch.float32))

    deep = (np.arange(63, dtype=np.uint16).reshape(7, 9) * 1000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    d = read_image(tmp_path / "deep.png")
    assert torch.allclose(d[0], torch.from_numpy(deep.astype(np.float32) / 65535.0), atol=1e-6)


def test_write_png_round_trips_and_is_atomic(tmp_path, monkeypatch):
    x = torch.rand(3, 5, 6)
    write_png(tmp_path / "sub" / "out.png", x)
    back = read_image(tmp_path / "sub" / "out.png")
    assert torch.equal(back, torch.from_numpy(to_uint8(x)).permute(2, 0, 1).float() / 255)

    def broken_save(self, fp, format=None, **kw):
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_png(tmp_path / "sub" / "out.png", torch.zeros(3, 5, 6))
    monkeypatch.undo()
    assert torch.equal(read_image(tmp_path / "sub" / "out.png"), back)  # old file intact
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["out.png"]  # no temp left


def test_list_images_and_errors(tmp_path):
    for name in ["b.png", "a.JPG", "sub/c.webp", "notes.txt", ".hidden.png"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == [
        "a.JPG",
        "b.png",
        "sub/c.webp",
    ]
    assert len(list_images(tmp_path, recursive=False)) == 2
    with pytest.raises(FileNotFoundError, match="input: expected a folder"):
        list_images(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"image: expected a \[3, H, W\]"):
        to_uint8(torch.zeros(4, 2, 2))


def test_exif_orientation_and_deep_colour(tmp_path):
    # A 2 x 3 landscape stored with orientation 6 ("rotate 90 CW to display") reads as 3 x 2.
    pixels = np.zeros((2, 3, 3), np.uint8)
    pixels[0, 0] = (255, 0, 0)  # top left as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "rot.png", exif=exif)
    x = read_image(tmp_path / "rot.png")
    assert x.shape == (3, 3, 2)
    assert torch.equal(x[:, 0, 1], torch.tensor([1.0, 0.0, 0.0]))  # now top right
    assert float(x.sum()) == 1.0

    # A 48-bit RGB PNG (written by hand: Pillow does not write them) decodes to its top 8 bits.
    import struct
    import zlib

    deep = (np.arange(18).reshape(2, 3, 3) * 3000).astype(np.uint16)
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in deep)

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 3, 2, 16, 2, 0, 0, 0)
    (tmp_path / "deep.png").write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    d = read_image(tmp_path / "deep.png")
    assert torch.equal(d, torch.from_numpy((deep >> 8).astype(np.float32) / 255).permute(2, 0, 1))


def test_atomic_write_gives_normal_permissions(tmp_path):
    from ebir_fast.io import atomic_write

    umask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "f.bin", lambda f: f.write(b"x"))
    finally:
        os.umask(umask)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o644
