"""``ebir-fast restore`` and ``ebir-fast convert``."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from ebir_fast.api import load_pipeline
from ebir_fast.cli import main
from ebir_fast.io import read_image
from ebir_fast.models.checkpoint import load_stage_weights


@pytest.fixture(scope="module")
def weights_dir(tiny_base_dir, stage_files, tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    manifest = {
        "base": str(tiny_base_dir),
        "restorer": str(stage_files["restorer"]),
        "projector": str(stage_files["projector"]),
        "tagger": {"kind": "null"},
    }
    (folder / "ebir-fast.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def photos(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(src / "a.png")
    Image.fromarray(rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)).save(src / "sub" / "b.jpg")
    (src / "broken.png").write_bytes(b"not an image")
    single = tmp_path / "single.png"
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(single)
    return src, single


def test_restore_files_and_folders(weights_dir, photos, tmp_path, capsys):
    src, single = photos
    out = tmp_path / "out"
    args = [str(src), str(single), "-o", str(out), "--weights", str(weights_dir), "--lfo", "1"]
    assert main(["restore", *args, "--quiet"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "a.png",
        "single.png",
        "sub/b.png",
    ]
    io = capsys.readouterr()
    assert "3 written, 0 skipped (already done), 1 unreadable" in io.out
    assert "broken.png" in io.err
    # The file is the pipeline's output for that image.
    pipe = load_pipeline(weights_dir)
    ref = pipe(read_image(src / "a.png")[None], lfo=1).images[0]
    got = torch.from_numpy(np.array(Image.open(out / "a.png"))).permute(2, 0, 1) / 255.0
    assert (got - ref).abs().max() <= 0.5 / 255 + 1e-6
    assert Image.open(out / "sub" / "b.png").size == (23, 17)
    # Resume: nothing left to do; other settings are refused.
    before = (out / "a.png").stat().st_mtime_ns
    assert main(["restore", *args, "--quiet"]) == 0
    assert "0 written, 3 skipped" in capsys.readouterr().out
    assert (out / "a.png").stat().st_mtime_ns == before
    assert main(["restore", *args[:-1], "2", "--quiet"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary leftovers


def test_restore_errors(weights_dir, photos, tmp_path, capsys):
    src, _ = photos
    assert main(["restore", str(tmp_path / "nope"), "-o", str(tmp_path / "o")]) == 2
    assert "neither a file nor a folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["restore", str(src), "-o", str(tmp_path / "o2"), "--weights", str(empty)]) == 2
    assert "no manifest" in capsys.readouterr().err
    assert main(["restore", str(src), "-o", str(tmp_path / "o3"), "--device", "tpu"]) == 2


def test_interrupted_restore_leaves_no_partial_file(weights_dir, photos, tmp_path, monkeypatch):
    src, _ = photos
    out = tmp_path / "out"
    calls = []

    def failing_save(self, fp, *a, **k):
        calls.append(1)
        fp.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        main(["restore", str(src), "-o", str(out), "--weights", str(weights_dir), "--quiet"])
    assert calls
    assert [p.name for p in out.rglob("*") if p.is_file()] == ["restore.json"]


def test_convert(stage_files, tmp_path, capsys):
    dst = tmp_path / "g.safetensors"
    assert main(["convert", str(stage_files["restorer"]), str(dst)]) == 0
    assert "rank 4 / 4" in capsys.readouterr().out
    a, b = load_stage_weights(stage_files["restorer"]), load_stage_weights(dst)
    assert a.header() == b.header()
    assert main(["convert", str(tmp_path / "missing.pkl"), str(dst)]) == 2
    assert main(["convert", str(dst), str(tmp_path / "x.txt")]) == 2
    assert sorted(os.listdir(tmp_path)) == ["g.safetensors"]
