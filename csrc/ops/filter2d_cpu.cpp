// CPU kernels for per-sample 2D cross-correlation with a mirror border at each sample's extent
// (ebir/filter2d.h), and its two gradients.
//
// Forward tasks are (plane, band of rows): the band's mirror-padded input rows are gathered once
// into a small buffer that stays in L2, then every output row is a register-blocked sum over the
// sample's (2r + 1)^2 non-zero taps. The adjoint correlates the zero-padded gradient with the
// flipped kernel over the padded domain one row at a time and folds each padded row onto its mirror
// sources immediately (whole-plane tasks, since the fold writes rows of other bands). The inner
// loops are compiled for AVX-512, AVX2+FMA and baseline x86-64 and picked at run time.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "ebir/common.h"
#include "ebir/cpu_rows.h"
#include "ebir/filter2d.h"
#include "ebir/filter2d_elements.h"

namespace ebir {
namespace {

using namespace cpu;

// Output rows and column vectors per pass of the non-separable forward (correlate_block_impl),
// and the input rows such a pass reads at most (21 x 21 kernels).
constexpr int kBlockRows = 3, kBlockCols = 3;
constexpr int kMaxBlockInputs = 21 + kBlockRows - 1;

// out[j] = sum_{i < m} sum_{t < k} w[i k + t] rows[i][j + t] for 0 <= j < n, summed in (i, t)
// order in every column, all of them in vector ops (the last through vload_partial), so every
// column and every vector width rounds identically.
template <class T, int Bytes = 32>
EBIR_INLINE void correlate_impl(const T* const* rows, const T* w, int m, int k, int64_t n, T* out) {
  constexpr int L = int(Bytes / sizeof(T));
  int64_t j = 0;
  for (; j + 4 * L <= n; j += 4 * L) {
    Vec<T, Bytes> a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (int i = 0; i < m; ++i) {
      const T* p = rows[i] + j;
      const T* wi = w + i * k;
      for (int t = 0; t < k; ++t) {
        const T wt = wi[t];
        a0 += wt * vload<T, Bytes>(p + t);
        a1 += wt * vload<T, Bytes>(p + t + L);
        a2 += wt * vload<T, Bytes>(p + t + 2 * L);
        a3 += wt * vload<T, Bytes>(p + t + 3 * L);
      }
    }
    vstore<T, Bytes>(out + j, a0);
    vstore<T, Bytes>(out + j + L, a1);
    vstore<T, Bytes>(out + j + 2 * L, a2);
    vstore<T, Bytes>(out + j + 3 * L, a3);
  }
  for (; j + L <= n; j += L) {
    Vec<T, Bytes> a0 = {};
    for (int i = 0; i < m; ++i)
      for (int t = 0; t < k; ++t) a0 += w[i * k + t] * vload<T, Bytes>(rows[i] + j + t);
    vstore<T, Bytes>(out + j, a0);
  }
  if (j < n) {  // reads rows[i][j + t] for j + t < n + k - 1 only
    Vec<T, Bytes> a0 = {};
    for (int i = 0; i < m; ++i)
      for (int t = 0; t < k; ++t)
        a0 += w[i * k + t] * vload_partial<T, Bytes>(rows[i] + j + t, n - j);
    vstore_partial<T, Bytes>(out + j, a0, n - j);
  }
}

// kBlockRows output rows at once: output row r sums rows[r .. r + m) (m + kBlockRows - 1 rows in
// all), each in the same (i, t) order as correlate_impl, so the results are the same bits. The
// R x C vector accumulators (C vectors of columns per row) hide the multiply-add latency that the
// single-row loop waits on, and every loaded vector feeds up to R rows.
template <class T, int Bytes, int R, int C>
EBIR_INLINE void correlate_block_impl(const T* const* rows, const T* w, int m, int64_t n,
                                      T* const* outs) {
  constexpr int L = int(Bytes / sizeof(T));
  const int k = m;
  int64_t j = 0;
  for (; j + C * L <= n; j += C * L) {
    Vec<T, Bytes> acc[R][C] = {};
    for (int q = 0; q < m + R - 1; ++q) {
      const T* p = rows[q] + j;
      for (int t = 0; t < k; ++t) {
        Vec<T, Bytes> v[C];
#pragma GCC unroll 8
        for (int c = 0; c < C; ++c) v[c] = vload<T, Bytes>(p + t + c * L);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const int i = q - r;  // the tap row of output row r
          if (i < 0 || i >= m) continue;
          const T wt = w[i * k + t];
#pragma GCC unroll 8
          for (int c = 0; c < C; ++c) acc[r][c] += wt * v[c];
        }
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) vstore<T, Bytes>(outs[r] + j + c * L, acc[r][c]);
  }
  if (j < n) {
    const T* shifted[kMaxBlockInputs];
    for (int q = 0; q < m + R - 1; ++q) shifted[q] = rows[q] + j;
    for (int r = 0; r < R; ++r) correlate_impl<T, Bytes>(shifted + r, w, m, k, n - j, outs[r] + j);
  }
}

// The forward's row kernels, each in a 32-byte clone set and (EBIR_WIDE) a 64-byte AVX-512 build.
// The wide block keeps R3C3: 9 zmm accumulators measured as fast as R4C3, R6C3 and R3C4 (21 x 21,
// 8 x 3 x 512 x 512: ~31 ms, against ~65-84 ms for the 32-byte R3C3 on the same Xeon).
#define EBIR_FILTER_ROW_KERNELS(T, WIDTH, ATTR, BYTES)                                         \
  ATTR void correlate_block_##WIDTH(const T* const* rows, const T* w, int m, int64_t n,          \
                                    T* const* outs) {                                           \
    correlate_block_impl<T, BYTES, kBlockRows, kBlockCols>(rows, w, m, n, outs);                \
  }                                                                                              \
  ATTR void combine_rows_##WIDTH(const T* const* rows, const T* w, int m, int64_t n, T* out) {   \
    combine_rows_impl<T, BYTES>(rows, w, m, n, out);                                            \
  }                                                                                              \
  ATTR void correlate_##WIDTH(const T* const* rows, const T* w, int m, int k, int64_t n,         \
                              T* out) {                                                          \
    correlate_impl<T, BYTES>(rows, w, m, k, n, out);                                            \
  }
