"""The ``ebir-fast`` command: degrade triplets (determinism, resume, errors) and info."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ebir_fast.cli import main

SIZE = 32


@pytest.fixture(autouse=True)
def memory_calls(monkeypatch):
    """The CLI turns keep_freed_memory() on for its process; not for the test process."""
    import ebir_fast.memory

    calls = []
    monkeypatch.setattr(ebir_fast.memory, "keep_freed_memory", lambda: calls.append(1) or True)
    return calls


@pytest.fixture
def photos(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(src / "a.png")
    Image.fromarray(rng.integers(0, 256, (50, 64, 3), dtype=np.uint8)).save(src / "sub" / "b.jpg")
    Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(src / "gray.png")
    rgba = rng.integers(0, 256, (36, 33, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(src / "rgba.png")
    deep = rng.integers(0, 65536, (30, 45), dtype=np.uint16)
    Image.fromarray(deep).save(src / "deep.png")  # 16-bit grayscale
    (src / "broken.png").write_bytes(b"not an image")
    return src


def _outputs(out):
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))


def test_degrade_writes_paired_8bit_triplets(photos, tmp_path, capsys, memory_calls):
    out = tmp_path / "out"
    assert main(["degrade", str(photos), str(out), "--size", str(SIZE), "--quiet"]) == 0
    assert memory_calls == [1]
    names = ["a.png", "deep.png", "gray.png", "rgba.png", "sub/b.png"]
    assert _outputs(out) == sorted(f"{k}/{n}" for k in ("elq", "hq", "lq") for n in names)
    for kind in ("hq", "lq", "elq"):
        for name in names:
            with Image.open(out / kind / name) as img:
                assert (img.format, img.mode, img.size) == ("PNG", "RGB", (SIZE, SIZE))
    text = capsys.readouterr()
    assert "5 written, 0 skipped (already done), 1 unreadable" in text.out
    assert "warning: skipping" in text.err
    assert "broken.png" in text.err
    assert not (out / "prompts.jsonl").exists()  # only the param preset writes prompts
    manifest = json.loads((out / "degrade.json").read_text())
    assert manifest["preset"] == "elq"
    assert manifest["size"] == SIZE


def test_degrade_is_deterministic_and_resumes(photos, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    args = ["--size", str(SIZE), "--seed", "3", "--quiet"]
    assert main(["degrade", str(photos), str(a), *args]) == 0
    assert main(["degrade", str(photos), str(b), *args]) == 0
    for rel in _outputs(a):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    # Resume: remove one output; only that file's triplet is redone, the others are untouched.
    (a / "elq" / "gray.png").unlink()
    before = {rel: os.stat(a / rel).st_mtime_ns for rel in _outputs(a)}
    capsys.readouterr()
    assert main(["degrade", str(photos), str(a), *args]) == 0
    assert "1 written, 4 skipped (already done), 1 unreadable" in capsys.readouterr().out
    after = {rel: os.stat(a / rel).st_mtime_ns for rel in _outputs(a)}
    assert (a / "elq" / "gray.png").read_bytes() == (b / "elq" / "gray.png").read_bytes()
    assert after["hq/a.png"] == before["hq/a.png"]
    assert after["elq/sub/b.png"] == before["elq/sub/b.png"]


def test_other_seed_other_output(photos, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    main(["degrade", str(photos), str(a), "--size", str(SIZE), "--seed", "0", "--quiet"])
    main(["degrade", str(photos), str(b), "--size", str(SIZE), "--seed", "1", "--quiet"])
    assert (a / "elq" / "a.png").read_bytes() != (b / "elq" / "a.png").read_bytes()
    assert (a / "hq" / "a.png").read_bytes() == (b / "hq" / "a.png").read_bytes()  # centre crop


def test_param_preset_writes_prompts(photos, tmp_path):
    out = tmp_path / "out"
    assert (
        main(["degrade", str(photos), str(out), "--preset", "param", "--size", "32", "--quiet"])
        == 0
    )
    prompt = (out / "prompts" / "a.txt").read_text().strip()
    assert prompt.endswith(";") or prompt == "Remove all degradation"
    index = [json.loads(line) for line in (out / "prompts.jsonl").read_text().splitlines()]
    assert [e["name"] for e in index] == ["a", "deep", "gray", "rgba", "sub/b"]
    for entry in index:
        assert entry["prompt"] == (out / "prompts" / f"{entry['name']}.txt").read_text().strip()
    # A resumed run rebuilds the index complete, not from the files it redid.
    (out / "elq" / "gray.png").unlink()
    assert main(["degrade", str(photos), str(out), "--preset", "param", "--size", "32"]) == 0
    assert (out / "prompts.jsonl").read_text().splitlines() == [json.dumps(e) for e in index]


def test_a_crash_leaves_no_partial_file(photos, tmp_path, monkeypatch):
    out = tmp_path / "out"
    calls = {"n": 0}
    real_save = Image.Image.save

    def flaky_save(self, fp, format=None, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            fp.write(b"\x89PNG half")
            raise OSError("power cut")
        return real_save(self, fp, format=format, **kw)

    monkeypatch.setattr(Image.Image, "save", flaky_save)
    with pytest.raises(OSError, match="power cut"):
        main(["degrade", str(photos), str(out), "--size", str(SIZE), "--quiet"])
    monkeypatch.undo()
    leftovers = [p for p in out.rglob("*") if p.is_file() and p.name != "degrade.json"]
    assert [p.relative_to(out).as_posix() for p in leftovers] == ["hq/a.png"]
    for p in leftovers:
        with Image.open(p) as img:
            img.load()  # complete, decodable


def test_settings_mismatch_and_bad_arguments(photos, tmp_path, capsys):
    out = tmp_path / "out"
    main(["degrade", str(photos), str(out), "--size", str(SIZE), "--quiet"])
    assert main(["degrade", str(photos), str(out), "--size", "16", "--quiet"]) == 2
    assert "size: 32 there, 16 now" in capsys.readouterr().err
    assert main(["degrade", str(photos), str(out), "--size", "16", "--quiet", "--overwrite"]) == 0
    assert main(["degrade", str(tmp_path / "missing"), str(out)]) == 2
    assert "input: expected a folder" in capsys.readouterr().err
    # The preset's parameters are part of the settings (e.g. changed by a package upgrade).
    manifest = json.loads((out / "degrade.json").read_text())
    manifest["config"]["scale_range"] = [1.0, 2.0]
    (out / "degrade.json").write_text(json.dumps(manifest))
    assert main(["degrade", str(photos), str(out), "--size", "16", "--quiet"]) == 2
    assert "config: preset parameters differ" in capsys.readouterr().err
    assert main(["degrade", str(photos), str(out), "--device", "nonsense"]) == 2
    assert "--device" in capsys.readouterr().err
    for bad in (["--size", "0"], ["--preset", "nope"]):
        with pytest.raises(SystemExit) as exc:
            main(["degrade", str(photos), str(out), *bad])
        assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--size" in err
    assert "--preset" in err


def test_clashing_names_and_empty_folders(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    assert main(["degrade", str(src), str(tmp_path / "o")]) == 1
    Image.new("RGB", (8, 8)).save(src / "x.png")
    Image.new("RGB", (8, 8)).save(src / "x.jpg")
    assert main(["degrade", str(src), str(tmp_path / "o")]) == 2
    assert "x" in capsys.readouterr().err


def test_info_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "ebir_fast", "info"], capture_output=True, text=True, check=True
    )
    assert "ebir-fast" in result.stdout
    assert "backends for cpu tensors" in result.stdout
    assert "elq" in result.stdout
