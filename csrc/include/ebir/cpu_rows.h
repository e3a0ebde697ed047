// CPU-kernel building blocks shared by the ops: ISA clones, 32- and 64-byte vector helpers,
// strided row loads and stores with the dtype switch hoisted out of the loop, and the OpenMP
// thread count.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "ebir/common.h"
#include "ebir/view.h"

#if defined(EBIR_HAVE_OPENMP)
#include <omp.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(EBIR_NO_CLONES)
#define EBIR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define EBIR_CLONES
#endif

#if defined(__GNUC__) || defined(__clang__)
#define EBIR_INLINE inline __attribute__((always_inline))
#else
#define EBIR_INLINE inline
#endif

namespace ebir {
namespace cpu {

// GCC/Clang vector extensions, 32 bytes wide by default: one ymm op on AVX2 and under the AVX-512
// clone, two xmm ops on baseline x86-64, so one source serves every clone. Written explicitly
// because GCC turns the plain loops into a scalar unroll-and-jam over the taps. 64-byte vectors
// only inside EBIR_WIDE functions: in a clone without AVX-512, GCC lowers them through the stack
// (a scalar store per lane for every broadcast; 2.2 GFLOP/s instead of 42 per thread on a 21 x 21
// correlation). Reductions keep the 32-byte width everywhere, so their summation order, and so
// their results, are the same on every machine.
template <class T, int Bytes = 32>
struct VecOf {
  typedef T type __attribute__((vector_size(Bytes)));
  // Unaligned, aliasing view for loads and stores: a direct vector access, where memcpy is
  // expanded by GCC's generic tuning as 16-byte pieces bounced through the stack.
  typedef T unaligned __attribute__((vector_size(Bytes), aligned(sizeof(T)), may_alias));
};
template <class T, int Bytes = 32>
using Vec = typename VecOf<T, Bytes>::type;

template <class T, int Bytes = 32>
EBIR_INLINE Vec<T, Bytes> vload(const T* p) {
  return *reinterpret_cast<const typename VecOf<T, Bytes>::unaligned*>(p);
}

template <class T, int Bytes = 32>
EBIR_INLINE void vstore(T* p, Vec<T, Bytes> v) {
  *reinterpret_cast<typename VecOf<T, Bytes>::unaligned*>(p) = v;
}

// The first n < lanes elements at p as a vector, the other lanes zero (reads only those n), and
// the first n lanes of v stored to p. Row kernels finish their last columns with these, so every
// column goes through the same vector expression, with the same multiply-add contraction (FMA in
// the x86-64-v3/v4 builds), and so rounds the same whatever the vector width.
template <class T, int Bytes = 32>
EBIR_INLINE Vec<T, Bytes> vload_partial(const T* p, int64_t n) {
  T lanes[Bytes / sizeof(T)] = {};
  for (int64_t i = 0; i < n; ++i) lanes[i] = p[i];
  return vload<T, Bytes>(lanes);
}

template <class T, int Bytes = 32>
EBIR_INLINE void vstore_partial(T* p, Vec<T, Bytes> v, int64_t n) {
  T lanes[Bytes / sizeof(T)];
  vstore<T, Bytes>(lanes, v);
  for (int64_t i = 0; i < n; ++i) p[i] = lanes[i];
}

// EBIR_WIDE: a function compiled for x86-64-v4 only, where 64-byte vectors are single zmm ops;
// callers choose it at run time with wide_vectors(). For loops whose per-element results do not
// depend on the width (each output summed in its own fixed order), so both paths give the same
// bits: the 21 x 21 correlation runs 2.2x faster on AVX-512 this way.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(EBIR_NO_CLONES)
#define EBIR_HAVE_WIDE 1
#define EBIR_WIDE __attribute__((target("arch=x86-64-v4")))
#endif

// True where the EBIR_WIDE functions run: an AVX-512 (x86-64-v4) CPU, unless the environment
// sets EBIR_FAST_CPU_WIDE=0 (to compare both paths, or to avoid AVX-512 frequency drops).
inline bool wide_vectors() {
#if defined(EBIR_HAVE_WIDE)
  static const bool on = [] {
    __builtin_cpu_init();
    const char* env = std::getenv("EBIR_FAST_CPU_WIDE");
    return __builtin_cpu_supports("x86-64-v4") && !(env && env[0] == '0' && env[1] == 0);
  }();
  return on;
#else
  return false;
#endif
}

// min(max(v, lo), hi) lane by lane, NaN passing through as std::min / std::max pass it. Written
// out because GCC keeps std::min / std::max loops over floats scalar (their NaN rules).
template <class T>
EBIR_INLINE Vec<T> vclamp(Vec<T> v, T lo, T hi) {
  const Vec<T> l = lo + Vec<T>{}, u = hi + Vec<T>{};
  v = v < l ? l : v;
  return u < v ? u : v;
}

// out[j] = sum_{i < n_rows} w[i] rows[i][j], summed in i order: a vertical filter pass (each .cpp
// that uses it wraps it in its own EBIR_CLONES function).
template <class T, int Bytes = 32>
EBIR_INLINE void combine_rows_impl(const T* const* rows, const T* w, int n_rows, int64_t n, T* out) {
  constexpr int L = int(Bytes / sizeof(T));
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    Vec<T, Bytes> acc = {};
    for (int i = 0; i < n_rows; ++i) acc += w[i] * vload<T, Bytes>(rows[i] + j);
    vstore<T, Bytes>(out + j, acc);
  }
  if (j < n) {
    Vec<T, Bytes> acc = {};
    for (int i = 0; i < n_rows; ++i) acc += w[i] * vload_partial<T, Bytes>(rows[i] + j, n - j);
    vstore_partial<T, Bytes>(out + j, acc, n - j);
  }
}

// nearbyint in vector registers: adding and removing 1.5 * 2^(mantissa bits) rounds any |v| below
// 2^22 (2^51) to the nearest integer, ties to even, as nearbyint does in the default rounding mode
// (DCT coefficients, 8-bit levels). NaN stays NaN.
template <class T>
EBIR_INLINE Vec<T> round_even(Vec<T> v) {
  const T magic = sizeof(T) == 4 ? T(12582912.0) : T(6755399441055744.0);
  return (v + magic) - magic;
}

// ---- strided row access ---------------------------------------------------------------------------

inline int64_t row_offset(const View4& v, int64_t b, int64_t c, int64_t h) {
  return b * v.stride[0] + c * v.stride[1] + h * v.stride[2];
}

// Row loops with the dtype switch hoisted out and a unit-stride branch the compiler can vectorise.
template <class F>
EBIR_INLINE void for_each_strided(int64_t n, int64_t stride, F&& f) {
  if (stride == 1)
    for (int64_t j = 0; j < n; ++j) f(j, j);
  else
    for (int64_t j = 0; j < n; ++j) f(j, j * stride);
}

// The DType of an accumulation type (float or double).
template <class T>
constexpr int dtype_of() {
  return sizeof(T) == 8 ? kF64 : kF32;
}

// dst[j] = x[b, c, h, j] (op) src[j] in the accumulation type; op is "=" or "-=".
template <class T, bool Subtract>
void load_row_op(const View4& v, int64_t b, int64_t c, int64_t h, int64_t n, T* dst) {
  const int64_t o = row_offset(v, b, c, h), s = v.stride[3];
  // A contiguous row of the accumulation type is a plain copy: libc's memcpy picks the CPU's
  // widest moves, where this template (compiled for baseline x86-64 where it is not inlined)
  // copied 16 bytes at a time; the row loads were 10% of a degradation pipeline's time.
  if (!Subtract && s == 1 && v.dtype == dtype_of<T>()) {
    std::memcpy(dst, static_cast<const T*>(v.data) + o, size_t(n) * sizeof(T));
    return;
  }
  auto apply = [&](const auto* p, auto to_acc) {
    for_each_strided(n, s, [&](int64_t j, int64_t k) {
      if (Subtract)
        dst[j] -= to_acc(p[k]);
      else
        dst[j] = to_acc(p[k]);
    });
  };
  switch (v.dtype) {
    case kF32: apply(static_cast<const float*>(v.data) + o, [](float u) { return T(u); }); break;
    case kF64: apply(static_cast<const double*>(v.data) + o, [](double u) { return T(u); }); break;
    case kF16:
      apply(static_cast<const uint16_t*>(v.data) + o, [](uint16_t u) { return T(half_to_float(u)); });
      break;
    default:
      apply(static_cast<const uint16_t*>(v.data) + o, [](uint16_t u) { return T(bf16_to_float(u)); });
      break;
  }
}

// dst[j] = x[b, c, h, j] - y[b, c, h, j] (y optional), in the accumulation type.
template <class T>
void load_row(const View4& x, const View4* y, int64_t b, int64_t c, int64_t h, int64_t n, T* dst) {
  load_row_op<T, false>(x, b, c, h, n, dst);
  if (y != nullptr) load_row_op<T, true>(*y, b, c, h, n, dst);
}

// out[b, c, h, :] = scale * src (negated when `negate`), rounded once to out's dtype.
// -(scale * v) == (-scale) * v exactly in IEEE arithmetic, so the negation is folded into the scale.
template <class T>
void store_row(const View4& out, int64_t b, int64_t c, int64_t h, int64_t n, const T* src,
               T scale, bool negate) {
  const int64_t o = row_offset(out, b, c, h), s = out.stride[3];
  const T k = negate ? -scale : scale;
  if (k == T(1) && s == 1 && out.dtype == dtype_of<T>()) {  // a plain copy (see load_row_op)
    std::memcpy(static_cast<T*>(out.data) + o, src, size_t(n) * sizeof(T));
    return;
  }
  auto apply = [&](auto* p, auto from_acc) {
    if (k == T(1))
      for_each_strided(n, s, [&](int64_t j, int64_t q) { p[q] = from_acc(src[j]); });
    else
      for_each_strided(n, s, [&](int64_t j, int64_t q) { p[q] = from_acc(k * src[j]); });
  };
  switch (out.dtype) {
    case kF32: apply(static_cast<float*>(out.data) + o, [](T v) { return float(v); }); break;
    case kF64: apply(static_cast<double*>(out.data) + o, [](T v) { return double(v); }); break;
    case kF16:
      apply(static_cast<uint16_t*>(out.data) + o, [](T v) { return float_to_half(float(v)); });
      break;
    default:
      apply(static_cast<uint16_t*>(out.data) + o, [](T v) { return float_to_bf16(float(v)); });
      break;
  }
}

inline int resolve_threads(int num_threads) {
#if defined(EBIR_HAVE_OPENMP)
  return num_threads > 0 ? num_threads : omp_get_max_threads();
#else
  (void)num_threads;
  return 1;
#endif
}

}  // namespace cpu
}  // namespace ebir
