// ebir_fast._C: the torch-free CPU core. Tensors arrive as raw pointers, dtype codes and strides
// (ebir_fast/ops/_cpu.py builds them); the GIL is released while a kernel runs.
#include <pybind11/pybind11.h>

#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <memory>
#include <stdexcept>

#include "ebir/block_pool.h"
#include "ebir/blur.h"
#include "ebir/cpu_rows.h"
#include "ebir/filter2d.h"
#include "ebir/jpeg.h"
#include "ebir/noise.h"
#include "ebir/poisson.h"
#include "ebir/quantize.h"
#include "ebir/resize.h"
#include "ebir/py_args.h"

#if defined(EBIR_HAVE_OPENMP)
#include <omp.h>
#endif

namespace py = pybind11;

namespace {

// One block of the CPU cache, owned by a Python object (torch.frombuffer keeps that object alive
// as long as the tensor's storage), so the block goes back to the cache exactly when the storage
// dies.
struct PooledBlock {
  void* data = nullptr;
  size_t size = 0, nbytes = 0;
  PooledBlock() = default;
  PooledBlock(const PooledBlock&) = delete;
  PooledBlock& operator=(const PooledBlock&) = delete;
  ~PooledBlock() {
    if (data != nullptr) ebir::pool_release(data, size);
  }
};

// The widest ISA the CPU kernels' run-time dispatch will pick on this machine.
std::string cpu_isa() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4";
  if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3";
  return "x86-64";
#else
  return "generic";
#endif
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "ebir-fast CPU kernels (torch-free; called through ebir_fast.ops)";
#if defined(EBIR_HAVE_OPENMP)
  m.attr("has_openmp") = true;
#else
  m.attr("has_openmp") = false;
#endif
  m.def("cpu_isa", &cpu_isa, "The instruction set the CPU kernels run with on this machine.");
  m.def("cpu_wide_vectors", &ebir::cpu::wide_vectors,
        "Whether the 64-byte (AVX-512) row kernels run (off with EBIR_FAST_CPU_WIDE=0).");
  m.def(
      "blur_fwd",
      [](const ebir::PyShape& shape, const ebir::PyView& x, const ebir::PyView& y, uintptr_t taps,
         const ebir::PyView& out, uintptr_t sumsq, int num_threads) {
        ebir::blur_fwd_cpu(ebir::fwd_args(shape, x, y, taps, out, sumsq), num_threads);
      },
      py::arg("shape"), py::arg("x"), py::arg("y"), py::arg("taps"), py::arg("out"),
      py::arg("sumsq"), py::arg("num_threads"), py::call_guard<py::gil_scoped_release>(),
      "out = blur(x - y); sumsq[b] = sum(out[b]^2) when sumsq != 0.");
  m.def(
      "blur_bwd",
      [](const ebir::PyShape& shape, const ebir::PyView& grad, uintptr_t taps, uintptr_t scale,
         const ebir::PyView& out_x, const ebir::PyView& out_y, int num_threads) {
        ebir::blur_bwd_cpu(ebir::bwd_args(shape, grad, taps, scale, out_x, out_y), num_threads);
      },
      py::arg("shape"), py::arg("grad"), py::arg("taps"), py::arg("scale"), py::arg("out_x"),
      py::arg("out_y"), py::arg("num_threads"), py::call_guard<py::gil_scoped_release>(),
      "out_x = scale[b] * blur^T(grad); out_y = -out_x when out_y != 0.");

