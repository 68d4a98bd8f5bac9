// core::sqrt_from_rsqrt (math_ops.h), which the AVX512 kernel uses for √ on
// its multiply and fma pipes, starting from vrsqrt14ps. That instruction is
// specified only by its error (relative error below 2⁻¹⁴), so the proof here
// does not use it: for every float a in [1, 4) and every float y0 within that
// error of 1/√a (and one ulp beyond each end), the result must be sqrtf(a).
// Every operation of sqrt_from_rsqrt commutes with scaling a by 4ᵏ (y0 by
// 2⁻ᵏ) while no intermediate leaves the normal range, which extends the proof
// to the documented range [2⁻¹⁰⁰, 2¹²⁰]; the second test checks that range's
// edges and the binades in between with sampled y0.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "mirrorflow/core/math_ops.h"

namespace mc = mirrorflow::core;

namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
uint32_t to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// The floats y0 with |y0·√a − 1| < 2⁻¹⁴, widened by one float at each end.
void admissible(float a, uint32_t& first, uint32_t& last) {
  const double r = 1.0 / std::sqrt(static_cast<double>(a));
  first = to_bits(static_cast<float>(r * (1 - 0x1p-14))) - 1;
  last = to_bits(static_cast<float>(r * (1 + 0x1p-14))) + 1;
}

// Counts the pairs (a, y0), a = from_bits(u) for u ≡ offset mod stride in
// [lo, hi), whose result is not sqrtf(a) into `wrong`, and all of them into
// `pairs`.
#if defined(__GNUC__) || defined(__clang__)
#define MF_TEST_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define MF_TEST_ALWAYS_INLINE inline
#endif
MF_TEST_ALWAYS_INLINE void sweep(uint32_t lo, uint32_t hi, uint32_t offset, uint32_t stride,
                                 uint64_t& wrong, uint64_t& pairs) {
  for (uint32_t u = lo + offset; u < hi; u += stride) {
    const float a = from_bits(u);
    const float want = std::sqrt(a);
    uint32_t first;
    uint32_t last;
    admissible(a, first, last);
    uint64_t bad = 0;
    for (uint32_t k = first; k <= last; ++k) bad += mc::sqrt_from_rsqrt(a, from_bits(k)) != want;
    wrong += bad;
    pairs += last - first + 1;
  }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// The same loop compiled for fma instructions (run only where the CPU has them).
__attribute__((target("avx2,fma"))) void sweep_fma(uint32_t lo, uint32_t hi, uint32_t offset,
                                                   uint32_t stride, uint64_t& wrong,
                                                   uint64_t& pairs) {
  sweep(lo, hi, offset, stride, wrong, pairs);
}
#else
void sweep_fma(uint32_t lo, uint32_t hi, uint32_t offset, uint32_t stride, uint64_t& wrong,
               uint64_t& pairs) {
  sweep(lo, hi, offset, stride, wrong, pairs);
}
#endif

bool fma_in_hardware() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return true;  // aarch64 and others: fmaf is an instruction
#endif
}

}  // namespace

TEST(SqrtFromRsqrt, CorrectlyRoundedForEveryFloatInOneScaleAndEveryAllowedStart) {
  // Without fma instructions (libm's fmaf in software) every 64th a only.
  const bool fast = fma_in_hardware();
  const uint32_t stride = fast ? 1 : 64;
  const uint32_t lo = to_bits(1.0f);
  const uint32_t hi = to_bits(4.0f);
  const unsigned threads = std::max(1u, std::min(8u, std::thread::hardware_concurrency()));
  std::vector<uint64_t> wrong(threads, 0);
  std::vector<uint64_t> pairs(threads, 0);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      if (fast) {
        sweep_fma(lo, hi, t * stride, threads * stride, wrong[t], pairs[t]);
      } else {
        sweep(lo, hi, t * stride, threads * stride, wrong[t], pairs[t]);
      }
    });
  }
  for (auto& th : pool) th.join();
  uint64_t total_wrong = 0;
  uint64_t total_pairs = 0;
  for (unsigned t = 0; t < threads; ++t) {
    total_wrong += wrong[t];
    total_pairs += pairs[t];
  }
  // About 2 000 starts for each of the 2²⁴ values of a.
  EXPECT_GT(total_pairs, (uint64_t{1} << 24) / stride * 1000);
  EXPECT_EQ(total_wrong, 0u) << "of " << total_pairs << " pairs (a, y0)";
}

TEST(SqrtFromRsqrt, WholeRangeSampledAndItsEdges) {
  std::mt19937 gen(7);
  std::uniform_int_distribution<uint32_t> mantissa(0, (1u << 23) - 1);
  std::uniform_real_distribution<double> start(-0x1p-14, 0x1p-14);
  auto check = [&](float a) {
    const double r = 1.0 / std::sqrt(static_cast<double>(a));
    for (int k = 0; k < 64; ++k) {
      const float y0 = static_cast<float>(r * (1 + start(gen)));
      ASSERT_EQ(to_bits(mc::sqrt_from_rsqrt(a, y0)), to_bits(std::sqrt(a))) << a << " " << y0;
    }
  };
  for (int e = -100; e < 120; ++e) {  // every binade of [2⁻¹⁰⁰, 2¹²⁰)
    for (int k = 0; k < 200; ++k) check(std::ldexp(1.0f + mantissa(gen) * 0x1p-23f, e));
    check(std::ldexp(1.0f, e));
    check(std::nextafter(std::ldexp(1.0f, e + 1), 0.0f));
  }
  check(0x1p120f);
}
