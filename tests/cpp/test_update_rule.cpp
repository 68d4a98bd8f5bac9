// The elementwise step of core/update_rule.h against MATH.md §2 written out.
#include <gtest/gtest.h>

#include <cmath>

#include "mirrorflow/core/map_function.h"
#include "mirrorflow/core/update_rule.h"

namespace mc = mirrorflow::core;

TEST(GradientTransform, OrderOfOperationsMatchesSgd) {
  mc::GradientTransform<double> o;
  o.weight_decay = 0.1;
  o.momentum = 0.9;
  o.one_minus_dampening = 0.75;
  o.maximize = true;
  const double x = 2.0, g = 0.5;
  // g ← −g; g ← g + λθ
  const double decayed = mc::decayed_gradient(g, x, o);
  EXPECT_DOUBLE_EQ(decayed, -0.5 + 0.1 * 2.0);
  // first step: b ← g
  double buf = 123.0;
  EXPECT_DOUBLE_EQ(mc::momentum_gradient(decayed, buf, true, o), decayed);
  EXPECT_DOUBLE_EQ(buf, decayed);
  // later: b ← μb + (1−d)g
  const double before = buf;
  const double out = mc::momentum_gradient(decayed, buf, false, o);
  EXPECT_DOUBLE_EQ(buf, 0.9 * before + 0.75 * decayed);
  EXPECT_DOUBLE_EQ(out, buf);
  // nesterov: g + μb
  o.nesterov = true;
  double b2 = 1.0;
  EXPECT_DOUBLE_EQ(mc::momentum_gradient(0.5, b2, false, o), 0.5 + 0.9 * (0.9 * 1.0 + 0.75 * 0.5));
}

TEST(MirrorUpdate, MetricIsThetaMinusScaledInverseMetricTimesGradient) {
  const mc::HyperbolicEntropy<double> h{0.2};
  const double x = -0.7, g = 1.3, lr = 0.05;
  const double got = mc::mirror_update<mc::UpdateKind::Metric>(h, x, g, -lr);
  EXPECT_NEAR(got, x - lr * std::sqrt(x * x + 0.04) * g, 1e-15);
}

TEST(MirrorUpdate, DualIsConjugateOfShiftedGrad) {
  const mc::PowerPotential<double> p{3.0, 0.1};
  const double x = 0.4, g = -2.0, lr = 0.01;
  const double got = mc::mirror_update<mc::UpdateKind::Dual>(p, x, g, -lr);
  EXPECT_NEAR(got, p.grad_conj(p.grad(x) - lr * g), 1e-15);
}

TEST(MirrorUpdate, DualAndMetricAgreeToSecondOrder) {
  // |dual − metric| = O(η²): halving η divides the gap by about 4.
  const mc::HyperbolicEntropy<double> h{0.05};
  const mc::PowerPotential<double> p{3.0, 0.05};
  const double x = 0.3, g = 0.8;
  auto gap = [&](const auto& map, double lr) {
    return std::abs(mc::mirror_update<mc::UpdateKind::Dual>(map, x, g, -lr) -
                    mc::mirror_update<mc::UpdateKind::Metric>(map, x, g, -lr));
  };
  for (double lr : {1e-2, 5e-3, 2.5e-3}) {
    EXPECT_NEAR(gap(h, lr) / gap(h, lr / 2), 4.0, 0.1) << lr;
    EXPECT_NEAR(gap(p, lr) / gap(p, lr / 2), 4.0, 0.1) << lr;
  }
}

TEST(MirrorUpdate, EuclideanIsOneFusedMultiplyAdd) {
  const mc::Euclidean<float> e{};
  const float x = 1.1f, g = 0.3f, lr = 0.1f;
  EXPECT_EQ(mc::mirror_update<mc::UpdateKind::Metric>(e, x, g, -lr), std::fma(g, -lr, x));
  EXPECT_EQ(mc::mirror_update<mc::UpdateKind::Dual>(e, x, g, -lr), std::fma(g, -lr, x));
}
