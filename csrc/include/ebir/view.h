// The strided array view every kernel takes: element pointer, dtype code, strides in elements.
#pragma once

#include <cstdint>

#include "ebir/common.h"

namespace ebir {

// A [B, C, H, W] array view: element pointer, dtype code and strides in elements.
struct View4 {
  void* data = nullptr;
  int dtype = kF32;
  int64_t stride[4] = {0, 0, 0, 0};
};

}  // namespace ebir
