"""ONNX export of every graph and the ONNX Runtime backend against the PyTorch pipeline."""

import json

import onnx
import pytest
import torch

from ebir_fast.deploy import onnx_export
from ebir_fast.deploy.onnx_export import export_pipeline
from ebir_fast.models.tagger import DapeTagger
from ebir_fast.pipeline import EBIRPipeline
from ebir_fast.pipeline.onnxruntime import load_onnx_pipeline
from tests.models.helpers import tiny_model

GRAPHS = {
    "f_vae_encoder",
    "f_unet",
    "g_vae_encoder",
    "g_unet",
    "vae_decoder",
    "text_encoder",
    "tagger",
}


@pytest.fixture(scope="module")
def pipe(tiny_base_dir, stage_files):
    tagger = DapeTagger(tiny_model(seed=3))
    # The tiny tagger's thresholds are RAM's default; make some tags fire so prompts vary.
    tagger.model.class_threshold.fill_(0.5)
    return EBIRPipeline.from_files(
        tiny_base_dir, stage_files["restorer"], stage_files["projector"], tagger
    )


@pytest.fixture(scope="module")
def exported(pipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    reports = export_pipeline(pipe, out, log=lambda _: None)
    return out, reports


def test_every_graph_is_exported_checked_and_matches_torch(exported):
    out, reports = exported
    assert set(reports) == GRAPHS
    meta = json.loads((out / "graphs.json").read_text())
    assert set(meta["graphs"]) == GRAPHS
    assert meta["tagger"]["kind"] == "dape"
    for name, r in reports.items():
        onnx.checker.check_model(str(out / f"{name}.onnx"))
        assert r.max_abs_diff is not None
        assert r.max_abs_diff < 1e-4, (name, r.max_abs_diff)
        assert meta["graphs"][name]["sha256"] == r.sha256
    assert {p.name for p in (out / "tokenizer").iterdir()} & {"tokenizer.json", "vocab.json"}
    assert not [p for p in out.iterdir() if p.name.startswith(".export-")]


@pytest.mark.parametrize("winograd", ["auto", 2, None])
def test_onnxruntime_pipeline_matches_torch(pipe, exported, winograd):
    out, _ = exported
    ort = load_onnx_pipeline(out, providers=["CPUExecutionProvider"], winograd=winograd)
    f = ort.projector
    rewritten = f.decoder.winograd_convs, f.encoder.winograd_convs, f.unet.winograd_convs
    # The tiny VAE's 32-channel convolutions are rewritten on the CPU provider ("auto": F(4));
    # the UNet never is.
    assert (rewritten[0] > 0, rewritten[1] > 0, rewritten[2]) == (winograd is not None,) * 2 + (0,)
    # The tagger's GELUs are fused on the CPU provider whatever the Winograd setting.
    assert ort.tagger.graph.gelu_fusions > 0
    x = torch.rand(2, 3, 64, 128, generator=torch.Generator().manual_seed(0))
    for k in (0, 2) if winograd != 2 else (2,):
        a, b = pipe(x, lfo=k, return_lq=True), ort(x, lfo=k, return_lq=True)
        assert a.prompts == b.prompts
        torch.testing.assert_close(b.images, a.images, atol=2e-4, rtol=0)
        for la, lb in zip(a.lq, b.lq, strict=True):
            torch.testing.assert_close(lb, la, atol=2e-4, rtol=0)


def test_onnxruntime_lfo_reuses_the_encoder(exported):
    ort = load_onnx_pipeline(exported[0], providers=["CPUExecutionProvider"])
    calls = []

    def tagger(x):
        calls.append(1)
        return [f"call{len(calls)}"] * x.shape[0]

    ort.tagger = tagger
    ort(torch.rand(1, 3, 64, 64), lfo=2)
    f = ort.projector
    assert f.encoder.calls == 1
    assert f.unet.calls == 3
    assert len(calls) == 4
    # Sizes that are not multiples of 64 are padded and cropped back.
    assert ort(torch.rand(1, 3, 40, 72), lfo=0).images.shape == (1, 3, 40, 72)
    with pytest.raises(ValueError, match="posterior's mode"):
        ort(torch.rand(1, 3, 64, 64), lfo=0, seed=1)
    with pytest.raises(ValueError, match="winograd: expected 2, 4, None or 'auto', got 3"):
        load_onnx_pipeline(exported[0], providers=["CPUExecutionProvider"], winograd=3)


def test_static_fp16_export(static_graphs):
    meta = json.loads((static_graphs / "graphs.json").read_text())
    assert set(meta["graphs"]) == GRAPHS - {"tagger"}  # that pipeline's tagger is the null one
    model = onnx.load(str(static_graphs / "g_unet.onnx"))
    latent = model.graph.input[0].type.tensor_type
    assert latent.elem_type == onnx.TensorProto.FLOAT16
    assert [d.dim_value for d in latent.shape.dim] == [1, 4, 8, 8]
    assert meta["image_size"] == [64, 64]
    assert meta["precision"] == "fp16"
    assert meta["tagger"] == {"kind": "null"}
    with pytest.raises(ValueError, match="static"):
        load_onnx_pipeline(static_graphs)


def test_export_errors_leave_nothing_behind(pipe, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="precision"):
        export_pipeline(pipe, tmp_path, precision="int8")
    with pytest.raises(ValueError, match="multiples of 64"):
        export_pipeline(pipe, tmp_path, image_size=(100, 64))
    real = onnx_export.export_graph
    count = []

    def flaky(*args, **kwargs):
        count.append(1)
        if len(count) == 3:
            raise RuntimeError("exporter crashed")
        return real(*args, **kwargs)

    monkeypatch.setattr(onnx_export, "export_graph", flaky)
    with pytest.raises(RuntimeError, match="crashed"):
        export_pipeline(pipe, tmp_path / "out", check=False, log=lambda _: None)
    assert list((tmp_path / "out").iterdir()) == []


def test_restore_with_the_onnxruntime_backend(exported, tiny_base_dir, stage_files, tmp_path):
    from ebir_fast.api import restore

    manifest = {
        "base": str(tiny_base_dir),
        "restorer": str(stage_files["restorer"]),
        "projector": str(stage_files["projector"]),
        "onnx": str(exported[0]),
    }
    (tmp_path / "ebir-fast.json").write_text(json.dumps(manifest))
    x = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(2))
    out = restore(x, lfo=1, weights=tmp_path, backend="onnxruntime")
    ref = load_onnx_pipeline(exported[0])(x[None], lfo=1).images[0]
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="backend"):
        restore(x, weights=tmp_path, backend="jax")
    del manifest["onnx"]
    (tmp_path / "ebir-fast.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="'engines' folder"):
        restore(x, weights=tmp_path, backend="tensorrt")
