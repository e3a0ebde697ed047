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

// out[i][:] = sum_k l[i][k] r[k][:] for 8x8 matrices: the row of `out` is a sum of rows of `r`,
// so the inner loop runs over 8 contiguous values and compiles to vector instructions.
template <class T>
EBIR_INLINE void matmul8(const T (*l)[8], const T (*r)[8], T (*out)[8]) {
  for (int i = 0; i < 8; ++i) {
    T acc[8] = {};
    for (int k = 0; k < 8; ++k)
      for (int j = 0; j < 8; ++j) acc[j] += l[i][k] * r[k][j];
    for (int j = 0; j < 8; ++j) out[i][j] = acc[j];
  }
}

// blk <- D^T round(D (blk - 128) D^T / q) * q) D + 128, in place (one 8x8 block, row stride s).
// The four products are row-times-matrix forms (matmul8) with D or D^T on the right as needed.
template <class T>
EBIR_INLINE void roundtrip_block_impl(const Dct<T>& d, const T* q, T* blk, int s) {
  T a[8][8], c[8][8];
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x) a[y][x] = blk[y * s + x] - T(128);
  matmul8<T>(d.m, a, c);   // c = D a
  matmul8<T>(c, d.mt, a);  // a = c D^T
  for (int u = 0; u < 8; ++u)
    for (int v = 0; v < 8; ++v) a[u][v] = std::nearbyint(a[u][v] / q[u * 8 + v]) * q[u * 8 + v];
  matmul8<T>(d.mt, a, c);  // c = D^T a
  matmul8<T>(c, d.m, a);   // a = c D
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x) blk[y * s + x] = a[y][x] + T(128);
}

EBIR_CLONES void roundtrip_block(const Dct<float>& d, const float* q, float* blk, int s) {
  roundtrip_block_impl<float>(d, q, blk, s);
}
EBIR_CLONES void roundtrip_block(const Dct<double>& d, const double* q, double* blk, int s) {
  roundtrip_block_impl<double>(d, q, blk, s);
}

// One row of MCUs (16 image rows) of sample b. `in` holds the rows x255, edge-replicated to a
// multiple of 16 columns, read with the dtype switch hoisted out of the loops; results go to `res`
// and are stored row by row, so only the transform itself works per MCU.
template <class T>
EBIR_INLINE void mcu_row_impl(const JpegArgs& a, const Dct<T>& d, int64_t b, int64_t y0,
                              std::vector<T>& in, std::vector<T>& res) {
  const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1], w16 = (w + 15) / 16 * 16;
  const int64_t rows = std::min<int64_t>(16, h - y0);
  const T* luma_q = static_cast<const T*>(a.tables) + b * 128;
  const T* chroma_q = luma_q + 64;
  in.resize(size_t(3 * 16 * w16));
  res.assign(size_t(3 * 16 * a.W), T(0));  // columns past the extent stay 0
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 16; ++i) {
      T* dst = in.data() + (c * 16 + i) * w16;
      load_row_op<T, false>(a.x, b, c, std::min(y0 + i, h - 1), w, dst);
      for (int64_t j = w; j < w16; ++j) dst[j] = dst[w - 1];
      for (int64_t j = 0; j < w16; ++j) dst[j] = std::min(std::max(dst[j], T(0)), T(1)) * T(255);
    }
  T ycc[3][16][16], chroma[2][8][8];
  for (int64_t x0 = 0; x0 < w; x0 += 16) {
    for (int i = 0; i < 16; ++i) {
      const T* r = in.data() + i * w16 + x0;
      const T* g = r + 16 * w16;
      const T* bl = g + 16 * w16;
      for (int o = 0; o < 3; ++o)
        for (int j = 0; j < 16; ++j)
          ycc[o][i][j] = T(kRgbToYcc[o][0]) * r[j] + T(kRgbToYcc[o][1]) * g[j] +
                         T(kRgbToYcc[o][2]) * bl[j];
    }
    // Chroma: 2x2 means around 128 (the offset is added and removed as the reference does, so
    // the two round identically), one 8x8 block each.
    for (int k = 0; k < 2; ++k) {
      for (int i = 0; i < 8; ++i)
        for (int j = 0; j < 8; ++j) {
          const T* r0 = ycc[k + 1][2 * i] + 2 * j;
          const T* r1 = ycc[k + 1][2 * i + 1] + 2 * j;
          chroma[k][i][j] = (r0[0] + r0[1] + r1[0] + r1[1]) * T(0.25) + T(128);
        }
      roundtrip_block(d, chroma_q, &chroma[k][0][0], 8);
    }
    for (int by = 0; by < 2; ++by)
      for (int bx = 0; bx < 2; ++bx) roundtrip_block(d, luma_q, &ycc[0][8 * by][8 * bx], 16);
    const int64_t cols = std::min<int64_t>(16, w - x0);
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j) {
        const T yv = ycc[0][i][j];
        const T cb = chroma[0][i / 2][j / 2] - T(128), cr = chroma[1][i / 2][j / 2] - T(128);
        for (int o = 0; o < 3; ++o)
          res[size_t((o * 16 + i) * a.W + x0 + j)] =
              T(kYccToRgb[o][0]) * yv + T(kYccToRgb[o][1]) * cb + T(kYccToRgb[o][2]) * cr;
      }
  }
  for (int o = 0; o < 3; ++o)
    for (int i = 0; i < rows; ++i) {
      T* v = res.data() + (o * 16 + i) * a.W;
      if (a.pass != nullptr) {
        uint8_t* pass = a.pass + ((b * 3 + o) * a.H + y0 + i) * a.W;
        for (int64_t j = 0; j < w; ++j) pass[j] = (v[j] >= T(0) && v[j] <= T(255)) ? 1 : 0;
      }
      for (int64_t j = 0; j < w; ++j) v[j] = std::min(std::max(v[j], T(0)), T(255)) / T(255);
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
