// CUDA kernels of the fused noise (noise.h): a level histogram for the Poisson samples' vals
// (integer atomics, so its result does not depend on the order) and one thread per element running
// noise_sum / noise_store (noise_elements.h), the functions the CPU kernel and the emulation run.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "ebir/noise.h"
#include "ebir/noise_elements.h"

namespace ebir {
namespace {

constexpr int kNoiseBlock = 256;

__device__ bool element_of(const NoiseArgs& a, int64_t i, int64_t* b, int64_t* c, int64_t* y,
                           int64_t* x) {
  if (i >= a.B * a.C * a.H * a.W) return false;
  *x = i % a.W;
  *y = (i / a.W) % a.H;
  *c = (i / (a.W * a.H)) % a.C;
  *b = i / (a.W * a.H * a.C);
  return true;
}

template <class T>
__global__ void __launch_bounds__(kNoiseBlock) noise_kernel(const NoiseArgs a) {
  int64_t b, c, y, x;
  if (!element_of(a, int64_t(blockIdx.x) * kNoiseBlock + threadIdx.x, &b, &c, &y, &x)) return;
  const bool inside = y < a.sizes[2 * b] && x < a.sizes[2 * b + 1];
  auto search = [&](const double* row, int64_t, double u) { return cdf_search(row, a.length, u); };
  const T s = inside ? noise_sum<T>(a, stream_key(a.seed_gauss), stream_key(a.seed_poisson), b, c,
                                    y, x, search)
                     : T(0);
  noise_store<T>(a, b, c, y, x, s, inside);
}

__global__ void __launch_bounds__(kNoiseBlock)
    histogram_kernel(const NoiseArgs a, unsigned long long* hist) {
  int64_t b, c, y, x;
  if (!element_of(a, int64_t(blockIdx.x) * kNoiseBlock + threadIdx.x, &b, &c, &y, &x)) return;
  if (a.kind[b] != 2 || (a.gray[b] && c != 0)) return;
  if (y < a.sizes[2 * b] && x < a.sizes[2 * b + 1])
    atomicAdd(hist + b * 256 + noise_level(a, b, c, y, x), 1ull);
}

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

unsigned blocks(const NoiseArgs& a) {
  return unsigned((a.B * a.C * a.H * a.W + kNoiseBlock - 1) / kNoiseBlock);
}

}  // namespace

void add_noise_cuda(const NoiseArgs& a, void* stream) {
  check_noise(a);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (a.x.dtype == kF64)
    noise_kernel<double><<<blocks(a), kNoiseBlock, 0, s>>>(a);
  else
    noise_kernel<float><<<blocks(a), kNoiseBlock, 0, s>>>(a);
  check_launch("ebir add_noise_cuda");
}

void noise_level_histogram_cuda(const NoiseArgs& a, int64_t* hist, void* stream) {
  check_noise(a);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  cudaMemsetAsync(hist, 0, size_t(a.B) * 256 * sizeof(int64_t), s);
  histogram_kernel<<<blocks(a), kNoiseBlock, 0, s>>>(a, reinterpret_cast<unsigned long long*>(hist));
  check_launch("ebir noise_level_histogram_cuda");
}

}  // namespace ebir
