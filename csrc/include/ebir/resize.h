// Resize of a ragged batch, each sample from its own extent to its own size with its own mode, in
// one pass (ops/resize_cpu.cpp): the kernel behind ebir_fast.ops.resize_ragged. Semantics are
// torch.nn.functional's without antialiasing and with align_corners=False: mode 0 "area"
// (adaptive average pooling windows [floor(o in / out), ceil((o + 1) in / out))), mode 1
// "bilinear" (source index max(scale (o + 0.5) - 0.5, 0), scale = in / out), mode 2 "bicubic"
// (Keys' kernel with A = -0.75, source indices clamped to the extent). Output pixels outside each
// sample's output size are written as 0.
#pragma once

#include <cstdint>

#include "ebir/view.h"

namespace ebir {

struct ResizeArgs {
  int64_t B = 0, C = 0, H = 0, W = 0;  // input
  int64_t OH = 0, OW = 0;              // output
  const int64_t* sizes = nullptr;      // [B, 2] input extents
  const int64_t* out_sizes = nullptr;  // [B, 2] output extents
  const int64_t* modes = nullptr;      // [B] 0 area, 1 bilinear, 2 bicubic
  View4 x, out;
};

void resize_cpu(const ResizeArgs& args, int num_threads);

}  // namespace ebir
