"""Engine building with TensorRT for RTX on the CPU, engine metadata checks, the runtime's
planning and its refusal to run without a GPU."""

import json

import pytest
import torch

from ebir_fast.deploy.trt_build import BuildOptions, build_engine, build_engines, sha256_file
from ebir_fast.deploy.trt_runtime import (
    EngineMismatchError,
    check_engine_metadata,
    check_engines,
    load_trt_pipeline,
    plan_scratch,
)

trt = pytest.importorskip("tensorrt_rtx_bindings", reason="TensorRT for RTX builds the engines")


@pytest.fixture(scope="module")
def engines(static_graphs, tmp_path_factory):
    out = tmp_path_factory.mktemp("engines")
    logs = []
    metas = build_engines(
        static_graphs, out, BuildOptions(timing_cache=out / "timing.cache"), log=logs.append
    )
    return out, metas, logs


def test_every_graph_builds_an_engine_with_metadata(static_graphs, engines, stage_files):
    out, metas, logs = engines
    graphs = json.loads((static_graphs / "graphs.json").read_text())
    assert set(metas) == set(graphs["graphs"])
    for name, meta in metas.items():
        assert (out / f"{name}.engine").stat().st_size == meta["engine_bytes"] > 0
        assert json.loads((out / f"{name}.json").read_text()) == meta
        assert meta["flavour"] == "tensorrt-rtx"
        assert meta["tensorrt_version"] == trt.__version__
        assert meta["rtx_targets"] == ["SM89"]
        assert meta["precision"] == "fp16"
        assert meta["image_size"] == [64, 64]
        assert meta["onnx_sha256"] == sha256_file(static_graphs / f"{name}.onnx")
        assert set(meta["checkpoints"]) == {"base", "restorer", "projector"}
    assert metas["g_unet"]["inputs"]["latent"] == {"shape": [1, 4, 8, 8], "dtype": "HALF"}
    assert metas["vae_decoder"]["outputs"]["image"]["shape"] == [1, 3, 64, 64]
    summary = json.loads((out / "engines.json").read_text())
    assert set(summary["engines"]) == set(metas)
    assert (out / "tokenizer").is_dir()
    assert any("timing cache is skipped" in line for line in logs)  # no GPU here


def test_build_errors(static_graphs, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"graphs\.json"):
        build_engines(tmp_path, tmp_path / "e")
    with pytest.raises(ValueError, match="not in"):
        build_engines(static_graphs, tmp_path / "e", graphs=["nope"])
    with pytest.raises(FileNotFoundError, match="no ONNX graph"):
        build_engine(tmp_path / "x.onnx", tmp_path / "x.engine")
    with pytest.raises(ValueError, match="opt_level"):
        BuildOptions(opt_level=9)
    with pytest.raises(ValueError, match="compute_capabilities"):
        BuildOptions(compute_capabilities=("SM70",))


def test_dynamic_graphs_need_a_profile(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()).eval()
    x = torch.rand(2, 3, 16, 16)
    dims = ({0: torch.export.Dim("b", min=1, max=8)},)
    torch.onnx.export(
        model,
        (x,),
        str(tmp_path / "m.onnx"),
        dynamo=True,
        input_names=["x"],
        dynamic_shapes=dims,
        verbose=False,
    )
    with pytest.raises(ValueError, match="dynamic inputs"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", log=lambda _: None)
    opts = BuildOptions(profiles={"x": ((1, 3, 16, 16), (2, 3, 16, 16), (8, 3, 16, 16))})
    meta = build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", opts, log=lambda _: None)
    assert meta["profiles"]["x"] == [[1, 3, 16, 16], [2, 3, 16, 16], [8, 3, 16, 16]]
    assert meta["inputs"]["x"]["shape"] == [-1, 3, 16, 16]


GPU = {"name": "NVIDIA A100", "compute_capability": "8.0"}


def _meta(**kw):
    base = {
        "flavour": "tensorrt",
        "tensorrt_version": "10.14",
        "compute_capability": "8.0",
        "gpu": "NVIDIA A100",
    }
    return {**base, **kw}


def test_metadata_checks():
    ok = dict(flavour="tensorrt", version="10.14", gpu=GPU)
    assert check_engine_metadata("e", _meta(), **ok) == []
    assert (
        "no CUDA GPU"
        in check_engine_metadata(
            "e", _meta(), flavour="tensorrt", version="10.14", gpu={"compute_capability": None}
        )[0]
    )
    assert "TensorRT 10.13" in check_engine_metadata("e", _meta(tensorrt_version="10.13"), **ok)[0]
    assert (
        "compute capability 9.0"
        in check_engine_metadata("e", _meta(compute_capability="9.0"), **ok)[0]
    )
    assert "tensorrt-rtx" in check_engine_metadata("e", _meta(flavour="tensorrt-rtx"), **ok)[0]
    rtx = dict(flavour="tensorrt-rtx", version="1.7", gpu=GPU)
    good = _meta(flavour="tensorrt-rtx", tensorrt_version="1.7", rtx_targets=["SM80", "SM89"])
    assert check_engine_metadata("e", good, **rtx) == []
    bad = {**good, "rtx_targets": ["SM89"]}
    assert "SM80" in check_engine_metadata("e", bad, **rtx)[0]
    with pytest.raises(EngineMismatchError, match="rebuild them here"):
        check_engines({"engines": {"a": _meta(), "b": bad}}, **rtx)


def test_scratch_is_the_largest_need_aligned():
    assert plan_scratch({"a": 1000, "b": 70_000, "c": 5}) == 70_144
    assert plan_scratch({}) == 0
    with pytest.raises(ValueError, match="sizes"):
        plan_scratch({"a": -1})


def test_runtime_refuses_without_a_gpu(engines, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"engines\.json"):
        load_trt_pipeline(tmp_path)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA GPU"):
            load_trt_pipeline(engines[0])


def test_scripts_report_errors(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "export"
    for script in ("build_trt", "export_onnx"):
        spec = importlib.util.spec_from_file_location(script, root / f"{script}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if script == "build_trt":
            code = module.main(["--onnx", str(tmp_path), "--out", str(tmp_path / "e")])
        else:
            code = module.main(["--weights", str(tmp_path), "--out", str(tmp_path / "o")])
        assert code == 2
        assert "ebir-fast.json" in capsys.readouterr().err or script == "build_trt"