EBIR_FILTER_ROW_KERNELS(float, narrow, EBIR_CLONES, 32)
EBIR_FILTER_ROW_KERNELS(double, narrow, EBIR_CLONES, 32)
#if defined(EBIR_HAVE_WIDE)
EBIR_FILTER_ROW_KERNELS(float, wide, EBIR_WIDE, 64)
EBIR_FILTER_ROW_KERNELS(double, wide, EBIR_WIDE, 64)
#define EBIR_PICK(name, ...) \
  return wide_vectors() ? name##_wide(__VA_ARGS__) : name##_narrow(__VA_ARGS__)
#else
#define EBIR_PICK(name, ...) return name##_narrow(__VA_ARGS__)
#endif
#undef EBIR_FILTER_ROW_KERNELS

template <class T>
void correlate_block(const T* const* rows, const T* w, int m, int64_t n, T* const* outs) {
  EBIR_PICK(correlate_block, rows, w, m, n, outs);
}
template <class T>
void combine_rows(const T* const* rows, const T* w, int m, int64_t n, T* out) {
  EBIR_PICK(combine_rows, rows, w, m, n, out);
}
template <class T>
void correlate(const T* const* rows, const T* w, int m, int k, int64_t n, T* out) {
  EBIR_PICK(correlate, rows, w, m, k, n, out);
}
#undef EBIR_PICK

// sum_j a[j] b[j] with L partial sums folded in a fixed order (independent of the ISA clone).
template <class T>
EBIR_INLINE double dot_impl(const T* a, const T* b, int64_t n) {
  constexpr int L = int(sizeof(Vec<T>) / sizeof(T));
  Vec<T> part = {};
  int64_t j = 0;
  for (; j + L <= n; j += L) part += vload(a + j) * vload(b + j);
  double s = 0.0;
  for (int k = 0; k < L; ++k) s += double(part[k]);
  for (; j < n; ++j) s += double(a[j]) * double(b[j]);
  return s;
}

