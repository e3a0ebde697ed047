// The separable Gaussian blur with a mirror border, and its adjoint: the kernels behind
// ebir_fast.ops.gaussian_blur and ebir_fast.ops.blur_mse.
//
// Forward:  out = B (x - y)        (y optional), B = H o V: vertical pass first, then horizontal;
//           sumsq[b] = sum over (c, h, w) of out^2, accumulated before out is rounded to its dtype.
// Backward: out_x = scale[b] * B^T g = scale[b] * V^T H^T g;  out_y = -out_x (optional).
//
// Both passes use the symmetric-tap form  w[R] c + sum_{t<R} w[t] (a_t + b_t)  in this order, and the
// adjoint sums the preimages of the mirror border in ascending order (common.h), on every backend.
// Arithmetic is done in the accumulation type: double for float64 inputs, float otherwise.
#pragma once

#include <cstdint>

#include "ebir/common.h"
#include "ebir/view.h"

namespace ebir {

struct BlurShape {
  int64_t B = 0, C = 0, H = 0, W = 0;
  int radius = 0;  // kernel_size = 2 * radius + 1
};

struct BlurFwdArgs {
  BlurShape shape;
  View4 x;                    // [B, C, H, W]
  View4 y;                    // [B, C, H, W], data == nullptr: blur x alone
  const void* taps = nullptr; // [2R + 1], accumulation dtype, symmetric, sums to 1
  View4 out;                  // [B, C, H, W]
  void* sumsq = nullptr;      // [B], accumulation dtype, or nullptr
};

struct BlurBwdArgs {
  BlurShape shape;
  View4 grad;                 // [B, C, H, W]
  const void* taps = nullptr; // [2R + 1], accumulation dtype
  const void* scale = nullptr;// [B], accumulation dtype, or nullptr for 1
  View4 out_x;                // [B, C, H, W]
  View4 out_y;                // [B, C, H, W], data == nullptr: not written
};

// CPU (OpenMP). num_threads <= 0 uses the OpenMP default.
void blur_fwd_cpu(const BlurFwdArgs& args, int num_threads);
void blur_bwd_cpu(const BlurBwdArgs& args, int num_threads);

// CUDA, launched on `stream` (a cudaStream_t). `workspace` holds blur_cuda_workspace_bytes(shape,
// acc_dtype) bytes of device memory owned by the caller (the intermediate of the separable passes
// and the partial sums); acc_dtype is the taps' dtype code.
int64_t blur_cuda_workspace_bytes(const BlurShape& shape, int acc_dtype);
void blur_fwd_cuda(const BlurFwdArgs& args, void* workspace, void* stream);
void blur_bwd_cuda(const BlurBwdArgs& args, void* workspace, void* stream);

// The CUDA kernels' arithmetic run serially on the CPU (blur_emulate.cpp): the GPU's results bit
// for bit, so tests can check them without a GPU. `workspace` is host memory of
// blur_emulated_workspace_bytes(...) bytes, the same size as blur_cuda_workspace_bytes(...).
int64_t blur_emulated_workspace_bytes(const BlurShape& shape, int acc_dtype);
void blur_fwd_emulated(const BlurFwdArgs& args, void* workspace);
void blur_bwd_emulated(const BlurBwdArgs& args, void* workspace);

}  // namespace ebir
