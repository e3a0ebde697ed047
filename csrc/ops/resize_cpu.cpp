// CPU kernel of the ragged resize (ebir/resize.h). A task is a band of output rows of one plane;
// the column taps (indices and weights) of each sample are computed once per call. Arithmetic in float
// (double for float64 inputs), in the order torch's CPU kernels use where it is cheap to follow;
// results agree with F.interpolate to float rounding.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "ebir/cpu_rows.h"
#include "ebir/resize.h"

namespace ebir {
namespace {

using namespace cpu;

// Up to 4 source taps of one output coordinate (area windows are handled separately).
template <class T>
struct Taps {
  int64_t index[4];
  T weight[4];
  int n;
};

template <class T>
T cubic1(T x, T a) { return ((a + T(2)) * x - (a + T(3))) * x * x + T(1); }
template <class T>
T cubic2(T x, T a) { return ((a * x - T(5) * a) * x + T(8) * a) * x - T(4) * a; }

template <class T>
Taps<T> taps_of(int mode, int64_t o, int64_t in, int64_t out) {
  Taps<T> t{};
  const T scale = T(in) / T(out);
  if (mode == 1) {
    T src = scale * (T(o) + T(0.5)) - T(0.5);
    if (src < T(0)) src = T(0);
    const int64_t i0 = std::min<int64_t>(int64_t(std::floor(src)), in - 1);
    const int64_t step = i0 < in - 1 ? 1 : 0;
    const T l1 = std::min(std::max(src - T(i0), T(0)), T(1));
    t.index[0] = i0;
    t.index[1] = i0 + step;
    t.weight[0] = T(1) - l1;
    t.weight[1] = l1;
    t.n = 2;
  } else {
    const T src = scale * (T(o) + T(0.5)) - T(0.5);
    const T f = std::floor(src);
    const T x = src - f;
    const T a = T(-0.75);
    t.weight[0] = cubic2(x + T(1), a);
    t.weight[1] = cubic1(x, a);
    t.weight[2] = cubic1(T(1) - x, a);
    t.weight[3] = cubic2(T(2) - x, a);
    for (int k = 0; k < 4; ++k)
      t.index[k] = std::min<int64_t>(std::max<int64_t>(int64_t(f) - 1 + k, 0), in - 1);
    t.n = 4;
  }
  return t;
}

// torch's adaptive pooling window of output index o: [start, end).
inline int64_t window_start(int64_t o, int64_t out, int64_t in) { return (o * in) / out; }
inline int64_t window_end(int64_t o, int64_t out, int64_t in) {
  return ((o + 1) * in + out - 1) / out;
}

// Column taps of one sample in structure-of-arrays form: tap k of output column o reads
// index[k * ow + o] with weight weight[k * ow + o], so the horizontal pass is n contiguous loops
// that compile to vector gathers.
template <class T>
struct ColumnTaps {
  int n = 0;
  std::vector<int32_t> index;
  std::vector<T> weight;
  std::vector<int32_t> start, stop;  // area: the window [start, stop) of each output column
};

// out[o] = sum_k weight[k][o] * src[index[k][o]], taps in order k = 0, 1, ..., each output summed
// in a register (N = n taps as a constant, so the loop over them unrolls).
template <class T, int N>
EBIR_INLINE void gather_taps(const T* src, const int32_t* index, const T* weight, int64_t ow,
                             T* out) {
  for (int64_t o = 0; o < ow; ++o) {
    T acc = weight[o] * src[index[o]];
    for (int k = 1; k < N; ++k) acc += weight[k * ow + o] * src[index[k * ow + o]];
    out[o] = acc;
  }
}

template <class T>
EBIR_INLINE void gather_row_impl(const T* src, const int32_t* index, const T* weight, int n,
                                 int64_t ow, T* out) {
  if (n == 2)
    gather_taps<T, 2>(src, index, weight, ow, out);
  else
    gather_taps<T, 4>(src, index, weight, ow, out);
}

EBIR_CLONES void gather_row(const float* src, const int32_t* index, const float* weight, int n,
                            int64_t ow, float* out) {
  gather_row_impl(src, index, weight, n, ow, out);
}
EBIR_CLONES void gather_row(const double* src, const int32_t* index, const double* weight, int n,
                            int64_t ow, double* out) {
  gather_row_impl(src, index, weight, n, ow, out);
}

EBIR_CLONES void combine_rows(const float* const* rows, const float* w, int m, int64_t n,
                              float* out) {
  combine_rows_impl<float>(rows, w, m, n, out);
}
EBIR_CLONES void combine_rows(const double* const* rows, const double* w, int m, int64_t n,
                              double* out) {
  combine_rows_impl<double>(rows, w, m, n, out);
}

// Output rows per task: a band shares the horizontally resampled input rows it reads.
constexpr int64_t kBand = 64;

template <class T>
void impl(const ResizeArgs& a, int threads) {
  // Column taps per sample (interpolating modes; area uses its windows directly).
  std::vector<ColumnTaps<T>> col_taps(a.B);
  for (int64_t b = 0; b < a.B; ++b) {
    const int64_t w = a.sizes[2 * b + 1], ow = a.out_sizes[2 * b + 1];
    ColumnTaps<T>& ct = col_taps[b];
    if (a.modes[b] == 0) {  // two integer divisions per column, once per call, not per row
      ct.start.resize(size_t(ow));
      ct.stop.resize(size_t(ow));
      for (int64_t o = 0; o < ow; ++o) {
        ct.start[size_t(o)] = int32_t(window_start(o, ow, w));
        ct.stop[size_t(o)] = int32_t(window_end(o, ow, w));
      }
      continue;
    }
    ct.n = a.modes[b] == 1 ? 2 : 4;
    ct.index.resize(size_t(ct.n * ow));
    ct.weight.resize(size_t(ct.n * ow));
    for (int64_t o = 0; o < ow; ++o) {
      const Taps<T> t = taps_of<T>(int(a.modes[b]), o, w, ow);
      for (int k = 0; k < ct.n; ++k) {
        ct.index[size_t(k * ow + o)] = int32_t(t.index[k]);
        ct.weight[size_t(k * ow + o)] = t.weight[k];
      }
    }
  }
  const int64_t bands = (a.OH + kBand - 1) / kBand, tasks = a.B * a.C * bands;
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> rows_buf, line, out_row(a.OW), hbuf;
    std::vector<const T*> hrows;
#pragma omp for schedule(dynamic, 2)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t plane = task / bands, b = plane / a.C, c = plane % a.C;
      const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
      const int64_t oh = a.out_sizes[2 * b], ow = a.out_sizes[2 * b + 1];
      const int64_t y0 = (task % bands) * kBand, y1 = std::min(a.OH, y0 + kBand);
      const int64_t y_end = std::min(y1, oh);
      line.resize(size_t(w));
      const ColumnTaps<T>& ct = col_taps[b];
      // Interpolating modes without a vertical reduction: every input row the band reads is
      // resampled horizontally once (the gathers are the costly part; an upscale re-reads each
      // row for several output rows), then each output row is a vector sum of n of them.
      const bool rows_first = a.modes[b] != 0 && oh >= h && y0 < y_end;
      int64_t r0 = 0;
      if (rows_first) {
        const Taps<T> first = taps_of<T>(int(a.modes[b]), y0, h, oh);
        const Taps<T> last = taps_of<T>(int(a.modes[b]), y_end - 1, h, oh);
        r0 = first.index[0];
        const int64_t r1 = last.index[last.n - 1];
        hbuf.resize(size_t((r1 - r0 + 1) * ow));
        for (int64_t r = r0; r <= r1; ++r) {
          load_row_op<T, false>(a.x, b, c, r, w, line.data());
          gather_row(line.data(), ct.index.data(), ct.weight.data(), ct.n, ow,
                     hbuf.data() + (r - r0) * ow);
        }
      }
      for (int64_t oy = y0; oy < y1; ++oy) {
        std::fill(out_row.begin() + (oy < y_end ? ow : 0), out_row.end(), T(0));
        if (oy >= y_end) {
          // past the sample's extent: zeros
        } else if (a.modes[b] == 0) {
          const int64_t wy0 = window_start(oy, oh, h), wy1 = window_end(oy, oh, h);
          rows_buf.assign(size_t(w), T(0));
          for (int64_t y = wy0; y < wy1; ++y) {
            load_row_op<T, false>(a.x, b, c, y, w, line.data());
            for (int64_t x = 0; x < w; ++x) rows_buf[size_t(x)] += line[size_t(x)];
          }
          for (int64_t ox = 0; ox < ow; ++ox) {
            const int64_t x0 = ct.start[size_t(ox)], x1 = ct.stop[size_t(ox)];
            T sum = T(0);
            for (int64_t x = x0; x < x1; ++x) sum += rows_buf[size_t(x)];
            out_row[size_t(ox)] = sum / T((wy1 - wy0) * (x1 - x0));
          }
        } else if (rows_first) {
          const Taps<T> ty = taps_of<T>(int(a.modes[b]), oy, h, oh);
          hrows.resize(size_t(ty.n));
          for (int k = 0; k < ty.n; ++k) hrows[k] = hbuf.data() + (ty.index[k] - r0) * ow;
          combine_rows(hrows.data(), ty.weight, ty.n, ow, out_row.data());
        } else {
          const Taps<T> ty = taps_of<T>(int(a.modes[b]), oy, h, oh);
          rows_buf.assign(size_t(w), T(0));  // the vertical combination, then the horizontal
          for (int k = 0; k < ty.n; ++k) {
            load_row_op<T, false>(a.x, b, c, ty.index[k], w, line.data());
            const T wk = ty.weight[k];
            for (int64_t x = 0; x < w; ++x) rows_buf[size_t(x)] += wk * line[size_t(x)];
          }
          gather_row(rows_buf.data(), ct.index.data(), ct.weight.data(), ct.n, ow, out_row.data());
        }
        store_row(a.out, b, c, oy, a.OW, out_row.data(), T(1), false);
      }
    }
  }
}

}  // namespace

void resize_cpu(const ResizeArgs& a, int num_threads) {
  if (a.B < 1 || a.C < 1 || a.H < 1 || a.W < 1 || a.OH < 1 || a.OW < 1)
    throw std::invalid_argument("resize: bad shape");
  for (int64_t b = 0; b < a.B; ++b) {
    const int64_t h = a.sizes[2 * b], w = a.sizes[2 * b + 1];
    const int64_t oh = a.out_sizes[2 * b], ow = a.out_sizes[2 * b + 1];
    if (h < 1 || h > a.H || w < 1 || w > a.W || oh < 1 || oh > a.OH || ow < 1 || ow > a.OW)
      throw std::invalid_argument("resize: sizes[" + std::to_string(b) + "] out of range");
    if (a.modes[b] < 0 || a.modes[b] > 2)
      throw std::invalid_argument("resize: modes[" + std::to_string(b) + "] must be 0, 1 or 2");
  }
  const int threads = resolve_threads(num_threads);
  if (a.x.dtype == kF64)
    impl<double>(a, threads);
  else
    impl<float>(a, threads);
}

}  // namespace ebir
