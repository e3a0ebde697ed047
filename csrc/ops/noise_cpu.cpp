// CPU kernel for ebir/noise.h. One task is one row of one plane; the row's source levels, uniforms
// and noise are computed in registers and written once. Compiled with -ffp-contract=off (see
// CMakeLists.txt) so the luma and the noise round as the PyTorch reference's separate operations.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "ebir/counter_rng.h"
#include "ebir/cpu_rows.h"
#include "ebir/noise.h"
#include "ebir/normal_quantile.h"

namespace ebir {
namespace {

constexpr float kLuma[3] = {0.299f, 0.587f, 0.114f};

void check(const NoiseArgs& a) {
  if (a.B < 1 || a.C < 1 || a.H < 1 || a.W < 1)
    throw std::invalid_argument("add_noise: bad shape");
  for (int64_t b = 0; b < a.B; ++b) {
    const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
    if (h < 1 || h > a.H || w < 1 || w > a.W)
      throw std::invalid_argument("add_noise: sizes[" + std::to_string(b) + "] out of range");
    if (a.gray[b] && a.C != 3)
      throw std::invalid_argument("add_noise: gray noise needs 3 channels");
  }
}

inline int64_t offset(const View4& v, int64_t b, int64_t c, int64_t y, int64_t x) {
  return b * v.stride[0] + c * v.stride[1] + y * v.stride[2] + x * v.stride[3];
}

// The 8-bit level of a pixel (its luma for gray samples), as the reference rounds it in float32.
template <class T>
int level_of(const NoiseArgs& a, int64_t b, int64_t c, int64_t y, int64_t x) {
  float v;
  if (a.gray[b]) {
    float s = 0.0f;
    for (int k = 0; k < 3; ++k)
      s = s + load_as<float>(a.x.data, offset(a.x, b, k, y, x), a.x.dtype) * kLuma[k];
    v = s;
  } else {
    v = load_as<float>(a.x.data, offset(a.x, b, c, y, x), a.x.dtype);
  }
  v = std::min(std::max(v, 0.0f), 1.0f);
  return int(std::nearbyint(v * 255.0f));
}

template <class T>
void apply_impl(const NoiseArgs& a, int threads) {
  const uint64_t key_g = stream_key(a.seed_gauss), key_p = stream_key(a.seed_poisson);
  const int64_t rows = a.B * a.C * a.H;
  // Guide table: for each CDF row, the first k with cdf[k] > g / G, where a short linear walk for
  // u in [g / G, (g + 1) / G) starts (a binary search over the row costs several cache misses).
  constexpr int G = 64;
  int64_t tables = 0;
  for (int64_t b = 0; b < a.B; ++b) tables = std::max(tables, a.table_of_sample[b] + 1);
  std::vector<int32_t> guide(size_t(tables * 256 * G));
  for (int64_t row = 0; row < tables * 256; ++row) {
    const double* cdf = a.cdf + row * a.length;
    for (int g = 0; g < G; ++g)
      guide[size_t(row * G + g)] =
          int32_t(std::upper_bound(cdf, cdf + a.length - 1, double(g) / G) - cdf);
  }
#pragma omp parallel for num_threads(threads) schedule(dynamic, 16)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t y = r % a.H, c = (r / a.H) % a.C, b = r / (a.H * a.C);
    const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
    const int kind = a.kind[b];
    const int64_t c_src = a.gray[b] ? 0 : c;
    const uint64_t row_e = uint64_t(((b * a.C + c_src) * a.H + y) * a.W);
    const T sigma = T(a.sigma[b]), scale = T(a.scale[b]), vals = T(a.vals[b]);
    const double* cdf = a.cdf + a.table_of_sample[b] * 256 * a.length;
    uint8_t* pass = a.pass ? a.pass + ((b * a.C + c) * a.H + y) * a.W : nullptr;
    for (int64_t x = 0; x < a.W; ++x) {
      const int64_t o = offset(a.out, b, c, y, x);
      if (y >= h || x >= w) {
        store_as<T>(a.out.data, o, a.out.dtype, T(0));
        if (pass) pass[x] = 0;
        continue;
      }
      const T v = load_as<T>(a.x.data, offset(a.x, b, c, y, x), a.x.dtype);
      T n = T(0);
      if (kind == 1) {
        n = T(float(normal_quantile(counter_uniform(key_g, row_e + uint64_t(x))))) * sigma;
      } else if (kind == 2) {
        const int level = level_of<T>(a, b, c, y, x);
        const double* row = cdf + level * a.length;
        const double u = counter_uniform(key_p, row_e + uint64_t(x));
        int64_t k = guide[size_t((a.table_of_sample[b] * 256 + level) * G + int(u * G))];
        while (k < a.length - 1 && row[k] <= u) ++k;
        n = (T(float(k)) / vals - T(level) / T(255)) * scale;
      }
      const T s = v + n;
      store_as<T>(a.out.data, o, a.out.dtype, std::min(std::max(s, T(0)), T(1)));
      if (pass) pass[x] = (s >= T(0) && s <= T(1)) ? 1 : 0;
    }
  }
}

}  // namespace

void add_noise_cpu(const NoiseArgs& a, int num_threads) {
  check(a);
  const int threads = cpu::resolve_threads(num_threads);
  if (a.x.dtype == kF64)
    apply_impl<double>(a, threads);
  else
    apply_impl<float>(a, threads);
}

void noise_level_histogram_cpu(const NoiseArgs& a, int64_t* hist, int num_threads) {
  check(a);
  const int threads = cpu::resolve_threads(num_threads);
  std::fill(hist, hist + a.B * 256, int64_t(0));
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t b = 0; b < a.B; ++b) {
    if (a.kind[b] != 2) continue;
    const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
    const int64_t channels = a.gray[b] ? 1 : a.C;
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) ++hist[b * 256 + level_of<float>(a, b, c, y, x)];
  }
}

}  // namespace ebir
