// ebir_fast._C_cuda: the CUDA kernels (ops/blur.cu). Tensors arrive as raw device pointers, dtype
// codes and strides, with the caller's stream (ebir_fast/ops/_cuda.py builds them). Importing needs
// no GPU or driver (cudart is linked statically); the GIL is released while kernels are enqueued.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <sstream>
#include <string>
#include <vector>

#include "ebir/blur.h"
#include "ebir/py_args.h"

#ifndef EBIR_CUDA_ARCH_NAMES
#error "EBIR_CUDA_ARCH_NAMES (e.g. \"sm_80,sm_90\") is defined by CMakeLists.txt"
#endif

namespace py = pybind11;

namespace {

// The GPU architectures this module has code for.
std::vector<std::string> architectures() {
  std::vector<std::string> out;
  std::istringstream in(EBIR_CUDA_ARCH_NAMES);
  for (std::string arch; std::getline(in, arch, ',');) out.push_back(arch);
  return out;
}

void* as_ptr(uintptr_t p) { return reinterpret_cast<void*>(p); }

}  // namespace

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "ebir-fast CUDA kernels (torch-free; called through ebir_fast.ops)";
  m.attr("architectures") = architectures();
  m.def(
      "blur_fwd",
      [](const ebir::PyShape& shape, const ebir::PyView& x, const ebir::PyView& y, uintptr_t taps,
         const ebir::PyView& out, uintptr_t sumsq, uintptr_t workspace, uintptr_t stream) {
        ebir::blur_fwd_cuda(ebir::fwd_args(shape, x, y, taps, out, sumsq), as_ptr(workspace),
                            as_ptr(stream));
      },
      py::arg("shape"), py::arg("x"), py::arg("y"), py::arg("taps"), py::arg("out"),
      py::arg("sumsq"), py::arg("workspace"), py::arg("stream"),
      py::call_guard<py::gil_scoped_release>(),
      "out = blur(x - y); sumsq[b] = sum(out[b]^2) when sumsq != 0. Enqueued on `stream`.");
  m.def(
      "blur_bwd",
      [](const ebir::PyShape& shape, const ebir::PyView& grad, uintptr_t taps, uintptr_t scale,
         const ebir::PyView& out_x, const ebir::PyView& out_y, uintptr_t workspace,
         uintptr_t stream) {
        ebir::blur_bwd_cuda(ebir::bwd_args(shape, grad, taps, scale, out_x, out_y),
                            as_ptr(workspace), as_ptr(stream));
      },
      py::arg("shape"), py::arg("grad"), py::arg("taps"), py::arg("scale"), py::arg("out_x"),
      py::arg("out_y"), py::arg("workspace"), py::arg("stream"),
      py::call_guard<py::gil_scoped_release>(),
      "out_x = scale[b] * blur^T(grad); out_y = -out_x when out_y != 0. Enqueued on `stream`.");
  m.def(
      "workspace_bytes",
      [](const ebir::PyShape& shape, int acc_dtype) {
        return ebir::blur_cuda_workspace_bytes(ebir::to_shape(shape), acc_dtype);
      },
      py::arg("shape"), py::arg("acc_dtype"),
      "Bytes of device workspace blur_fwd / blur_bwd need (acc_dtype: the taps' dtype code).");
  m.def(
      "filter2d_fwd",
      [](const ebir::F2dShape& shape, uintptr_t kernels, uintptr_t sizes, const ebir::PyView& x,
         const ebir::PyView& out, uintptr_t workspace, uintptr_t stream) {
        ebir::filter2d_fwd_cuda(ebir::filter2d_args(shape, kernels, sizes, x, out),
                                as_ptr(workspace), as_ptr(stream));
      },
      py::arg("shape"), py::arg("kernels"), py::arg("sizes"), py::arg("x"), py::arg("out"),
      py::arg("workspace"), py::arg("stream"), py::call_guard<py::gil_scoped_release>(),
      "Per-sample 2D filter of a ragged batch (device pointers), enqueued on `stream`.");
  m.def(
      "filter2d_workspace_bytes", [](int64_t B) { return B * int64_t(sizeof(int)); },
      py::arg("B"), "Bytes of device workspace filter2d_fwd needs for B samples.");
  m.def(
      "jpeg_fwd",
      [](const ebir::JpegShape& shape, uintptr_t tables, uintptr_t sizes, const ebir::PyView& x,
         const ebir::PyView& out, uintptr_t pass, uintptr_t dct, uintptr_t stream) {
        ebir::jpeg_fwd_cuda(ebir::jpeg_args(shape, tables, sizes, x, out, pass, dct),
                            as_ptr(stream));
      },
      py::arg("shape"), py::arg("tables"), py::arg("sizes"), py::arg("x"), py::arg("out"),
      py::arg("pass_mask"), py::arg("dct"), py::arg("stream"),
      py::call_guard<py::gil_scoped_release>(),
      "JPEG round trip of every extent (device pointers), enqueued on `stream`.");
  m.def(
      "add_noise",
      [](const ebir::NoiseTuple& t, const ebir::PyView& x, const ebir::PyView& out, uintptr_t pass,
         uintptr_t stream) {
        ebir::NoiseArgs a = ebir::noise_args(t);
        a.x = ebir::to_view(x);
        a.out = ebir::to_view(out);
        a.pass = reinterpret_cast<uint8_t*>(pass);
        ebir::add_noise_cuda(a, as_ptr(stream));
      },
      py::arg("args"), py::arg("x"), py::arg("out"), py::arg("pass_mask"), py::arg("stream"),
      py::call_guard<py::gil_scoped_release>(),
      "out = clamp(x + Gaussian or Poisson noise, 0, 1) (device pointers), on `stream`.");
  m.def(
      "noise_level_histogram",
      [](const ebir::NoiseTuple& t, const ebir::PyView& x, uintptr_t hist, uintptr_t stream) {
        ebir::NoiseArgs a = ebir::noise_args(t);
        a.x = ebir::to_view(x);
        ebir::noise_level_histogram_cuda(a, reinterpret_cast<int64_t*>(hist), as_ptr(stream));
      },
      py::arg("args"), py::arg("x"), py::arg("hist"), py::arg("stream"),
      py::call_guard<py::gil_scoped_release>(),
      "Per-sample histogram of the Poisson samples' levels (device pointers), on `stream`.");
  m.def(
      "filter2d_bwd",
      [](const ebir::F2dShape& shape, uintptr_t kernels, uintptr_t sizes, const ebir::PyView& x,
         const ebir::PyView& grad, const ebir::PyView& grad_x, uintptr_t grad_k,
         uintptr_t workspace, uintptr_t stream) {
        ebir::Filter2dArgs a = ebir::filter2d_args(shape, kernels, sizes, x, ebir::PyView{});
        a.grad = ebir::to_view(grad);
        a.grad_x = ebir::to_view(grad_x);
        a.grad_k = reinterpret_cast<void*>(grad_k);
        ebir::filter2d_bwd_cuda(a, as_ptr(workspace), as_ptr(stream));
      },
      py::arg("shape"), py::arg("kernels"), py::arg("sizes"), py::arg("x"), py::arg("grad"),
      py::arg("grad_x"), py::arg("grad_k"), py::arg("workspace"), py::arg("stream"),
      py::call_guard<py::gil_scoped_release>(),
      "grad_x (when its pointer != 0) and grad_k (when != 0) of filter2d_fwd, on `stream`.");
}
