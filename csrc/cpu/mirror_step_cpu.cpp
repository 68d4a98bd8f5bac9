// The CPU implementation of mirrorflow::mirror_descent_step_ and
// mirrorflow::map_eval (registered for the CPU dispatch key).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <map>
#include <string>
#include <vector>

#include "cpu_kernel.h"
#include "mirrorflow/core/map_function.h"
#include "ops/flat_view.h"
#include "ops/map_eval_call.h"
#include "ops/step_call.h"

namespace mirrorflow::cpu {
namespace {

using detail::FlatView;
using detail::param_view;
using detail::view_like;
using detail::write_back;

using core::step_scale;

void step_cpu(detail::StepCall& call) {
  const StepOptions& o = call.options;
  if (call.params.empty()) return;
  // A GradScaler overflow skips the step: nothing changes, except that stale
  // means are still computed (of the unchanged parameters), since the caller
  // keeps them as valid afterwards.
  const bool skipped = call.found_inf && call.found_inf->item<double>() != 0;
  if (skipped && !o.normalize) return;
  const double lr = call.lr_tensor ? call.lr_tensor->item<double>() : o.lr;
  const bool has_momentum = o.momentum != 0;

  KernelConfig config;
  config.mirror = o.mirror;
  config.update = o.update;
  config.degree = o.degree;
  config.has_momentum = has_momentum;
  config.track_mean = o.normalize;
  config.transform = core::GradientTransform<double>{o.weight_decay, o.momentum,
                                                     1.0 - o.dampening, o.nesterov, o.maximize};
  config.unscale = call.grad_scale.has_value();
  config.grad_scale = config.unscale ? call.grad_scale->item<double>() : 1.0;
  config.prefetch = prefetch_plan();

  // Tensors of one dtype go to the kernel together.
  std::map<at::ScalarType, std::vector<std::size_t>> by_dtype;
  for (std::size_t i = 0; i < call.params.size(); ++i) {
    if (call.params[i].numel() > 0) by_dtype[call.params[i].scalar_type()].push_back(i);
  }
  const RunTasksFn run_tasks = select_run_tasks();

  for (const auto& [dtype, indices] : by_dtype) {
    std::vector<FlatView> views;  // param, grad, buffer of each tensor, in order
    std::vector<TensorTask> tasks;
    std::vector<TensorTask> stale;  // tensors whose stored mean must be recomputed
    std::vector<std::size_t> stale_pos;
    for (std::size_t i : indices) {
      const at::Tensor& p = call.params[i];
      FlatView pv = param_view(p);
      FlatView gv = view_like(call.grads[i], pv.flat, call.grad_scale.has_value());
      TensorTask t;
      t.param = pv.flat.data_ptr();
      t.grad = gv.flat.data_ptr();
      t.numel = p.numel();
      t.beta = detail::layer_beta(o, p);
      views.push_back(pv);
      views.push_back(gv);
      if (has_momentum) {
        FlatView bv = view_like(call.momentum_buffers[i], pv.flat);
        t.momentum_buffer = bv.flat.data_ptr();
        // One-element CPU tensors (checked in make_step_call): read in place, as
        // .item() costs a dispatcher call per tensor.
        t.first_step = *call.steps[i].data_ptr<float>() == 0;
        views.push_back(bv);
      }
      if (o.normalize) {
        if (call.metric_means_valid[i]) {
          t.scale = step_scale(lr, *call.metric_means[i].data_ptr<double>(), true);
        } else {
          stale.push_back(t);
          stale_pos.push_back(tasks.size());
        }
      } else {
        t.scale = step_scale(lr, 1.0, false);
      }
      tasks.push_back(t);
    }
    if (!stale.empty()) {
      run_tasks(config, dtype, stale, /*mean_only=*/true);
      for (std::size_t k = 0; k < stale.size(); ++k) {
        tasks[stale_pos[k]].scale = step_scale(lr, stale[k].mean_out, true);
      }
    }
    if (skipped) {
      for (std::size_t k = 0; k < stale.size(); ++k) {
        call.metric_means[indices[stale_pos[k]]].fill_(stale[k].mean_out);
      }
      continue;
    }
    run_tasks(config, dtype, tasks, /*mean_only=*/false);
    for (const FlatView& v : views) write_back(v);
    for (std::size_t k = 0; k < indices.size(); ++k) {
      if (o.normalize) *call.metric_means[indices[k]].data_ptr<double>() = tasks[k].mean_out;
    }
  }
  if (skipped) return;
  // Written in place above; bump_versions marks them changed.
  if (has_momentum) {
    for (auto& s : call.steps) *s.data_ptr<float>() += 1;
  }
  detail::bump_versions(call);
}

void mirror_descent_step_cpu(at::TensorList params, at::TensorList grads,
                             at::TensorList momentum_buffers, at::TensorList steps,
                             at::TensorList metric_means, c10::List<bool> metric_means_valid,
                             c10::string_view mirror, double beta, double degree,
                             c10::string_view update, bool normalize,
                             c10::string_view beta_scaling, double lr, double momentum,
                             double dampening, bool nesterov, double weight_decay, bool maximize,
                             const std::optional<at::Tensor>& lr_tensor,
                             const std::optional<at::Tensor>& grad_scale,
                             const std::optional<at::Tensor>& found_inf) {
  std::vector<bool> valid(metric_means_valid.begin(), metric_means_valid.end());
  detail::StepCall call = detail::make_step_call(
      params, grads, momentum_buffers, steps, metric_means, valid, mirror, beta, degree, update,
      normalize, beta_scaling, lr, momentum, dampening, nesterov, weight_decay, maximize,
      lr_tensor, grad_scale, found_inf);
  step_cpu(call);
}

template <class Map, class scalar_t>
void eval_typed(const Map& map, core::MapFunction fn, const scalar_t* in, scalar_t* out,
                int64_t n) {
  using T = at::opmath_type<scalar_t>;
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      out[i] = static_cast<scalar_t>(core::apply_map_function(map, fn, static_cast<T>(in[i])));
    }
  });
}

at::Tensor map_eval_cpu(const at::Tensor& x, c10::string_view mirror, double beta, double degree,
                        c10::string_view function) {
  const detail::MapEvalCall call = detail::make_map_eval_call(x, mirror, beta, degree, function);
  const at::Tensor in = x.contiguous();
  at::Tensor out = at::empty_like(in);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "map_eval_cpu", [&] {
    using T = at::opmath_type<scalar_t>;
    core::visit_map<T>(call.mirror, call.beta, call.degree, [&](const auto& map) {
      eval_typed(map, call.function, in.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                 in.numel());
    });
  });
  return out;
}

}  // namespace
}  // namespace mirrorflow::cpu

TORCH_LIBRARY_IMPL(mirrorflow, CPU, m) {
  m.impl("mirror_descent_step_", &mirrorflow::cpu::mirror_descent_step_cpu);
  m.impl("map_eval", &mirrorflow::cpu::map_eval_cpu);
}
