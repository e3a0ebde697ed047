// The 8-bit rounding of an image batch: out = round(clamp(x, 0, 1) * 255) / 255 (ops/quantize_cpu.cpp).
#pragma once

#include <cstdint>

#include "ebir/view.h"

namespace ebir {

// shape: B, C, H, W. Computed in float (double for float64), rounded half to even.
void quantize_8bit_cpu(const View4& x, const View4& out, const int64_t* shape, int num_threads);

}  // namespace ebir
