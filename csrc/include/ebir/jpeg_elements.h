// What the CUDA JPEG kernel (ops/jpeg.cu) and its CPU emulation (ops/jpeg_emulate.cpp) share: the
// round trip of one 16x16 MCU as a host+device function, every product an explicit mul_rn or
// fma_rn and the DCT matrix read from the caller's table, so the emulation is the GPU's result
// bit for bit. Semantics: jpeg.h.
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "ebir/common.h"
#include "ebir/elements.h"
#include "ebir/jpeg.h"

namespace ebir {

// Shape and dtype (every backend); `need_dct`: the CUDA kernel and its emulation read the matrix.
inline void check_jpeg(const JpegArgs& a, bool need_dct = true) {
  if (a.B < 1 || a.H < 1 || a.W < 1)
    throw std::invalid_argument("jpeg: bad shape B=" + std::to_string(a.B) + " H=" +
                                std::to_string(a.H) + " W=" + std::to_string(a.W));
  if (a.acc != kF32 && a.acc != kF64)
    throw std::invalid_argument(std::string("jpeg: tables must be float32 or float64, got ") +
                                dtype_name(a.acc));
  if (need_dct && a.dct == nullptr) throw std::invalid_argument("jpeg: the DCT matrix is missing");
}

// blk <- D^T round(D (blk - 128) D^T / q) * q) D + 128 for one 8x8 block (row stride s).
template <class T>
EBIR_HD void jpeg_block(const T* d, const T* q, T* blk, int s) {
  T a[8][8], c[8][8];
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x) a[y][x] = blk[y * s + x] - T(128);
  for (int u = 0; u < 8; ++u)
    for (int x = 0; x < 8; ++x) {
      T acc = T(0);
      for (int y = 0; y < 8; ++y) acc = fma_rn(d[u * 8 + y], a[y][x], acc);
      c[u][x] = acc;
    }
  for (int u = 0; u < 8; ++u)
    for (int v = 0; v < 8; ++v) {
      T acc = T(0);
      for (int x = 0; x < 8; ++x) acc = fma_rn(c[u][x], d[v * 8 + x], acc);
      a[u][v] = mul_rn(T(nearbyint(acc / q[u * 8 + v])), q[u * 8 + v]);
    }
  for (int y = 0; y < 8; ++y)
    for (int v = 0; v < 8; ++v) {
      T acc = T(0);
      for (int u = 0; u < 8; ++u) acc = fma_rn(d[u * 8 + y], a[u][v], acc);
      c[y][v] = acc;
    }
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x) {
      T acc = T(0);
      for (int v = 0; v < 8; ++v) acc = fma_rn(c[y][v], d[v * 8 + x], acc);
      blk[y * s + x] = acc + T(128);
    }
}

// The round trip of the MCU at (y0, x0) of sample b: reads with edge replication at the extent,
// writes the pixels inside it (and the clamp mask when a.pass is set).
template <class T>
EBIR_HD void jpeg_mcu(const JpegArgs& a, int64_t b, int64_t y0, int64_t x0) {
  // jpeg.h's kRgbToYcc / kYccToRgb, as locals: namespace-scope arrays are host-only in CUDA.
  const double to_ycc[3][3] = {{0.299, 0.587, 0.114},
                               {-0.168735892, -0.331264108, 0.5},
                               {0.5, -0.418687589, -0.081312411}};
  const double to_rgb[3][2] = {{0.0, 1.402}, {-0.344136286, -0.714136286}, {1.772, 0.0}};
  const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
  const T* d = static_cast<const T*>(a.dct);
  const T* luma_q = static_cast<const T*>(a.tables) + b * 128;
  const T* chroma_q = luma_q + 64;
  T ycc[3][16][16], chroma[2][8][8];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      const int64_t row = y0 + i < h ? y0 + i : h - 1, col = x0 + j < w ? x0 + j : w - 1;
      T rgb[3];
      for (int c = 0; c < 3; ++c) {
        T v = load_as<T>(a.x.data, offset(a.x, b, c, row, col), a.x.dtype);
        v = v < T(0) ? T(0) : (v > T(1) ? T(1) : v);  // the encoder's input range
        rgb[c] = mul_rn(v, T(255));
      }
      for (int o = 0; o < 3; ++o)
        ycc[o][i][j] = fma_rn(T(to_ycc[o][2]), rgb[2],
                              fma_rn(T(to_ycc[o][1]), rgb[1], mul_rn(T(to_ycc[o][0]), rgb[0])));
    }
  for (int k = 0; k < 2; ++k) {
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j) {
        const T sum = (ycc[k + 1][2 * i][2 * j] + ycc[k + 1][2 * i][2 * j + 1]) +
                      (ycc[k + 1][2 * i + 1][2 * j] + ycc[k + 1][2 * i + 1][2 * j + 1]);
        chroma[k][i][j] = mul_rn(sum, T(0.25)) + T(128);
      }
    jpeg_block(d, chroma_q, &chroma[k][0][0], 8);
  }
  for (int by = 0; by < 2; ++by)
    for (int bx = 0; bx < 2; ++bx) jpeg_block(d, luma_q, &ycc[0][8 * by][8 * bx], 16);
  for (int i = 0; i < 16 && y0 + i < h; ++i)
    for (int j = 0; j < 16 && x0 + j < w; ++j) {
      const T yv = ycc[0][i][j];
      const T cb = chroma[0][i / 2][j / 2] - T(128), cr = chroma[1][i / 2][j / 2] - T(128);
      for (int o = 0; o < 3; ++o) {
        const T v = fma_rn(T(to_rgb[o][1]), cr, fma_rn(T(to_rgb[o][0]), cb, yv));
        const T clamped = v < T(0) ? T(0) : (v > T(255) ? T(255) : v);
        const int64_t yy = y0 + i, xx = x0 + j;
        store_as<T>(a.out.data, offset(a.out, b, o, yy, xx), a.out.dtype, clamped / T(255));
        if (a.pass != nullptr)
          a.pass[((b * 3 + o) * a.H + yy) * a.W + xx] = (v >= T(0) && v <= T(255)) ? 1 : 0;
      }
    }
}

}  // namespace ebir
