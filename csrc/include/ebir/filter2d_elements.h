// What the CUDA filter2d kernel (ops/filter2d.cu) and its CPU emulation (ops/filter2d_emulate.cpp)
// share: the argument checks, each sample's effective radius and the arithmetic of one output
// element, as host+device functions. One thread per output element; the taps are summed in
// (row, column) order with explicit fma_rn, so the emulation is the GPU's result bit for bit.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "ebir/common.h"
#include "ebir/elements.h"
#include "ebir/filter2d.h"

namespace ebir {

constexpr int kFilterBlock = 256;  // threads per block: a row segment of one plane

inline void check_filter2d(const Filter2dArgs& a) {
  if (a.B < 1 || a.C < 1 || a.H < 1 || a.W < 1 || a.K < 1 || a.K % 2 == 0 || a.K > 255)
    throw std::invalid_argument("filter2d: bad shape B=" + std::to_string(a.B) + " C=" +
                                std::to_string(a.C) + " H=" + std::to_string(a.H) + " W=" +
                                std::to_string(a.W) + " K=" + std::to_string(a.K));
  if (a.acc != kF32 && a.acc != kF64)
    throw std::invalid_argument(std::string("filter2d: kernels must be float32 or float64, got ") +
                                dtype_name(a.acc));
}

// The smallest r with every non-zero tap of sample b's kernel within r of the centre.
template <class T>
EBIR_HD int filter2d_radius(const Filter2dArgs& a, int64_t b) {
  const T* k = static_cast<const T*>(a.kernels) + b * a.K * a.K;
  const int R = a.K / 2;
  int r = 0;
  for (int i = 0; i < a.K; ++i)
    for (int j = 0; j < a.K; ++j)
      if (k[i * a.K + j] != T(0)) {
        const int di = i < R ? R - i : i - R, dj = j < R ? R - j : j - R;
        const int d = di > dj ? di : dj;
        r = r > d ? r : d;
      }
  return r;
}

// out[b, c, y, x] (0 outside the extent), accumulated in T.
template <class T>
EBIR_HD T filter2d_element(const Filter2dArgs& a, const int* radius, int64_t b, int64_t c,
                           int64_t y, int64_t x) {
  const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
  if (y >= h || x >= w) return T(0);
  const int R = a.K / 2, r = radius[b];
  const T* k = static_cast<const T*>(a.kernels) + b * a.K * a.K + (R - r) * a.K + (R - r);
  T acc = T(0);
  for (int i = 0; i <= 2 * r; ++i) {
    const int64_t yy = mirror(y - r + i, h);
    for (int t = 0; t <= 2 * r; ++t) {
      const int64_t xx = mirror(x - r + t, w);
      acc = fma_rn(k[i * a.K + t], load_as<T>(a.x.data, offset(a.x, b, c, yy, xx), a.x.dtype), acc);
    }
  }
  return acc;
}

}  // namespace ebir
