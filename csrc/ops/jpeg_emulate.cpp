// The CUDA JPEG kernel of jpeg.cu run serially on the CPU: jpeg_mcu (jpeg_elements.h) for every
// MCU inside an extent, so the results are the GPU's bit for bit. For tests; slow.
#include "ebir/jpeg.h"
#include "ebir/jpeg_elements.h"

namespace ebir {

void jpeg_fwd_emulated(const JpegArgs& a) {
  check_jpeg(a);
  for (int64_t b = 0; b < a.B; ++b)
    for (int64_t y0 = 0; y0 < a.sizes[2 * b]; y0 += 16)
      for (int64_t x0 = 0; x0 < a.sizes[2 * b + 1]; x0 += 16) {
        if (a.acc == kF64)
          jpeg_mcu<double>(a, b, y0, x0);
        else
          jpeg_mcu<float>(a, b, y0, x0);
      }
}

}  // namespace ebir
