// mirrorflow::MirrorDescent (C++): the expected values shared with the Python
// suite (tests/data/expected_steps.txt, made by the float64 reference),
// torch::optim::SGD parity, serialization, parameter groups, bad input.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "mirrorflow/ops.h"
#include "mirrorflow/optim.h"

namespace {

struct ExpectedCase {
  std::string name;
  std::map<std::string, std::string> options;
  std::vector<double> theta0;
  std::vector<std::vector<double>> grads;
  std::vector<std::vector<double>> expected;
};

std::vector<double> read_numbers(std::istringstream& in) {
  std::vector<double> out;
  std::string token;
  while (in >> token) out.push_back(std::stod(token));
  return out;
}

std::vector<ExpectedCase> load_expected_cases() {
  std::ifstream file(std::string(MIRRORFLOW_TEST_DATA_DIR) + "/expected_steps.txt");
  EXPECT_TRUE(file.good()) << "cannot open expected_steps.txt";
  std::vector<ExpectedCase> cases;
  std::string line;
  while (std::getline(file, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line);
    std::string head;
    in >> head;
    if (head == "case") {
      cases.emplace_back();
      in >> cases.back().name;
      std::string field;
      while (in >> field) {
        const auto eq = field.find('=');
        cases.back().options[field.substr(0, eq)] = field.substr(eq + 1);
      }
    } else if (head == "theta0") {
      cases.back().theta0 = read_numbers(in);
    } else if (head == "grad") {
      cases.back().grads.push_back(read_numbers(in));
    } else if (head == "expected") {
      cases.back().expected.push_back(read_numbers(in));
    }
  }
  return cases;
}

torch::Tensor from_vector(const std::vector<double>& v) {
  return torch::tensor(v, torch::kFloat64).reshape({3, 4});
}

mirrorflow::MirrorDescentOptions options_of(const std::map<std::string, std::string>& o) {
  return mirrorflow::MirrorDescentOptions(std::stod(o.at("lr")))
      .mirror(o.at("mirror"))
      .beta(std::stod(o.at("beta")))
      .degree(std::stod(o.at("degree")))
      .update(o.at("update"))
      .normalize(o.at("normalize") == "1")
      .beta_scaling(o.at("beta_scaling"))
      .momentum(std::stod(o.at("momentum")))
      .dampening(std::stod(o.at("dampening")))
      .nesterov(o.at("nesterov") == "1")
      .weight_decay(std::stod(o.at("weight_decay")))
      .maximize(o.at("maximize") == "1");
}

TEST(MirrorDescent, ReproducesTheExpectedStepsSharedWithPython) {
  const auto cases = load_expected_cases();
  ASSERT_GE(cases.size(), 10u);
  for (const auto& c : cases) {
    auto p = from_vector(c.theta0).requires_grad_();
    mirrorflow::MirrorDescent opt({p}, options_of(c.options));
    for (std::size_t s = 0; s < c.grads.size(); ++s) {
      p.mutable_grad() = from_vector(c.grads[s]);
      opt.step();
      EXPECT_TRUE(torch::allclose(p.detach(), from_vector(c.expected[s]), 1e-12, 1e-14))
          << c.name << " step " << s;
    }
  }
}

std::vector<torch::Tensor> make_params(torch::Dtype dtype) {
  torch::manual_seed(0);
  auto base = torch::randn({9, 8}, dtype);
  return {torch::randn({16, 3, 3, 3}, dtype), torch::randn({33}, dtype),
          base.index({torch::indexing::Slice(0, torch::indexing::None, 2),
                      torch::indexing::Slice(1, torch::indexing::None)}),
          torch::randn({0}, dtype), torch::randn({40000}, dtype)};
}

TEST(MirrorDescent, EuclideanIsBitIdenticalToSgd) {
  for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
    auto ours = make_params(dtype);
    auto theirs = make_params(dtype);
    for (auto& t : ours) t.requires_grad_();
    for (auto& t : theirs) t.requires_grad_();
    mirrorflow::MirrorDescent opt(ours, mirrorflow::MirrorDescentOptions(0.05)
                                            .momentum(0.9)
                                            .nesterov(true)
                                            .weight_decay(0.01));
    torch::optim::SGD sgd(
        theirs, torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(0.01));
    for (int step = 0; step < 4; ++step) {
      for (std::size_t i = 0; i < ours.size(); ++i) {
        auto g = torch::randn(ours[i].sizes(), dtype);
        ours[i].mutable_grad() = g.clone();
        theirs[i].mutable_grad() = g.clone();
      }
      opt.step();
      sgd.step();
      for (std::size_t i = 0; i < ours.size(); ++i) {
        EXPECT_TRUE(torch::equal(ours[i], theirs[i])) << "tensor " << i << " step " << step;
      }
    }
  }
}

