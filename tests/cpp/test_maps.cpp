// Property suite of the mirror maps (MATH.md §1), run over every map: closed
// forms, central finite differences, ∇φ*∘∇φ round trips, and the special cases
// the spec names. Torch-free: only the core headers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "mirrorflow/core/map_function.h"

namespace mc = mirrorflow::core;

namespace {

struct MapCase {
  std::string name;
  mc::MirrorKind kind;
  double beta;
  double degree;
};

std::string case_name(const testing::TestParamInfo<MapCase>& info) { return info.param.name; }

// Keeps ctest's test names readable.
void PrintTo(const MapCase& c, std::ostream* os) { *os << c.name; }

const std::vector<MapCase> kMaps = {
    {"euclidean", mc::MirrorKind::Euclidean, 0.0, 2.0},
    {"hyperbolic_b1", mc::MirrorKind::Hyperbolic, 1.0, 1.0},
    {"hyperbolic_b0_01", mc::MirrorKind::Hyperbolic, 0.01, 1.0},
    {"power_L3_b0_1", mc::MirrorKind::Power, 0.1, 3.0},
    {"power_L3_b1", mc::MirrorKind::Power, 1.0, 3.0},
    {"power_L1_5_b0_2", mc::MirrorKind::Power, 0.2, 1.5},
    {"power_L4_b0_5", mc::MirrorKind::Power, 0.5, 4.0},
    {"power_L2_b0_3", mc::MirrorKind::Power, 0.3, 2.0},
    {"power_L3_b0", mc::MirrorKind::Power, 0.0, 3.0},
    {"power_L1_5_b0", mc::MirrorKind::Power, 0.0, 1.5},
};

const std::vector<double> kPoints = {-3.0, -0.7, -0.05, -1e-3, 1e-3, 0.02, 0.3, 1.0, 2.5, 10.0};

template <class F>
double eval(const MapCase& c, F&& f) {
  double out = 0;
  mc::visit_map<double>(c.kind, c.beta, c.degree, [&](const auto& map) { out = f(map); });
  return out;
}

double fn(const MapCase& c, mc::MapFunction which, double x) {
  return eval(c, [&](const auto& m) { return mc::apply_map_function(m, which, x); });
}

// Closed forms of MATH.md §1, written independently of the headers.
double closed_grad(const MapCase& c, double x) {
  switch (c.kind) {
    case mc::MirrorKind::Euclidean:
      return x;
    case mc::MirrorKind::Hyperbolic:
      return std::asinh(x / c.beta);
    case mc::MirrorKind::Power:
      return x * std::pow(x * x + c.beta * c.beta, c.degree / 2 - 1);
  }
  return NAN;
}

double closed_inv_metric(const MapCase& c, double x) {
  const double b2 = c.beta * c.beta;
  switch (c.kind) {
    case mc::MirrorKind::Euclidean:
      return 1.0;
    case mc::MirrorKind::Hyperbolic:
      return std::sqrt(x * x + b2);
    case mc::MirrorKind::Power:
      return std::pow(x * x + b2, 2 - c.degree / 2) / ((c.degree - 1) * x * x + b2);
  }
  return NAN;
}

double closed_potential(const MapCase& c, double x) {
  const double b = c.beta;
  switch (c.kind) {
    case mc::MirrorKind::Euclidean:
      return x * x / 2;
    case mc::MirrorKind::Hyperbolic:
      return x * std::asinh(x / b) - std::sqrt(x * x + b * b) + b;
    case mc::MirrorKind::Power:
      return (std::pow(x * x + b * b, c.degree / 2) - std::pow(b, c.degree)) / c.degree;
  }
  return NAN;
}

double ulps_apart(double a, double b) {
  if (a == b) return 0;
  const double scale = std::max(std::abs(a), std::abs(b));
  return std::abs(a - b) / (scale * std::numeric_limits<double>::epsilon());
}

class MapProperties : public testing::TestWithParam<MapCase> {};

TEST_P(MapProperties, GradMatchesClosedForm) {
  const MapCase& c = GetParam();
  for (double x : kPoints) {
    EXPECT_LE(ulps_apart(fn(c, mc::MapFunction::Grad, x), closed_grad(c, x)), 8) << "x=" << x;
  }
}

TEST_P(MapProperties, InvMetricMatchesClosedForm) {
  const MapCase& c = GetParam();
  for (double x : kPoints) {
    EXPECT_LE(ulps_apart(fn(c, mc::MapFunction::InvMetric, x), closed_inv_metric(c, x)), 8)
        << "x=" << x;
  }
}

TEST_P(MapProperties, PotentialMatchesClosedFormAwayFromCancellation) {
  const MapCase& c = GetParam();
  for (double x : kPoints) {
    if (std::abs(x) < 0.1 * std::max(c.beta, 1e-300)) continue;  // closed form cancels there
    const double got = fn(c, mc::MapFunction::Potential, x);
    EXPECT_NEAR(got, closed_potential(c, x), 1e-12 * std::max(1.0, std::abs(got))) << "x=" << x;
  }
}

// ∇φ is the derivative of φ, and 1/φ'' the reciprocal derivative of ∇φ:
// central differences with a step scaled to x.
TEST_P(MapProperties, GradIsDerivativeOfPotential) {
  const MapCase& c = GetParam();
  for (double x : kPoints) {
    const double h = 1e-6 * std::max(std::abs(x), 1e-2);
    const double fd = (fn(c, mc::MapFunction::Potential, x + h) -
                       fn(c, mc::MapFunction::Potential, x - h)) / (2 * h);
    const double g = fn(c, mc::MapFunction::Grad, x);
    EXPECT_NEAR(fd, g, 1e-6 * std::max(1.0, std::abs(g))) << "x=" << x;
  }
}

TEST_P(MapProperties, InvMetricIsReciprocalDerivativeOfGrad) {
  const MapCase& c = GetParam();
  for (double x : kPoints) {
    if (c.beta == 0 && std::abs(x) < 0.01) continue;  // φ'' is singular at 0 when β = 0
    const double h = 1e-6 * std::max(std::abs(x), 1e-2);
    const double fd =
        (fn(c, mc::MapFunction::Grad, x + h) - fn(c, mc::MapFunction::Grad, x - h)) / (2 * h);
    const double inv = fn(c, mc::MapFunction::InvMetric, x);
    EXPECT_NEAR(fd * inv, 1.0, 1e-6) << "x=" << x;
  }
}

TEST_P(MapProperties, ConjugateOfGradIsLegendreIdentity) {
  // φ*(∇φ(x)) = x·∇φ(x) − φ(x), and φ* is convex with (φ*)' = ∇φ*: check the
  // derivative of φ*∘∇φ, which is x·φ''(x), by central differences.
  const MapCase& c = GetParam();
  for (double x : kPoints) {
    if (c.beta == 0 && std::abs(x) < 0.01) continue;
    const double h = 1e-6 * std::max(std::abs(x), 1e-2);
    const double fd = (fn(c, mc::MapFunction::ConjOfGrad, x + h) -
                       fn(c, mc::MapFunction::ConjOfGrad, x - h)) / (2 * h);
    const double expected = x / fn(c, mc::MapFunction::InvMetric, x);
    EXPECT_NEAR(fd, expected, 1e-6 * std::max(1.0, std::abs(expected))) << "x=" << x;
    EXPECT_GE(fn(c, mc::MapFunction::ConjOfGrad, x), 0.0) << "x=" << x;
  }
}

TEST_P(MapProperties, DualGradInvertsGradToFewUlp) {
  const MapCase& c = GetParam();
  for (double x : kPoints) {
    const double y = fn(c, mc::MapFunction::Grad, x);
    const double back = fn(c, mc::MapFunction::GradConj, y);
    EXPECT_LE(ulps_apart(back, x), 4) << "x=" << x << " back=" << back;
  }
}

TEST_P(MapProperties, DualStepIsConjugateOfShiftedGrad) {
  // dual_step(x, g, s) = ∇φ*(∇φ(x) + s·g), checked against the two functions.
  const MapCase& c = GetParam();
  for (double x : kPoints) {
    for (double z : {-0.3, -0.01, 0.02, 0.25}) {
      const double step = eval(c, [&](const auto& m) { return m.dual_step(x, 1.0, z); });
      const double via = fn(c, mc::MapFunction::GradConj, fn(c, mc::MapFunction::Grad, x) + z);
      EXPECT_NEAR(step, via, 1e-12 * std::max(1.0, std::abs(via))) << "x=" << x << " z=" << z;
    }
  }
}

TEST_P(MapProperties, FloatAgreesWithDouble) {
  const MapCase& c = GetParam();
  for (double x : kPoints) {
    for (auto which : {mc::MapFunction::Grad, mc::MapFunction::InvMetric,
                       mc::MapFunction::ConjOfGrad, mc::MapFunction::Potential}) {
      float got = 0;
      mc::visit_map<float>(c.kind, c.beta, c.degree, [&](const auto& m) {
        got = mc::apply_map_function(m, which, static_cast<float>(x));
      });
      const double want = fn(c, which, static_cast<float>(x));
      EXPECT_NEAR(got, want, 1e-5 * std::max(1.0, std::abs(want)))
          << "x=" << x << " fn=" << static_cast<int>(which);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllMaps, MapProperties, testing::ValuesIn(kMaps), case_name);

// ---- special cases named in MATH.md ------------------------------------------

TEST(PowerMap, DegreeTwoEqualsEuclideanExactly) {
  const mc::Euclidean<double> e{};
  for (double beta : {0.0, 0.1, 3.0}) {
    const mc::PowerPotential<double> p{2.0, beta};
    for (double x : kPoints) {
      EXPECT_EQ(p.grad(x), e.grad(x));
      EXPECT_EQ(p.grad_conj(x), e.grad_conj(x));
      EXPECT_EQ(p.inv_metric(x), e.inv_metric(x));
      EXPECT_EQ(p.conj_of_grad(x), e.conj_of_grad(x));
      EXPECT_EQ(p.potential(x), e.potential(x));
      for (double g : {-1.3, 0.0, 0.7}) EXPECT_EQ(p.dual_step(x, g, -0.1), e.dual_step(x, g, -0.1));
    }
  }
}

// PowerPotential<T, true> (L = 3 and β > 0 fixed when compiled, as the CPU
// kernel's metric update uses it) computes what the general map computes.
template <class T>
void expect_cubic_specialisation_same_bits() {
  for (double beta : {1e-6, 0.05, 0.1, 2.0}) {
    const mc::PowerPotential<T> p{T(3), static_cast<T>(beta)};
    const mc::PowerPotential<T, true> c{T(3), static_cast<T>(beta)};
    for (double xd : kPoints) {
      const T x = static_cast<T>(xd);
      EXPECT_EQ(c.inv_metric(x), p.inv_metric(x)) << "beta=" << beta << " x=" << x;
      EXPECT_EQ(c.grad(x), p.grad(x)) << "beta=" << beta << " x=" << x;
      EXPECT_EQ(c.grad_conj(x), p.grad_conj(x)) << "beta=" << beta << " x=" << x;
      EXPECT_EQ(c.potential(x), p.potential(x)) << "beta=" << beta << " x=" << x;
      for (T g : {T(-1.3), T(0), T(0.7)}) {
        EXPECT_EQ(c.dual_step(x, g, T(-0.1)), p.dual_step(x, g, T(-0.1))) << "x=" << x;
      }
    }
  }
}
TEST(PowerMap, CubicSpecialisationGivesTheSameBitsFloat) {
  expect_cubic_specialisation_same_bits<float>();
}
TEST(PowerMap, CubicSpecialisationGivesTheSameBitsDouble) {
  expect_cubic_specialisation_same_bits<double>();
}

TEST(PowerMap, BetaZeroConjugateIsClosedForm) {
  const mc::PowerPotential<double> p{3.0, 0.0};
  for (double y : {-4.0, -0.3, 0.0, 0.01, 2.0}) {
    const double want = std::copysign(std::pow(std::abs(y), 0.5), y);
    EXPECT_LE(ulps_apart(p.grad_conj(y), want), 1) << y;
  }
}

TEST(PowerMap, NewtonIsWarmStartedAndShort) {
  // A small step starts Newton close to the answer: a handful of iterations.
  for (double L : {1.5, 3.0, 4.0}) {
    const mc::PowerPotential<double> p{L, 0.1};
    for (double x : kPoints) {
      const double y = p.grad(x) - 1e-3 * p.grad(x);
      int iterations = 0;
      const double u = p.solve_magnitude(std::abs(y), std::abs(x), &iterations);
      EXPECT_LE(iterations, 6) << "L=" << L << " x=" << x;
      EXPECT_LE(ulps_apart(std::abs(p.grad(u)), std::abs(y)), 8) << "L=" << L << " x=" << x;
    }
  }
}

TEST(PowerMap, NewtonConvergesFromAnyStart) {
  const mc::PowerPotential<double> p{3.0, 0.05};
  for (double a : {1e-12, 1e-4, 0.3, 50.0, 1e6}) {
    for (double u0 : {0.0, 1e-9, 1.0, 1e8}) {
      int iterations = 0;
      const double u = p.solve_magnitude(a, u0, &iterations);
      EXPECT_LT(iterations, mc::PowerPotential<double>::kMaxIterations);
      EXPECT_LE(ulps_apart(p.grad(u), a), 8) << "a=" << a << " u0=" << u0;
    }
  }
}

TEST(PowerMap, DualStepWithZeroGradientReturnsThetaExactly) {
  const mc::PowerPotential<double> p{3.0, 0.1};
  for (double x : kPoints) EXPECT_EQ(p.dual_step(x, 0.0, -0.5), x);
}

TEST(HyperbolicMap, DualStepWithZeroGradientReturnsThetaBitExactly) {
  for (double beta : {1e-8, 0.01, 1.0, 100.0}) {
    const mc::HyperbolicEntropy<double> h{beta};
    const mc::HyperbolicEntropy<float> hf{static_cast<float>(beta)};
    for (double x : kPoints) {
      for (double s : {-0.1, -10.0}) {
        EXPECT_EQ(h.dual_step(x, 0.0, s), x) << "beta=" << beta << " x=" << x;
        const float xf = static_cast<float>(x);
        EXPECT_EQ(hf.dual_step(xf, 0.0f, static_cast<float>(s)), xf);
      }
    }
  }
}

TEST(HyperbolicMap, NaiveFormDriftsButStableFormDoesNot) {
  // MATH.md §2: β·sinh(asinh(θ/β) − ηg) drifts when g = 0; the kernel does not.
  const double beta = 1e-3;
  const mc::HyperbolicEntropy<double> h{beta};
  int naive_moved = 0;
  for (double x : kPoints) {
    const double naive = beta * std::sinh(std::asinh(x / beta) - 0.0);
    naive_moved += naive != x;
    EXPECT_EQ(h.dual_step(x, 0.0, -1.0), x);
  }
  EXPECT_GT(naive_moved, 0);
}

TEST(HyperbolicMap, DualStepStaysAccurateForLargeSteps) {
  // θ·cosh z − √(θ²+β²)·sinh z loses all digits when z is large and the two
  // terms cancel; the kernel's form keeps full relative precision. Oracle: the
  // same formula in long double.
  const double beta = 1e-3;
  const mc::HyperbolicEntropy<double> h{beta};
  for (double x : {0.5, 2.0, -1.5}) {
    for (double z : {5.0, 15.0, 25.0}) {
      const double zz = x > 0 ? z : -z;  // shrink |θ| multiplicatively
      const long double X = x, Z = zz, B = beta;
      const long double r = std::sqrt(X * X + B * B);
      const long double c = B * B / (r + std::fabs(X));
      const long double e = x > 0 ? std::exp(-Z) : std::exp(Z);
      const long double want = X * e - c * std::sinh(Z);
      const double got = h.dual_step(x, zz, -1.0);
      EXPECT_LE(std::abs(got - static_cast<double>(want)),
                64 * std::numeric_limits<double>::epsilon() * std::abs(static_cast<double>(want)))
          << "x=" << x << " z=" << zz;
    }
  }
}

// Small steps (|z| ≤ 1/16) take c = √(θ²+β²) − |θ| rather than the quotient
// β²/(√(θ²+β²)+|θ|); that difference cancels when |θ| ≫ β, but c·sinh z is then
// a small part of θ⁺. Oracle: β·sinh(asinh(θ/β) − z) in long double, the error
// measured in ulps of max(|θ⁺|, c·|z|) (θ⁺ itself can be 0 by cancellation,
// which no formula escapes). Measured: worst 3.9, mean 0.35 ulp (the quotient
// everywhere: worst 4.4, mean 0.37).
template <class T>
void check_small_step_accuracy() {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  for (double beta : {1e-3, 0.05, 0.5, 3.0}) {
    const mc::HyperbolicEntropy<T> h{static_cast<T>(beta)};
    double worst = 0;
    double total = 0;
    constexpr int kSamples = 200000;
    for (int k = 0; k < kSamples; ++k) {
      const T x = static_cast<T>(beta * std::pow(10.0, 4 * u(rng)) * (u(rng) < 0 ? -1 : 1));
      const T z =
          static_cast<T>(0.0625 * std::pow(10.0, 1.5 * (u(rng) - 1)) * (u(rng) < 0 ? -1 : 1));
      const T got = h.dual_step(x, z, T(-1));
      const long double X = x, Z = z, B = static_cast<T>(beta);
      const long double want = B * std::sinh(std::asinh(X / B) - Z);
      const long double c = B * B / (std::sqrt(X * X + B * B) + std::fabs(X));
      const T scale = static_cast<T>(std::max(std::fabs(want), c * std::fabs(Z)));
      const long double ulp = std::nextafter(scale, std::numeric_limits<T>::infinity()) - scale;
      const double err = static_cast<double>(std::fabs(got - want) / ulp);
      worst = std::max(worst, err);
      total += err;
    }
    EXPECT_LE(worst, 4.5) << "beta=" << beta;
    EXPECT_LE(total / kSamples, 0.4) << "beta=" << beta;
  }
}

TEST(HyperbolicMap, SmallDualStepsAreAccurateFloat) { check_small_step_accuracy<float>(); }
TEST(HyperbolicMap, SmallDualStepsAreAccurateDouble) { check_small_step_accuracy<double>(); }

TEST(HyperbolicMap, InvMetricDoesNotUnderflowForTinyBeta) {
  const mc::HyperbolicEntropy<float> h{1e-30f};
  EXPECT_EQ(h.inv_metric(0.0f), 1e-30f);
  EXPECT_TRUE(std::isfinite(h.dual_step(0.0f, 1.0f, -0.1f)));
}

TEST(MapKind, FanInBeta) {
  EXPECT_DOUBLE_EQ(mc::layer_beta(0.6, mc::BetaScaling::None, 64 * 27, 4, 64), 0.6);
  EXPECT_DOUBLE_EQ(mc::layer_beta(0.6, mc::BetaScaling::FanIn, 64 * 27, 4, 64),
                   0.6 / std::sqrt(27.0));
  EXPECT_DOUBLE_EQ(mc::layer_beta(0.6, mc::BetaScaling::FanIn, 10, 1, 10), 0.6);
  EXPECT_DOUBLE_EQ(mc::layer_beta(0.6, mc::BetaScaling::FanIn, 1, 0, 1), 0.6);
}

TEST(MapKind, NamesRoundTrip) {
  EXPECT_EQ(mc::index_of("hyperbolic", mc::kMirrorNames), 1);
  EXPECT_EQ(mc::index_of("dual", mc::kUpdateNames), 1);
  EXPECT_EQ(mc::index_of("fan_in", mc::kBetaScalingNames), 1);
  EXPECT_EQ(mc::index_of("Hyperbolic", mc::kMirrorNames), -1);
}

}  // namespace
