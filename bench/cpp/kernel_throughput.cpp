// Where the CPU step's time goes, with Google Benchmark: one thread, float32
// data small enough to stay in the caches, so that memory does not hide the
// arithmetic. For every map × update × normalize (no momentum) it reports the
// step's time per 8 elements (one AVX2 vector), next to torch's `add_` (the
// step of torch.optim.SGD) and to the throughput of the two instructions that
// bound the non-Euclidean maps: a vector square root and a vector division.
//
//   build/bench/kernel_throughput                  (make bench-cpp)
//   build/bench/kernel_throughput --benchmark_filter=hyperbolic
//
// In a full-size step (bench/bench_step.py) each core has about as long per 8
// elements as memory takes to stream 96 bytes; a configuration whose time here
// exceeds that budget is bound by arithmetic, not memory. The InMemory/ rows
// time the same steps, and `add_`, on 2²⁴ elements (64 MiB per tensor, far
// beyond the caches), still on one thread: how much of the memory's time a
// step hides under its arithmetic, without a second core sharing the memory.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "mirrorflow/ops.h"

namespace {

constexpr int64_t kElements = 1 << 17;  // 512 KiB per tensor: θ and g stay in L2/L3
constexpr int64_t kInMemory = 1 << 24;  // 64 MiB per tensor: θ and g come from memory
constexpr double kPerVector = 8.0;      // elements per AVX2 float vector

void per_vector(benchmark::State& state, int64_t elements) {
  state.counters["ns_per_8"] = benchmark::Counter(
      static_cast<double>(elements) / kPerVector,
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.SetItemsProcessed(state.iterations() * elements);
}

struct Config {
  const char* mirror;
  const char* update;
  bool normalize;
};

void BM_MirrorStep(benchmark::State& state, Config c, int64_t elements) {
  at::set_num_threads(1);
  at::manual_seed(0);
  at::Tensor x = at::randn({elements}) * 0.1;
  at::Tensor g = at::randn({elements}) * 0.01;
  const double beta = std::string(c.mirror) == "euclidean" ? 1.0 : 0.1;
  // lr small enough that θ barely moves over millions of steps.
  const mirrorflow::StepOptions o = mirrorflow::make_step_options(
      c.mirror, beta, 3.0, c.update, c.normalize, "none", 1e-7, 0, 0, false, 0, false);
  std::vector<at::Tensor> means;
  std::vector<bool> valid;
  if (c.normalize) {
    means.push_back(at::zeros({}, at::kDouble));
    valid.push_back(false);
  }
  mirrorflow::mirror_descent_step_({x}, {g}, {}, {}, means, valid, o);
  if (c.normalize) valid[0] = true;  // each step leaves the mean of θ⁺
  for (auto _ : state) {
    mirrorflow::mirror_descent_step_({x}, {g}, {}, {}, means, valid, o);
    benchmark::ClobberMemory();
  }
  per_vector(state, elements);
}

// torch.optim.SGD's step without momentum: θ.add_(g, alpha=−η).
void BM_TorchAdd(benchmark::State& state, int64_t elements) {
  at::set_num_threads(1);
  at::Tensor x = at::randn({elements});
  at::Tensor g = at::randn({elements});
  for (auto _ : state) {
    x.add_(g, -1e-7);
    benchmark::ClobberMemory();
  }
  per_vector(state, elements);
}

// One operator call on one 8-element tensor: the fixed cost of a step.
void BM_StepCallOverhead(benchmark::State& state) {
  at::set_num_threads(1);
  at::Tensor x = at::randn({8});
  at::Tensor g = at::randn({8});
  const mirrorflow::StepOptions o = mirrorflow::make_step_options(
      "hyperbolic", 0.1, 3.0, "metric", false, "none", 1e-7, 0, 0, false, 0, false);
  for (auto _ : state) {
    mirrorflow::mirror_descent_step_({x}, {g}, {}, {}, {}, {}, o);
    benchmark::ClobberMemory();
  }
}

// Throughput of one vector instruction on independent vectors in L1.
template <class Op>
void vector_throughput(benchmark::State& state, Op op) {
  using V = at::vec::Vectorized<float>;
  constexpr int64_t kN = 2048;
  alignas(64) float in[kN];
  alignas(64) float out[kN];
  for (int64_t i = 0; i < kN; ++i) in[i] = 1.0f + 0.001f * static_cast<float>(i);
  for (auto _ : state) {
    for (int64_t i = 0; i < kN; i += V::size()) op(V::loadu(in + i)).store(out + i);
    benchmark::DoNotOptimize(out);
    benchmark::ClobberMemory();
  }
  state.counters["ns_per_8"] = benchmark::Counter(
      static_cast<double>(kN) / V::size() * (8.0 / V::size()),
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_VectorSqrt(benchmark::State& state) {
  vector_throughput(state, [](const auto& v) { return v.sqrt(); });
}
void BM_VectorDivide(benchmark::State& state) {
  vector_throughput(state, [](const auto& v) { return at::vec::Vectorized<float>(1.0f) / v; });
}
void BM_VectorFma(benchmark::State& state) {
  vector_throughput(state, [](const auto& v) {
    using V = at::vec::Vectorized<float>;
    return at::vec::fmadd(v, V(0.5f), V(0.25f));
  });
}

const Config kConfigs[] = {
    {"euclidean", "metric", false},  {"euclidean", "metric", true},
    {"hyperbolic", "metric", false}, {"hyperbolic", "metric", true},
    {"hyperbolic", "dual", false},   {"hyperbolic", "dual", true},
    {"power", "metric", false},      {"power", "metric", true},
    {"power", "dual", false},        {"power", "dual", true},
};

std::string step_name(const Config& c) {
  return std::string(c.mirror) + "_" + c.update + (c.normalize ? "_normalized" : "");
}

int register_all() {
  for (const Config& c : kConfigs) {
    benchmark::RegisterBenchmark(("MirrorStep/" + step_name(c)).c_str(), BM_MirrorStep, c,
                                 kElements);
  }
  benchmark::RegisterBenchmark("TorchAdd", BM_TorchAdd, kElements);
  // In memory: the steps bound by memory or close to it (the power map's dual
  // step, bound by its Newton solve, shows nothing new there).
  for (const Config& c : kConfigs) {
    if (std::string(c.mirror) == "power" && std::string(c.update) == "dual") continue;
    benchmark::RegisterBenchmark(("InMemory/" + step_name(c)).c_str(), BM_MirrorStep, c,
                                 kInMemory);
  }
  benchmark::RegisterBenchmark("InMemory/torch_add", BM_TorchAdd, kInMemory);
  benchmark::RegisterBenchmark("StepCallOverhead", BM_StepCallOverhead);
  benchmark::RegisterBenchmark("VectorSqrt", BM_VectorSqrt);
  benchmark::RegisterBenchmark("VectorDivide", BM_VectorDivide);
  benchmark::RegisterBenchmark("VectorFma", BM_VectorFma);
  return 0;
}
const int kRegistered = register_all();

}  // namespace

BENCHMARK_MAIN();
