#include "mirrorflow/optim.h"

#include <ATen/ATen.h>
#include <torch/serialize/archive.h>

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace mirrorflow {

// ---- options -----------------------------------------------------------------

MirrorDescentOptions::MirrorDescentOptions(double lr) : lr_(lr) {}

StepOptions MirrorDescentOptions::validated() const {
  return make_step_options(mirror(), beta(), degree(), update(), normalize(), beta_scaling(),
                           lr(), momentum(), dampening(), nesterov(), weight_decay(), maximize());
}

bool operator==(const MirrorDescentOptions& lhs, const MirrorDescentOptions& rhs) {
  return lhs.lr() == rhs.lr() && lhs.mirror() == rhs.mirror() && lhs.beta() == rhs.beta() &&
         lhs.degree() == rhs.degree() && lhs.update() == rhs.update() &&
         lhs.normalize() == rhs.normalize() && lhs.beta_scaling() == rhs.beta_scaling() &&
         lhs.momentum() == rhs.momentum() && lhs.dampening() == rhs.dampening() &&
         lhs.nesterov() == rhs.nesterov() && lhs.weight_decay() == rhs.weight_decay() &&
         lhs.maximize() == rhs.maximize();
}

void MirrorDescentOptions::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(mirror);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(beta);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(degree);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(update);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(normalize);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(beta_scaling);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(momentum);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(dampening);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(nesterov);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(weight_decay);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(maximize);
}

void MirrorDescentOptions::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(std::string, mirror);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, beta);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, degree);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(std::string, update);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, normalize);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(std::string, beta_scaling);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, momentum);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, dampening);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, nesterov);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, weight_decay);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(bool, maximize);
}

double MirrorDescentOptions::get_lr() const { return lr(); }

void MirrorDescentOptions::set_lr(const double lr) { this->lr(lr); }

// ---- state ---------------------------------------------------------------------

void MirrorDescentParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(momentum_buffer);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
}

void MirrorDescentParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, momentum_buffer);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, step);
}

bool operator==(const MirrorDescentParamState& lhs, const MirrorDescentParamState& rhs) {
  auto same = [](const torch::Tensor& a, const torch::Tensor& b) {
    return a.defined() == b.defined() && (!a.defined() || torch::equal(a, b));
  };
  return same(lhs.momentum_buffer(), rhs.momentum_buffer()) && same(lhs.step(), rhs.step());
}

// ---- optimizer -------------------------------------------------------------------

MirrorDescent::MirrorDescent(const std::vector<torch::optim::OptimizerParamGroup>& param_groups,
                             MirrorDescentOptions defaults)
    : Optimizer(param_groups, std::make_unique<MirrorDescentOptions>(defaults)) {
  defaults.validated();
  for (const auto& group : param_groups_) {
    static_cast<const MirrorDescentOptions&>(group.options()).validated();
  }
}

MirrorDescent::MirrorDescent(std::vector<torch::Tensor> params, MirrorDescentOptions defaults)
    : MirrorDescent({torch::optim::OptimizerParamGroup(std::move(params))}, std::move(defaults)) {}

void MirrorDescent::add_param_group(const torch::optim::OptimizerParamGroup& param_group) {
  if (param_group.has_options()) {
    static_cast<const MirrorDescentOptions&>(param_group.options()).validated();
  }
  Optimizer::add_param_group(param_group);
}

namespace {

// The tensors of one (device, dtype) of a group, as one call of the operator
// takes them, with the group's options and the states they came from.
struct Call {
  std::size_t group = 0;
  StepOptions options;
  std::string map;  // what the group's means are means of (map_key)
  std::vector<torch::Tensor> params, grads, buffers, steps, means;
  std::vector<bool> valid;
  std::vector<MirrorDescentParamState*> states;
};

// The map a cached mean of 1/φ'' belongs to: a mean is reused only for it.
std::string map_key(const MirrorDescentOptions& o) {
  char numbers[64];
  std::snprintf(numbers, sizeof numbers, " %a %a ", o.beta(), o.degree());
  return o.mirror() + numbers + o.beta_scaling();
}

// The group's parameters with a gradient, by (device, dtype) in order of
// first appearance.
std::vector<std::vector<torch::Tensor>> by_device_and_dtype(
    const std::vector<torch::Tensor>& params) {
  std::vector<std::vector<torch::Tensor>> buckets;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    auto it = std::find_if(buckets.begin(), buckets.end(), [&](const auto& b) {
      return b[0].device() == p.device() && b[0].scalar_type() == p.scalar_type();
    });
    if (it == buckets.end()) {
      buckets.emplace_back();
      it = std::prev(buckets.end());
    }
    it->push_back(p);
  }
  return buckets;
}

std::string where(const Call& call) {
  const torch::Tensor& p = call.params[0];
  return "in param group " + std::to_string(call.group) + ", among its parameters of dtype " +
         std::string(c10::toString(p.scalar_type())) + " on " + p.device().str() +
         " (params[i] and the other lists count those only)";
}

}  // namespace

