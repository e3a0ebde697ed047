// CUDA kernels of the separable Gaussian blur, its adjoint and the fused blur-MSE forward (blur.h).
// The arithmetic is in blur_elements.h, shared with the CPU emulation that tests it; the kernels
// here only map blocks and threads to elements, and launch on the caller's stream.
//
// First version: one thread per element reading straight from global memory, no shared-memory
// tiling. A warp's loads are coalesced along W and the windows of neighbouring threads overlap, so
// most tap loads hit L1/L2.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "ebir/blur.h"
#include "ebir/blur_elements.h"

namespace ebir {
namespace {

// The block's plane: grid z, folded into grid y past kMaxGridYZ planes; -1 for the blocks the fold
// leaves past the last plane.
__device__ int64_t block_plane(const Tiling& g) {
  const int64_t plane = int64_t(blockIdx.y) * gridDim.z + blockIdx.z;
  return plane < g.planes ? plane : -1;
}

__device__ bool thread_element(const BlurShape& s, const Tiling& g, Index4* e) {
  const int64_t plane = block_plane(g);
  return plane >= 0 && tile_element(s, g, plane, blockIdx.x, int(threadIdx.x), e);
}

template <class T>
__global__ void __launch_bounds__(kBlockThreads)
    fwd_vertical_kernel(const BlurFwdArgs a, const Tiling g, T* tmp) {
  Index4 e;
  if (thread_element(a.shape, g, &e)) fwd_vertical(a, tmp, e);
}

// With partials != nullptr, also reduces the squares of the block's outputs to
// partials[plane * tiles + tile].
template <class T>
__global__ void __launch_bounds__(kBlockThreads)
    fwd_horizontal_kernel(const BlurFwdArgs a, const Tiling g, const T* tmp, T* partials) {
  const int64_t plane = block_plane(g);
  if (plane < 0) return;  // the whole block, before any barrier
  const int t = int(threadIdx.x);
  Index4 e;
  const T v = tile_element(a.shape, g, plane, blockIdx.x, t, &e) ? fwd_horizontal(a, tmp, e) : T(0);
  if (partials == nullptr) return;
  __shared__ T vals[kBlockThreads];
  vals[t] = mul_rn(v, v);
  for (int stride = kBlockThreads / 2; stride > 0; stride /= 2) {
    __syncthreads();
    tree_step(vals, t, stride);
  }
  if (t == 0) partials[plane * g.tiles + blockIdx.x] = vals[0];
}

// sumsq[b] = the sum of sample b's per_sample partials; one block per sample.
template <class T>
__global__ void __launch_bounds__(kBlockThreads)
    sumsq_kernel(const T* partials, int64_t per_sample, T* sumsq) {
  __shared__ double vals[kBlockThreads];
  const int t = int(threadIdx.x);
  vals[t] = partials_share(partials + blockIdx.x * per_sample, per_sample, t);
  for (int stride = kBlockThreads / 2; stride > 0; stride /= 2) {
    __syncthreads();
    tree_step(vals, t, stride);
  }
  if (t == 0) sumsq[blockIdx.x] = T(vals[0]);
}

template <class T>
__global__ void __launch_bounds__(kBlockThreads)
    bwd_horizontal_kernel(const BlurBwdArgs a, const Tiling g, T* tmp) {
  Index4 e;
  if (thread_element(a.shape, g, &e)) bwd_horizontal(a, tmp, e);
}

template <class T>
__global__ void __launch_bounds__(kBlockThreads)
    bwd_vertical_kernel(const BlurBwdArgs a, const Tiling g, const T* tmp) {
  Index4 e;
  if (thread_element(a.shape, g, &e)) bwd_vertical(a, tmp, e);
}

dim3 plane_grid(const Tiling& g) {
  const int64_t z = std::min(g.planes, kMaxGridYZ);
  return dim3(unsigned(g.tiles), unsigned((g.planes + z - 1) / z), unsigned(z));
}

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

template <class T>
void fwd(const BlurFwdArgs& a, void* workspace, cudaStream_t stream) {
  const Tiling g = tiling(a.shape);
  const dim3 grid = plane_grid(g);
  T* tmp = static_cast<T*>(workspace);
  T* partials = nullptr;
  if (a.sumsq) {
    const int64_t off = workspace_layout(a.shape, acc_dtype_of(a)).partials_offset;
    partials = reinterpret_cast<T*>(static_cast<char*>(workspace) + off);
  }
  fwd_vertical_kernel<T><<<grid, kBlockThreads, 0, stream>>>(a, g, tmp);
  check_launch("ebir blur_fwd_cuda (vertical pass)");
  fwd_horizontal_kernel<T><<<grid, kBlockThreads, 0, stream>>>(a, g, tmp, partials);
  check_launch("ebir blur_fwd_cuda (horizontal pass)");
  if (a.sumsq) {
    sumsq_kernel<T><<<unsigned(a.shape.B), kBlockThreads, 0, stream>>>(
        partials, a.shape.C * g.tiles, static_cast<T*>(a.sumsq));
    check_launch("ebir blur_fwd_cuda (sum of squares)");
  }
}

template <class T>
void bwd(const BlurBwdArgs& a, void* workspace, cudaStream_t stream) {
  const Tiling g = tiling(a.shape);
  const dim3 grid = plane_grid(g);
  T* tmp = static_cast<T*>(workspace);
  bwd_horizontal_kernel<T><<<grid, kBlockThreads, 0, stream>>>(a, g, tmp);
  check_launch("ebir blur_bwd_cuda (horizontal pass)");
  bwd_vertical_kernel<T><<<grid, kBlockThreads, 0, stream>>>(a, g, tmp);
  check_launch("ebir blur_bwd_cuda (vertical pass)");
}

}  // namespace

int64_t blur_cuda_workspace_bytes(const BlurShape& shape, int acc_dtype) {
  check_shape(shape, "ebir blur_cuda_workspace_bytes");
  check_acc_dtype(acc_dtype, "ebir blur_cuda_workspace_bytes");
  return workspace_layout(shape, acc_dtype).bytes;
}

void blur_fwd_cuda(const BlurFwdArgs& a, void* workspace, void* stream) {
  check_fwd(a, workspace, "ebir blur_fwd_cuda");
  if (acc_dtype_of(a) == kF64)
    fwd<double>(a, workspace, static_cast<cudaStream_t>(stream));
  else
    fwd<float>(a, workspace, static_cast<cudaStream_t>(stream));
}

void blur_bwd_cuda(const BlurBwdArgs& a, void* workspace, void* stream) {
  check_bwd(a, workspace, "ebir blur_bwd_cuda");
  if (acc_dtype_of(a) == kF64)
    bwd<double>(a, workspace, static_cast<cudaStream_t>(stream));
  else
    bwd<float>(a, workspace, static_cast<cudaStream_t>(stream));
}

}  // namespace ebir