// dst[j] += src[j], 0 <= j < n.
template <class T>
EBIR_INLINE void add_row_impl(T* dst, const T* src, int64_t n) {
  constexpr int L = int(sizeof(Vec<T>) / sizeof(T));
  int64_t j = 0;
  for (; j + L <= n; j += L) vstore(dst + j, vload(dst + j) + vload(src + j));
  for (; j < n; ++j) dst[j] += src[j];
}

EBIR_CLONES double dot(const float* a, const float* b, int64_t n) { return dot_impl(a, b, n); }
EBIR_CLONES double dot(const double* a, const double* b, int64_t n) { return dot_impl(a, b, n); }
EBIR_CLONES void add_row(float* dst, const float* src, int64_t n) { add_row_impl(dst, src, n); }
EBIR_CLONES void add_row(double* dst, const double* src, int64_t n) { add_row_impl(dst, src, n); }

void check_args(const Filter2dArgs& a) {
  check_filter2d(a);
  for (int64_t b = 0; b < a.B; ++b) {
    const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
    if (h < 1 || h > a.H || w < 1 || w > a.W)
      throw std::invalid_argument("filter2d: sizes[" + std::to_string(b) + "] = (" +
                                  std::to_string(h) + ", " + std::to_string(w) +
                                  ") is outside [1, H] x [1, W]");
  }
}

// The smallest r such that every non-zero tap of the K x K kernel lies within r of its centre, and
// the (2r + 1)^2 taps of that centred square (row-major).
template <class T>
std::vector<T> effective_taps(const T* k, int K, int* radius) {
  const int R = K / 2;
  int r = 0;
  for (int i = 0; i < K; ++i)
    for (int j = 0; j < K; ++j)
      if (k[i * K + j] != T(0)) r = std::max(r, std::max(std::abs(i - R), std::abs(j - R)));
  const int n = 2 * r + 1;
  std::vector<T> taps(size_t(n) * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) taps[size_t(i) * n + j] = k[(R - r + i) * K + (R - r + j)];
  *radius = r;
  return taps;
}

// A rank-one factorisation taps[i][j] = col[i] row[j] of the (n x n) taps, when one holds to within
// a few ulps of the largest tap (isotropic Gaussians, boxes, the identity): the kernel then runs as
// two 1D passes, 2n instead of n^2 multiply-adds per pixel. The factors go through the pivot (the
// largest tap), so they are exact there and the rest agrees to rounding.
template <class T>
bool separable(const std::vector<T>& taps, int n, std::vector<T>* col, std::vector<T>* row) {
  if (n < 3) return false;
  size_t pivot = 0;
  for (size_t k = 1; k < taps.size(); ++k)
    if (std::abs(taps[k]) > std::abs(taps[pivot])) pivot = k;
  const T peak = taps[pivot];
  if (peak == T(0)) return false;
  const int pi = int(pivot) / n, pj = int(pivot) % n;
  col->resize(size_t(n));
  row->resize(size_t(n));
  for (int i = 0; i < n; ++i) (*col)[i] = taps[size_t(i * n + pj)] / peak;
  for (int j = 0; j < n; ++j) (*row)[j] = taps[size_t(pi * n + j)];
  const T tol = T(8) * std::numeric_limits<T>::epsilon() * std::abs(peak);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      if (!(std::abs(taps[size_t(i * n + j)] - (*col)[i] * (*row)[j]) <= tol)) return false;
  return true;
}

// dst[0, w + 2r) = the row `src_row` of plane (b, c), mirror-padded by r at the extent w.
template <class T>
void load_padded_row(const View4& v, int64_t b, int64_t c, int64_t src_row, int64_t w, int r,
                     T* dst) {
  load_row_op<T, false>(v, b, c, src_row, w, dst + r);
  for (int q = 0; q < r; ++q) {
    dst[q] = dst[r + reflect(q - r, w)];
    dst[r + w + q] = dst[r + reflect(w + q, w)];
  }
}

