// CUDA kernel of the fused JPEG round trip (jpeg.h): one thread per 16x16 MCU running
// jpeg_mcu (jpeg_elements.h), the function the CPU emulation runs. First version: the MCU lives in
// the thread's local memory; neighbouring threads read neighbouring MCUs.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "ebir/jpeg.h"
#include "ebir/jpeg_elements.h"

namespace ebir {
namespace {

constexpr int kJpegBlock = 64;

template <class T>
__global__ void __launch_bounds__(kJpegBlock) mcu_kernel(const JpegArgs a, int64_t mcu_rows,
                                                         int64_t mcu_cols) {
  const int64_t i = int64_t(blockIdx.x) * kJpegBlock + threadIdx.x;
  if (i >= a.B * mcu_rows * mcu_cols) return;
  const int64_t b = i / (mcu_rows * mcu_cols), m = i % (mcu_rows * mcu_cols);
  const int64_t y0 = (m / mcu_cols) * 16, x0 = (m % mcu_cols) * 16;
  if (y0 < a.sizes[2 * b] && x0 < a.sizes[2 * b + 1]) jpeg_mcu<T>(a, b, y0, x0);
}

}  // namespace

void jpeg_fwd_cuda(const JpegArgs& a, void* stream) {
  check_jpeg(a);
  const int64_t rows = (a.H + 15) / 16, cols = (a.W + 15) / 16;
  const int64_t n = a.B * rows * cols;
  const unsigned blocks = unsigned((n + kJpegBlock - 1) / kJpegBlock);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (a.acc == kF64)
    mcu_kernel<double><<<blocks, kJpegBlock, 0, s>>>(a, rows, cols);
  else
    mcu_kernel<float><<<blocks, kJpegBlock, 0, s>>>(a, rows, cols);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("ebir jpeg_fwd_cuda: ") + cudaGetErrorString(err));
}

}  // namespace ebir
