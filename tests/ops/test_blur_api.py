"""The public API around the blur ops: argument errors, dispatch, custom-op registration,
torch.compile, what the backward keeps, and imports without the optional pieces."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from functools import partial

import pytest
import torch

import ebir_fast
from ebir_fast.ops import (
    MAX_KERNEL_SIZE,
    BackendUnavailableError,
    BlurMSELoss,
    GaussianBlur,
    available_backends,
    blur_mse,
    gaussian_blur,
    resolve_backend,
)
from ebir_fast.ops.reference import blur_mse_reference, gaussian_blur_reference
from tests.ops.helpers import assert_close

HAS_CPU_EXT = available_backends("cpu")["cpu"] == "available"
needs_cpu_ext = pytest.mark.skipif(not HAS_CPU_EXT, reason="ebir_fast._C is not built")


def _x(*shape, dtype=torch.float32):
    return torch.rand(shape or (1, 3, 16, 16), dtype=dtype)


class TestErrors:
    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"sigma": 0.0}, ValueError, r"sigma: expected a finite number > 0, got 0.0"),
            ({"sigma": -1.0}, ValueError, r"sigma: .* got -1.0"),
            ({"sigma": float("nan")}, ValueError, r"sigma: .* got nan"),
            ({"sigma": float("inf")}, ValueError, r"sigma: .* got inf"),
            ({"sigma": "2"}, TypeError, r"sigma: expected a real number > 0, got str"),
            ({"sigma": True}, TypeError, r"sigma: .* got bool"),
            (
                {"sigma": 1.0, "kernel_size": 4},
                ValueError,
                r"kernel_size: expected an odd int >= 1, got 4",
            ),
            ({"sigma": 1.0, "kernel_size": 0}, ValueError, r"kernel_size: .* got 0"),
            ({"sigma": 1.0, "kernel_size": -3}, ValueError, r"kernel_size: .* got -3"),
            (
                {"sigma": 1.0, "kernel_size": 5.0},
                TypeError,
                r"kernel_size: expected an odd int or None, got float",
            ),
            (
                {"sigma": 1.0, "kernel_size": 257},
                ValueError,
                rf"kernel_size: expected at most {MAX_KERNEL_SIZE}, got 257",
            ),
            (
                {"sigma": 50.0},
                ValueError,
                r"sigma: 50.0 needs kernel_size 301 .* above the maximum 255",
            ),
            (
                {"sigma": 1.0, "backend": "gpu"},
                ValueError,
                r"backend: expected one of auto, cuda, triton, cpu, reference, got 'gpu'",
            ),
        ],
    )
    @pytest.mark.parametrize("op", ["gaussian_blur", "blur_mse"])
    def test_arguments(self, op, kwargs, error, match):
        x = _x()
        call = gaussian_blur if op == "gaussian_blur" else partial(blur_mse, y=x.clone())
        with pytest.raises(error, match=match):
            call(x, **kwargs)

    @pytest.mark.parametrize(
        ("x", "error", "match"),
        [
            (
                torch.rand(3, 16, 16),
                ValueError,
                r"x: expected a 4D tensor \[B, C, H, W\], got 3D with shape \(3, 16, 16\)",
            ),
            (torch.rand(1, 1, 3, 16, 16), ValueError, r"x: expected a 4D tensor .* got 5D"),
            (
                torch.zeros(1, 3, 0, 16),
                ValueError,
                r"x: expected a non-empty tensor, got shape \(1, 3, 0, 16\)",
            ),
            (
                torch.zeros(1, 3, 8, 8, dtype=torch.uint8),
                TypeError,
                r"x: expected dtype float32, float64, float16, bfloat16, got uint8",
            ),
            (
                torch.zeros(1, 3, 8, 8, dtype=torch.complex64),
                TypeError,
                r"x: expected dtype .* got complex64",
            ),
            ([[1.0]], TypeError, r"x: expected a torch.Tensor \[B, C, H, W\], got list"),
        ],
        ids=["3d", "5d", "empty", "uint8", "complex", "list"],
    )
    def test_images(self, x, error, match):
        with pytest.raises(error, match=match):
            gaussian_blur(x, 1.0)

    @pytest.mark.parametrize(
        ("y", "error", "match"),
        [
            (
                torch.rand(1, 3, 16, 17),
                ValueError,
                r"y: expected the shape of x \(1, 3, 16, 16\), got \(1, 3, 16, 17\)",
            ),
            (
                torch.rand(1, 3, 16, 16, dtype=torch.float64),
                TypeError,
                r"y: expected the dtype of x \(torch.float32\), got torch.float64",
            ),
            (
                torch.rand(1, 3, 16, 16, device="meta"),
                ValueError,
                r"y: expected the device of x \(cpu\), got meta",
            ),
            (torch.rand(3, 16, 16), ValueError, r"y: expected a 4D tensor"),
        ],
        ids=["shape", "dtype", "device", "rank"],
    )
    def test_pairs(self, y, error, match):
        with pytest.raises(error, match=match):
            blur_mse(_x(), y, 1.0)

    def test_reduction(self):
        with pytest.raises(
            ValueError, match=r"reduction: expected one of mean, sum, none, got 'avg'"
        ):
            blur_mse(_x(), _x(), 1.0, reduction="avg")

    def test_modules_validate_eagerly(self):
        with pytest.raises(ValueError, match="sigma"):
            GaussianBlur(-1.0)
        with pytest.raises(ValueError, match="reduction"):
            BlurMSELoss(1.0, reduction="max")


class TestDispatch:
    def test_status_lists_every_backend(self):
        status = available_backends("cpu")
        assert set(status) == {"cuda", "triton", "cpu", "reference"}
        assert status["reference"] == "available"
        assert "CUDA tensors" in status["cuda"]

    @needs_cpu_ext
    def test_auto_prefers_cpu_kernels(self):
        assert resolve_backend("auto", "cpu") == "cpu"

    def test_explicit_unavailable_backend_says_why(self):
        with pytest.raises(
            BackendUnavailableError, match="backend 'cuda' runs on CUDA tensors, got cpu"
        ):
            gaussian_blur(_x(), 1.0, backend="cuda")

    def test_env_override(self, monkeypatch):
        monkeypatch.setenv("EBIR_FAST_BACKEND", "reference")
        assert resolve_backend("auto", "cpu") == "reference"
        # An explicit argument wins over the environment.
        assert resolve_backend("reference", "cpu") == "reference"
        if HAS_CPU_EXT:
            assert resolve_backend("cpu", "cpu") == "cpu"
        monkeypatch.setenv("EBIR_FAST_BACKEND", "fastest")
        with pytest.raises(ValueError, match=r"EBIR_FAST_BACKEND: expected one of .* 'fastest'"):
            resolve_backend("auto", "cpu")

    def test_unknown_device_falls_back_with_warning(self):
        with pytest.warns(RuntimeWarning, match="using the PyTorch reference"):
            assert resolve_backend("auto", "xpu") == "reference"

    def test_modules(self):
        x, y = _x(2, 3, 20, 20), _x(2, 3, 20, 20)
        assert_close(GaussianBlur(1.5)(x), gaussian_blur_reference(x, 1.5, 11), torch.float32)
        loss = BlurMSELoss(1.5, reduction="none")
        assert "sigma=1.5, kernel_size=11, reduction='none'" in repr(loss)
        assert_close(loss(x, y), blur_mse_reference(x, y, 1.5, 11, "none"), torch.float32)


@needs_cpu_ext
class TestCustomOps:
    """torch.library registration: schema, fake kernels, autograd, and torch.compile."""

    def test_opcheck(self):
        x, y = _x(2, 3, 12, 13).requires_grad_(), _x(2, 3, 12, 13).requires_grad_()
        ops = torch.ops.ebir_fast
        torch.library.opcheck(ops.gaussian_blur.default, (x, 1.5, 11, "cpu"))
        torch.library.opcheck(ops.gaussian_blur_adjoint.default, (x, 1.5, 11, "cpu"))
        torch.library.opcheck(ops.blur_mse_fwd.default, (x, y, 1.5, 11, "cpu"))
        e = torch.rand(2, 3, 12, 13)
        scale = torch.rand(2)
        for with_neg in (True, False):
            torch.library.opcheck(
                ops.blur_mse_bwd.default, (e, scale, 1.5, 11, "cpu", torch.float16, with_neg)
            )

    @pytest.mark.parametrize("compiler", ["aot_eager", "inductor"])
    def test_compile_fullgraph(self, compiler):
        torch._dynamo.reset()

        def loss_fn(a, b):
            return blur_mse(a, b, 2.0) + gaussian_blur(a * b, 1.0).square().mean()

        compiled = torch.compile(loss_fn, fullgraph=True, backend=compiler)
        x, y = _x(2, 3, 24, 20), _x(2, 3, 24, 20)
        xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
        eager, traced = loss_fn(xe, y), compiled(xc, y)
        assert_close(traced, eager, torch.float32)
        eager.backward()
        traced.backward()
        assert_close(xc.grad, xe.grad, torch.float32)

    def test_backward_keeps_one_float32_image(self):
        # The fused loss keeps e = G * (x - y) (float32, one image) and nothing else image-sized;
        # the blur keeps nothing (its backward is the adjoint of the incoming gradient).
        saved: list[torch.Tensor] = []

        def pack(t):
            saved.append(t)
            return t

        x = _x(2, 3, 32, 32, dtype=torch.float16).requires_grad_()
        y = _x(2, 3, 32, 32, dtype=torch.float16).requires_grad_()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            blur_mse(x, y, 2.0)
        images = [t for t in saved if t.numel() >= x.numel()]
        assert [(t.dtype, tuple(t.shape)) for t in images] == [(torch.float32, (2, 3, 32, 32))]
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            gaussian_blur(x, 2.0)
        assert saved == []


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )


class TestOptionalPieces:
    def test_import_without_extension_triton_or_gpu(self):
        # Block the compiled modules and triton at import time: the package still imports, says
        # why each backend is unavailable, and computes through the reference with a warning.
        result = _run_python(
            """
            import sys, warnings
            class Block:
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] == "triton" or name.startswith("ebir_fast._C"):
                        raise ImportError(f"blocked {name}")
            sys.meta_path.insert(0, Block())
            import torch, ebir_fast
            from ebir_fast.ops import available_backends, gaussian_blur, blur_mse
            from ebir_fast.ops import BackendUnavailableError
            status = available_backends("cpu")
            assert "blocked ebir_fast._C" in status["cpu"], status
            info = ebir_fast.build_info()
            assert "blocked" in info["cpu_extension"] and info["triton"] == "not installed", info
            x = torch.rand(1, 3, 16, 16, requires_grad=True)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                blur_mse(x, torch.rand(1, 3, 16, 16), 1.0).backward()
            assert any("using the PyTorch reference" in str(w.message) for w in caught)
            try:
                gaussian_blur(x, 1.0, backend="cpu")
            except BackendUnavailableError as exc:
                assert "blocked ebir_fast._C" in str(exc)
            else:
                raise AssertionError("backend='cpu' should be unavailable")
            print("ok")
            """,
            TRITON_INTERPRET="0",
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "ok"

    def test_disable_extension_env(self):
        result = _run_python(
            "from ebir_fast.ops import available_backends; print(available_backends('cpu')['cpu'])",
            EBIR_FAST_NO_EXTENSION="1",
        )
        assert result.returncode == 0, result.stderr
        assert "disabled by EBIR_FAST_NO_EXTENSION" in result.stdout

    def test_build_info(self):
        info = ebir_fast.build_info()
        assert info["torch"] == torch.__version__
        assert {"cpu_extension", "cuda_extension", "triton", "cuda_device"} <= set(info)
