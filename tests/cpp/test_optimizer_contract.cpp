// mirrorflow::MirrorDescent's promises beyond one step's arithmetic (as
// tests/python/test_optimizer_contract.py for Python): a refused step or load
// changes nothing, a cached mean is used only for the map it is a mean of and
// can be forgotten, gradients sharing memory are read as they are. Oracle: a
// fresh optimizer on the same values.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mirrorflow/optim.h"

namespace {

using Options = mirrorflow::MirrorDescentOptions;

Options& options_of(mirrorflow::MirrorDescent& opt, std::size_t group) {
  return static_cast<Options&>(opt.param_groups()[group].options());
}

// One step of a new optimizer from `value` with gradient `grad`.
torch::Tensor fresh_step(const torch::Tensor& value, const torch::Tensor& grad,
                         const Options& options) {
  auto p = value.detach().clone().requires_grad_();
  p.mutable_grad() = grad.clone();
  mirrorflow::MirrorDescent opt({p}, options);
  opt.step();
  return p.detach();
}

std::vector<torch::optim::OptimizerParamGroup> two_groups(const torch::Tensor& a,
                                                          const torch::Tensor& b) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{a});
  groups.emplace_back(std::vector<torch::Tensor>{b});
  return groups;
}

void expect_error(const std::function<void()>& call, const std::vector<std::string>& needles) {
  try {
    call();
    FAIL() << "no error; expected one with: " << needles.front();
  } catch (const c10::Error& e) {
    for (const auto& needle : needles) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
}

TEST(MirrorDescentContract, DefaultLearningRateIsPythons) {
  EXPECT_DOUBLE_EQ(Options().lr(), 1e-3);
}

TEST(MirrorDescentContract, ACachedMeanIsNotUsedForAnotherMap) {
  const Options base = Options(0.1).mirror("hyperbolic").beta(0.05).normalize(true);
  for (const Options& changed :
       {Options(base).beta(0.5), Options(base).mirror("power").degree(3.0),
        Options(base).beta_scaling("fan_in")}) {
    torch::manual_seed(0);
    auto p = (torch::randn({30, 10}, torch::kFloat64) * 0.5).requires_grad_();
    mirrorflow::MirrorDescent opt({p}, base);
    p.mutable_grad() = torch::randn({30, 10}, torch::kFloat64);
    opt.step();
    options_of(opt, 0) = changed;
    const auto grad = torch::randn({30, 10}, torch::kFloat64);
    const auto expected = fresh_step(p, grad, changed);
    p.mutable_grad() = grad;
    opt.step();
    EXPECT_TRUE(torch::equal(p, expected)) << changed.mirror() << " " << changed.beta();
  }
}

TEST(MirrorDescentContract, InvalidateMetricMeansAfterWritesThroughData) {
  const Options options = Options(0.1).mirror("hyperbolic").beta(0.05).normalize(true);
  torch::manual_seed(1);
  auto p = torch::randn({200}, torch::kFloat64).requires_grad_();
  mirrorflow::MirrorDescent opt({p}, options);
  p.mutable_grad() = torch::randn({200}, torch::kFloat64);
  opt.step();
  p.data().mul_((torch::rand({200}, torch::kFloat64) > 0.5).to(torch::kFloat64));  // pruning
  opt.invalidate_metric_means();
  const auto grad = torch::randn({200}, torch::kFloat64);
  const auto expected = fresh_step(p, grad, options);
  p.mutable_grad() = grad;
  opt.step();
  EXPECT_TRUE(torch::equal(p, expected));
}

TEST(MirrorDescentContract, ABadLaterGroupRefusesTheWholeStep) {
  auto a = torch::randn({4}, torch::kFloat64).requires_grad_();
  auto b = torch::randn({4}, torch::kFloat64).requires_grad_();
  mirrorflow::MirrorDescent opt(two_groups(a, b), Options(0.1).momentum(0.9));
  const auto a_before = a.detach().clone();
  a.mutable_grad() = torch::ones({4}, torch::kFloat64);
  b.mutable_grad() = torch::ones({4}, torch::kFloat64);
  options_of(opt, 1).mirror("hyperbolic").beta(-3);
  expect_error([&] { opt.step(); }, {"beta must be > 0", "got -3"});
  EXPECT_TRUE(torch::equal(a, a_before));
  EXPECT_TRUE(opt.state().empty());
  options_of(opt, 1).beta(0.1);
  b.mutable_grad() = torch::ones({4}, torch::kFloat64).to_sparse();
  expect_error([&] { opt.step(); }, {"grads[0] is sparse", "in param group 1"});
  EXPECT_TRUE(torch::equal(a, a_before));
  EXPECT_TRUE(opt.state().empty());
}

TEST(MirrorDescentContract, ABadDtypeInOneGroupRefusesTheStepNamingTheDtype) {
  auto a = torch::randn({4}, torch::kFloat64).requires_grad_();
  auto c = torch::randn({3}, torch::kComplexDouble).requires_grad_();
  mirrorflow::MirrorDescent opt({a, c}, Options(0.1).momentum(0.9));
  a.mutable_grad() = torch::ones_like(a);
  c.mutable_grad() = torch::ones_like(c);
  const auto a_before = a.detach().clone();
  expect_error([&] { opt.step(); },
               {"params[0] is complex", "in param group 0", "of dtype ComplexDouble"});
  EXPECT_TRUE(torch::equal(a, a_before));
  EXPECT_TRUE(opt.state().empty());
}

TEST(MirrorDescentContract, AGradientWhoseElementsShareMemoryIsReadAsItIs) {
  const Options options =
      Options(0.1).mirror("hyperbolic").beta(0.1).normalize(true).momentum(0.9);
  auto p = torch::randn({6, 5}, torch::kFloat64).requires_grad_();
  auto q = p.detach().clone().requires_grad_();
  mirrorflow::MirrorDescent opt({p}, options);
  mirrorflow::MirrorDescent twin({q}, options);
  for (int step = 0; step < 2; ++step) {
    const auto g = torch::randn({1, 5}, torch::kFloat64);
    p.mutable_grad() = g.expand({6, 5});
    q.mutable_grad() = g.expand({6, 5}).clone();
    opt.step();
    twin.step();
    EXPECT_TRUE(torch::equal(p, q)) << "step " << step;
  }
  EXPECT_EQ(opt.state().size(), 1u);
}

TEST(MirrorDescentContract, LoadRefusesBadOptionsAndLeavesTheOptimizerAsItWas) {
  auto p = torch::randn({5}, torch::kFloat64).requires_grad_();
  mirrorflow::MirrorDescent bad({p}, Options(0.1).momentum(0.9));
  p.mutable_grad() = torch::ones({5}, torch::kFloat64);
  bad.step();
  options_of(bad, 0).mirror("cosine");  // unchecked until a step or a save
  const std::string path = testing::TempDir() + "/mirrorflow_bad_options.pt";
  torch::save(bad, path);

  auto q = torch::randn({5}, torch::kFloat64).requires_grad_();
  mirrorflow::MirrorDescent opt({q}, Options(0.2).mirror("hyperbolic").beta(0.3).momentum(0.5));
  q.mutable_grad() = torch::ones({5}, torch::kFloat64);
  opt.step();
  const auto buffer = static_cast<mirrorflow::MirrorDescentParamState&>(
                          *opt.state().begin()->second).momentum_buffer().clone();
  expect_error([&] { torch::load(opt, path); },
               {"mirror must be one of", "got 'cosine'", "param group 0", "left as it was"});
  EXPECT_EQ(options_of(opt, 0).mirror(), "hyperbolic");
  EXPECT_DOUBLE_EQ(options_of(opt, 0).lr(), 0.2);
  ASSERT_EQ(opt.state().size(), 1u);
  EXPECT_TRUE(torch::equal(static_cast<mirrorflow::MirrorDescentParamState&>(
                               *opt.state().begin()->second).momentum_buffer(),
                           buffer));
  std::remove(path.c_str());
}

TEST(MirrorDescentContract, ABufferWithoutAStepCountIsUsedAsItIs) {
  // torch::optim::SGD's state holds a buffer and no count: b ← μb + g, not b ← g.
  auto p = torch::zeros({3}, torch::kFloat64).requires_grad_();
  mirrorflow::MirrorDescent opt({p}, Options(0.1).momentum(0.9));
  p.mutable_grad() = torch::ones({3}, torch::kFloat64);
  opt.step();
  auto& st = static_cast<mirrorflow::MirrorDescentParamState&>(*opt.state().begin()->second);
  st.momentum_buffer(torch::full({3}, 0.5, torch::kFloat64));
  st.step(torch::Tensor());
  const auto before = p.detach().clone();
  opt.step();
  EXPECT_TRUE(torch::allclose(st.momentum_buffer(), torch::full({3}, 0.9 * 0.5 + 1.0,
                                                                   torch::kFloat64)));
  EXPECT_TRUE(torch::allclose(p, before - 0.1 * (0.9 * 0.5 + 1.0)));
}

}  // namespace
