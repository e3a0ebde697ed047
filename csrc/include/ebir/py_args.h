// Conversions from the Python-side argument tuples to the kernels' argument structs, shared by the
// CPU and CUDA bindings. A view arrives as (data_ptr, dtype_code, (s0, s1, s2, s3)); a missing
// optional view as data_ptr == 0.
#pragma once

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <tuple>

#include "ebir/blur.h"
#include "ebir/filter2d.h"
#include "ebir/jpeg.h"
#include "ebir/noise.h"

namespace ebir {

using PyView = std::tuple<uintptr_t, int, std::array<int64_t, 4>>;
using PyShape = std::tuple<int64_t, int64_t, int64_t, int64_t, int>;  // B, C, H, W, radius

inline View4 to_view(const PyView& v) {
  View4 out;
  out.data = reinterpret_cast<void*>(std::get<0>(v));
  out.dtype = std::get<1>(v);
  for (int i = 0; i < 4; ++i) out.stride[i] = std::get<2>(v)[i];
  return out;
}

inline BlurShape to_shape(const PyShape& s) {
  BlurShape out;
  out.B = std::get<0>(s);
  out.C = std::get<1>(s);
  out.H = std::get<2>(s);
  out.W = std::get<3>(s);
  out.radius = std::get<4>(s);
  return out;
}

inline BlurFwdArgs fwd_args(const PyShape& shape, const PyView& x, const PyView& y, uintptr_t taps,
                            const PyView& out, uintptr_t sumsq) {
  BlurFwdArgs a;
  a.shape = to_shape(shape);
  a.x = to_view(x);
  a.y = to_view(y);
  a.taps = reinterpret_cast<const void*>(taps);
  a.out = to_view(out);
  a.sumsq = reinterpret_cast<void*>(sumsq);
  return a;
}

inline BlurBwdArgs bwd_args(const PyShape& shape, const PyView& grad, uintptr_t taps,
                            uintptr_t scale, const PyView& out_x, const PyView& out_y) {
  BlurBwdArgs a;
  a.shape = to_shape(shape);
  a.grad = to_view(grad);
  a.taps = reinterpret_cast<const void*>(taps);
  a.scale = reinterpret_cast<const void*>(scale);
  a.out_x = to_view(out_x);
  a.out_y = to_view(out_y);
  return a;
}

using F2dShape = std::tuple<int64_t, int64_t, int64_t, int64_t, int, int>;  // B, C, H, W, K, acc

inline Filter2dArgs filter2d_args(const F2dShape& s, uintptr_t kernels, uintptr_t sizes,
                                  const PyView& x, const PyView& out) {
  Filter2dArgs a;
  std::tie(a.B, a.C, a.H, a.W, a.K, a.acc) = s;
  a.kernels = reinterpret_cast<const void*>(kernels);
  a.sizes = reinterpret_cast<const int64_t*>(sizes);
  a.x = to_view(x);
  a.out = to_view(out);
  return a;
}

using JpegShape = std::tuple<int64_t, int64_t, int64_t, int>;  // B, H, W, acc

inline JpegArgs jpeg_args(const JpegShape& s, uintptr_t tables, uintptr_t sizes, const PyView& x,
                          const PyView& out, uintptr_t pass, uintptr_t dct) {
  JpegArgs a;
  std::tie(a.B, a.H, a.W, a.acc) = s;
  a.tables = reinterpret_cast<const void*>(tables);
  a.sizes = reinterpret_cast<const int64_t*>(sizes);
  a.x = to_view(x);
  a.out = to_view(out);
  a.pass = reinterpret_cast<uint8_t*>(pass);
  a.dct = reinterpret_cast<const void*>(dct);
  return a;
}

// (B, C, H, W, sizes, kind, gray, sigma, scale, vals, table_of_sample, cdf, length, seed_gauss,
// seed_poisson): the pointers of ebir::NoiseArgs.
using NoiseTuple = std::tuple<int64_t, int64_t, int64_t, int64_t, uintptr_t, uintptr_t, uintptr_t,
                              uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t, int64_t,
                              uint64_t, uint64_t>;

inline NoiseArgs noise_args(const NoiseTuple& t) {
  NoiseArgs a;
  a.B = std::get<0>(t);
  a.C = std::get<1>(t);
  a.H = std::get<2>(t);
  a.W = std::get<3>(t);
  a.sizes = reinterpret_cast<const int64_t*>(std::get<4>(t));
  a.kind = reinterpret_cast<const int32_t*>(std::get<5>(t));
  a.gray = reinterpret_cast<const uint8_t*>(std::get<6>(t));
  a.sigma = reinterpret_cast<const double*>(std::get<7>(t));
  a.scale = reinterpret_cast<const double*>(std::get<8>(t));
  a.vals = reinterpret_cast<const double*>(std::get<9>(t));
  a.table_of_sample = reinterpret_cast<const int64_t*>(std::get<10>(t));
  a.cdf = reinterpret_cast<const double*>(std::get<11>(t));
  a.length = std::get<12>(t);
  a.seed_gauss = std::get<13>(t);
  a.seed_poisson = std::get<14>(t);
  return a;
}

}  // namespace ebir
