// CPU kernel for ebir/noise.h. One task is one row of one sample; the row's source levels,
// uniforms and noise are computed in registers and written once. Compiled with
// -ffp-contract=off (see CMakeLists.txt) so the luma and the noise round as the PyTorch
// reference's separate operations.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "ebir/counter_rng.h"
#include "ebir/cpu_rows.h"
#include "ebir/noise.h"
#include "ebir/noise_elements.h"
#include "ebir/poisson_guide.h"

namespace ebir {
namespace {

using namespace cpu;

// Sizes and gray flags are host memory here, so the CPU path checks them too.
void check(const NoiseArgs& a) {
  check_noise(a);
  for (int64_t b = 0; b < a.B; ++b) {
    const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
    if (h < 1 || h > a.H || w < 1 || w > a.W)
      throw std::invalid_argument("add_noise: sizes[" + std::to_string(b) + "] out of range");
    if (a.gray[b] && a.C != 3)
      throw std::invalid_argument("add_noise: gray noise needs 3 channels");
  }
}

// u[x] = counter_uniform(key, e0 + x) for x < n, four at a time in 64-bit vector lanes (the
// compiler keeps the scalar loop scalar: AVX2 has no 64-bit multiply or u64 -> double
// conversion, so both are spelled out). Same bits as counter_uniform: the 53-bit integer m
// converts exactly as 2 (m >> 1) + (m & 1), each half by the 2^52 exponent trick.
EBIR_INLINE void uniform_row_impl(uint64_t key, uint64_t e0, int64_t n, double* u) {
  typedef uint64_t U64 __attribute__((vector_size(32)));
  const U64 lane = {1, 2, 3, 4};  // counter_bits hashes e + 1
  const U64 exp52 = U64{} + 0x4330000000000000ull;
  const double two52 = 4503599627370496.0;
  int64_t x = 0;
  for (; x + 4 <= n; x += 4) {
    U64 z = key + ((e0 + uint64_t(x)) + lane) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    const U64 m = (z ^ (z >> 31)) >> 11;
    // A vector cast between same-size vector types reinterprets the bits (GCC and Clang).
    const Vec<double> half = (Vec<double>)((m >> 1) | exp52) - two52;
    const Vec<double> low = (Vec<double>)((m & 1) | exp52) - two52;
    vstore(u + x, ((half * 2.0 + low) + 0.5) * 1.1102230246251565e-16);
  }
  for (; x < n; ++x) u[x] = counter_uniform(key, e0 + uint64_t(x));
}

constexpr int kTailBatch = 64;

// z[idx[i]] = normal_quantile_tail(u[idx[i]]) for i < count: the logarithm per draw (libm), the
// rational function four at a time (normal_quantile_tail_near, the same operations lane by lane),
// and the far tail (r > 5, p below ~1e-11) one by one.
EBIR_INLINE void tail_batch(const double* u, const int32_t* idx, int count, double* z) {
  double r[kTailBatch + 3];
  for (int i = 0; i < count; ++i) {
    const double p = u[idx[i]];
    r[i] = std::sqrt(-std::log(p - 0.5 < 0 ? p : 1.0 - p));
  }
  for (int i = count; i % 4 != 0; ++i) r[i] = 1.6;  // padding lanes, discarded
  for (int i = 0; i < count; i += 4) {
    const F64x4 v = normal_quantile_tail_near(F64x4{r[i], r[i + 1], r[i + 2], r[i + 3]});
    for (int l = 0; l < 4 && i + l < count; ++l) {
      const double p = u[idx[i + l]];
      z[idx[i + l]] = r[i + l] <= 5.0 ? (p - 0.5 < 0 ? -v[l] : v[l]) : normal_quantile_tail(p);
    }
  }
}

// z[x] = normal_quantile(counter_uniform(key, e0 + x)) for x < n: the uniforms and the central
// formula over the whole row first (they vectorise; `u` keeps the uniforms), then the tail draws
// (15%) in batches. Same values as normal_quantile element by element.
template <class T>
EBIR_INLINE void normal_row_impl(uint64_t key, uint64_t e0, int64_t n, double* u, double* z) {
  uniform_row_impl(key, e0, n, u);
  for (int64_t x = 0; x < n; ++x) z[x] = normal_quantile_central(u[x] - 0.5);
  // The tail draws, gathered without branches into batches (tail_batch).
  int32_t idx[kTailBatch];
  int count = 0;
  for (int64_t x = 0; x < n; ++x) {
    idx[count] = int32_t(x);
    count += !(std::fabs(u[x] - 0.5) <= 0.425);
    if (count == kTailBatch) {
      tail_batch(u, idx, count, z);
      count = 0;
    }
  }
  if (count > 0) tail_batch(u, idx, count, z);
}

EBIR_CLONES void normal_row(uint64_t key, uint64_t e0, int64_t n, double* u, double* z) {
  normal_row_impl<double>(key, e0, n, u, z);
}

EBIR_CLONES void uniform_row(uint64_t key, uint64_t e0, int64_t n, double* u) {
  uniform_row_impl(key, e0, n, u);
}

// levels[x] = noise_level(a, b, c, y, x) for x < n, the rows read once with the dtype hoisted.
// `buf` holds 3 rows of floats.
template <class T>
EBIR_INLINE void level_row_impl(const NoiseArgs& a, int64_t b, int64_t c, int64_t y, int64_t n,
                                float* buf, int32_t* levels) {
  if (a.gray[b]) {
    for (int k = 0; k < 3; ++k) load_row_op<float, false>(a.x, b, k, y, n, buf + k * n);
    const float luma[3] = {0.299f, 0.587f, 0.114f};
    for (int64_t x = 0; x < n; ++x) {
      float v = 0.0f;
      for (int k = 0; k < 3; ++k) v = v + buf[k * n + x] * luma[k];
      buf[x] = v;
    }
  } else {
    load_row_op<float, false>(a.x, b, c, y, n, buf);
  }
  // round(clamp(v) * 255) in vector registers (nearbyint is a libm call per element otherwise);
  // the integral result converts exactly.
  typedef int32_t Ints __attribute__((vector_size(32)));
  typedef int32_t IntsOut __attribute__((vector_size(32), aligned(4), may_alias));
  int64_t x = 0;
  for (; x + 8 <= n; x += 8) {
    const Vec<float> v = vclamp<float>(vload(buf + x), 0.0f, 1.0f) * 255.0f;
    const Ints k = __builtin_convertvector(round_even<float>(v), Ints);
    *reinterpret_cast<IntsOut*>(levels + x) = k;
  }
  for (; x < n; ++x) {
    const float v = std::min(std::max(buf[x], 0.0f), 1.0f);
    levels[x] = int32_t(std::nearbyint(v * 255.0f));
  }
}

EBIR_CLONES void level_row(const NoiseArgs& a, int64_t b, int64_t c, int64_t y, int64_t n,
                           float* buf, int32_t* levels) {
  level_row_impl<float>(a, b, c, y, n, buf, levels);
}

// Per-thread rows of scratch, each a row of the batch wide.
template <class T>
struct Scratch {
  explicit Scratch(int64_t w)
      : z(size_t(w)), us(size_t(w)), lum(size_t(3 * w)), levels(size_t(w)), sums(size_t(w)),
        noise(size_t(w)), out(size_t(w)) {}
  std::vector<double> z, us;
  std::vector<float> lum;
  std::vector<int32_t> levels;
  std::vector<T> sums, noise, out;
};

// noise[x] for x < w: what sample b (kind 1 or 2) adds to row y of channel c (a gray sample's
// noise is that of channel 0 for every channel).
template <class T>
EBIR_INLINE void noise_row(const NoiseArgs& a, uint64_t key_g, uint64_t key_p, const int32_t* guide,
                           int64_t b, int64_t c, int64_t y, int64_t w, Scratch<T>& s, T* noise) {
  const uint64_t e0 = uint64_t(((b * a.C + c) * a.H + y) * a.W);
  if (a.kind[b] == 1) {  // the normals in one vectorised pass
    normal_row(key_g, e0, w, s.us.data(), s.z.data());
    const T sigma = T(a.sigma[b]);
    for (int64_t x = 0; x < w; ++x) noise[x] = mul_rn(T(float(s.z[size_t(x)])), sigma);
    return;
  }
  level_row(a, b, c, y, w, s.lum.data(), s.levels.data());
  uniform_row(key_p, e0, w, s.z.data());
  const T vals = T(a.vals[b]), scale = T(a.scale[b]);
  const int64_t table = a.table_of_sample[b] * 256;
  for (int64_t x = 0; x < w; ++x) {
    const int level = s.levels[size_t(x)];
    const int64_t k = poisson_invert(a.cdf + (table + level) * a.length,
                                     guide + (table + level) * kPoissonGuide, a.length,
                                     s.z[size_t(x)]);
    noise[x] = mul_rn(T(float(k)) / vals - T(level) / T(255), scale);
  }
}

// Row y of sample b in every channel: x + noise, clamped, written with the pass mask. A gray
// sample draws its noise row once and adds it to each channel (the reference's shared field).
template <class T>
EBIR_INLINE void sample_row_impl(const NoiseArgs& a, uint64_t key_g, uint64_t key_p,
                                 const int32_t* guide, int64_t b, int64_t y, Scratch<T>& sc) {
  constexpr int64_t L = int64_t(sizeof(Vec<T>) / sizeof(T));
  const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
  for (int64_t c = 0; c < a.C; ++c) {
    T* out_row = sc.out.data();
    std::fill(out_row, out_row + a.W, T(0));
    uint8_t* pass = a.pass ? a.pass + ((b * a.C + c) * a.H + y) * a.W : nullptr;
    if (pass) std::fill(pass, pass + a.W, uint8_t(0));
    if (y < h) {
      T* s = sc.sums.data();
      load_row_op<T, false>(a.x, b, c, y, w, s);  // s = x, then x + noise
      if (a.kind[b] != 0) {
        T* noise = sc.noise.data();
        if (c == 0 || !a.gray[b])
          noise_row<T>(a, key_g, key_p, guide, b, a.gray[b] ? 0 : c, y, w, sc, noise);
        for (int64_t x = 0; x < w; ++x) s[x] = s[x] + noise[x];
      }
      if (pass)
        for (int64_t x = 0; x < w; ++x) pass[x] = (s[x] >= T(0) && s[x] <= T(1)) ? 1 : 0;
      int64_t x = 0;
      for (; x + L <= w; x += L) vstore(out_row + x, vclamp<T>(vload(s + x), T(0), T(1)));
      for (; x < w; ++x) out_row[x] = s[x] < T(0) ? T(0) : (s[x] > T(1) ? T(1) : s[x]);
    }
    store_row(a.out, b, c, y, a.W, out_row, T(1), false);
  }
}

// Cloned per ISA (the row loops run in ymm registers on AVX2 and AVX-512 machines).
EBIR_CLONES void sample_row(const NoiseArgs& a, uint64_t key_g, uint64_t key_p,
                            const int32_t* guide, int64_t b, int64_t y, Scratch<float>& sc) {
  sample_row_impl<float>(a, key_g, key_p, guide, b, y, sc);
}
EBIR_CLONES void sample_row(const NoiseArgs& a, uint64_t key_g, uint64_t key_p,
                            const int32_t* guide, int64_t b, int64_t y, Scratch<double>& sc) {
  sample_row_impl<double>(a, key_g, key_p, guide, b, y, sc);
}

// One task is one row of one sample across its channels (sample_row).
template <class T>
void apply_impl(const NoiseArgs& a, int threads) {
  const uint64_t key_g = stream_key(a.seed_gauss), key_p = stream_key(a.seed_poisson);
  int64_t tables = 0;
  for (int64_t b = 0; b < a.B; ++b) tables = std::max(tables, a.table_of_sample[b] + 1);
  std::vector<bool> used(size_t(tables), false);  // the tables of the Poisson samples
  for (int64_t b = 0; b < a.B; ++b)
    if (a.kind[b] == 2) used[size_t(a.table_of_sample[b])] = true;
  const std::vector<int32_t> guide = poisson_guide(a.cdf, used, a.length, threads);
  Scratch<T> init(a.W);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 8) firstprivate(init)
  for (int64_t r = 0; r < a.B * a.H; ++r)
    sample_row(a, key_g, key_p, guide.data(), r / a.H, r % a.H, init);
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
    std::vector<float> buf(size_t(3 * w));
    std::vector<int32_t> levels(static_cast<size_t>(w));
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t y = 0; y < h; ++y) {
        level_row(a, b, c, y, w, buf.data(), levels.data());
        for (int64_t x = 0; x < w; ++x) ++hist[b * 256 + levels[size_t(x)]];
      }
  }
}

}  // namespace ebir
