// A counter-based random stream: element e of stream `seed` is a pure function of (seed, e), so a
// draw is the same on the CPU and on the GPU, with any thread count and in any order. The hash is
// SplitMix64's finaliser (Steele, Lea and Flood 2014) applied to a Weyl sequence, keyed by the mixed
// seed; ebir_fast/ops/reference.py computes the same bits with int64 tensor arithmetic.
#pragma once

#include <cstdint>

#include "ebir/common.h"

namespace ebir {

EBIR_HD uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The stream key of a seed (mixing it once keeps nearby seeds' streams unrelated).
EBIR_HD uint64_t stream_key(uint64_t seed) { return splitmix64_mix(seed); }

EBIR_HD uint64_t counter_bits(uint64_t key, uint64_t e) {
  return splitmix64_mix(key + (e + 1) * 0x9E3779B97F4A7C15ull);
}

// A double uniform on (0, 1): the top 53 bits, centred in their interval (never 0 or 1).
EBIR_HD double counter_uniform(uint64_t key, uint64_t e) {
  return (double(counter_bits(key, e) >> 11) + 0.5) * 1.1102230246251565e-16;  // 2^-53
}

}  // namespace ebir
