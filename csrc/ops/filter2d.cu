// CUDA kernel of the per-sample 2D filter (filter2d.h). The arithmetic is in filter2d_elements.h,
// shared with the CPU emulation that tests it; the kernels map threads to elements and launch on
// the caller's stream. First version: one thread per output element reading global memory (the
// windows of neighbouring threads overlap, so most loads hit L1/L2), a first tiny kernel computing
// each sample's effective radius into the workspace. The backward runs through the reference's
// autograd on CUDA tensors (ebir_fast/ops/filter2d.py).
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

}  // namespace

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
