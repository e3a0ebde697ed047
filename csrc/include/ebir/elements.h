// Host+device arithmetic shared by every CUDA kernel and its CPU emulation.
//
// Rounding: every product is an explicit mul_rn or fma_rn. nvcc contracts a * b + c into an fma by
// default, host compilers only when the target ISA has one, so leaving the choice to the compilers
// would make the emulation and the GPU round differently.
#pragma once

#include <cmath>
#include <cstdint>

#include "ebir/common.h"
#include "ebir/view.h"

namespace ebir {

EBIR_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

EBIR_HD double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

EBIR_HD float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

EBIR_HD double fma_rn(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

// reflect(p, n) with the interior first: most taps then skip reflect's 64-bit modulo, which costs
// dozens of instructions on a GPU.
EBIR_HD int64_t mirror(int64_t p, int64_t n) { return (p >= 0 && p < n) ? p : reflect(p, n); }

EBIR_HD int64_t offset(const View4& v, int64_t b, int64_t c, int64_t h, int64_t w) {
  return b * v.stride[0] + c * v.stride[1] + h * v.stride[2] + w * v.stride[3];
}

// visit(p) for the preimages p in [-R, n + R) of i under the mirror border, ascending (common.h).
template <class F>
EBIR_HD void for_each_preimage(int64_t i, int64_t n, int R, const F& visit) {
  const Preimages pre = preimages(i, n, R);
  for (int64_t k = pre.k_lo; k <= pre.k_hi; ++k) {
    const int64_t pa = pre.a + k * pre.period;
    if (pa >= pre.lo && pa < pre.hi) visit(pa);
    const int64_t pb = pre.b + k * pre.period;
    if (pre.b >= 0 && pb >= pre.lo && pb < pre.hi) visit(pb);
  }
}

}  // namespace ebir
