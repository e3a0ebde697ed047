// The CUDA filter2d kernel of filter2d.cu run serially on the CPU: the same element functions
// (filter2d_elements.h) over the kernel's grid, so the results are the GPU's bit for bit. For
// tests on machines without a GPU; single-threaded and slow.
#include <vector>

#include "ebir/filter2d.h"
#include "ebir/filter2d_elements.h"

namespace ebir {
namespace {

template <class T>
void fwd(const Filter2dArgs& a) {
  std::vector<int> radius(size_t(a.B));
  for (int64_t b = 0; b < a.B; ++b) radius[size_t(b)] = filter2d_radius<T>(a, b);
  for (int64_t plane = 0; plane < a.B * a.C; ++plane)
    for (int64_t y = 0; y < a.H; ++y)
      for (int64_t x = 0; x < a.W; ++x) {
        const int64_t b = plane / a.C, c = plane % a.C;
        store_as<T>(a.out.data, offset(a.out, b, c, y, x), a.out.dtype,
                    filter2d_element<T>(a, radius.data(), b, c, y, x));
      }
}

template <class T>
void bwd(const Filter2dArgs& a) {
  std::vector<int> radius(size_t(a.B));
  for (int64_t b = 0; b < a.B; ++b) radius[size_t(b)] = filter2d_radius<T>(a, b);
  if (a.grad_x.data != nullptr)
    for (int64_t plane = 0; plane < a.B * a.C; ++plane)
      for (int64_t y = 0; y < a.H; ++y)
        for (int64_t x = 0; x < a.W; ++x) {
          const int64_t b = plane / a.C, c = plane % a.C;
          store_as<T>(a.grad_x.data, offset(a.grad_x, b, c, y, x), a.grad_x.dtype,
                      filter2d_adjoint_element<T>(a, radius.data(), b, c, y, x));
        }
  if (a.grad_k != nullptr)
    for (int64_t b = 0; b < a.B; ++b)
      for (int i = 0; i < a.K; ++i)
        for (int j = 0; j < a.K; ++j)
          static_cast<T*>(a.grad_k)[(b * a.K + i) * a.K + j] =
              filter2d_kernel_grad_element<T>(a, b, i, j);
}

}  // namespace

void filter2d_bwd_emulated(const Filter2dArgs& a) {
  check_filter2d(a);
  if (a.acc == kF64)
    bwd<double>(a);
  else
    bwd<float>(a);
}

void filter2d_fwd_emulated(const Filter2dArgs& a) {
  check_filter2d(a);
  if (a.acc == kF64)
    fwd<double>(a);
  else
    fwd<float>(a);
}

}  // namespace ebir
