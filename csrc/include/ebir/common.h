// Shared by the CPU and CUDA kernels: dtype codes, scalar conversions, the mirror border and the
// enumeration of its preimages. Everything here is `EBIR_HD` so both compilers see one definition
// and the two backends index and round identically.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define EBIR_HD __host__ __device__ __forceinline__
#else
#define EBIR_HD inline
#endif

namespace ebir {

// Element types, as passed from Python (ebir_fast/_ext.py keeps the same table).
enum DType : int { kF32 = 0, kF64 = 1, kF16 = 2, kBF16 = 3 };

inline const char* dtype_name(int d) {
  switch (d) {
    case kF32: return "float32";
    case kF64: return "float64";
    case kF16: return "float16";
    case kBF16: return "bfloat16";
    default: return "unknown";
  }
}

inline int dtype_size(int d) { return d == kF64 ? 8 : (d == kF32 ? 4 : 2); }

// ---- scalar conversions (bit exact, round to nearest even, like torch's casts) -------------------

EBIR_HD float bits_to_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

EBIR_HD uint32_t float_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

EBIR_HD float bf16_to_float(uint16_t h) { return bits_to_float(uint32_t(h) << 16); }

EBIR_HD uint16_t float_to_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return uint16_t(u >> 16);
}

EBIR_HD float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) return bits_to_float(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in float.
    const float f = float(mant) * 5.9604644775390625e-8f;
    return sign ? -f : f;
  }
  return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

EBIR_HD uint16_t float_to_half(float f) {
  const uint32_t u = float_to_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (a < 0x38800000u) {
    // Result is subnormal or zero: scale so the half ulp (2^-24) becomes 1 and round to even.
    if (a < 0x33000000u) return sign;  // below half of the smallest subnormal
    const uint32_t e = a >> 23;          // 102 .. 112
    const uint32_t m = (a & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;     // 14 .. 24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return uint16_t(sign | r);
  }
  // Normal: rebias the exponent and round the 13 dropped mantissa bits to even (carry may bump the
  // exponent, which is the correct result).
  uint32_t r = a - 0x38000000u;
  r += 0xfffu + ((r >> 13) & 1u);
  return uint16_t(sign | (r >> 13));
}

template <class T>
EBIR_HD T load_as(const void* p, int64_t i, int dtype) {
  switch (dtype) {
    case kF32: return T(static_cast<const float*>(p)[i]);
    case kF64: return T(static_cast<const double*>(p)[i]);
    case kF16: return T(half_to_float(static_cast<const uint16_t*>(p)[i]));
    default: return T(bf16_to_float(static_cast<const uint16_t*>(p)[i]));
  }
}

template <class T>
EBIR_HD void store_as(void* p, int64_t i, int dtype, T v) {
  switch (dtype) {
    case kF32: static_cast<float*>(p)[i] = float(v); break;
    case kF64: static_cast<double*>(p)[i] = double(v); break;
    case kF16: static_cast<uint16_t*>(p)[i] = float_to_half(float(v)); break;
    default: static_cast<uint16_t*>(p)[i] = float_to_bf16(float(v)); break;
  }
}

// ---- the mirror border ----------------------------------------------------------------------------
// reflect(p, n): the index that a reflect-padded signal of length n shows at position p, reflecting
// about the first and last samples without repeating them (torch's and kornia's "reflect",
// scipy.ndimage's "mirror"). It is periodic with period 2 (n - 1), so it is defined for any p and any
// n >= 1, also when the padding is wider than the signal (torch refuses that case; we keep
// reflecting). n == 1 maps everything to 0.
EBIR_HD int64_t reflect(int64_t p, int64_t n) {
  if (n == 1) return 0;
  const int64_t period = 2 * (n - 1);
  int64_t q = p % period;
  if (q < 0) q += period;
  return q < n ? q : period - q;
}

// The adjoint of reflect padding adds the value at every padded position p in [-R, n + R) to
// reflect(p, n). The gathers that implement it enumerate, for an output index i, the preimages
// {p in [-R, n + R) : reflect(p, n) == i} in ascending order, so every backend sums them in the same
// order. Within one period the preimages of i are a = i and, for 0 < i < n - 1, b = 2 (n - 1) - i > a;
// all others are a + k P and b + k P. Ascending order is therefore: for k ascending, a + kP, b + kP.
struct Preimages {
  int64_t a, b, period;  // b < 0 means "no second family"
  int64_t k_lo, k_hi;    // k range that can land in [-R, n + R)
  int64_t lo, hi;        // the padded range [lo, hi) = [-R, n + R)
};

EBIR_HD Preimages preimages(int64_t i, int64_t n, int64_t R) {
  Preimages s;
  s.period = n == 1 ? 1 : 2 * (n - 1);
  s.a = i;
  s.b = (i > 0 && i < n - 1) ? s.period - i : -1;
  s.lo = -R;
  s.hi = n + R;
  // Conservative k bounds; out-of-range candidates are skipped by the caller's range test.
  s.k_lo = -(R / s.period) - 1;
  s.k_hi = (n + R) / s.period + 1;
  return s;
}

// Padded positions whose reflection is an interior index have exactly one preimage (themselves):
// true for R < i < n - 1 - R, and always for i == 0 and i == n - 1 when n > R + 1.
EBIR_HD bool single_preimage(int64_t i, int64_t n, int64_t R) {
  if (n <= R + 1) return false;
  return (i == 0 || i > R) && (i == n - 1 || i < n - 1 - R);
}

}  // namespace ebir
