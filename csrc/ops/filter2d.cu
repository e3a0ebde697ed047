// CUDA kernel of the per-sample 2D filter (filter2d.h). The arithmetic is in filter2d_elements.h,
// shared with the CPU emulation that tests it; the kernels map threads to elements and launch on
// the caller's stream. First version: one thread per output element reading global memory (the
// windows of neighbouring threads overlap, so most loads hit L1/L2), a first tiny kernel computing
// each sample's effective radius into the workspace. Backward: grad_x one thread per input element
// gathering from its mirror preimages; grad_k one thread per (sample, tap), summing serially in a
// fixed order (deterministic; a first version, parallel only over B * K^2 threads).
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "ebir/filter2d.h"
#include "ebir/filter2d_elements.h"

namespace ebir {
namespace {

template <class T>
__global__ void radius_kernel(const Filter2dArgs a, int* radius) {
  const int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b < a.B) radius[b] = filter2d_radius<T>(a, b);
}

// Grid: x = row segments of kFilterBlock columns, y = rows, z = planes (b * C + c).
template <class T>
__global__ void __launch_bounds__(kFilterBlock) fwd_kernel(const Filter2dArgs a, const int* radius) {
  const int64_t x = int64_t(blockIdx.x) * kFilterBlock + threadIdx.x;
  const int64_t y = blockIdx.y, plane = blockIdx.z;
  if (x >= a.W) return;
  const int64_t b = plane / a.C, c = plane % a.C;
  store_as<T>(a.out.data, offset(a.out, b, c, y, x), a.out.dtype,
              filter2d_element<T>(a, radius, b, c, y, x));
}

template <class T>
__global__ void __launch_bounds__(kFilterBlock)
    adjoint_kernel(const Filter2dArgs a, const int* radius) {
  const int64_t x = int64_t(blockIdx.x) * kFilterBlock + threadIdx.x;
  const int64_t y = blockIdx.y, plane = blockIdx.z;
  if (x >= a.W) return;
  const int64_t b = plane / a.C, c = plane % a.C;
  store_as<T>(a.grad_x.data, offset(a.grad_x, b, c, y, x), a.grad_x.dtype,
              filter2d_adjoint_element<T>(a, radius, b, c, y, x));
}

template <class T>
__global__ void kernel_grad_kernel(const Filter2dArgs a) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t taps = int64_t(a.K) * a.K;
  if (i >= a.B * taps) return;
  const int64_t b = i / taps, tap = i % taps;
  static_cast<T*>(a.grad_k)[i] =
      filter2d_kernel_grad_element<T>(a, b, int(tap / a.K), int(tap % a.K));
}

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

template <class T>
void fwd(const Filter2dArgs& a, void* workspace, cudaStream_t stream) {
  int* radius = static_cast<int*>(workspace);
  radius_kernel<T><<<unsigned((a.B + 127) / 128), 128, 0, stream>>>(a, radius);
  check_launch("ebir filter2d_fwd_cuda (radius)");
  if (a.H > 65535 || a.B * a.C > 65535)
    throw std::invalid_argument("filter2d_fwd_cuda: H and B * C must be at most 65535");
  const dim3 grid(unsigned((a.W + kFilterBlock - 1) / kFilterBlock), unsigned(a.H),
                  unsigned(a.B * a.C));
  fwd_kernel<T><<<grid, kFilterBlock, 0, stream>>>(a, radius);
  check_launch("ebir filter2d_fwd_cuda");
}

template <class T>
void bwd(const Filter2dArgs& a, void* workspace, cudaStream_t stream) {
  if (a.grad_x.data != nullptr) {
    int* radius = static_cast<int*>(workspace);
    radius_kernel<T><<<unsigned((a.B + 127) / 128), 128, 0, stream>>>(a, radius);
    check_launch("ebir filter2d_bwd_cuda (radius)");
    if (a.H > 65535 || a.B * a.C > 65535)
      throw std::invalid_argument("filter2d_bwd_cuda: H and B * C must be at most 65535");
    const dim3 grid(unsigned((a.W + kFilterBlock - 1) / kFilterBlock), unsigned(a.H),
                    unsigned(a.B * a.C));
    adjoint_kernel<T><<<grid, kFilterBlock, 0, stream>>>(a, radius);
    check_launch("ebir filter2d_bwd_cuda (grad_x)");
  }
  if (a.grad_k != nullptr) {
    const int64_t n = a.B * int64_t(a.K) * a.K;
    kernel_grad_kernel<T><<<unsigned((n + 127) / 128), 128, 0, stream>>>(a);
    check_launch("ebir filter2d_bwd_cuda (grad_k)");
  }
}

}  // namespace

void filter2d_bwd_cuda(const Filter2dArgs& a, void* workspace, void* stream) {
  check_filter2d(a);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (a.acc == kF64)
    bwd<double>(a, workspace, s);
  else
    bwd<float>(a, workspace, s);
}

int64_t filter2d_cuda_workspace_bytes(const Filter2dArgs& a) { return a.B * int64_t(sizeof(int)); }

void filter2d_fwd_cuda(const Filter2dArgs& a, void* workspace, void* stream) {
  check_filter2d(a);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (a.acc == kF64)
    fwd<double>(a, workspace, s);
  else
    fwd<float>(a, workspace, s);
}

}  // namespace ebir
