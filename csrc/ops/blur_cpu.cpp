// CPU kernels for the separable Gaussian blur with a mirror border, its adjoint, and the fused
// blur-MSE forward (blur of x - y plus the per-sample sum of squares in one pass).
//
// Work is split into (plane, band of rows) tasks. A task streams its rows once: each input row is
// loaded (and, for the loss, differenced) into a ring of 2R + 1 rows that stays in cache, the
// vertical pass combines ring rows into one padded row, the horizontal pass turns that into the
// output row, which is stored and squared while it is still in L1. Nothing image-sized is allocated.
// The inner loops are register-blocked over CH columns and compiled for AVX-512, AVX2+FMA and
// baseline x86-64, picked at run time (target_clones), so a wheel runs on any x86-64 machine.
#include <algorithm>
#include <cstring>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "ebir/blur.h"
#include "ebir/common.h"
#include "ebir/cpu_rows.h"

namespace ebir {
namespace {

using namespace cpu;

// out[j] = w[R] rows[R][j] + sum_{t<R} w[t] (rows[t][j] + rows[2R-t][j]),  0 <= j < n.
// The vertical pass passes 2R + 1 ring rows; the horizontal pass passes rows[t] = padded_row + t.
// Four vector accumulators per column block keep the taps loop in registers.
template <class T>
EBIR_INLINE void sym_correlate_impl(const T* const* rows, const T* w, int R, int64_t n, T* out) {
  constexpr int L = int(sizeof(Vec<T>) / sizeof(T));
  const T wc = w[R];
  const T* c = rows[R];
  int64_t j = 0;
  for (; j + 4 * L <= n; j += 4 * L) {
    Vec<T> a0 = wc * vload(c + j), a1 = wc * vload(c + j + L);
    Vec<T> a2 = wc * vload(c + j + 2 * L), a3 = wc * vload(c + j + 3 * L);
    for (int t = 0; t < R; ++t) {
      const T wt = w[t];
      const T* p = rows[t] + j;
      const T* q = rows[2 * R - t] + j;
      a0 += wt * (vload(p) + vload(q));
      a1 += wt * (vload(p + L) + vload(q + L));
      a2 += wt * (vload(p + 2 * L) + vload(q + 2 * L));
      a3 += wt * (vload(p + 3 * L) + vload(q + 3 * L));
    }
    vstore(out + j, a0);
    vstore(out + j + L, a1);
    vstore(out + j + 2 * L, a2);
    vstore(out + j + 3 * L, a3);
  }
  for (; j + L <= n; j += L) {
    Vec<T> a0 = wc * vload(c + j);
    for (int t = 0; t < R; ++t) a0 += w[t] * (vload(rows[t] + j) + vload(rows[2 * R - t] + j));
    vstore(out + j, a0);
  }
  for (; j < n; ++j) {
    T acc = wc * c[j];
    for (int t = 0; t < R; ++t) acc += w[t] * (rows[t][j] + rows[2 * R - t][j]);
    out[j] = acc;
  }
}

// Sum of squares of a row: L independent partial sums folded in a fixed order, so the result does
// not depend on the ISA clone.
template <class T>
EBIR_INLINE double sumsq_impl(const T* v, int64_t n) {
  constexpr int L = int(sizeof(Vec<T>) / sizeof(T));
  Vec<T> part = {};
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    const Vec<T> x = vload(v + j);
    part += x * x;
  }
  double s = 0.0;
  for (int k = 0; k < L; ++k) s += double(part[k]);
  for (; j < n; ++j) s += double(v[j]) * double(v[j]);
  return s;
}

EBIR_CLONES void sym_correlate(const float* const* rows, const float* w, int R, int64_t n,
                               float* out) {
  sym_correlate_impl<float>(rows, w, R, n, out);
}
EBIR_CLONES void sym_correlate(const double* const* rows, const double* w, int R, int64_t n,
                               double* out) {
  sym_correlate_impl<double>(rows, w, R, n, out);
}
EBIR_CLONES double sumsq(const float* v, int64_t n) { return sumsq_impl<float>(v, n); }
EBIR_CLONES double sumsq(const double* v, int64_t n) { return sumsq_impl<double>(v, n); }

// ---- task partition -------------------------------------------------------------------------------

// One unit of work: rows [r0, r1) of plane b * C + c.
struct Task {
  int64_t plane, b, c, r0, r1;
};

struct Partition {
  int64_t bands, rows_per_band;