  // The CUDA kernels' arithmetic, run serially here so tests check it without a GPU. `workspace`:
  // cuda_workspace_bytes(shape, acc_dtype) bytes of host memory.
  m.def(
      "blur_fwd_emulated",
      [](const ebir::PyShape& shape, const ebir::PyView& x, const ebir::PyView& y, uintptr_t taps,
         const ebir::PyView& out, uintptr_t sumsq, uintptr_t workspace) {
        ebir::blur_fwd_emulated(ebir::fwd_args(shape, x, y, taps, out, sumsq),
                                reinterpret_cast<void*>(workspace));
      },
      py::arg("shape"), py::arg("x"), py::arg("y"), py::arg("taps"), py::arg("out"),
      py::arg("sumsq"), py::arg("workspace"), py::call_guard<py::gil_scoped_release>(),
      "blur_fwd as the CUDA kernels compute it, emulated on the CPU (slow; for tests).");
  m.def(
      "blur_bwd_emulated",
      [](const ebir::PyShape& shape, const ebir::PyView& grad, uintptr_t taps, uintptr_t scale,
         const ebir::PyView& out_x, const ebir::PyView& out_y, uintptr_t workspace) {
        ebir::blur_bwd_emulated(ebir::bwd_args(shape, grad, taps, scale, out_x, out_y),
                                reinterpret_cast<void*>(workspace));
      },
      py::arg("shape"), py::arg("grad"), py::arg("taps"), py::arg("scale"), py::arg("out_x"),
      py::arg("out_y"), py::arg("workspace"), py::call_guard<py::gil_scoped_release>(),
      "blur_bwd as the CUDA kernels compute it, emulated on the CPU (slow; for tests).");
  m.def(
      "cuda_workspace_bytes",
      [](const ebir::PyShape& shape, int acc_dtype) {
        return ebir::blur_emulated_workspace_bytes(ebir::to_shape(shape), acc_dtype);
      },
      py::arg("shape"), py::arg("acc_dtype"),
      "Workspace bytes of the CUDA kernels and of their emulation.");
  m.def(
      "filter2d_fwd",
      [](const ebir::F2dShape& shape, uintptr_t kernels, uintptr_t sizes, const ebir::PyView& x,
         const ebir::PyView& out, int num_threads) {
        ebir::filter2d_fwd_cpu(ebir::filter2d_args(shape, kernels, sizes, x, out), num_threads);
      },
      py::arg("shape"), py::arg("kernels"), py::arg("sizes"), py::arg("x"), py::arg("out"),
      py::arg("num_threads"), py::call_guard<py::gil_scoped_release>(),
      "out = per-sample cross-correlation of x, mirror border at each extent, 0 outside.");
  m.def(
      "filter2d_bwd",
      [](const ebir::F2dShape& shape, uintptr_t kernels, uintptr_t sizes, const ebir::PyView& x,
         const ebir::PyView& grad, const ebir::PyView& grad_x, uintptr_t grad_k,
         int num_threads) {
        ebir::Filter2dArgs a = ebir::filter2d_args(shape, kernels, sizes, x, ebir::PyView{});
        a.grad = ebir::to_view(grad);
        a.grad_x = ebir::to_view(grad_x);
        a.grad_k = reinterpret_cast<void*>(grad_k);
        ebir::filter2d_bwd_cpu(a, num_threads);
      },
      py::arg("shape"), py::arg("kernels"), py::arg("sizes"), py::arg("x"), py::arg("grad"),
      py::arg("grad_x"), py::arg("grad_k"), py::arg("num_threads"),
      py::call_guard<py::gil_scoped_release>(),
      "grad_x (when grad_x's pointer != 0) and grad_k (when != 0) of filter2d_fwd.");
  m.def(
      "jpeg_fwd",
      [](const ebir::JpegShape& shape, uintptr_t tables, uintptr_t sizes, const ebir::PyView& x,
         const ebir::PyView& out, uintptr_t pass, int num_threads) {
        ebir::jpeg_fwd_cpu(ebir::jpeg_args(shape, tables, sizes, x, out, pass, 0), num_threads);
      },
      py::arg("shape"), py::arg("tables"), py::arg("sizes"), py::arg("x"), py::arg("out"),
      py::arg("pass_mask"), py::arg("num_threads"), py::call_guard<py::gil_scoped_release>(),
      "JPEG round trip of every sample's extent; pass_mask (when != 0) gets the clamp's mask.");
  m.def(
      "poisson_levels",
      [](int64_t numel, int64_t batch, uintptr_t levels, uintptr_t table_of_sample, uintptr_t cdf,
         int64_t length, uint64_t seed, uint64_t offset, uintptr_t counts, int num_threads) {
        ebir::PoissonArgs a;
        a.numel = numel;
        a.batch = batch;
        a.levels = reinterpret_cast<const float*>(levels);
        a.table_of_sample = reinterpret_cast<const int64_t*>(table_of_sample);
        a.cdf = reinterpret_cast<const double*>(cdf);
        a.length = length;
        a.seed = seed;
        a.offset = offset;
        a.counts = reinterpret_cast<float*>(counts);
        ebir::poisson_levels_cpu(a, num_threads);
      },
      py::arg("numel"), py::arg("batch"), py::arg("levels"), py::arg("table_of_sample"),
      py::arg("cdf"), py::arg("length"), py::arg("seed"), py::arg("offset"), py::arg("counts"),
      py::arg("num_threads"), py::call_guard<py::gil_scoped_release>(),
      "counts[e] = Poisson sample of rate table[table_of_sample[b]][levels[e]] by inversion.");
  m.def(
      "level_histogram",
      [](uintptr_t levels, uintptr_t sizes, int64_t B, int64_t C, int64_t H, int64_t W,
         uintptr_t hist, int num_threads) {
        ebir::level_histogram_cpu(reinterpret_cast<const float*>(levels),
                                  reinterpret_cast<const int64_t*>(sizes), B, C, H, W,
                                  reinterpret_cast<int64_t*>(hist), num_threads);
      },
      py::arg("levels"), py::arg("sizes"), py::arg("B"), py::arg("C"), py::arg("H"), py::arg("W"),
      py::arg("hist"), py::arg("num_threads"), py::call_guard<py::gil_scoped_release>(),
      "Per-sample 256-bin histogram of integer levels inside each extent.");
  m.def(
      "add_noise",
      [](const ebir::NoiseTuple& t, const ebir::PyView& x, const ebir::PyView& out, uintptr_t pass,
         int num_threads) {
        ebir::NoiseArgs a = ebir::noise_args(t);
        a.x = ebir::to_view(x);
        a.out = ebir::to_view(out);
        a.pass = reinterpret_cast<uint8_t*>(pass);
        ebir::add_noise_cpu(a, num_threads);
      },
      py::arg("args"), py::arg("x"), py::arg("out"), py::arg("pass_mask"), py::arg("num_threads"),
      py::call_guard<py::gil_scoped_release>(),
      "out = clamp(x + Gaussian or Poisson noise, 0, 1) inside each extent (ebir/noise.h).");
  m.def(
      "noise_level_histogram",
      [](const ebir::NoiseTuple& t, const ebir::PyView& x, uintptr_t hist, int num_threads) {
        ebir::NoiseArgs a = ebir::noise_args(t);
        a.x = ebir::to_view(x);
        ebir::noise_level_histogram_cpu(a, reinterpret_cast<int64_t*>(hist), num_threads);
      },
      py::arg("args"), py::arg("x"), py::arg("hist"), py::arg("num_threads"),
      py::call_guard<py::gil_scoped_release>(),
      "Per-sample histogram of the Poisson samples' 8-bit levels (luma for gray samples).");
  m.def(
      "filter2d_fwd_emulated",
      [](const ebir::F2dShape& shape, uintptr_t kernels, uintptr_t sizes, const ebir::PyView& x,
         const ebir::PyView& out) {
        ebir::filter2d_fwd_emulated(ebir::filter2d_args(shape, kernels, sizes, x, out));
      },
      py::arg("shape"), py::arg("kernels"), py::arg("sizes"), py::arg("x"), py::arg("out"),
      py::call_guard<py::gil_scoped_release>(),
      "filter2d_fwd as the CUDA kernel computes it, emulated on the CPU (slow; for tests).");
  m.def(
      "jpeg_fwd_emulated",
      [](const ebir::JpegShape& shape, uintptr_t tables, uintptr_t sizes, const ebir::PyView& x,
         const ebir::PyView& out, uintptr_t pass, uintptr_t dct) {
        ebir::jpeg_fwd_emulated(ebir::jpeg_args(shape, tables, sizes, x, out, pass, dct));
      },
      py::arg("shape"), py::arg("tables"), py::arg("sizes"), py::arg("x"), py::arg("out"),
      py::arg("pass_mask"), py::arg("dct"), py::call_guard<py::gil_scoped_release>(),
      "jpeg_fwd as the CUDA kernel computes it, emulated on the CPU (slow; for tests).");
  m.def(
      "add_noise_emulated",
      [](const ebir::NoiseTuple& t, const ebir::PyView& x, const ebir::PyView& out, uintptr_t pass) {
        ebir::NoiseArgs a = ebir::noise_args(t);
        a.x = ebir::to_view(x);
        a.out = ebir::to_view(out);
        a.pass = reinterpret_cast<uint8_t*>(pass);
        ebir::add_noise_emulated(a);
      },
      py::arg("args"), py::arg("x"), py::arg("out"), py::arg("pass_mask"),
      py::call_guard<py::gil_scoped_release>(),
      "add_noise as the CUDA kernel computes it, emulated on the CPU (slow; for tests).");
  m.def(
      "filter2d_bwd_emulated",
      [](const ebir::F2dShape& shape, uintptr_t kernels, uintptr_t sizes, const ebir::PyView& x,
         const ebir::PyView& grad, const ebir::PyView& grad_x, uintptr_t grad_k) {
        ebir::Filter2dArgs a = ebir::filter2d_args(shape, kernels, sizes, x, ebir::PyView{});
        a.grad = ebir::to_view(grad);
        a.grad_x = ebir::to_view(grad_x);
        a.grad_k = reinterpret_cast<void*>(grad_k);
        ebir::filter2d_bwd_emulated(a);
      },
      py::arg("shape"), py::arg("kernels"), py::arg("sizes"), py::arg("x"), py::arg("grad"),
      py::arg("grad_x"), py::arg("grad_k"), py::call_guard<py::gil_scoped_release>(),
      "filter2d_bwd as the CUDA kernels compute it, emulated on the CPU (slow; for tests).");
  m.def(
      "resize",
      [](const std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>& shape,
         uintptr_t sizes, uintptr_t out_sizes, uintptr_t modes, const ebir::PyView& x,
         const ebir::PyView& out, int num_threads) {
        ebir::ResizeArgs a;
        std::tie(a.B, a.C, a.H, a.W, a.OH, a.OW) = shape;
        a.sizes = reinterpret_cast<const int64_t*>(sizes);
        a.out_sizes = reinterpret_cast<const int64_t*>(out_sizes);
        a.modes = reinterpret_cast<const int64_t*>(modes);
        a.x = ebir::to_view(x);
        a.out = ebir::to_view(out);
        ebir::resize_cpu(a, num_threads);
      },
      py::arg("shape"), py::arg("sizes"), py::arg("out_sizes"), py::arg("modes"), py::arg("x"),
      py::arg("out"), py::arg("num_threads"), py::call_guard<py::gil_scoped_release>(),
      "Each sample's extent resized to its own size with its own mode; 0 elsewhere.");
  m.def(
      "quantize_8bit",
      [](const std::array<int64_t, 4>& shape, const ebir::PyView& x, const ebir::PyView& out,
         int num_threads) {
        ebir::quantize_8bit_cpu(ebir::to_view(x), ebir::to_view(out), shape.data(), num_threads);
      },
      py::arg("shape"), py::arg("x"), py::arg("out"), py::arg("num_threads"),
      py::call_guard<py::gil_scoped_release>(), "out = round(clamp(x, 0, 1) * 255) / 255.");
  py::class_<PooledBlock>(m, "PooledBlock", py::buffer_protocol(),
                          "A block of the CPU cache; returned to it when this object dies.")
      .def_buffer([](PooledBlock& blk) {
        return py::buffer_info(blk.data, 1, py::format_descriptor<uint8_t>::format(), 1,
                               {py::ssize_t(blk.nbytes)}, {py::ssize_t(1)});
      })
      .def_property_readonly("address", [](const PooledBlock& blk) { return uintptr_t(blk.data); })
      .def_property_readonly("capacity", [](const PooledBlock& blk) { return blk.size; });
  m.def(
      "pool_block",
      [](int64_t nbytes) {
        if (nbytes < 1) throw std::invalid_argument("pool_block: nbytes must be >= 1");
        auto blk = std::make_unique<PooledBlock>();
        blk->nbytes = size_t(nbytes);
        {
          py::gil_scoped_release release;  // a miss maps memory
          blk->data = ebir::pool_acquire(size_t(nbytes), &blk->size);
        }
        return blk;
      },
      py::arg("nbytes"), "A block of at least nbytes from the CPU cache (ebir/block_pool.h).");
  m.def("pool_empty", &ebir::pool_empty, "Unmap every cached block.");
  m.def(
      "pool_set_limit", [](int64_t bytes) {
        if (bytes < 0) throw std::invalid_argument("pool_set_limit: bytes must be >= 0");
        ebir::pool_set_limit(size_t(bytes));
      },
      py::arg("bytes"), "Most bytes the cache keeps unused (0: none).");
  m.def("pool_stats", [] {
    const ebir::PoolStats st = ebir::pool_stats();
    py::dict d;
    d["cached_bytes"] = st.cached_bytes;
    d["cached_blocks"] = st.cached_blocks;
    d["limit"] = st.limit;
    d["hits"] = st.hits;
    d["misses"] = st.misses;
    return d;
  });
  m.def(
      "keep_freed_memory",
      [](int64_t trim_threshold) {
#if defined(__GLIBC__)
        // Large blocks come from the heap instead of their own mmap, and the heap keeps up to
        // trim_threshold bytes of free memory instead of returning it to the system: a new tensor
        // then reuses pages that are already mapped instead of faulting fresh ones in.
        return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, int(trim_threshold)) == 1;
#else
        (void)trim_threshold;
        return false;
#endif
      },
      py::arg("trim_threshold"),
      "glibc mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, ...); False where unavailable.");
}
