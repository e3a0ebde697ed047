// The JPEG round trip (encode + decode) of a ragged batch with per-sample quantisation tables: the
// kernels behind ebir_fast.ops.jpeg_roundtrip. Semantics (ebir_fast/ops/reference.py):
// per 16x16 MCU, clamp to [0, 1], edge-replicate the sample from its extent (h_b, w_b), x255, JFIF RGB -> YCbCr,
// 2x2-average the chroma, 8x8 orthonormal DCT of (p - 128), divide by the table, round half to
// even, multiply back, inverse DCT, +128, replicate the chroma, YCbCr -> RGB, clamp to [0, 255],
// /255, 0 outside the extent. Arithmetic in the accumulation type.
#pragma once

#include <cstdint>

#include "ebir/common.h"
#include "ebir/view.h"

namespace ebir {

// JFIF colour conversion (the offsets of 128 for the chroma are applied around the DCT).
constexpr double kRgbToYcc[3][3] = {{0.299, 0.587, 0.114},
                                    {-0.168735892, -0.331264108, 0.5},
                                    {0.5, -0.418687589, -0.081312411}};
constexpr double kYccToRgb[3][3] = {{1.0, 0.0, 1.402},
                                    {1.0, -0.344136286, -0.714136286},
                                    {1.0, 1.772, 0.0}};

struct JpegArgs {
  int64_t B = 0, H = 0, W = 0;     // 3 channels
  int acc = kF32;                  // accumulation dtype code (the tables' dtype)
  const void* tables = nullptr;    // [B, 2, 8, 8] luma and chroma, accumulation dtype, contiguous
  const int64_t* sizes = nullptr;  // [B, 2] valid (h, w), contiguous
  View4 x;                         // [B, 3, H, W] RGB in [0, 1]
  View4 out;                       // [B, 3, H, W]; the CPU kernel writes every element (0 outside
                                   // the extents), the CUDA kernel only the extents
  uint8_t* pass = nullptr;         // [B, 3, H, W] contiguous or nullptr: 1 where the decoder's clamp
                                   // passes the gradient (0 <= v <= 255), 0 elsewhere
  const void* dct = nullptr;       // [8, 8] DCT-II matrix, accumulation dtype (CUDA and emulation)
};

void jpeg_fwd_cpu(const JpegArgs& args, int num_threads);

// CUDA, on `stream` (a cudaStream_t): one thread per 16x16 MCU (jpeg_elements.h).
void jpeg_fwd_cuda(const JpegArgs& args, void* stream);

// The CUDA kernel's arithmetic run serially on the CPU (jpeg_emulate.cpp), for tests.
void jpeg_fwd_emulated(const JpegArgs& args);

}  // namespace ebir
