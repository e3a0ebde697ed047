// The CUDA noise kernel of noise.cu run serially on the CPU: the same element functions
// (noise_elements.h) with the kernel's binary CDF search, for tests. Compiled without FMA
// contraction, like the CPU kernel.
#include "ebir/noise.h"
#include "ebir/noise_elements.h"

namespace ebir {
namespace {

template <class T>
void run(const NoiseArgs& a) {
  const uint64_t key_g = stream_key(a.seed_gauss), key_p = stream_key(a.seed_poisson);
  auto search = [&](const double* row, int64_t, double u) { return cdf_search(row, a.length, u); };
  for (int64_t b = 0; b < a.B; ++b)
    for (int64_t c = 0; c < a.C; ++c)
      for (int64_t y = 0; y < a.H; ++y)
        for (int64_t x = 0; x < a.W; ++x) {
          const bool inside = y < a.sizes[2 * b] && x < a.sizes[2 * b + 1];
          const T s = inside ? noise_sum<T>(a, key_g, key_p, b, c, y, x, search) : T(0);
          noise_store<T>(a, b, c, y, x, s, inside);
        }
}

}  // namespace

void add_noise_emulated(const NoiseArgs& a) {
  check_noise(a);
  if (a.x.dtype == kF64)
    run<double>(a);
  else
    run<float>(a);
}

}  // namespace ebir
