// CPU kernel for the fused JPEG round trip (ebir/jpeg.h). One task is one row of 16x16 MCUs of one
// sample; an MCU is read once (edge-replicated), transformed through four luma and two chroma 8x8
// blocks in registers and on the stack, and written once. The 8-point DCTs are matrix products
// with the orthonormal DCT-II matrix in the accumulation type.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "ebir/common.h"
#include "ebir/cpu_rows.h"
#include "ebir/jpeg.h"
#include "ebir/jpeg_elements.h"

namespace ebir {
namespace {

using cpu::resolve_threads;

template <class T>
struct Dct {
  T m[8][8];  // m[u][x] = c(u) cos((2x + 1) u pi / 16)
  Dct() {
    for (int u = 0; u < 8; ++u)
      for (int x = 0; x < 8; ++x)
        m[u][x] = T((u == 0 ? std::sqrt(0.125) : 0.5) * std::cos((2 * x + 1) * u * M_PI / 16.0));
  }
};

// blk <- D^T round(D (blk - 128) D^T / q) * q) D + 128, in place (one 8x8 block, row stride s).
template <class T>
void roundtrip_block(const Dct<T>& d, const T* q, T* blk, int s) {
  T a[8][8], c[8][8];
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x) a[y][x] = blk[y * s + x] - T(128);
  for (int u = 0; u < 8; ++u)  // c = D a
    for (int x = 0; x < 8; ++x) {
      T acc = T(0);
      for (int y = 0; y < 8; ++y) acc += d.m[u][y] * a[y][x];
      c[u][x] = acc;
    }
  for (int u = 0; u < 8; ++u)  // a = c D^T, quantised
    for (int v = 0; v < 8; ++v) {
      T acc = T(0);
      for (int x = 0; x < 8; ++x) acc += c[u][x] * d.m[v][x];
      a[u][v] = std::nearbyint(acc / q[u * 8 + v]) * q[u * 8 + v];
    }
  for (int y = 0; y < 8; ++y)  // c = D^T a
    for (int v = 0; v < 8; ++v) {
      T acc = T(0);
      for (int u = 0; u < 8; ++u) acc += d.m[u][y] * a[u][v];
      c[y][v] = acc;
    }
  for (int y = 0; y < 8; ++y)  // blk = c D + 128
    for (int x = 0; x < 8; ++x) {
      T acc = T(0);
      for (int v = 0; v < 8; ++v) acc += c[y][v] * d.m[v][x];
      blk[y * s + x] = acc + T(128);
    }
}

template <class T>
void mcu(const JpegArgs& a, const Dct<T>& d, int64_t b, int64_t y0, int64_t x0) {
  const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
  const T* luma_q = static_cast<const T*>(a.tables) + b * 128;
  const T* chroma_q = luma_q + 64;
  T rgb[3][16][16], ycc[3][16][16], chroma[2][8][8];
  const View4& x = a.x;
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 16; ++i) {
      const int64_t row = std::min(y0 + i, h - 1);
      const int64_t base = b * x.stride[0] + c * x.stride[1] + row * x.stride[2];
      for (int j = 0; j < 16; ++j) {
        const int64_t col = std::min(x0 + j, w - 1);
        rgb[c][i][j] = load_as<T>(x.data, base + col * x.stride[3], x.dtype) * T(255);
      }
    }
  for (int o = 0; o < 3; ++o)
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 16; ++j)
        ycc[o][i][j] = T(kRgbToYcc[o][0]) * rgb[0][i][j] + T(kRgbToYcc[o][1]) * rgb[1][i][j] +
                       T(kRgbToYcc[o][2]) * rgb[2][i][j];
  // Chroma: 2x2 means around 128 (the offset is added and removed as the reference does, so the
  // two round identically), one 8x8 block each.
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
  const int64_t rows = std::min<int64_t>(16, h - y0), cols = std::min<int64_t>(16, w - x0);
  const View4& out = a.out;
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) {
      const T yv = ycc[0][i][j];
      const T cb = chroma[0][i / 2][j / 2] - T(128), cr = chroma[1][i / 2][j / 2] - T(128);
      for (int o = 0; o < 3; ++o) {
        const T v = T(kYccToRgb[o][0]) * yv + T(kYccToRgb[o][1]) * cb + T(kYccToRgb[o][2]) * cr;
        const T clamped = std::min(std::max(v, T(0)), T(255));
        const int64_t yy = y0 + i, xx = x0 + j;
        store_as<T>(out.data,
                    b * out.stride[0] + o * out.stride[1] + yy * out.stride[2] + xx * out.stride[3],
                    out.dtype, clamped / T(255));
        if (a.pass != nullptr)
          a.pass[((b * 3 + o) * a.H + yy) * a.W + xx] = (v >= T(0) && v <= T(255)) ? 1 : 0;
      }
    }
}

template <class T>
void fwd_impl(const JpegArgs& a, int threads) {
  const Dct<T> d;
  const int64_t mcu_rows = (a.H + 15) / 16;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t task = 0; task < a.B * mcu_rows; ++task) {
    const int64_t b = task / mcu_rows, y0 = (task % mcu_rows) * 16;
    const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
    if (y0 >= h) continue;
    for (int64_t x0 = 0; x0 < w; x0 += 16) mcu<T>(a, d, b, y0, x0);
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
