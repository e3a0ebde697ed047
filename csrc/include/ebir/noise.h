// Additive Gaussian and Poisson (shot) noise for a ragged batch in one pass: the kernel behind
// ebir_fast.ops.add_noise. Sample b gets, inside its extent:
//   kind 1 (Gaussian): n = sigma[b] * z, z = the normal quantile (normal_quantile.h) of uniform e
//                      of the counter stream of seed_gauss;
//   kind 2 (Poisson):  n = scale[b] * (k / vals[b] - l / 255), l the 8-bit level of the pixel (of
//                      its luma when gray[b]), k a Poisson count of rate l vals[b] / 255 drawn by
//                      inversion with uniform e of the counter stream of seed_poisson;
//   kind 0:            n = 0.
// e = ((b C + c) H + y) W + x, with c = 0 for every channel of a gray sample (one field for all).
// out = clamp(x + n, 0, 1) inside the extent, 0 outside; `pass` (optional) marks where the clamp
// passes the gradient (0 <= x + n <= 1).
#pragma once

#include <cstdint>

#include "ebir/view.h"

namespace ebir {

struct NoiseArgs {
  int64_t B = 0, C = 0, H = 0, W = 0;
  const int64_t* sizes = nullptr;            // [B, 2]
  const int32_t* kind = nullptr;             // [B]
  const uint8_t* gray = nullptr;             // [B]
  const double* sigma = nullptr;             // [B] Gaussian sigma, 0..1 scale
  const double* scale = nullptr;             // [B] Poisson scale
  const double* vals = nullptr;              // [B] Poisson vals (a power of two)
  const int64_t* table_of_sample = nullptr;  // [B] row block of `cdf`
  const double* cdf = nullptr;               // [tables, 256, length]
  int64_t length = 0;
  uint64_t seed_gauss = 0, seed_poisson = 0;
  View4 x, out;                              // [B, C, H, W]
  uint8_t* pass = nullptr;                   // [B, C, H, W] contiguous, or nullptr
};

void add_noise_cpu(const NoiseArgs& args, int num_threads);

// hist[b, l]: how many pixels of sample b inside its extent have level l, counting the luma level
// once per pixel for gray samples and every channel's level otherwise (samples with kind != 2
// are left at 0).
void noise_level_histogram_cpu(const NoiseArgs& args, int64_t* hist, int num_threads);

// CUDA versions on `stream` (a cudaStream_t); all pointers are device memory.
void add_noise_cuda(const NoiseArgs& args, void* stream);
void noise_level_histogram_cuda(const NoiseArgs& args, int64_t* hist, void* stream);

// The CUDA kernel's arithmetic run serially on the CPU (noise_emulate.cpp), for tests.
void add_noise_emulated(const NoiseArgs& args);

}  // namespace ebir
