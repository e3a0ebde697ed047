"""The GELU fusion against the unfused graph and PyTorch, both run by ONNX Runtime."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from ebir_fast.deploy.gelu import SQRT2, fuse_gelu


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


class _Mlp(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(8, 32), torch.nn.Linear(32, 8)

    def forward(self, x):
        return self.fc2(torch.nn.functional.gelu(self.fc1(x)))


def test_exported_gelu_is_fused_and_equal(tmp_path):
    torch.manual_seed(0)
    mlp = _Mlp().eval()
    x = torch.randn(3, 5, 8) * 3
    path = tmp_path / "mlp.onnx"
    torch.onnx.export(mlp, (x,), str(path), dynamo=True, opset_version=18, optimize=True)
    model = onnx.load(str(path))
    assert "Erf" in {n.op_type for n in model.graph.node}  # what the exporter writes
    ref = _run(model, x.numpy())
    fused, n = fuse_gelu(onnx.load(str(path)))
    assert n == 1
    ops = {n.op_type for n in fused.graph.node}
    assert "Gelu" in ops
    assert not ops & {"Erf", "Div"}
    onnx.checker.check_model(fused)
    got = _run(fused, x.numpy())
    np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0)
    with torch.no_grad():
        np.testing.assert_allclose(got, mlp(x).numpy(), atol=1e-5, rtol=0)


def _gelu_graph(order: str, half: float = 0.5, leak: bool = False) -> onnx.ModelProto:
    """y = GELU(x) written with the last two Muls in ``order``; ``leak`` also outputs erf."""
    consts = {"sqrt2": SQRT2, "one": 1.0, "half": half}
    inits = [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in consts.items()]
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["one", "e"], ["a"]),
    ]
    if order == "half-first":  # x * ((1 + erf) * 0.5): the exporter's order
        nodes += [
            helper.make_node("Mul", ["a", "half"], ["m"]),
            helper.make_node("Mul", ["x", "m"], ["y"]),
        ]
    else:  # (x * (1 + erf)) * 0.5
        nodes += [
            helper.make_node("Mul", ["x", "a"], ["m"]),
            helper.make_node("Mul", ["m", "half"], ["y"]),
        ]
    info = helper.make_tensor_value_info
    outs = [info("y", TensorProto.FLOAT, [4, 6])]
    if leak:
        outs.append(info("e", TensorProto.FLOAT, [4, 6]))
    graph = helper.make_graph(nodes, "g", [info("x", TensorProto.FLOAT, [4, 6])], outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("order", ["half-first", "x-first"])
def test_both_orders_fuse(order):
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32) * 3
    model = _gelu_graph(order)
    ref = _run(model, x)
    fused, n = fuse_gelu(_gelu_graph(order))
    assert n == 1
    assert [n.op_type for n in fused.graph.node] == ["Gelu"]
    assert not fused.graph.initializer  # the constants went with their nodes
    np.testing.assert_allclose(_run(fused, x), ref, atol=1e-6, rtol=0)
    exact = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ref, exact, atol=1e-6, rtol=0)


def test_lookalikes_are_left_alone():
    # Not a GELU (0.4, not 0.5), and a GELU whose erf is read elsewhere: nothing changes.
    for model in (_gelu_graph("half-first", half=0.4), _gelu_graph("half-first", leak=True)):
        before = [n.op_type for n in model.graph.node]
        fused, n = fuse_gelu(model)
        assert n == 0
        assert [n.op_type for n in fused.graph.node] == before
        assert all(o.domain != "com.microsoft" for o in fused.opset_import)
