// What the CUDA blur kernels (ops/blur.cu) and their CPU emulation (ops/blur_emulate.cpp) share:
// the launch geometry, the workspace layout, the argument checks and, above all, the arithmetic of
// every output element as host+device functions. The kernels only map blocks and threads to
// elements and call these; the emulation calls the very same functions serially, so the GPU's
// arithmetic is tested on machines without a GPU.
//
// Each direction is two passes through an intermediate [B*C, H, W] buffer `tmp` of
// accumulation-type values held in the workspace, one thread per element:
//   forward:  fwd_vertical    tmp = V (x - y)     then  fwd_horizontal  out = H tmp
//   backward: bwd_horizontal  tmp = H^T grad      then  bwd_vertical    out_x = scale V^T tmp
// The forward's sum of squares is reduced deterministically: a fixed tree per block gives one
// partial per block (also in the workspace), then a fixed-order sum of each sample's partials.
//
// Rounding: every product is an explicit mul_rn or fma_rn. nvcc contracts a * b + c into an fma by
// default, host compilers only when the target ISA has one, so leaving the choice to the compilers
// would make the emulation and the GPU round differently.
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "ebir/blur.h"
#include "ebir/common.h"
#include "ebir/elements.h"

namespace ebir {

// ---- launch geometry ----------------------------------------------------------------------------
// A block is a kTileW x kTileH tile of one plane; its thread t covers column t % kTileW and row
// t / kTileW of the tile, so each warp reads kTileW consecutive columns. Grid x enumerates the
// tiles of a plane, grid z the planes (folded into grid y beyond kMaxGridYZ planes).
constexpr int kTileW = 32;
constexpr int kTileH = 8;
constexpr int kBlockThreads = kTileW * kTileH;
constexpr int64_t kMaxGridX = 2147483647;
constexpr int64_t kMaxGridYZ = 65535;

struct Index4 {
  int64_t b, c, h, w;
};

struct Tiling {
  int64_t planes;   // B * C
  int64_t tiles_x;  // tiles across W
  int64_t tiles;    // tiles per plane
};

inline Tiling tiling(const BlurShape& s) {
  const int64_t tiles_x = (s.W + kTileW - 1) / kTileW, tiles_y = (s.H + kTileH - 1) / kTileH;
  return {s.B * s.C, tiles_x, tiles_x * tiles_y};
}

// The element of thread t in the block of (plane, tile), or false where the tile overhangs the
// plane. The divisions are 32-bit (64-bit ones are slow on GPUs): check_shape bounds both operands.
EBIR_HD bool tile_element(const BlurShape& s, const Tiling& g, int64_t plane, int64_t tile, int t,
                          Index4* e) {
  const uint32_t ty = uint32_t(tile) / uint32_t(g.tiles_x);
  const uint32_t tx = uint32_t(tile) - ty * uint32_t(g.tiles_x);
  const int64_t h = int64_t(ty) * kTileH + t / kTileW, w = int64_t(tx) * kTileW + t % kTileW;
  if (h >= s.H || w >= s.W) return false;
  const uint32_t b = uint32_t(plane) / uint32_t(s.C);
  *e = {int64_t(b), plane - int64_t(b) * s.C, h, w};
  return true;
}

// ---- workspace ----------------------------------------------------------------------------------
// [0, partials_offset): tmp, [B*C, H, W] accumulation-type values;
// [partials_offset, bytes): one accumulation-type partial sum of squares per forward block.
struct WorkspaceLayout {
  int64_t partials_offset, bytes;
};

constexpr int64_t kWorkspaceAlign = 256;

inline int64_t align_up(int64_t n) {
  return (n + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign;
}

inline WorkspaceLayout workspace_layout(const BlurShape& s, int acc_dtype) {
  const int64_t acc = dtype_size(acc_dtype);
  const Tiling g = tiling(s);
  const int64_t partials_offset = align_up(g.planes * s.H * s.W * acc);
  return {partials_offset, partials_offset + align_up(g.planes * g.tiles * acc)};
}

// ---- argument checks and the accumulation type (host only) --------------------------------------

inline void check_shape(const BlurShape& s, const char* fn) {
  if (s.B <= 0 || s.C <= 0 || s.H <= 0 || s.W <= 0)
    throw std::invalid_argument(std::string(fn) + ": every dimension must be positive");
  if (s.radius < 0) throw std::invalid_argument(std::string(fn) + ": radius must be >= 0");
  const Tiling g = tiling(s);
  // Grid x holds the tiles of a plane (and the samples in the final reduction), y and z the planes.
  if (g.tiles > kMaxGridX || s.B > kMaxGridX || g.planes > kMaxGridYZ * kMaxGridYZ)
    throw std::invalid_argument(std::string(fn) + ": image too large for the CUDA grid");
}

inline void check_dtype(int d, const char* fn, const char* what) {
  if (d < kF32 || d > kBF16)
    throw std::invalid_argument(std::string(fn) + ": unknown dtype code for " + what);
}

inline void check_acc_dtype(int d, const char* fn) {
  if (d != kF32 && d != kF64)
    throw std::invalid_argument(std::string(fn) + ": acc dtype must be float32 or float64");
}

inline void check_ptr(const void* p, const char* fn, const char* what) {
  if (p == nullptr) throw std::invalid_argument(std::string(fn) + ": " + what + " is null");
}

inline void check_fwd(const BlurFwdArgs& a, const void* workspace, const char* fn) {
  check_shape(a.shape, fn);
  check_ptr(a.x.data, fn, "x");
  check_ptr(a.out.data, fn, "out");
  check_ptr(a.taps, fn, "taps");
  check_ptr(workspace, fn, "workspace");
  check_dtype(a.x.dtype, fn, "x");
  check_dtype(a.out.dtype, fn, "out");
  if (a.y.data) check_dtype(a.y.dtype, fn, "y");
}

inline void check_bwd(const BlurBwdArgs& a, const void* workspace, const char* fn) {
  check_shape(a.shape, fn);
  check_ptr(a.grad.data, fn, "grad");
  check_ptr(a.out_x.data, fn, "out_x");
  check_ptr(a.taps, fn, "taps");
  check_ptr(workspace, fn, "workspace");
  check_dtype(a.grad.dtype, fn, "grad");
  check_dtype(a.out_x.dtype, fn, "out_x");
  if (a.out_y.data) check_dtype(a.out_y.dtype, fn, "out_y");
}

// The same choice as the CPU kernels: double when a float64 array is involved, float otherwise.
inline int acc_dtype_of(const BlurFwdArgs& a) { return a.x.dtype == kF64 ? kF64 : kF32; }
inline int acc_dtype_of(const BlurBwdArgs& a) {
  return (a.grad.dtype == kF64 || a.out_x.dtype == kF64) ? kF64 : kF32;
}

// ---- arithmetic ---------------------------------------------------------------------------------

// Index of (b, c, h, w) in tmp.
EBIR_HD int64_t tmp_index(const BlurShape& s, int64_t b, int64_t c, int64_t h, int64_t w) {
  return ((b * s.C + c) * s.H + h) * s.W + w;
}

// w[R] f(p) + sum_{t<R} w[t] (f(p - R + t) + f(p + R - t)), in this order (every backend's).
template <class T, class F>
EBIR_HD T correlate(const T* w, int R, int64_t p, const F& f) {
  T acc = mul_rn(w[R], f(p));
  for (int t = 0; t < R; ++t) acc = fma_rn(w[t], f(p - R + t) + f(p + R - t), acc);
  return acc;
}

// ---- the element passes -------------------------------------------------------------------------

// tmp[e] = (V (x - y))[e]; x - y is formed in T as it is loaded.
template <class T>
EBIR_HD void fwd_vertical(const BlurFwdArgs& a, T* tmp, const Index4& e) {
  const BlurShape& s = a.shape;
  const int64_t ox = offset(a.x, e.b, e.c, 0, e.w), oy = offset(a.y, e.b, e.c, 0, e.w);
  const auto diff = [&](int64_t p) {
    const int64_t h = mirror(p, s.H);
    T v = load_as<T>(a.x.data, ox + h * a.x.stride[2], a.x.dtype);
    if (a.y.data) v -= load_as<T>(a.y.data, oy + h * a.y.stride[2], a.y.dtype);
    return v;
  };
  tmp[tmp_index(s, e.b, e.c, e.h, e.w)] =
      correlate(static_cast<const T*>(a.taps), s.radius, e.h, diff);
}

// out[e] = (H tmp)[e], rounded to out's dtype; returns the value before rounding (for sumsq).
template <class T>
EBIR_HD T fwd_horizontal(const BlurFwdArgs& a, const T* tmp, const Index4& e) {
  const BlurShape& s = a.shape;
  const T* row = tmp + tmp_index(s, e.b, e.c, e.h, 0);
  const T v = correlate(static_cast<const T*>(a.taps), s.radius, e.w,
                        [&](int64_t p) { return row[mirror(p, s.W)]; });
  store_as<T>(a.out.data, offset(a.out, e.b, e.c, e.h, e.w), a.out.dtype, v);
  return v;
}

// tmp[e] = (H^T grad)[e]: the correlation z(p) of the zero-extended gradient row at every padded
// column p in [-R, W + R) that mirrors onto e.w, summed in ascending p (blur_cpu.cpp's hadj_row).
template <class T>
EBIR_HD void bwd_horizontal(const BlurBwdArgs& a, T* tmp, const Index4& e) {
  const BlurShape& s = a.shape;
  const T* w = static_cast<const T*>(a.taps);
  const int64_t og = offset(a.grad, e.b, e.c, e.h, 0);
  const auto g = [&](int64_t p) {
    return (p >= 0 && p < s.W) ? load_as<T>(a.grad.data, og + p * a.grad.stride[3], a.grad.dtype)
                               : T(0);
  };
  const auto z = [&](int64_t p) { return correlate(w, s.radius, p, g); };
  T acc = T(0);
  if (single_preimage(e.w, s.W, s.radius))
    acc = z(e.w);
  else
    for_each_preimage(e.w, s.W, s.radius, [&](int64_t p) { acc += z(p); });
  tmp[tmp_index(s, e.b, e.c, e.h, e.w)] = acc;
}

// out_x[e] = scale[b] (V^T tmp)[e] and out_y[e] = -out_x[e]: the same fold over the rows, with the
// rows of tmp outside [0, H) zero (blur_cpu.cpp's bwd_impl).
template <class T>
EBIR_HD void bwd_vertical(const BlurBwdArgs& a, const T* tmp, const Index4& e) {
  const BlurShape& s = a.shape;
  const T* w = static_cast<const T*>(a.taps);
  const T* col = tmp + tmp_index(s, e.b, e.c, 0, e.w);
  const auto u = [&](int64_t o) { return (o >= 0 && o < s.H) ? col[o * s.W] : T(0); };
  const auto z = [&](int64_t p) { return correlate(w, s.radius, p, u); };
  T acc = T(0);
  if (single_preimage(e.h, s.H, s.radius))
    acc = z(e.h);
  else
    for_each_preimage(e.h, s.H, s.radius, [&](int64_t p) { acc += z(p); });
  const T v = mul_rn(a.scale ? static_cast<const T*>(a.scale)[e.b] : T(1), acc);
  store_as<T>(a.out_x.data, offset(a.out_x, e.b, e.c, e.h, e.w), a.out_x.dtype, v);
  if (a.out_y.data)
    store_as<T>(a.out_y.data, offset(a.out_y, e.b, e.c, e.h, e.w), a.out_y.dtype, -v);
}

// ---- the sum of squares -------------------------------------------------------------------------
// A block's partial: vals[t] = the square of thread t's output (0 where the tile overhangs the
// plane), then for stride = kBlockThreads / 2, ..., 1 every t < stride runs tree_step; vals[0] is
// the sum. Sample b's total: vals[t] = partials_share(...) for every t, then the same tree.

template <class T>
EBIR_HD void tree_step(T* vals, int t, int stride) {
  if (t < stride) vals[t] += vals[t + stride];
}

// Thread t's share of a sample's n partials: every kBlockThreads-th one from t, summed in double
// (a 4K image has ~1e5 partials per sample: double keeps these serial sums accurate, at no real
// cost in a kernel this small).
template <class T>
EBIR_HD double partials_share(const T* partials, int64_t n, int t) {
  double acc = 0.0;
  for (int64_t k = t; k < n; k += kBlockThreads) acc += double(partials[k]);
  return acc;
}

}  // namespace ebir
