// The CUDA blur kernels of blur.cu, run serially on the CPU: the same element functions
// (blur_elements.h) visited block by block and thread by thread over the kernels' grid, the same
// workspace layout and the same reduction trees, so the results are the GPU's bit for bit. Tests
// use it to check the CUDA arithmetic on machines without a GPU; it is single-threaded and slow.
#include <cstdint>

#include "ebir/blur.h"
#include "ebir/blur_elements.h"

namespace ebir {
namespace {

// body(plane, tile) for every block of the kernels' grid. Blocks write disjoint elements and
// partials, so their order does not change the results.
template <class F>
void for_each_block(const Tiling& g, const F& body) {
  for (int64_t plane = 0; plane < g.planes; ++plane)
    for (int64_t tile = 0; tile < g.tiles; ++tile) body(plane, tile);
}

// element(e) for every thread of the grid that has an element: one pass of the kernels.
template <class F>
void run_pass(const BlurShape& s, const Tiling& g, const F& element) {
  for_each_block(g, [&](int64_t plane, int64_t tile) {
    Index4 e;
    for (int t = 0; t < kBlockThreads; ++t)
      if (tile_element(s, g, plane, tile, t, &e)) element(e);
  });
}

// The kernels' block reduction: each level of the tree is what the block's threads do between two
// barriers.
template <class T>
void block_tree(T* vals) {
  for (int stride = kBlockThreads / 2; stride > 0; stride /= 2)
    for (int t = 0; t < stride; ++t) tree_step(vals, t, stride);
}

template <class T>
void fwd(const BlurFwdArgs& a, void* workspace) {
  const BlurShape& s = a.shape;
  const Tiling g = tiling(s);
  T* tmp = static_cast<T*>(workspace);
  run_pass(s, g, [&](const Index4& e) { fwd_vertical(a, tmp, e); });
  if (a.sumsq == nullptr) {
    run_pass(s, g, [&](const Index4& e) { fwd_horizontal(a, tmp, e); });
    return;
  }
  // fwd_horizontal_kernel with its block partials, then sumsq_kernel.
  const int64_t off = workspace_layout(s, acc_dtype_of(a)).partials_offset;
  T* partials = reinterpret_cast<T*>(static_cast<char*>(workspace) + off);
  for_each_block(g, [&](int64_t plane, int64_t tile) {
    T vals[kBlockThreads];
    Index4 e;
    for (int t = 0; t < kBlockThreads; ++t) {
      const T v = tile_element(s, g, plane, tile, t, &e) ? fwd_horizontal(a, tmp, e) : T(0);
      vals[t] = mul_rn(v, v);
    }
    block_tree(vals);
    partials[plane * g.tiles + tile] = vals[0];
  });
  const int64_t per_sample = s.C * g.tiles;
  for (int64_t b = 0; b < s.B; ++b) {
    double vals[kBlockThreads];
    for (int t = 0; t < kBlockThreads; ++t)
      vals[t] = partials_share(partials + b * per_sample, per_sample, t);
    block_tree(vals);
    static_cast<T*>(a.sumsq)[b] = T(vals[0]);
  }
}

template <class T>
void bwd(const BlurBwdArgs& a, void* workspace) {
  const Tiling g = tiling(a.shape);
  T* tmp = static_cast<T*>(workspace);
  run_pass(a.shape, g, [&](const Index4& e) { bwd_horizontal(a, tmp, e); });
  run_pass(a.shape, g, [&](const Index4& e) { bwd_vertical(a, tmp, e); });
}

}  // namespace

int64_t blur_emulated_workspace_bytes(const BlurShape& shape, int acc_dtype) {
  check_shape(shape, "ebir blur_emulated_workspace_bytes");
  check_acc_dtype(acc_dtype, "ebir blur_emulated_workspace_bytes");
  return workspace_layout(shape, acc_dtype).bytes;
}

void blur_fwd_emulated(const BlurFwdArgs& a, void* workspace) {
  check_fwd(a, workspace, "ebir blur_fwd_emulated");
  if (acc_dtype_of(a) == kF64)
    fwd<double>(a, workspace);
  else
    fwd<float>(a, workspace);
}

void blur_bwd_emulated(const BlurBwdArgs& a, void* workspace) {
  check_bwd(a, workspace, "ebir blur_bwd_emulated");
  if (acc_dtype_of(a) == kF64)
    bwd<double>(a, workspace);
  else
    bwd<float>(a, workspace);
}

}  // namespace ebir
