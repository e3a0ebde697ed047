"""The Winograd rewrite of 3x3 convolutions against the direct convolution it replaces."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from ebir_fast.deploy.winograd import (
    TRANSFORMS,
    cook_toom,
    filter_transform,
    rewrite,
    winograd_conv2d,
)

SIZES = [(7, 9), (1, 5), (16, 17), (8, 8)]


@pytest.mark.parametrize("m", sorted(TRANSFORMS))
@pytest.mark.parametrize("hw", SIZES)
def test_torch_winograd_equals_conv2d(m, hw):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, *hw, generator=g, dtype=torch.float64)
    w = torch.randn(6, 5, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    ref = torch.nn.functional.conv2d(x, w, b, padding=1)
    torch.testing.assert_close(winograd_conv2d(x, w, b, m), ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(
        winograd_conv2d(x, w, None, m), ref - b.view(1, -1, 1, 1), atol=1e-10, rtol=0
    )


def test_cook_toom_gives_lavin_and_grays_f4():
    t = TRANSFORMS[4]
    bt = [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ]
    g = [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ]
    at = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
    np.testing.assert_allclose(t.BT, bt, atol=1e-15)
    np.testing.assert_allclose(t.G, g, atol=1e-15)
    np.testing.assert_allclose(t.AT, at, atol=1e-15)
    with pytest.raises(ValueError, match="points: expected 5 distinct values for F"):
        cook_toom(4, [0, 1, -1, 2, 2])


def test_filter_transform_shape_and_errors():
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3))
    assert filter_transform(w, 4).shape == (36, 4, 3)
    assert filter_transform(w, 2).shape == (16, 4, 3)
    with pytest.raises(ValueError, match="m: expected a Winograd tile size"):
        filter_transform(w, 3)


def _net(opset: int = 18) -> onnx.ModelProto:
    """Conv(bias) -> Relu -> Conv(SAME, no bias) -> Conv(stride 2, kept) -> Conv(3 in, kept)."""
    rng = np.random.default_rng(1)
    t = lambda name, *shape: numpy_helper.from_array(  # noqa: E731
        rng.standard_normal(shape).astype(np.float32) / 6, name
    )
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h1"], pads=[1, 1, 1, 1], name="c1"),
        helper.make_node("Relu", ["h1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["h2"], auto_pad="SAME_UPPER", name="c2"),
        helper.make_node("Conv", ["h2", "w3"], ["h3"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Conv", ["h3", "w4"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 36, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h2", "w2"])],
        [
            t("w1", 40, 36, 3, 3),
            t("b1", 40),
            t("w2", 33, 40, 3, 3),
            t("w3", 33, 33, 3, 3),
            t("w4", 3, 33, 3, 3),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("m", sorted(TRANSFORMS))
@pytest.mark.parametrize("separable", [True, False])
def test_rewritten_graph_matches_the_direct_one(m, separable):
    base = _net()
    model, count = rewrite(_net(), m, separable=separable)
    assert count == 2  # the stride-2 conv and the 3-channel head stay direct
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 2 + 2 * (2 if separable else 1)
    assert ops.count("ConvTranspose") == 2
    assert ops.count("MatMul") == 2
    assert not {"w1", "w2"} & {i.name for i in model.graph.initializer}
    direct, fast = _session(base), _session(model)
    rng = np.random.default_rng(2)
    tol = {2: 2e-6, 4: 2e-5, 6: 3e-4}[m]
    for shape in [(2, 36, 7, 9), (1, 36, 1, 5), (1, 36, 16, 17), (3, 36, 12, 12)]:
        x = rng.standard_normal(shape).astype(np.float32)
        ref, got = direct.run(None, {"x": x})[0], fast.run(None, {"x": x})[0]
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= tol * np.abs(ref).max(), shape


def test_rewrite_leaves_other_convs_and_reports_errors():
    model, count = rewrite(_net(), 4, min_channels=41)
    assert count == 0
    assert [n.op_type for n in model.graph.node].count("Conv") == 4
    with pytest.raises(ValueError, match="m: expected a Winograd tile size in"):
        rewrite(_net(), 5)
    with pytest.raises(ValueError, match="min_channels: expected a positive int"):
        rewrite(_net(), 4, min_channels=0)
    with pytest.raises(ValueError, match="opset >= 15"):
        rewrite(_net(opset=13), 4)


def test_weights_shared_with_another_node_are_kept():
    model = _net()
    model.graph.node.append(helper.make_node("Identity", ["w1"], ["w1_copy"]))
    model.graph.output.append(
        helper.make_tensor_value_info("w1_copy", TensorProto.FLOAT, [40, 36, 3, 3])
    )
    model, count = rewrite(model, 2)
    assert count == 2
    assert "w1" in {i.name for i in model.graph.initializer}
    onnx.checker.check_model(model, full_check=True)
