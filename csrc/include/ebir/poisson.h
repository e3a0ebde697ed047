// Poisson samples for rates indexed by (table, 8-bit level), by inversion (ops/poisson_cpu.cpp).
#pragma once

#include <cstdint>

namespace ebir {

struct PoissonArgs {
  int64_t numel = 0, batch = 1;           // elements, samples (numel is a multiple of batch)
  const float* levels = nullptr;          // [numel] integers 0..255 (as float), sample-major
  const int64_t* table_of_sample = nullptr;  // [batch] which table each sample uses
  const double* cdf = nullptr;            // [tables, 256, length] cumulative probabilities, last = 1
  int64_t length = 0;
  uint64_t seed = 0, offset = 0;
  float* counts = nullptr;                // [numel] written
};

void poisson_levels_cpu(const PoissonArgs& args, int num_threads);

// hist[b, l] = number of elements of sample b inside its extent (sizes[b] = (h, w)) with level l;
// levels: [B, C, H, W] contiguous float32 integers 0..255 (others are clamped into range).
void level_histogram_cpu(const float* levels, const int64_t* sizes, int64_t B, int64_t C,
                         int64_t H, int64_t W, int64_t* hist, int num_threads);

}  // namespace ebir
