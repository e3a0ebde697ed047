// What the noise kernels share (CPU: ops/noise_cpu.cpp; CUDA: ops/noise.cu; the CUDA kernel's CPU
// emulation: ops/noise_emulate.cpp): the checks and the arithmetic of one element, as host+device
// functions with explicit mul_rn where nvcc would otherwise fuse an FMA, so every backend computes
// what the PyTorch reference does (the device's log may differ from the host's in the last bit,
// which reaches a float32 output only in rare tail samples). Semantics: noise.h.
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "ebir/common.h"
#include "ebir/counter_rng.h"
#include "ebir/elements.h"
#include "ebir/noise.h"
#include "ebir/normal_quantile.h"

namespace ebir {

// Shape only: the CUDA path cannot read device-side sizes on the host.
inline void check_noise(const NoiseArgs& a) {
  if (a.B < 1 || a.C < 1 || a.H < 1 || a.W < 1)
    throw std::invalid_argument("add_noise: bad shape B=" + std::to_string(a.B) + " C=" +
                                std::to_string(a.C) + " H=" + std::to_string(a.H) + " W=" +
                                std::to_string(a.W));
}

// The 8-bit level of a pixel (its luma for gray samples), rounded as the reference does in float32.
EBIR_HD int noise_level(const NoiseArgs& a, int64_t b, int64_t c, int64_t y, int64_t x) {
  float v;
  if (a.gray[b]) {
    const float luma[3] = {0.299f, 0.587f, 0.114f};
    v = 0.0f;
    for (int k = 0; k < 3; ++k)
      v = v + mul_rn(load_as<float>(a.x.data, offset(a.x, b, k, y, x), a.x.dtype), luma[k]);
  } else {
    v = load_as<float>(a.x.data, offset(a.x, b, c, y, x), a.x.dtype);
  }
  v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
  return int(nearbyintf(mul_rn(v, 255.0f)));
}

// The smallest k < length - 1 with row[k] > u, else length - 1 (the row ends in 1 > u).
EBIR_HD int64_t cdf_search(const double* row, int64_t length, double u) {
  int64_t lo = 0, hi = length - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (row[mid] > u)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

// x + noise at (b, c, y, x) inside the extent, before the clamp. search(row, cdf_row_index, u)
// returns the Poisson count (cdf_search, or the CPU's guided walk: the same k).
template <class T, class Search>
EBIR_HD T noise_sum(const NoiseArgs& a, uint64_t key_g, uint64_t key_p, int64_t b, int64_t c,
                    int64_t y, int64_t x, const Search& search) {
  const uint64_t e = uint64_t(((b * a.C + (a.gray[b] ? 0 : c)) * a.H + y) * a.W + x);
  const T v = load_as<T>(a.x.data, offset(a.x, b, c, y, x), a.x.dtype);
  T n = T(0);
  if (a.kind[b] == 1) {
    n = mul_rn(T(float(normal_quantile(counter_uniform(key_g, e)))), T(a.sigma[b]));
  } else if (a.kind[b] == 2) {
    const int level = noise_level(a, b, c, y, x);
    const int64_t row = a.table_of_sample[b] * 256 + level;
    const int64_t k = search(a.cdf + row * a.length, row, counter_uniform(key_p, e));
    n = mul_rn(T(float(k)) / T(a.vals[b]) - T(level) / T(255), T(a.scale[b]));
  }
  return v + n;
}

// out = clamp(s, 0, 1) (0 outside the extent) and the clamp's pass mask.
template <class T>
EBIR_HD void noise_store(const NoiseArgs& a, int64_t b, int64_t c, int64_t y, int64_t x, T s,
                         bool inside) {
  const T out = !inside ? T(0) : (s < T(0) ? T(0) : (s > T(1) ? T(1) : s));
  store_as<T>(a.out.data, offset(a.out, b, c, y, x), a.out.dtype, out);
  if (a.pass != nullptr)
    a.pass[((b * a.C + c) * a.H + y) * a.W + x] = (inside && s >= T(0) && s <= T(1)) ? 1 : 0;
}

}  // namespace ebir
