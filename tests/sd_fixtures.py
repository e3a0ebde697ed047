"""Session fixtures: a tiny SD-2-style base folder and stage checkpoints written from it.

Imported by the conftest files of the test folders that need them.
"""

from __future__ import annotations

import pytest

from ebir_fast.models.checkpoint import save_osediff, save_safetensors
from tests.models.sd_helpers import random_stage_weights, tiny_components, write_tiny_base


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory):
    return write_tiny_base(tmp_path_factory.mktemp("sd21_tiny"))


@pytest.fixture(scope="session")
def stage_files(tiny_base_dir, tmp_path_factory):
    """``{"restorer": osediff.pkl, "projector": projector.safetensors, "weights": {...}}``."""
    unet, vae, _, _ = tiny_components()
    folder = tmp_path_factory.mktemp("stages")
    g = random_stage_weights(unet, vae, rank=4, seed=11)
    f = random_stage_weights(unet, vae, rank=4, seed=12)
    save_osediff(g, folder / "osediff.pkl")
    save_safetensors(f, folder / "projector.safetensors")
    return {
        "restorer": folder / "osediff.pkl",
        "projector": folder / "projector.safetensors",
        "g": g,
        "f": f,
    }


@pytest.fixture(scope="session")
def static_graphs(tiny_base_dir, stage_files, tmp_path_factory):
    """Static fp16 64 x 64 graphs of the tiny two-stage pipeline (what engines are built from)."""
    from ebir_fast.deploy.onnx_export import export_pipeline
    from ebir_fast.pipeline import EBIRPipeline

    pipe = EBIRPipeline.from_files(tiny_base_dir, stage_files["restorer"], stage_files["projector"])
    out = tmp_path_factory.mktemp("onnx_static")
    export_pipeline(
        pipe, out, precision="fp16", image_size=(64, 64), check=False, log=lambda _: None
    )
    return out