void train(mirrorflow::MirrorDescent& opt, std::vector<torch::Tensor>& params, int steps,
           int seed) {
  torch::manual_seed(seed);
  for (int s = 0; s < steps; ++s) {
    for (auto& p : params) p.mutable_grad() = torch::randn(p.sizes(), p.options());
    opt.step();
  }
}

TEST(MirrorDescent, SaveLoadContinueEqualsUninterrupted) {
  const auto options = mirrorflow::MirrorDescentOptions(0.02)
                           .mirror("hyperbolic")
                           .beta(0.05)
                           .momentum(0.9)
                           .normalize(true);
  auto params = make_params(torch::kFloat64);
  for (auto& p : params) p.requires_grad_();
  mirrorflow::MirrorDescent opt(params, options);
  train(opt, params, 3, 1);

  const std::string path = testing::TempDir() + "/mirrorflow_optimizer_state.pt";
  torch::save(opt, path);
  std::vector<torch::Tensor> resumed;
  for (const auto& p : params) resumed.push_back(p.detach().clone().requires_grad_());

  train(opt, params, 3, 2);

  mirrorflow::MirrorDescent opt2(resumed, mirrorflow::MirrorDescentOptions(1.0));
  torch::load(opt2, path);
  const auto& loaded = static_cast<const mirrorflow::MirrorDescentOptions&>(
      opt2.param_groups()[0].options());
  EXPECT_EQ(loaded.mirror(), "hyperbolic");
  EXPECT_DOUBLE_EQ(loaded.lr(), 0.02);
  train(opt2, resumed, 3, 2);
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(torch::equal(params[i], resumed[i])) << "tensor " << i;
  }
  std::remove(path.c_str());
}

TEST(MirrorDescent, ParameterGroupsWithTheirOwnMaps) {
  auto a = torch::full({4}, 0.5, torch::kFloat64).requires_grad_();
  auto b = torch::full({4}, 0.5, torch::kFloat64).requires_grad_();
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{a},
                      std::make_unique<mirrorflow::MirrorDescentOptions>(
                          mirrorflow::MirrorDescentOptions(0.1).mirror("hyperbolic").beta(0.5)));
  groups.emplace_back(std::vector<torch::Tensor>{b});
  mirrorflow::MirrorDescent opt(groups, mirrorflow::MirrorDescentOptions(0.1));
  a.mutable_grad() = torch::ones({4}, torch::kFloat64);
  b.mutable_grad() = torch::ones({4}, torch::kFloat64);
  opt.step();
  // hyperbolic metric: θ − η√(θ²+β²)g; euclidean: θ − ηg
  EXPECT_NEAR(a[0].item<double>(), 0.5 - 0.1 * std::sqrt(0.5), 1e-15);
  EXPECT_NEAR(b[0].item<double>(), 0.4, 1e-15);
}

