// CPU kernel for the fused JPEG round trip (ebir/jpeg.h). One task is one row of 16x16 MCUs of one
// sample; an MCU is read once (edge-replicated), transformed through four luma and two chroma 8x8
// blocks in registers and on the stack, and written once. The 8-point DCTs are matrix products
// with the orthonormal DCT-II matrix in the accumulation type.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "ebir/common.h"
#include "ebir/cpu_rows.h"
#include "ebir/jpeg.h"
#include "ebir/jpeg_elements.h"

namespace ebir {
namespace {

using namespace cpu;

template <class T>
struct Dct {
  T m[8][8];   // m[u][x] = c(u) cos((2x + 1) u pi / 16)
  T mt[8][8];  // the transpose
  Dct() {
    for (int u = 0; u < 8; ++u)
      for (int x = 0; x < 8; ++x) {
        m[u][x] = T((u == 0 ? std::sqrt(0.125) : 0.5) * std::cos((2 * x + 1) * u * M_PI / 16.0));
        mt[x][u] = m[u][x];
      }
  }
};

constexpr int kLanes(size_t bytes) { return int(32 / bytes); }

// out[i][:] = sum_k l[i][k] r[k][:] for 8x8 matrices: each row of `out` is a sum of rows of `r`
// scaled by broadcast taps, in vector registers (GCC's own vectorisation of the scalar loops
// shuffled lanes more than it multiplied).
template <class T>
EBIR_INLINE void matmul8(const T (*l)[8], const T (*r)[8], T (*out)[8]) {
  constexpr int L = kLanes(sizeof(T));
  for (int h = 0; h < 8; h += L) {
    Vec<T> rk[8];
    for (int k = 0; k < 8; ++k) rk[k] = vload(&r[k][h]);
    for (int i = 0; i < 8; ++i) {
      Vec<T> acc = {};
      for (int k = 0; k < 8; ++k) acc += l[i][k] * rk[k];
      vstore(&out[i][h], acc);
    }
  }
}

// blk <- D^T round(D (blk - 128) D^T / q) * q) D + 128, in place (one 8x8 block, row stride s).
// The four products are row-times-matrix forms (matmul8) with D or D^T on the right as needed.
template <class T>
EBIR_INLINE void roundtrip_block_impl(const Dct<T>& d, const T* q, T* blk, int s) {
  constexpr int L = kLanes(sizeof(T));
  T a[8][8], c[8][8];
  for (int y = 0; y < 8; ++y)
    for (int h = 0; h < 8; h += L) vstore(&a[y][h], vload(blk + y * s + h) - T(128));
  matmul8<T>(d.m, a, c);   // c = D a
  matmul8<T>(c, d.mt, a);  // a = c D^T
  for (int u = 0; u < 8; ++u)
    for (int h = 0; h < 8; h += L) {
      const Vec<T> step = vload(q + u * 8 + h);
      vstore(&a[u][h], round_even<T>(vload(&a[u][h]) / step) * step);
    }
  matmul8<T>(d.mt, a, c);  // c = D^T a
  matmul8<T>(c, d.m, a);   // a = c D
  for (int y = 0; y < 8; ++y)
    for (int h = 0; h < 8; h += L) vstore(blk + y * s + h, vload(&a[y][h]) + T(128));
}

EBIR_CLONES void roundtrip_block(const Dct<float>& d, const float* q, float* blk, int s) {
  roundtrip_block_impl<float>(d, q, blk, s);
}
EBIR_CLONES void roundtrip_block(const Dct<double>& d, const double* q, double* blk, int s) {
  roundtrip_block_impl<double>(d, q, blk, s);
}

// Lanes 2i and 2i + 1 of the pair (lo, hi): the even and the odd columns of 2L values.
template <class T>
EBIR_INLINE void deinterleave(Vec<T> lo, Vec<T> hi, Vec<T>* even, Vec<T>* odd) {
  if constexpr (kLanes(sizeof(T)) == 8) {
    *even = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);
    *odd = __builtin_shufflevector(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15);
  } else {
    *even = __builtin_shufflevector(lo, hi, 0, 2, 4, 6);
    *odd = __builtin_shufflevector(lo, hi, 1, 3, 5, 7);
  }
}

// (c[0], c[0], c[1], c[1], ...): L lanes from L / 2 values, the horizontal chroma upsampling.
template <class T>
EBIR_INLINE Vec<T> repeat_pairs(const T* c) {
  typedef T Half __attribute__((vector_size(16)));
  typedef T HalfLoad __attribute__((vector_size(16), aligned(sizeof(T)), may_alias));
  const Half v = *reinterpret_cast<const HalfLoad*>(c);
  if constexpr (kLanes(sizeof(T)) == 8)
    return __builtin_shufflevector(v, v, 0, 0, 1, 1, 2, 2, 3, 3);
  else
    return __builtin_shufflevector(v, v, 0, 0, 1, 1);
}

// One row of MCUs (16 image rows) of sample b. `in` holds the rows x255, edge-replicated to a
// multiple of 16 columns, read with the dtype switch hoisted out of the loops; results go to `res`
// (rows of max(W, w16) values) and are stored row by row, so only the transform works per MCU.
// Every step runs on whole vectors of an MCU row; the columns past the extent are zeroed at the end.
template <class T>
EBIR_INLINE void mcu_row_impl(const JpegArgs& a, const Dct<T>& d, int64_t b, int64_t y0,
                              std::vector<T>& in, std::vector<T>& res) {
  constexpr int L = kLanes(sizeof(T));
  const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1], w16 = (w + 15) / 16 * 16;
  const int64_t rows = std::min<int64_t>(16, h - y0), stride = std::max(a.W, w16);
  const T* luma_q = static_cast<const T*>(a.tables) + b * 128;
  const T* chroma_q = luma_q + 64;
  in.resize(size_t(3 * 16 * w16));
  res.resize(size_t(3 * 16 * stride));
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 16; ++i) {
      T* dst = in.data() + (c * 16 + i) * w16;
      load_row_op<T, false>(a.x, b, c, std::min(y0 + i, h - 1), w, dst);
      for (int64_t j = w; j < w16; ++j) dst[j] = dst[w - 1];
      for (int64_t j = 0; j < w16; j += L) vstore(dst + j, vclamp<T>(vload(dst + j), 0, 1) * T(255));
    }
  T ycc[3][16][16], chroma[2][8][8];
  for (int64_t x0 = 0; x0 < w; x0 += 16) {
    for (int i = 0; i < 16; ++i) {
      const T* r = in.data() + i * w16 + x0;
      const T* g = r + 16 * w16;
      const T* bl = g + 16 * w16;
      for (int j = 0; j < 16; j += L) {
        const Vec<T> rv = vload(r + j), gv = vload(g + j), bv = vload(bl + j);
        for (int o = 0; o < 3; ++o)
          vstore(&ycc[o][i][j],
                 T(kRgbToYcc[o][0]) * rv + T(kRgbToYcc[o][1]) * gv + T(kRgbToYcc[o][2]) * bv);
      }
    }
    // Chroma: 2x2 means around 128 (the offset is added and removed as the reference does, so
    // the two round identically), one 8x8 block each.
    for (int k = 0; k < 2; ++k) {
      for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 8; j += L) {
          const T* r0 = ycc[k + 1][2 * i] + 2 * j;
          const T* r1 = ycc[k + 1][2 * i + 1] + 2 * j;
          Vec<T> e0, o0, e1, o1;
          deinterleave<T>(vload(r0), vload(r0 + L), &e0, &o0);
          deinterleave<T>(vload(r1), vload(r1 + L), &e1, &o1);
          vstore(&chroma[k][i][j], (e0 + o0 + e1 + o1) * T(0.25) + T(128));
        }
      roundtrip_block(d, chroma_q, &chroma[k][0][0], 8);
    }
    for (int by = 0; by < 2; ++by)
      for (int bx = 0; bx < 2; ++bx) roundtrip_block(d, luma_q, &ycc[0][8 * by][8 * bx], 16);
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < 16; j += L) {
        const Vec<T> yv = vload(&ycc[0][i][j]);
        const Vec<T> cb = repeat_pairs(&chroma[0][i / 2][j / 2]) - T(128);
        const Vec<T> cr = repeat_pairs(&chroma[1][i / 2][j / 2]) - T(128);
        for (int o = 0; o < 3; ++o)
          vstore(res.data() + (o * 16 + i) * stride + x0 + j,
                 T(kYccToRgb[o][0]) * yv + T(kYccToRgb[o][1]) * cb + T(kYccToRgb[o][2]) * cr);
      }
  }
  for (int o = 0; o < 3; ++o)
    for (int i = 0; i < rows; ++i) {
      T* v = res.data() + (o * 16 + i) * stride;
      if (a.pass != nullptr) {
        uint8_t* pass = a.pass + ((b * 3 + o) * a.H + y0 + i) * a.W;
        for (int64_t j = 0; j < w; ++j) pass[j] = (v[j] >= T(0) && v[j] <= T(255)) ? 1 : 0;
      }
      for (int64_t j = 0; j < w16; j += L) vstore(v + j, vclamp<T>(vload(v + j), 0, 255) / T(255));
      std::fill(v + w, v + a.W, T(0));  // columns past the extent
      store_row(a.out, b, o, y0 + i, a.W, v, T(1), false);
    }
}

