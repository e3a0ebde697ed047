"""Winograd F(m x m, 3 x 3) rewrite of 3x3 convolutions in an ONNX graph, for CPU runtimes.

ONNX Runtime's CPU provider (MLAS) runs a 3x3 convolution as a direct or im2col + sgemm kernel:
9 multiply-adds per output and input channel. Winograd's minimal filtering computes an m x m
output tile from an (m + 2)^2 input tile with (m + 2)^2 multiply-adds per channel pair, in the
transformed domain, where they are one batched matmul: 16 / 36 = 2.25x fewer for F(2), 36 / 144
= 4x fewer for F(4), at the cost of transforming inputs and outputs (memory traffic, not
multiplies). On the SD VAE's convolutions it is 1.2-2.6x faster than ONNX Runtime's own Conv on
the CPUs measured (``benchmarks/bench_onnx.py``); GPU libraries (cuDNN, TensorRT) pick Winograd
themselves, so the rewrite is meant for the CPU provider only.

The rewrite uses only standard ONNX operators, so the graph stays portable and ONNX Runtime's
kernels do the work:

    x [N, C, H, W]
    -> Unsqueeze -> [N, 1, C, H, W]
    -> Conv3d, kernels B^T (x) B^T, stride m, zero pads (1, 1) before and (m, m) after
       (separable: one Conv along H, one along W)        -> V [N, a^2, C, T, Tw]   (a = m + 2)
    -> MatMul with U = G g G^T (precomputed, [a^2, Co, C]) -> M [N, a^2, Co, T * Tw]
    -> ConvTranspose3d, kernels A^T (x) A^T, stride m     -> [N, 1, Co, T m, Tw m]
    -> Squeeze, Slice to H x W, Add bias                  -> y [N, Co, H, W]

with T = ceil(H / m) tiles (the end padding of m lets the strided Conv floor to exactly that,
for any H). U is computed in float64 and rounded once. Errors against the direct convolution
are about 1e-7 (F(2)) and 1e-5 (F(4)) relative to the output's scale in fp32; only fp32
convolutions are rewritten (fp16 would lose F(4)'s accuracy).

The reference is the graph's own Conv (tests run both under ONNX Runtime), and
:func:`winograd_conv2d` is the same algorithm in PyTorch, which the tests use to check the
transform matrices independently of ONNX.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Transform:
    """The matrices of F(m x m, 3 x 3): y = A^T [(G g G^T) * (B^T d B)] A."""

    m: int
    BT: np.ndarray  # [a, a]
    G: np.ndarray  # [a, 3]
    AT: np.ndarray  # [m, a]

    @property
    def alpha(self) -> int:
        return self.BT.shape[0]


def cook_toom(m: int, points: Sequence[float], r: int = 3) -> Transform:
    """The F(m, r) matrices from a - 1 = m + r - 2 finite interpolation points and infinity.

    Lagrange interpolation at the points (Toom-Cook): A^T evaluates the output polynomial's
    powers at each point, G scales the filter by 1 / prod_{l != j}(p_j - p_l), and B^T holds
    the coefficients of prod_{l != j}(x - p_l) (the last row: prod_l (x - p_l), for infinity).
    With the points 0, 1, -1, 2, -2 this is exactly Lavin & Gray's F(4, 3).
    """
    a = m + r - 1
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (a - 1,) or len(set(p.tolist())) != a - 1:
        raise ValueError(
            f"points: expected {a - 1} distinct values for F({m}, {r}), got {points!r}"
        )
    at, g, bt = np.zeros((m, a)), np.zeros((a, r)), np.zeros((a, a))
    for j, pj in enumerate(p):
        others = np.delete(p, j)
        at[:, j] = pj ** np.arange(m)
        g[j] = pj ** np.arange(r) / np.prod(pj - others)
        bt[j, : a - 1] = np.polynomial.polynomial.polyfromroots(others)
    at[m - 1, a - 1] = g[a - 1, r - 1] = 1
    bt[a - 1] = np.polynomial.polynomial.polyfromroots(p)
    return Transform(m, BT=bt, G=g, AT=at)


#: The usual points (Lavin & Gray 2016; wincnn): small integers first, then halves, which keep
#: the transforms' entries small and fp32 rounding low. Relative errors against the direct
#: convolution in fp32: ~1e-7 (F(2)), ~5e-6 (F(4)), ~1e-4 (F(6)).
TRANSFORMS = {
    2: cook_toom(2, [0, 1, -1]),
    4: cook_toom(4, [0, 1, -1, 2, -2]),
    6: cook_toom(6, [0, 1, -1, 2, -2, 0.5, -0.5]),
}


def _transform(m: int) -> Transform:
    if m not in TRANSFORMS:
        raise ValueError(f"m: expected a Winograd tile size in {sorted(TRANSFORMS)}, got {m!r}")
    return TRANSFORMS[m]


def filter_transform(weight: np.ndarray, m: int) -> np.ndarray:
    """U = G g G^T for every (out, in) channel pair, in float64: [a^2, Co, C] from [Co, C, 3, 3]."""
    t = _transform(m)
    u = np.einsum("ik,ockl,jl->ijoc", t.G, weight.astype(np.float64), t.G)
    return u.reshape(t.alpha**2, weight.shape[0], weight.shape[1])


def winograd_conv2d(
    x: torch.Tensor,  # [N, C, H, W]
    weight: torch.Tensor,  # [Co, C, 3, 3]
    bias: torch.Tensor | None = None,  # [Co]
    m: int = 4,
) -> torch.Tensor:  # [N, Co, H, W]
    """``F.conv2d(x, weight, bias, padding=1)`` by F(m x m, 3 x 3), in PyTorch, in float64."""
    t = _transform(m)
    a, (n, _, h, w) = t.alpha, x.shape
    th, tw = -(-h // m), -(-w // m)
    d = torch.nn.functional.pad(x.double(), (1, tw * m + 1 - w, 1, th * m + 1 - h))
    tiles = d.unfold(2, a, m).unfold(3, a, m)  # [N, C, th, tw, a, a]
    bt, at = torch.from_numpy(t.BT), torch.from_numpy(t.AT)
    v = torch.einsum("ik,nctukl,jl->ijnctu", bt, tiles, bt)
    u = torch.from_numpy(filter_transform(weight.detach().cpu().numpy(), m))
    u = u.reshape(a, a, *u.shape[1:])
    mm = torch.einsum("ijoc,ijnctu->ijnotu", u, v)
    y = torch.einsum("ki,ijnotu,lj->notkul", at, mm, at).reshape(n, -1, th * m, tw * m)
    y = y[:, :, :h, :w]
    if bias is not None:
        y = y + bias.double().view(1, -1, 1, 1)
    return y.to(x.dtype)


def prune_initializers(graph) -> None:
    """Drop initializers no node or output reads (and their graph-input entries, old IR style)."""
    used = {v for n in graph.node for v in n.input} | {o.name for o in graph.output}
    dead = {i.name for i in graph.initializer if i.name not in used}
    keep = [i for i in graph.initializer if i.name not in dead]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    inputs = [i for i in graph.input if i.name not in dead]
    del graph.input[:]
    graph.input.extend(inputs)


def _eligible(node, inits: dict, min_channels: int) -> bool:
    """A 2D 3x3 stride-1 dilation-1 pad-1 ungrouped fp32 Conv with constant weights (and bias)."""
    from onnx import TensorProto, helper

    if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
        return False
    if len(node.input) < 2 or node.input[1] not in inits:
        return False
    if len(node.input) > 2 and node.input[2] and node.input[2] not in inits:
        return False
    w = inits[node.input[1]]
    if w.data_type != TensorProto.FLOAT or list(w.dims[2:]) != [3, 3] or len(w.dims) != 4:
        return False
    if min(w.dims[0], w.dims[1]) < min_channels:
        return False
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if auto_pad == "SAME_UPPER" or auto_pad == "SAME_LOWER":
        pads = [1, 1, 1, 1]  # a 3x3 stride-1 SAME convolution pads one on each side
    elif auto_pad not in ("NOTSET", ""):
        return False
    return (
        pads == [1, 1, 1, 1]
        and list(attrs.get("strides", [1, 1])) == [1, 1]
        and list(attrs.get("dilations", [1, 1])) == [1, 1]
        and attrs.get("group", 1) == 1
        and list(attrs.get("kernel_shape", [3, 3])) == [3, 3]
    )


def rewrite(model, m: int = 4, min_channels: int = 32, separable: bool = False):
    """Replace every eligible Conv of ``model`` (an ``onnx.ModelProto``, changed in place).

    ``min_channels``: convolutions with fewer input or output channels (an RGB stem or head)
    stay direct: their matmul is too thin for the transforms to pay. ``separable`` applies the
    input transform as two 1-D convolutions (2a multiply-adds per element instead of a^2); on
    the SD VAE it was no faster (the transforms are bound by memory traffic), so it is off.
    Returns the model and the number of convolutions rewritten. Subgraphs (If / Loop bodies) are
    left as they are.
    """
    from onnx import helper, numpy_helper

    t = _transform(m)
    a = t.alpha
    if not isinstance(min_channels, int) or min_channels < 1:
        raise ValueError(f"min_channels: expected a positive int, got {min_channels!r}")
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 15:
        raise ValueError(f"model: expected ONNX opset >= 15 (Shape with start / end), got {opset}")
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    taken = {i.name for i in graph.initializer} | {v for n in graph.node for v in n.output}
    taken |= {i.name for i in graph.input}

    def fresh(base: str) -> str:
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        return name

    shared: dict[str, str] = {}

    def const(key: str, array: np.ndarray) -> str:
        """A constant initializer shared by every rewritten conv."""
        if key not in shared:
            shared[key] = fresh(f"winograd{m}/{key}")
            graph.initializer.append(numpy_helper.from_array(array, shared[key]))
        return shared[key]

    i64 = lambda v: np.array(v, dtype=np.int64)  # noqa: E731
    f32 = lambda v: np.ascontiguousarray(v, dtype=np.float32)  # noqa: E731
    new_nodes, count = [], 0
    for node in graph.node:
        if not _eligible(node, inits, min_channels):
            new_nodes.append(node)
            continue
        count += 1
        p = fresh(f"{node.name or 'conv'}/winograd{m}")
        x, y = node.input[0], node.output[0]
        has_bias = len(node.input) > 2 and bool(node.input[2])
        weight = numpy_helper.to_array(inits[node.input[1]])
        u = fresh(p + "/U")
        graph.initializer.append(numpy_helper.from_array(f32(filter_transform(weight, m)), u))
        ax1 = const("axis1", i64([1]))
        nodes = [helper.make_node("Unsqueeze", [x, ax1], [p + "/x5"], name=p + "/unsqueeze")]
        if separable:
            kh = const("BT_h", f32(t.BT.reshape(a, 1, 1, a, 1)))
            kw = const("BT_w", f32(t.BT.reshape(a, 1, 1, 1, a)))
            nodes += [
                helper.make_node(  # [N, a, C, T, W]
                    "Conv",
                    [p + "/x5", kh],
                    [p + "/vh"],
                    name=p + "/input_h",
                    kernel_shape=[1, a, 1],
                    strides=[1, m, 1],
                    pads=[0, 1, 0, 0, m, 0],
                ),
                helper.make_node(  # [N a, 1, C, T, W]
                    "Reshape",
                    [p + "/vh", const("rows", i64([-1, 1, 0, 0, 0]))],
                    [p + "/vh1"],
                    name=p + "/rows",
                ),
                helper.make_node(  # [N a, a, C, T, Tw]
                    "Conv",
                    [p + "/vh1", kw],
                    [p + "/vhw"],
                    name=p + "/input_w",
                    kernel_shape=[1, 1, a],
                    strides=[1, 1, m],
                    pads=[0, 0, 1, 0, 0, m],
                ),
                helper.make_node(  # [N, a^2, C, T, Tw]
                    "Reshape",
                    [p + "/vhw", const("tiles", i64([-1, a * a, 0, 0, 0]))],
                    [p + "/v5"],
                    name=p + "/tiles",
                ),
            ]
        else:
            kin = const(
                "BT_BT", f32(np.einsum("ik,jl->ijkl", t.BT, t.BT).reshape(a * a, 1, 1, a, a))
            )
            nodes.append(
                helper.make_node(
                    "Conv",
                    [p + "/x5", kin],
                    [p + "/v5"],
                    name=p + "/input",
                    kernel_shape=[1, a, a],
                    strides=[1, m, m],
                    pads=[0, 1, 1, 0, m, m],
                )
            )
        kout = const("AT_AT", f32(np.einsum("ki,lj->ijkl", t.AT, t.AT).reshape(a * a, 1, 1, m, m)))
        nodes += [
            helper.make_node(  # [N, a^2, C, T Tw]
                "Reshape",
                [p + "/v5", const("flat", i64([0, 0, 0, -1]))],
                [p + "/v"],
                name=p + "/flat",
            ),
            helper.make_node("MatMul", [u, p + "/v"], [p + "/mv"], name=p + "/matmul"),
            helper.make_node("Shape", [p + "/v5"], [p + "/tt"], name=p + "/tiles_shape", start=3),
            helper.make_node(
                "Concat",
                [const("zeros3", i64([0, 0, 0])), p + "/tt"],
                [p + "/s5"],
                axis=0,
                name=p + "/tiles_dims",
            ),
            helper.make_node(  # [N, a^2, Co, T, Tw]
                "Reshape", [p + "/mv", p + "/s5"], [p + "/m5"], name=p + "/unflat"
            ),
            helper.make_node(  # [N, 1, Co, T m, Tw m]
                "ConvTranspose",
                [p + "/m5", kout],
                [p + "/y5"],
                name=p + "/output",
                kernel_shape=[1, m, m],
                strides=[1, m, m],
            ),
            helper.make_node("Squeeze", [p + "/y5", ax1], [p + "/y4"], name=p + "/squeeze"),
            helper.make_node("Shape", [x], [p + "/hw"], name=p + "/hw", start=2, end=4),
            helper.make_node(
                "Slice",
                [p + "/y4", const("zeros2", i64([0, 0])), p + "/hw", const("axes23", i64([2, 3]))],
                [p + "/yc" if has_bias else y],
                name=p + "/crop",
            ),
        ]
        if has_bias:
            bias = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
            b = fresh(p + "/bias")
            graph.initializer.append(numpy_helper.from_array(bias.reshape(-1, 1, 1), b))
            nodes.append(helper.make_node("Add", [p + "/yc", b], [y], name=p + "/bias"))
        new_nodes += nodes
    if count == 0:
        return model, 0
    del graph.node[:]
    graph.node.extend(new_nodes)
    prune_initializers(graph)
    return model, count