torch::Tensor MirrorDescent::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  // Every group's options are checked, and every call is planned, before any
  // call changes anything.
  std::vector<Call> calls;
  for (std::size_t g = 0; g < param_groups_.size(); ++g) {
    const auto& options = static_cast<const MirrorDescentOptions&>(param_groups_[g].options());
    const StepOptions step_options = options.validated();
    const bool has_momentum = step_options.momentum != 0;
    for (auto& params : by_device_and_dtype(param_groups_[g].params())) {
      Call call;
      call.group = g;
      call.options = step_options;
      call.map = map_key(options);
      for (const torch::Tensor& p : params) {
        call.grads.push_back(p.grad());
        auto found = state_.find(p.unsafeGetTensorImpl());
        MirrorDescentParamState* st =
            found == state_.end() ? nullptr
                                  : static_cast<MirrorDescentParamState*>(found->second.get());
        call.states.push_back(st);
        if (has_momentum) {
          const bool have = st != nullptr && st->momentum_buffer().defined();
          call.buffers.push_back(have ? st->momentum_buffer()
                                      : torch::zeros_like(p, at::MemoryFormat::Preserve));
          // A buffer without a step count (as torch::optim::SGD's state holds) is
          // used as it is: the count says only whether the buffer exists yet.
          const bool have_step = st != nullptr && st->step().defined();
          call.steps.push_back(have_step ? st->step().to(p.device())
                                         : torch::full({}, have ? 1.0 : 0.0,
                                                       p.options().dtype(at::kFloat)));
        }
        if (step_options.normalize) {
          const bool have = st != nullptr && st->metric_mean().defined();
          call.means.push_back(have ? st->metric_mean()
                                    : torch::zeros({}, p.options().dtype(at::kDouble)));
          call.valid.push_back(have && st->metric_mean_version() == p._version() &&
                               st->metric_mean_map() == call.map);
        }
      }
      call.params = std::move(params);
      calls.push_back(std::move(call));
    }
  }
  // One call checks its arguments before it writes; several are all checked first.
  for (const Call& call : calls) {
    try {
      if (calls.size() > 1) {
        check_step_arguments(call.params, call.grads, call.buffers, call.steps, call.means,
                             call.valid, call.options);
      } else {
        mirror_descent_step_(call.params, call.grads, call.buffers, call.steps, call.means,
                             call.valid, call.options);
      }
    } catch (c10::Error& error) {
      error.add_context(where(call));
      throw;
    }
  }
  for (const Call& call : calls) {
    if (calls.size() > 1) {
      mirror_descent_step_(call.params, call.grads, call.buffers, call.steps, call.means,
                           call.valid, call.options);
    }
    // The state is recorded only once the call has succeeded.
    for (std::size_t i = 0; i < call.params.size(); ++i) {
      const torch::Tensor& p = call.params[i];
      MirrorDescentParamState* st = call.states[i];
      if (st == nullptr) {
        auto fresh = std::make_unique<MirrorDescentParamState>();
        st = fresh.get();
        state_[p.unsafeGetTensorImpl()] = std::move(fresh);
      }
      if (call.options.momentum != 0) {
        st->momentum_buffer(call.buffers[i]);
        st->step(call.steps[i]);
      }
      if (call.options.normalize) {
        st->metric_mean(call.means[i]);
        st->metric_mean_version(p._version());
        st->metric_mean_map(call.map);
      }
    }
  }
  return loss;
}

void MirrorDescent::invalidate_metric_means() {
  for (auto& entry : state_) {
    static_cast<MirrorDescentParamState&>(*entry.second).metric_mean_version(-1);
  }
}

void MirrorDescent::save(torch::serialize::OutputArchive& archive) const {
  serialize(*this, archive);
}

void MirrorDescent::load(torch::serialize::InputArchive& archive) {
  // What the optimizer holds now, put back if the archive is refused.
  std::vector<std::unique_ptr<torch::optim::OptimizerOptions>> options;
  for (const auto& group : param_groups_) options.push_back(group.options().clone());
  decltype(state_) state;
  for (const auto& [key, value] : state_) state[key] = value->clone();
  try {
    serialize(*this, archive);
    for (std::size_t g = 0; g < param_groups_.size(); ++g) {
      try {
        static_cast<const MirrorDescentOptions&>(param_groups_[g].options()).validated();
      } catch (c10::Error& error) {
        error.add_context("in the options of param group " + std::to_string(g) +
                          " of the archive loaded; the optimizer is left as it was");
        throw;
      }
    }
  } catch (...) {
    for (std::size_t g = 0; g < param_groups_.size() && g < options.size(); ++g) {
      param_groups_[g].set_options(std::move(options[g]));
    }
    state_ = std::move(state);
    throw;
  }
}

}  // namespace mirrorflow
