// The standard normal quantile (inverse CDF) by Wichura's algorithm AS 241 (PPND16, Applied
// Statistics 37, 1988): rational approximations accurate to about 1e-16, with a logarithm and a
// square root only in the outer 15% of the range. Turning one counter-based uniform into one normal
// this way is cheaper than Box-Muller's log + sincos per pair and keeps element e a function of
// uniform e alone. ebir_fast/ops/reference.py evaluates the same polynomials in the same order.
#pragma once

#include <cmath>

#include "ebir/common.h"
#include "ebir/elements.h"

namespace ebir {

#if !defined(__CUDACC__)
// Four doubles in vector registers: the CPU kernel evaluates the polynomials below on them (its
// file is compiled without FMA contraction, so a * b rounds as mul_rn does).
typedef double F64x4 __attribute__((vector_size(32)));
inline F64x4 mul_rn(F64x4 a, F64x4 b) { return a * b; }
#endif

namespace as241 {

// sum_k c[k] r^k by Horner's rule from the highest power; mul_rn keeps nvcc from fusing the
// steps into FMAs, so every backend rounds as the reference does. V is double, or F64x4 on the
// CPU (the same operations lane by lane).
template <class V>
EBIR_HD V horner(const double* c, V r) {
  V v = c[7] + V{};  // c[7] in every lane (exactly: adding 0 to a non-zero value)
  for (int k = 6; k >= 0; --k) v = mul_rn(v, r) + c[k];
  return v;
}
}  // namespace as241

// The quantile for |p - 0.5| <= 0.425 (85% of draws), from q = p - 0.5: a rational function with no
// transcendental call, which the CPU kernel evaluates over a whole row in vector registers.
EBIR_HD double normal_quantile_central(double q) {
  // Coefficients as locals: namespace-scope arrays are host-only in CUDA.
  const double a[8] = {3.3871328727963666080e0,  1.3314166789178437745e+2,
                       1.9715909503065514427e+3, 1.3731693765509461125e+4,
                       4.5921953931549871457e+4, 6.7265770927008700853e+4,
                       3.3430575583588128105e+4, 2.5090809287301226727e+3};
  const double b[8] = {1.0,
                       4.2313330701600911252e+1, 6.8718700749205790830e+2,
                       5.3941960214247511077e+3, 2.1213794301586595867e+4,
                       3.9307895800092710610e+4, 2.8729085735721942674e+4,
                       5.2264952788528545610e+3};
  const double r = 0.180625 - mul_rn(q, q);
  return mul_rn(q, as241::horner(a, r)) / as241::horner(b, r);
}

// The tail's rational function of r = sqrt(-log(min(p, 1 - p))) for r <= 5 (every p above
// ~1e-11), generic in V (double, or F64x4 for the CPU kernel's vectors).
template <class V>
EBIR_HD V normal_quantile_tail_near(V r) {
  const double c[8] = {1.42343711074968357734e0,  4.63033784615654529590e0,
                       5.76949722146069140550e0,  3.64784832476320460504e0,
                       1.27045825245236838258e0,  2.41780725177450611770e-1,
                       2.27238449892691845833e-2, 7.74545014278341407640e-4};
  const double d[8] = {1.0,
                       2.05319162663775882187e0,  1.67638483018380384940e0,
                       6.89767334985100004550e-1, 1.48103976427480074590e-1,
                       1.51986665636164571966e-2, 5.47593808499534494600e-4,
                       1.05075007164441684324e-9};
  r = r - 1.6;
  return as241::horner(c, r) / as241::horner(d, r);
}

// The quantile for |p - 0.5| > 0.425. The logarithm of the device and of the host's libm may
// differ in the last bit.
EBIR_HD double normal_quantile_tail(double p) {
  const double e[8] = {6.65790464350110377720e0,  5.46378491116411436990e0,
                       1.78482653991729133580e0,  2.96560571828504891230e-1,
                       2.65321895265761230930e-2, 1.24266094738807843860e-3,
                       2.71155556874348757815e-5, 2.01033439929228813265e-7};
  const double f[8] = {1.0,
                       5.99832206555887937690e-1, 1.36929880922735805310e-1,
                       1.48753612908506148525e-2, 7.86869131145613259100e-4,
                       1.84631831751005468180e-5, 1.42151175831644588870e-7,
                       2.04426310338993978564e-15};
  const double q = p - 0.5;
  double r = std::sqrt(-std::log(q < 0 ? p : 1.0 - p));
  double v;
  if (r <= 5.0) {
    v = normal_quantile_tail_near(r);
  } else {
    r = r - 5.0;
    v = as241::horner(e, r) / as241::horner(f, r);
  }
  return q < 0 ? -v : v;
}

// The z with Phi(z) = p, for p in (0, 1).
EBIR_HD double normal_quantile(double p) {
  const double q = p - 0.5;
  return std::fabs(q) <= 0.425 ? normal_quantile_central(q) : normal_quantile_tail(p);
}

}  // namespace ebir