template <class T>
void fwd_impl(const Filter2dArgs& a, int threads) {
  const T* kernels = static_cast<const T*>(a.kernels);
  std::vector<std::vector<T>> taps(a.B);
  std::vector<int> radius(a.B);
  std::vector<std::vector<T>> col(a.B), row_taps(a.B);
  std::vector<char> is_separable(a.B);
  for (int64_t b = 0; b < a.B; ++b) {
    taps[b] = effective_taps(kernels + b * a.K * a.K, a.K, &radius[b]);
    is_separable[b] = separable(taps[b], 2 * radius[b] + 1, &col[b], &row_taps[b]);
  }
  constexpr int64_t kBand = 32;
  const int64_t bands = (a.H + kBand - 1) / kBand, tasks = a.B * a.C * bands;
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> buf, row(a.W), block(size_t(kBlockRows * a.W)), mid;
    std::vector<const T*> rows;
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t plane = task / bands, b = plane / a.C, c = plane % a.C;
      const int64_t y0 = (task % bands) * kBand, y1 = std::min(a.H, y0 + kBand);
      const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
      const int r = radius[b], n = 2 * r + 1;
      const int64_t y_end = std::min(y1, h), pw = w + 2 * r;
      if (y0 < y_end) {
        const int64_t n_rows = y_end - y0 + 2 * r;
        buf.resize(size_t(n_rows * pw));
        for (int64_t p = 0; p < n_rows; ++p)
          load_padded_row(a.x, b, c, reflect(y0 - r + p, h), w, r, buf.data() + p * pw);
        rows.resize(size_t(n + kBlockRows - 1));
        std::fill(row.begin() + w, row.end(), T(0));
        for (int q = 0; q < kBlockRows; ++q)  // columns past the extent
          std::fill(block.begin() + q * a.W + w, block.begin() + (q + 1) * a.W, T(0));
        mid.resize(size_t(pw));
        const T* mid_row = mid.data();
        for (int64_t y = y0; y < y_end; ++y) {
          for (int i = 0; i < n; ++i) rows[i] = buf.data() + (y - y0 + i) * pw;
          if (is_separable[b]) {
            combine_rows(rows.data(), col[b].data(), n, pw, mid.data());
            correlate(&mid_row, row_taps[b].data(), 1, n, w, row.data());
          } else if (y + kBlockRows <= y_end) {  // kBlockRows rows per pass
            for (int i = n; i < n + kBlockRows - 1; ++i) rows[i] = buf.data() + (y - y0 + i) * pw;
            T* outs[kBlockRows];
            for (int q = 0; q < kBlockRows; ++q) outs[q] = block.data() + q * a.W;
            correlate_block(rows.data(), taps[b].data(), n, w, outs);
            for (int q = 0; q + 1 < kBlockRows; ++q)
              store_row(a.out, b, c, y + q, a.W, outs[q], T(1), false);
            y += kBlockRows - 1;
            std::copy(outs[kBlockRows - 1], outs[kBlockRows - 1] + w, row.begin());
          } else {
            correlate(rows.data(), taps[b].data(), n, n, w, row.data());
          }
          store_row(a.out, b, c, y, a.W, row.data(), T(1), false);
        }
      }
      std::fill(row.begin(), row.end(), T(0));
      for (int64_t y = std::max(y0, h); y < y1; ++y)
        store_row(a.out, b, c, y, a.W, row.data(), T(1), false);
    }
  }
}