void expect_refused(const mirrorflow::MirrorDescentOptions& options, const std::string& needle) {
  auto p = torch::ones({3}).requires_grad_();
  try {
    mirrorflow::MirrorDescent opt({p}, options);
    FAIL() << "accepted options that should be refused: " << needle;
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(MirrorDescent, RefusesBadHyperparametersNamingArgumentRuleAndValue) {
  using O = mirrorflow::MirrorDescentOptions;
  expect_refused(O(-0.1), "lr must be a finite number >= 0, got -0.1");
  expect_refused(O(0.1).mirror("hyperbolic").beta(0), "beta must be > 0");
  expect_refused(O(0.1).mirror("power").degree(1), "degree must be > 1");
  expect_refused(O(0.1).mirror("power").degree(3).beta(0), "update='metric' needs beta > 0");
  expect_refused(O(0.1).mirror("cosine"),
                 "mirror must be one of 'euclidean', 'hyperbolic', 'power', got 'cosine'");
  expect_refused(O(0.1).update("natural"), "update must be one of");
  expect_refused(O(0.1).beta_scaling("fan_out"), "beta_scaling must be one of");
  expect_refused(O(0.1).momentum(-1), "momentum must be a finite number >= 0, got -1");
  expect_refused(O(0.1).weight_decay(-1), "weight_decay must be a finite number >= 0");
  expect_refused(O(0.1).nesterov(true), "nesterov=True requires momentum > 0");
}

TEST(MirrorDescent, AddParamGroupRefusesBadOptions) {
  auto p = torch::ones({3}).requires_grad_();
  auto q = torch::ones({3}).requires_grad_();
  mirrorflow::MirrorDescent opt({p}, mirrorflow::MirrorDescentOptions(0.1));
  torch::optim::OptimizerParamGroup group(
      {q}, std::make_unique<mirrorflow::MirrorDescentOptions>(
               mirrorflow::MirrorDescentOptions(0.1).mirror("hyperbolic").beta(-2)));
  EXPECT_THROW(opt.add_param_group(group), c10::Error);
  EXPECT_EQ(opt.param_groups().size(), 1u);
}

TEST(MirrorDescent, FailedStepModifiesNothing) {
  auto good = torch::randn({5}).requires_grad_();
  auto bad = torch::randn({5}).requires_grad_();
  good.mutable_grad() = torch::randn({5});
  bad.mutable_grad() = torch::randn({5}).to_sparse();
  const auto good_before = good.detach().clone();
  const auto bad_before = bad.detach().clone();
  mirrorflow::MirrorDescent opt(
      {good, bad}, mirrorflow::MirrorDescentOptions(0.1).momentum(0.9).normalize(true));
  try {
    opt.step();
    FAIL() << "a sparse gradient was accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("sparse"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(torch::equal(good, good_before));
  EXPECT_TRUE(torch::equal(bad, bad_before));
  EXPECT_TRUE(opt.state().empty());
}

}  // namespace

// The prefetch plan is a tuning knob of the C++ API too (mirrorflow/ops.h): a
// step under any plan gives the bits of the default plan's step; a bad plan is
// refused, naming the argument, the rule and the value, and changes nothing.
TEST(CpuPrefetch, AnyPlanGivesTheDefaultPlansBitsAndBadPlansAreRefused) {
  auto run = [] {
    torch::manual_seed(3);
    auto p = (torch::randn({50001}) * 0.1).requires_grad_();
    mirrorflow::MirrorDescent opt(
        {p}, mirrorflow::MirrorDescentOptions(0.02).mirror("hyperbolic").beta(0.1).normalize(true));
    for (int k = 0; k < 3; ++k) {
      p.mutable_grad() = torch::randn({50001}) * 0.1;
      opt.step();
    }
    return p.detach().clone();
  };
  const std::string default_plan = mirrorflow::cpu_prefetch();
  const auto want = run();
  mirrorflow::set_cpu_prefetch("L1", 64, 65536);
  EXPECT_EQ(mirrorflow::cpu_prefetch(), "L1, 64 bytes ahead (65536 of a normalising sum)");
  EXPECT_TRUE(torch::equal(run(), want));
  mirrorflow::set_cpu_prefetch("L2", 0, 0);
  EXPECT_TRUE(torch::equal(run(), want));
  for (const auto& [into, ahead, sum, message] :
       {std::tuple<std::string, int64_t, int64_t, std::string>{
            "L0", 64, 64, "into must be \"L1\" or \"L2\", got \"L0\""},
        {"L1", 65, 64, "ahead_bytes must be a multiple of 64 from 0 to 65536, got 65"},
        {"L1", 64, 131072,
         "sum_ahead_bytes must be a multiple of 64 from 0 to 65536, got 131072"}}) {
    try {
      mirrorflow::set_cpu_prefetch(into, ahead, sum);
      ADD_FAILURE() << "accepted " << into << ", " << ahead << ", " << sum;
    } catch (const c10::ValueError& e) {
      EXPECT_NE(std::string(e.what()).find("set_cpu_prefetch: " + message), std::string::npos)
          << e.what();
    }
    EXPECT_EQ(mirrorflow::cpu_prefetch(), "L2, 0 bytes ahead (0 of a normalising sum)");
  }
  mirrorflow::reset_cpu_prefetch();
  EXPECT_EQ(mirrorflow::cpu_prefetch(), default_plan);
}
