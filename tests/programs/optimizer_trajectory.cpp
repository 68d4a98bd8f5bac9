// Runs the C++ optimizer mirrorflow::MirrorDescent for a few steps on
// parameters and gradients given by closed formulas, and saves the final
// parameters, as a tuple, with torch::pickle_save (Python's torch.load reads it).
// tests/python/test_cpp_parity.py runs the Python optimizer on the same
// formulas and requires the same result bit for bit, on the CPU and on CUDA.
// Needs only LibTorch and the library (no GoogleTest).
//
//   optimizer_trajectory OUT DEVICE DTYPE STEPS [key=value ...]
//   e.g. optimizer_trajectory out.pt cuda float32 4 mirror=hyperbolic beta=0.1 normalize=1
//
// Parameter k has shape kShapes[k] and values 0.5·sin(0.37·i + 1.3·k), the
// gradient at step t the values cos(0.11·i + 0.7·t + 0.5·k) (i the flat index,
// computed in float64 on the CPU, then cast to DTYPE and moved to DEVICE).
#include <ATen/ATen.h>
#include <torch/serialize.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "mirrorflow/optim.h"

namespace {

const std::vector<std::vector<int64_t>> kShapes = {{16, 3, 3, 3}, {33}, {70001}, {0}, {5, 7}};

at::Tensor formula(int64_t n, double a, double b, bool cosine) {
  at::Tensor x = at::arange(n, at::TensorOptions().dtype(at::kDouble)).mul(a).add(b);
  return cosine ? x.cos() : x.sin().mul(0.5);
}

at::ScalarType parse_dtype(const std::string& name) {
  static const std::map<std::string, at::ScalarType> dtypes = {
      {"float64", at::kDouble}, {"float32", at::kFloat}, {"bfloat16", at::kBFloat16},
      {"float16", at::kHalf}};
  const auto it = dtypes.find(name);
  if (it == dtypes.end()) throw std::invalid_argument("unknown dtype '" + name + "'");
  return it->second;
}

bool parse_bool(const std::string& value) { return value == "1" || value == "true"; }

mirrorflow::MirrorDescentOptions parse_options(int argc, char** argv) {
  mirrorflow::MirrorDescentOptions o(0.01);
  for (int i = 5; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto eq = arg.find('=');
    if (eq == std::string::npos) throw std::invalid_argument("expected key=value, got " + arg);
    const std::string key = arg.substr(0, eq);
    const std::string value = arg.substr(eq + 1);
    if (key == "lr") o.lr(std::stod(value));
    else if (key == "mirror") o.mirror(value);
    else if (key == "beta") o.beta(std::stod(value));
    else if (key == "degree") o.degree(std::stod(value));
    else if (key == "update") o.update(value);
    else if (key == "normalize") o.normalize(parse_bool(value));
    else if (key == "beta_scaling") o.beta_scaling(value);
    else if (key == "momentum") o.momentum(std::stod(value));
    else if (key == "dampening") o.dampening(std::stod(value));
    else if (key == "nesterov") o.nesterov(parse_bool(value));
    else if (key == "weight_decay") o.weight_decay(std::stod(value));
    else if (key == "maximize") o.maximize(parse_bool(value));
    else throw std::invalid_argument("unknown option '" + key + "'");
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: optimizer_trajectory OUT DEVICE DTYPE STEPS [key=value ...]\n";
    return 2;
  }
  try {
    const std::string out = argv[1];
    const at::Device device(argv[2]);
    const at::ScalarType dtype = parse_dtype(argv[3]);
    const int steps = std::stoi(argv[4]);
    const mirrorflow::MirrorDescentOptions options = parse_options(argc, argv);

    std::vector<at::Tensor> params;
    for (std::size_t k = 0; k < kShapes.size(); ++k) {
      int64_t n = 1;
      for (int64_t s : kShapes[k]) n *= s;
      params.push_back(formula(n, 0.37, 1.3 * static_cast<double>(k), false)
                           .reshape(kShapes[k])
                           .to(device, dtype)
                           .set_requires_grad(true));
    }
    mirrorflow::MirrorDescent optimizer(params, options);
    for (int t = 0; t < steps; ++t) {
      for (std::size_t k = 0; k < params.size(); ++k) {
        params[k].mutable_grad() =
            formula(params[k].numel(), 0.11, 0.7 * t + 0.5 * static_cast<double>(k), true)
                .reshape(kShapes[k])
                .to(device, dtype);
      }
      optimizer.step();
    }
    std::vector<c10::IValue> result;  // a tuple: torch.load(weights_only=True) reads it
    for (const auto& p : params) result.emplace_back(p.detach().cpu());
    const std::vector<char> bytes = torch::pickle_save(c10::ivalue::Tuple::create(result));
    std::ofstream file(out, std::ios::binary);
    file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!file) throw std::runtime_error("cannot write " + out);
  } catch (const std::exception& e) {
    std::cerr << "optimizer_trajectory: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
