// out = round(clamp(x, 0, 1) * 255) / 255 in one pass (ebir_fast.ops.quantize_8bit): the final
// 8-bit rounding of the degradation pipelines. Rounding half to even, as torch.round.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "ebir/cpu_rows.h"
#include "ebir/quantize.h"

namespace ebir {
namespace {

using namespace cpu;

// round_even (cpu_rows.h) rounds ties to even as nearbyint does, in vector registers; the last
// partial vector calls nearbyint itself. The file is compiled without FMA contraction, so the
// product is rounded before the rounding step.
template <class T>
EBIR_INLINE void quantize_row_impl(T* v, int64_t n) {
  constexpr int64_t L = int64_t(sizeof(Vec<T>) / sizeof(T));
  int64_t j = 0;
  for (; j + L <= n; j += L)
    vstore(v + j, round_even<T>(vclamp<T>(vload(v + j), 0, 1) * T(255)) / T(255));
  for (; j < n; ++j) v[j] = std::nearbyint(std::min(std::max(v[j], T(0)), T(1)) * T(255)) / T(255);
}

EBIR_CLONES void quantize_row(float* v, int64_t n) { quantize_row_impl(v, n); }
EBIR_CLONES void quantize_row(double* v, int64_t n) { quantize_row_impl(v, n); }

template <class T>
void impl(const View4& x, const View4& out, const int64_t* shape, int threads) {
  const int64_t B = shape[0], C = shape[1], H = shape[2], W = shape[3];
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> row(static_cast<size_t>(W));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < B * C * H; ++r) {
      const int64_t y = r % H, c = (r / H) % C, b = r / (H * C);
      load_row_op<T, false>(x, b, c, y, W, row.data());
      quantize_row(row.data(), W);
      store_row(out, b, c, y, W, row.data(), T(1), false);
    }
  }
}

}  // namespace

void quantize_8bit_cpu(const View4& x, const View4& out, const int64_t* shape, int num_threads) {
  if (shape[0] < 1 || shape[1] < 1 || shape[2] < 1 || shape[3] < 1)
    throw std::invalid_argument("quantize_8bit: bad shape");
  const int threads = resolve_threads(num_threads);
  if (x.dtype == kF64)
    impl<double>(x, out, shape, threads);
  else
    impl<float>(x, out, shape, threads);
}

}  // namespace ebir