EBIR_CLONES void mcu_row(const JpegArgs& a, const Dct<float>& d, int64_t b, int64_t y0,
                         std::vector<float>& in, std::vector<float>& res) {
  mcu_row_impl<float>(a, d, b, y0, in, res);
}
EBIR_CLONES void mcu_row(const JpegArgs& a, const Dct<double>& d, int64_t b, int64_t y0,
                         std::vector<double>& in, std::vector<double>& res) {
  mcu_row_impl<double>(a, d, b, y0, in, res);
}

template <class T>
void fwd_impl(const JpegArgs& a, int threads) {
  const Dct<T> d;
  const int64_t mcu_rows = (a.H + 15) / 16;
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> in, res, zeros(size_t(a.W), T(0));
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < a.B * mcu_rows; ++task) {
      const int64_t b = task / mcu_rows, y0 = (task % mcu_rows) * 16, h = a.sizes[2 * b];
      if (y0 < h) mcu_row(a, d, b, y0, in, res);
      // Rows past the extent are written as zeros, so the output needs no zero-fill beforehand.
      for (int64_t y = std::max(y0, h); y < std::min(y0 + 16, a.H); ++y)
        for (int o = 0; o < 3; ++o) store_row(a.out, b, o, y, a.W, zeros.data(), T(1), false);
    }
  }
}

}  // namespace

void jpeg_fwd_cpu(const JpegArgs& a, int num_threads) {
  check_jpeg(a, false);
  for (int64_t b = 0; b < a.B; ++b) {
    const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
    if (h < 1 || h > a.H || w < 1 || w > a.W)
      throw std::invalid_argument("jpeg: sizes[" + std::to_string(b) +
                                  "] is outside [1, H] x [1, W]");
  }
  const int threads = resolve_threads(num_threads);
  if (a.acc == kF64)
    fwd_impl<double>(a, threads);
  else
    fwd_impl<float>(a, threads);
}

}  // namespace ebir
