// Trains a one-parameter problem with mirrorflow::MirrorDescent through the
// installed package and checks the result against the closed form.
#include <torch/torch.h>

#include <cmath>
#include <iostream>

#include "mirrorflow/optim.h"

int main() {
  // Minimise ½(θ − 2)² from θ = 1 with the hyperbolic metric update, β = 0.5:
  // θ ← θ − η·√(θ²+β²)·(θ − 2).
  auto theta = torch::ones({1}, torch::kFloat64).requires_grad_();
  mirrorflow::MirrorDescent opt(
      {theta}, mirrorflow::MirrorDescentOptions(0.1).mirror("hyperbolic").beta(0.5));
  double expected = 1.0;
  for (int step = 0; step < 20; ++step) {
    opt.zero_grad();
    auto loss = 0.5 * (theta - 2.0).pow(2).sum();
    loss.backward();
    opt.step();
    expected -= 0.1 * std::sqrt(expected * expected + 0.25) * (expected - 2.0);
  }
  const double got = theta.item<double>();
  std::cout << "theta " << got << " expected " << expected << std::endl;
  if (std::abs(got - expected) > 1e-12) return 1;
  std::cout << "consumer: find_package(mirrorflow) works" << std::endl;
  return 0;
}
