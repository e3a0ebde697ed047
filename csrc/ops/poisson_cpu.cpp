// Poisson sampling by inversion against precomputed CDF tables: the shot noise of the degradation,
// whose rates take few distinct values (an 8-bit level times a per-sample power of two). Element e
// draws u = counter_uniform(key, offset + e) and returns the smallest k with cdf[k] > u, found by a
// short walk from a guide table (ebir/poisson_guide.h).
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "ebir/counter_rng.h"
#include "ebir/cpu_rows.h"
#include "ebir/poisson.h"
#include "ebir/poisson_guide.h"

namespace ebir {

void poisson_levels_cpu(const PoissonArgs& a, int num_threads) {
  if (a.length < 1) throw std::invalid_argument("poisson: table length must be >= 1");
  const uint64_t key = stream_key(a.seed);
  const int64_t per_sample = a.numel / a.batch;
  int64_t tables = 0;
  for (int64_t b = 0; b < a.batch; ++b) tables = std::max(tables, a.table_of_sample[b] + 1);
  std::vector<bool> used(size_t(tables), false);
  for (int64_t b = 0; b < a.batch; ++b) used[size_t(a.table_of_sample[b])] = true;
  const int threads = cpu::resolve_threads(num_threads);
  const std::vector<int32_t> guide = poisson_guide(a.cdf, used, a.length, threads);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t e = 0; e < a.numel; ++e) {
    const int64_t row = a.table_of_sample[e / per_sample] * 256 + int(a.levels[e]);
    const double u = counter_uniform(key, a.offset + uint64_t(e));
    a.counts[e] = float(
        poisson_invert(a.cdf + row * a.length, guide.data() + row * kPoissonGuide, a.length, u));
  }
}

void level_histogram_cpu(const float* levels, const int64_t* sizes, int64_t B, int64_t C,
                         int64_t H, int64_t W, int64_t* hist, int num_threads) {
  const int threads = cpu::resolve_threads(num_threads);
  std::fill(hist, hist + B * 256, int64_t(0));
#pragma omp parallel num_threads(threads)
  {
    std::vector<int64_t> local(size_t(B * 256), 0);
#pragma omp for schedule(static) nowait
    for (int64_t plane = 0; plane < B * C; ++plane) {
      const int64_t b = plane / C, h = sizes[2 * b], w = sizes[2 * b + 1];
      int64_t* hb = local.data() + b * 256;
      for (int64_t y = 0; y < h; ++y) {
        const float* row = levels + (plane * H + y) * W;
        for (int64_t x = 0; x < w; ++x) ++hb[std::min(std::max(int(row[x]), 0), 255)];
      }
    }
#pragma omp critical
    for (int64_t i = 0; i < B * 256; ++i) hist[i] += local[size_t(i)];
  }
}

}  // namespace ebir
