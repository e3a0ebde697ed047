// Per-sample 2D cross-correlation of a ragged batch: the kernels behind ebir_fast.ops.filter2d.
//
// Forward:  out[b, c, y, x] = sum_{i, j} k[b, i, j] x[b, c, m(y + i - R, h_b), m(x + j - R, w_b)]
//           for y < h_b, x < w_b (m: the mirror border of common.h at the sample's own extent),
//           0 elsewhere. Each sample uses only the smallest centred square of its kernel outside
//           which every tap is zero (its effective radius), so a 7x7 kernel zero-padded to 21x21
//           costs what a 7x7 kernel does.
// Backward: grad_x = the adjoint (correlate grad, zero outside the extent, with the flipped kernel
//           over the padded domain, then fold the mirror padding back onto its sources);
//           grad_k[b, i, j] = sum_{c, y, x in extent} grad[b, c, y, x] xpad[b, c, y + i, x + j].
// Arithmetic in the accumulation type (double for float64 inputs, float otherwise).
#pragma once

#include <cstdint>

#include "ebir/view.h"

namespace ebir {

struct Filter2dArgs {
  int64_t B = 0, C = 0, H = 0, W = 0;
  int K = 1;                     // odd kernel size
  int acc = kF32;                // accumulation dtype code: kF32 or kF64 (the kernels' dtype)
  const void* kernels = nullptr; // [B, K, K], accumulation dtype, contiguous
  const int64_t* sizes = nullptr;// [B, 2] valid (h, w) per sample, contiguous
  View4 x;                       // [B, C, H, W] input (forward) or saved input (grad_k)
  View4 out;                     // [B, C, H, W] forward output
  View4 grad;                    // [B, C, H, W] incoming gradient (backward)
  View4 grad_x;                  // [B, C, H, W], data == nullptr: not computed
  void* grad_k = nullptr;        // [B, K, K] accumulation dtype, nullptr: not computed
};

void filter2d_fwd_cpu(const Filter2dArgs& args, int num_threads);
void filter2d_bwd_cpu(const Filter2dArgs& args, int num_threads);

// CUDA forward and backward on `stream` (a cudaStream_t); `workspace`: filter2d_cuda_workspace_bytes(args)
// bytes of device memory (each sample's effective radius).
int64_t filter2d_cuda_workspace_bytes(const Filter2dArgs& args);
void filter2d_fwd_cuda(const Filter2dArgs& args, void* workspace, void* stream);
void filter2d_bwd_cuda(const Filter2dArgs& args, void* workspace, void* stream);

// The CUDA kernels' arithmetic run serially on the CPU (filter2d_emulate.cpp), for tests.
void filter2d_fwd_emulated(const Filter2dArgs& args);
void filter2d_bwd_emulated(const Filter2dArgs& args);

}  // namespace ebir