// grad_x of one plane: P = (zero-padded grad) correlated with the flipped kernel over the padded
// domain [h + 2r, w + 2r], each padded row folded onto its mirror source row as soon as it is made.
template <class T>
void adjoint_plane(const Filter2dArgs& a, int64_t b, int64_t c, const std::vector<T>& taps, int r,
                   std::vector<T>& g, std::vector<T>& gx, std::vector<T>& prow) {
  const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
  const int n = 2 * r + 1;
  const int64_t gw = w + 4 * r, pw = w + 2 * r;
  std::vector<T> flipped(taps.rbegin(), taps.rend());
  g.assign(size_t((h + 4 * r) * gw), T(0));
  for (int64_t y = 0; y < h; ++y)
    load_row_op<T, false>(a.grad, b, c, y, w, g.data() + (y + 2 * r) * gw + 2 * r);
  gx.assign(size_t(h * w), T(0));
  prow.resize(size_t(pw));
  std::vector<const T*> rows(static_cast<size_t>(n));
  for (int64_t q = 0; q < h + 2 * r; ++q) {
    for (int i = 0; i < n; ++i) rows[i] = g.data() + (q + i) * gw;
    correlate(rows.data(), flipped.data(), n, n, pw, prow.data());
    T* dst = gx.data() + reflect(q - r, h) * w;
    add_row(dst, prow.data() + r, w);
    for (int p = 0; p < r; ++p) {
      dst[reflect(p - r, w)] += prow[p];
      dst[reflect(w + p, w)] += prow[r + w + p];
    }
  }
  std::vector<T> row(a.W, T(0));
  for (int64_t y = 0; y < a.H; ++y) {
    if (y < h) std::copy(gx.data() + y * w, gx.data() + (y + 1) * w, row.begin());
    if (y == h) std::fill(row.begin(), row.end(), T(0));
    store_row(a.grad_x, b, c, y, a.W, row.data(), T(1), false);
  }
}

// grad_k of one sample: sum over channels and the extent of grad * (x padded by the full R).
template <class T>
void kernel_grad_sample(const Filter2dArgs& a, int64_t b, std::vector<T>& xp, std::vector<T>& grow,
                        T* out) {
  const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
  const int K = a.K, R = K / 2;
  const int64_t pw = w + 2 * R;
  std::vector<double> acc(size_t(K) * K, 0.0);
  xp.resize(size_t((h + 2 * R) * pw));
  grow.resize(size_t(w));
  for (int64_t c = 0; c < a.C; ++c) {
    for (int64_t p = 0; p < h + 2 * R; ++p)
      load_padded_row(a.x, b, c, reflect(p - R, h), w, R, xp.data() + p * pw);
    for (int64_t y = 0; y < h; ++y) {
      load_row_op<T, false>(a.grad, b, c, y, w, grow.data());
      for (int i = 0; i < K; ++i) {
        const T* prow = xp.data() + (y + i) * pw;
        for (int t = 0; t < K; ++t) acc[size_t(i) * K + t] += dot(grow.data(), prow + t, w);
      }
    }
  }
  for (size_t k = 0; k < acc.size(); ++k) out[k] = T(acc[k]);
}

template <class T>
void bwd_impl(const Filter2dArgs& a, int threads) {
  const T* kernels = static_cast<const T*>(a.kernels);
  if (a.grad_x.data != nullptr) {
    std::vector<std::vector<T>> taps(a.B);
    std::vector<int> radius(a.B);
    for (int64_t b = 0; b < a.B; ++b)
      taps[b] = effective_taps(kernels + b * a.K * a.K, a.K, &radius[b]);
#pragma omp parallel num_threads(threads)
    {
      std::vector<T> g, gx, prow;
#pragma omp for schedule(dynamic, 1)
      for (int64_t plane = 0; plane < a.B * a.C; ++plane) {
        const int64_t b = plane / a.C;
        adjoint_plane(a, b, plane % a.C, taps[b], radius[b], g, gx, prow);
      }
    }
  }
  if (a.grad_k != nullptr) {
    T* out = static_cast<T*>(a.grad_k);
#pragma omp parallel num_threads(threads)
    {
      std::vector<T> xp, grow;
#pragma omp for schedule(dynamic, 1)
      for (int64_t b = 0; b < a.B; ++b)
        kernel_grad_sample(a, b, xp, grow, out + b * a.K * a.K);
    }
  }
}

}  // namespace

void filter2d_fwd_cpu(const Filter2dArgs& args, int num_threads) {
  check_args(args);
  const int threads = resolve_threads(num_threads);
  if (args.acc == kF64)
    fwd_impl<double>(args, threads);
  else
    fwd_impl<float>(args, threads);
}

void filter2d_bwd_cpu(const Filter2dArgs& args, int num_threads) {
  check_args(args);
  const int threads = resolve_threads(num_threads);
  if (args.acc == kF64)
    bwd_impl<double>(args, threads);
  else
    bwd_impl<float>(args, threads);
}

}  // namespace ebir