  Task task(int64_t index, const BlurShape& s) const {
    const int64_t plane = index / bands, r0 = (index % bands) * rows_per_band;
    return {plane, plane / s.C, plane % s.C, r0, std::min(s.H, r0 + rows_per_band)};
  }
};

// Whole planes when there are enough of them to keep every thread busy (no halo rows recomputed);
// otherwise split planes into bands no thinner than max(4R, 32) rows, so halos stay a small share.
Partition partition(int64_t planes, int64_t H, int R, int threads) {
  const int64_t target = 4 * int64_t(std::max(threads, 1));
  int64_t bands = planes >= target ? 1 : (target + planes - 1) / planes;
  const int64_t min_rows = std::max<int64_t>(4 * int64_t(R), 32);
  bands = std::max<int64_t>(1, std::min(bands, H / min_rows));
  const int64_t rows = (H + bands - 1) / bands;
  return {(H + rows - 1) / rows, rows};
}


void check_shape(const BlurShape& s) {
  if (s.B <= 0 || s.C <= 0 || s.H <= 0 || s.W <= 0)
    throw std::invalid_argument("ebir blur: every dimension must be positive");
  if (s.radius < 0) throw std::invalid_argument("ebir blur: radius must be >= 0");
}

void check_dtype(int d, const char* what) {
  if (d < kF32 || d > kBF16)
    throw std::invalid_argument(std::string("ebir blur: unknown dtype code for ") + what);
}

// ---- forward --------------------------------------------------------------------------------------

template <class T>
void fwd_impl(const BlurFwdArgs& a, int threads) {
  const BlurShape& s = a.shape;
  const int R = s.radius, K = 2 * R + 1;
  const int64_t H = s.H, W = s.W, planes = s.B * s.C;
  const T* w = static_cast<const T*>(a.taps);
  const View4* y = a.y.data ? &a.y : nullptr;
  const Partition part = partition(planes, H, R, threads);
  const int64_t tasks = planes * part.bands;
  // One partial sum per row, reduced in row order below: the result is bitwise independent of the
  // thread count and the band partition.
  std::vector<double> partial(a.sumsq ? planes * H : 0, 0.0);

#if defined(EBIR_HAVE_OPENMP)
#pragma omp parallel num_threads(threads)
#endif
  {
    std::vector<T> ring(size_t(K) * W), vpad(W + 2 * R), erow(W);
    std::vector<const T*> vrows(K), hrows(K);
    for (int t = 0; t < K; ++t) hrows[t] = vpad.data() + t;
#if defined(EBIR_HAVE_OPENMP)
#pragma omp for schedule(dynamic, 1)
#endif
    for (int64_t task = 0; task < tasks; ++task) {
      const Task tk = part.task(task, s);
      const int64_t plane = tk.plane, b = tk.b, c = tk.c, r0 = tk.r0, r1 = tk.r1;
      const int64_t q0 = r0 - R;  // first ring row
      for (int64_t q = q0; q < r1 + R; ++q) {
        load_row<T>(a.x, y, b, c, reflect(q, H), W, ring.data() + ((q - q0) % K) * W);
        const int64_t r = q - R;  // the output row whose window [r - R, r + R] is now complete
        if (r < r0) continue;
        for (int t = 0; t < K; ++t) vrows[t] = ring.data() + ((r - R + t - q0) % K) * W;
        sym_correlate(vrows.data(), w, R, W, vpad.data() + R);
        for (int m = 1; m <= R; ++m) {
          vpad[R - m] = vpad[R + reflect(-m, W)];
          vpad[R + W - 1 + m] = vpad[R + reflect(W - 1 + m, W)];
        }
        sym_correlate(hrows.data(), w, R, W, erow.data());
        store_row<T>(a.out, b, c, r, W, erow.data(), T(1), false);
        if (a.sumsq) partial[plane * H + r] = sumsq(erow.data(), W);
      }
    }
  }
  if (a.sumsq) {
    T* out = static_cast<T*>(a.sumsq);
    const int64_t per_sample = s.C * H;
    for (int64_t bi = 0; bi < s.B; ++bi) {
      double acc = 0.0;
      for (int64_t k = 0; k < per_sample; ++k) acc += partial[bi * per_sample + k];
      out[bi] = T(acc);
    }
  }
}

// ---- backward (adjoint) ---------------------------------------------------------------------------

// Horizontal adjoint of one row: z = correlation of the zero-padded row over the padded range
// [-R, W + R), then every padded position is folded onto its reflection (preimages ascending).
template <class T>
void hadj_row(const T* zrow, int64_t W, int R, T* dst) {
  // Every index with a single preimage (all but the R-wide borders) takes z at its own position.
  std::memcpy(dst, zrow + R, size_t(W) * sizeof(T));
  auto fold = [&](int64_t j) {
    if (single_preimage(j, W, R)) return;
    const Preimages pre = preimages(j, W, R);
    T acc = T(0);
    for (int64_t k = pre.k_lo; k <= pre.k_hi; ++k) {
      const int64_t pa = pre.a + k * pre.period;
      if (pa >= pre.lo && pa < pre.hi) acc += zrow[pa + R];
      const int64_t pb = pre.b + k * pre.period;
      if (pre.b >= 0 && pb >= pre.lo && pb < pre.hi) acc += zrow[pb + R];
    }
    dst[j] = acc;
  };
  const int64_t edge = std::min<int64_t>(W, R + 1);
  for (int64_t j = 0; j < edge; ++j) fold(j);
  for (int64_t j = std::max<int64_t>(edge, W - 1 - R); j < W; ++j) fold(j);
}

template <class T>
void bwd_impl(const BlurBwdArgs& a, int threads) {
  const BlurShape& s = a.shape;
  const int R = s.radius, K = 2 * R + 1;
  const int64_t H = s.H, W = s.W, planes = s.B * s.C;
  const T* w = static_cast<const T*>(a.taps);
  const T* scale = static_cast<const T*>(a.scale);
  const Partition part = partition(planes, H, R, threads);
  const int64_t tasks = planes * part.bands;

#if defined(EBIR_HAVE_OPENMP)
#pragma omp parallel num_threads(threads)
#endif
  {
    // gpad: the gradient row with 2R zeros on each side; zrow: its correlation over [-R, W + R).
    std::vector<T> ring(size_t(K) * W), gpad(W + 4 * R, T(0)), zrow(W + 2 * R), zeros(W, T(0));
    std::vector<T> acc(W), tmp(W);
    std::vector<const T*> slot(K), hrows(K), vrows(K);
    for (int t = 0; t < K; ++t) hrows[t] = gpad.data() + t;
#if defined(EBIR_HAVE_OPENMP)
#pragma omp for schedule(dynamic, 1)
#endif
    for (int64_t task = 0; task < tasks; ++task) {
      const Task tk = part.task(task, s);
      const int64_t b = tk.b, c = tk.c, r0 = tk.r0, r1 = tk.r1;
      const int64_t o0 = r0 - R;
      const T sc = scale ? scale[b] : T(1);
      // Rows of H^T g outside [0, H) are zero (the adjoint of padding is not a padding).
      auto row_of = [&](int64_t o) -> const T* {
        return (o < 0 || o >= H) ? zeros.data() : slot[(o - o0) % K];
      };
      for (int64_t o = o0; o < r1 + R; ++o) {
        const int64_t k = (o - o0) % K;
        if (o >= 0 && o < H) {
          load_row<T>(a.grad, nullptr, b, c, o, W, gpad.data() + 2 * R);
          sym_correlate(hrows.data(), w, R, W + 2 * R, zrow.data());
          T* dst = ring.data() + k * W;
          hadj_row<T>(zrow.data(), W, R, dst);
          slot[k] = dst;
        }
        const int64_t i = o - R;  // output row; every nonzero row it needs is in [i - R, i + R]
        if (i < r0) continue;
        if (single_preimage(i, H, R)) {
          for (int t = 0; t < K; ++t) vrows[t] = row_of(i - R + t);
          sym_correlate(vrows.data(), w, R, W, acc.data());
        } else {
          const Preimages pre = preimages(i, H, R);
          bool first = true;
          auto add = [&](int64_t p) {
            for (int t = 0; t < K; ++t) vrows[t] = row_of(p - R + t);
            sym_correlate(vrows.data(), w, R, W, first ? acc.data() : tmp.data());
            if (!first)
              for (int64_t j = 0; j < W; ++j) acc[j] += tmp[j];
            first = false;
          };
          for (int64_t kk = pre.k_lo; kk <= pre.k_hi; ++kk) {
            const int64_t pa = pre.a + kk * pre.period;
            if (pa >= pre.lo && pa < pre.hi) add(pa);
            const int64_t pb = pre.b + kk * pre.period;
            if (pre.b >= 0 && pb >= pre.lo && pb < pre.hi) add(pb);
          }
        }
        store_row<T>(a.out_x, b, c, i, W, acc.data(), sc, false);
        if (a.out_y.data) store_row<T>(a.out_y, b, c, i, W, acc.data(), sc, true);
      }
    }
  }
}

}  // namespace

void blur_fwd_cpu(const BlurFwdArgs& a, int num_threads) {
  check_shape(a.shape);
  check_dtype(a.x.dtype, "x");
  check_dtype(a.out.dtype, "out");
  if (a.y.data) check_dtype(a.y.dtype, "y");
  const int threads = resolve_threads(num_threads);
  if (a.x.dtype == kF64)
    fwd_impl<double>(a, threads);
  else
    fwd_impl<float>(a, threads);
}

void blur_bwd_cpu(const BlurBwdArgs& a, int num_threads) {
  check_shape(a.shape);
  check_dtype(a.grad.dtype, "grad");
  check_dtype(a.out_x.dtype, "out_x");
  if (a.out_y.data) check_dtype(a.out_y.dtype, "out_y");
  const int threads = resolve_threads(num_threads);
  if (a.grad.dtype == kF64 || a.out_x.dtype == kF64)
    bwd_impl<double>(a, threads);
  else
    bwd_impl<float>(a, threads);
}

}  // namespace ebir
