#include "mirrorflow/optim.h"

#include <ATen/ATen.h>
#include <torch/serialize/archive.h>

#include <utility>

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

struct Bucket {
  at::Device device;
  at::ScalarType dtype;
  std::vector<torch::Tensor> params;
};

std::vector<Bucket> bucket_by_device_and_dtype(const std::vector<torch::Tensor>& params) {
  std::vector<Bucket> buckets;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    auto it = std::find_if(buckets.begin(), buckets.end(), [&](const Bucket& b) {
      return b.device == p.device() && b.dtype == p.scalar_type();
    });
    if (it == buckets.end()) {
      buckets.push_back({p.device(), p.scalar_type(), {}});
      it = std::prev(buckets.end());
    }
    it->params.push_back(p);
  }
  return buckets;
}

}  // namespace

torch::Tensor MirrorDescent::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups_) {
    const StepOptions options =
        static_cast<const MirrorDescentOptions&>(group.options()).validated();
    const bool has_momentum = options.momentum != 0;
    for (const Bucket& bucket : bucket_by_device_and_dtype(group.params())) {
      const std::size_t n = bucket.params.size();
      std::vector<torch::Tensor> grads, buffers, steps, means;
      std::vector<bool> valid;
      std::vector<MirrorDescentParamState*> states(n, nullptr);
      for (std::size_t i = 0; i < n; ++i) {
        const torch::Tensor& p = bucket.params[i];
        grads.push_back(p.grad());
        auto found = state_.find(p.unsafeGetTensorImpl());
        MirrorDescentParamState* st =
            found == state_.end() ? nullptr
                                  : static_cast<MirrorDescentParamState*>(found->second.get());
        states[i] = st;
        if (has_momentum) {
          const bool have = st != nullptr && st->momentum_buffer().defined();
          buffers.push_back(have ? st->momentum_buffer()
                                 : torch::zeros_like(p, at::MemoryFormat::Preserve));
          const bool have_step = st != nullptr && st->step().defined();
          steps.push_back(have_step ? st->step().to(p.device())
                                    : torch::zeros({}, p.options().dtype(at::kFloat)));
        }
        if (options.normalize) {
          const bool have = st != nullptr && st->metric_mean().defined();
          means.push_back(have ? st->metric_mean()
                               : torch::zeros({}, p.options().dtype(at::kDouble)));
          valid.push_back(have && st->metric_mean_version() == p._version());
        }
      }
      // The operator checks everything before it changes anything; the state is
      // recorded only once it has succeeded.
      mirror_descent_step_(bucket.params, grads, buffers, steps, means, valid, options);
      for (std::size_t i = 0; i < n; ++i) {
        const torch::Tensor& p = bucket.params[i];
        MirrorDescentParamState* st = states[i];
        if (st == nullptr) {
          auto fresh = std::make_unique<MirrorDescentParamState>();
          st = fresh.get();
          state_[p.unsafeGetTensorImpl()] = std::move(fresh);
        }
        if (has_momentum) {
          st->momentum_buffer(buffers[i]);
          st->step(steps[i]);
        }
        if (options.normalize) {
          st->metric_mean(means[i]);
          st->metric_mean_version(p._version());
        }
      }
    }
  }
  return loss;
}

void MirrorDescent::save(torch::serialize::OutputArchive& archive) const {
  serialize(*this, archive);
}

void MirrorDescent::load(torch::serialize::InputArchive& archive) {
  serialize(*this, archive);
}

}  // namespace mirrorflow
