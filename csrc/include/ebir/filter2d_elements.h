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

// grad_x[b, c, y, x]: the adjoint of the forward at one input element (0 outside the extent).
// The padded gradient at padded position (q, p) is sum_{i,t} k[i, t] grad[q - i, p - t] (grad zero
// outside the extent); the input element gathers it from every padded position that mirrors onto
// it, in the ascending order of common.h's preimages.
template <class T>
EBIR_HD T filter2d_adjoint_element(const Filter2dArgs& a, const int* radius, int64_t b, int64_t c,
                                   int64_t y, int64_t x) {
  const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
  if (y >= h || x >= w) return T(0);
  const int R = a.K / 2, r = radius[b];
  const T* k = static_cast<const T*>(a.kernels) + b * a.K * a.K + (R - r) * a.K + (R - r);
  T acc = T(0);
  for_each_preimage(y, h, r, [&](int64_t py) {
    for_each_preimage(x, w, r, [&](int64_t px) {
      for (int i = 0; i <= 2 * r; ++i) {
        const int64_t gy = py + r - i;
        if (gy < 0 || gy >= h) continue;
        for (int t = 0; t <= 2 * r; ++t) {
          const int64_t gx = px + r - t;
          if (gx < 0 || gx >= w) continue;
          const T g = load_as<T>(a.grad.data, offset(a.grad, b, c, gy, gx), a.grad.dtype);
          acc = fma_rn(k[i * a.K + t], g, acc);
        }
      }
    });
  });
  return acc;
}

// grad_k[b, i, j] = sum over c, then rows, then columns of the extent of
// grad[b, c, y, x] * x[b, c, m(y + i - R), m(x + j - R)], in that order (one thread per tap).
template <class T>
EBIR_HD T filter2d_kernel_grad_element(const Filter2dArgs& a, int64_t b, int i, int j) {
  const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
  const int R = a.K / 2;
  T acc = T(0);
  for (int64_t c = 0; c < a.C; ++c)
    for (int64_t y = 0; y < h; ++y) {
      const int64_t yy = mirror(y + i - R, h);
      for (int64_t x = 0; x < w; ++x) {
        const T g = load_as<T>(a.grad.data, offset(a.grad, b, c, y, x), a.grad.dtype);
        const T v = load_as<T>(a.x.data, offset(a.x, b, c, yy, mirror(x + j - R, w)), a.x.dtype);
        acc = fma_rn(g, v, acc);
      }
    }
  return acc;
}

}  // namespace ebir
