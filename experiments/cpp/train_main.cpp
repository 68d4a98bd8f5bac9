// vgg_train: trains VGG-16 on CIFAR-10 or Fashion-MNIST with
// mirrorflow::MirrorDescent (MATH.md §2, the §5 VGG set-up). See
// docs/cpp_training.md and `vgg_train --help`.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>
#include <torch/nn/functional/loss.h>
#include <torch/serialize.h>
#include <torch/utils.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "augmentation.h"
#include "csv_log.h"
#include "datasets.h"
#include "file_bytes.h"
#include "mirrorflow/optim.h"
#include "run_record.h"
#include "train_options.h"
#include "training_checkpoint.h"
#include "vgg.h"

namespace {

using vgg_train::ChannelStats;
using vgg_train::EpochRecord;
using vgg_train::ImageSet;
using vgg_train::TrainOptions;

constexpr int64_t kCropPadding = 4;

struct Evaluation {
  double loss = 0;
  double accuracy = 0;
};

Evaluation evaluate(vgg_train::Vgg16& model, const ImageSet& set, const ChannelStats& stats,
                    int64_t batch_size, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  model->eval();
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t start = 0; start < set.size(); start += batch_size) {
    const int64_t count = std::min(batch_size, set.size() - start);
    const at::Tensor x =
        vgg_train::normalize(set.images.narrow(0, start, count), stats).to(device);
    const at::Tensor y = set.labels.narrow(0, start, count).to(device);
    const at::Tensor logits = model->forward(x);
    namespace F = torch::nn::functional;
    loss_sum += F::cross_entropy(logits, y, F::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += logits.argmax(1).eq(y).sum().item<int64_t>();
  }
  const auto n = static_cast<double>(set.size());
  return {loss_sum / n, static_cast<double>(correct) / n};
}

void write_params(const std::string& path, vgg_train::Vgg16& model) {
  // A tuple of (name, tensor) pairs: torch.load(weights_only=True) reads it
  // (a c10::Dict carries a type tag that it refuses).
  std::vector<c10::IValue> params;
  for (const auto& named : model->named_parameters()) {
    params.emplace_back(c10::ivalue::Tuple::create(
        {c10::IValue(named.key()), c10::IValue(named.value().detach().cpu().clone())}));
  }
  const std::vector<char> bytes = torch::pickle_save(c10::ivalue::Tuple::create(params));
  vgg_train::replace_file_with(path, std::string(bytes.begin(), bytes.end()), "--save-params");
}

class ProgressLine {
 public:
  explicit ProgressLine(bool enabled) : enabled_(enabled && isatty(STDERR_FILENO) == 1) {}
  void update(int64_t epoch, int64_t epochs, int64_t batch, int64_t batches, double loss) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (batch != batches && now - last_ < std::chrono::milliseconds(250)) return;
    last_ = now;
    std::cerr << "\repoch " << epoch << "/" << epochs << "  batch " << batch << "/" << batches
              << "  loss " << std::fixed << std::setprecision(4) << loss << std::defaultfloat
              << std::flush;
    if (batch == batches) std::cerr << "\n";
  }

 private:
  bool enabled_;
  std::chrono::steady_clock::time_point last_{};
};

// Every output is checked before the data are read, so that a bad path stops
// the run now rather than after its training.
void check_outputs(const TrainOptions& options) {
  std::vector<std::pair<std::string, std::string>> outputs = {
      {"--csv", options.csv}, {"--csv (its run record)", vgg_train::run_record_path(options.csv)}};
  if (!options.checkpoint.empty()) outputs.emplace_back("--checkpoint", options.checkpoint);
  if (!options.save_params.empty()) outputs.emplace_back("--save-params", options.save_params);
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    vgg_train::check_output_path(outputs[i].second, outputs[i].first);
    for (std::size_t j = 0; j < i; ++j) {
      if (vgg_train::same_file_name(outputs[i].second, outputs[j].second)) {
        throw std::runtime_error(outputs[i].first + " and " + outputs[j].first +
                                 " name the same file, " + outputs[i].second +
                                 "; give each its own");
      }
    }
  }
}

int run(const TrainOptions& options) {
  check_outputs(options);
  if (options.threads > 0) torch::set_num_threads(static_cast<int>(options.threads));
  const torch::Device device(options.device);
  if (device.is_cuda() && !torch::cuda::is_available()) {
    throw std::runtime_error("--device " + options.device +
                             ": no CUDA device is available (torch::cuda::is_available() is "
                             "false); use --device cpu");
  }
  const vgg_train::Dataset data = vgg_train::load_dataset(
      options.dataset, options.data_dir, options.train_limit, options.test_limit);
  const ChannelStats stats = vgg_train::channel_stats(data.train.images);

  torch::manual_seed(options.seed);
  vgg_train::VggOptions model_options;
  model_options.in_channels = data.train.images.size(1);
  model_options.classes = data.classes;
  model_options.width = options.width;
  model_options.head_hidden = options.head_hidden;
  vgg_train::Vgg16 model(model_options);
  model->to(device);
  mirrorflow::MirrorDescent optimizer(model->parameters(), options.optimizer);
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);

  std::cout << "data: " << data.name << " from " << data.dir << ": train samples "
            << data.train.size() << ", test samples " << data.test.size() << "\n";
  std::cout << "model: VGG-16 width " << options.width << ", parameters "
            << vgg_train::parameter_count(*model) << "\n";
  const auto& o = options.optimizer;
  std::cout << "optimizer: MirrorDescent mirror=" << o.mirror() << " beta=" << o.beta()
            << " degree=" << o.degree() << " beta_scaling=" << o.beta_scaling()
            << " update=" << o.update() << " normalize=" << (o.normalize() ? "true" : "false")
            << " lr=" << o.lr() << "; batch size " << options.batch_size << ", device "
            << device << ", threads " << torch::get_num_threads() << "\n";

  vgg_train::TrainingProgress progress;
  const std::string key = vgg_train::trajectory_key(options);
  if (!options.checkpoint.empty() &&
      vgg_train::load_checkpoint(options.checkpoint, key, *model, optimizer, generator,
                                 &progress)) {
    std::cout << "resumed from " << options.checkpoint << " after epoch " << progress.epoch
              << " (" << progress.steps << " steps)\n";
  }
  vgg_train::CsvLog log(options.csv, progress.epoch);

  const int64_t n = data.train.size();
  const int64_t batches = (n + options.batch_size - 1) / options.batch_size;
  ProgressLine line(options.progress);
  const auto started = std::chrono::steady_clock::now();
  while (progress.epoch < options.epochs &&
         (options.max_steps == 0 || progress.steps < options.max_steps)) {
    const int64_t epoch = progress.epoch + 1;
    model->train();
    const at::Tensor order = at::randperm(n, generator, at::TensorOptions().dtype(at::kLong));
    double loss_sum = 0;
    int64_t correct = 0;
    int64_t seen = 0;
    for (int64_t b = 0; b < batches; ++b) {
      if (options.max_steps > 0 && progress.steps >= options.max_steps) break;
      const int64_t first = b * options.batch_size;
      const at::Tensor index = order.narrow(0, first, std::min(options.batch_size, n - first));
      at::Tensor x = data.train.images.index_select(0, index);
      if (options.augment) x = vgg_train::random_crop_flip(x, kCropPadding, data.flip, generator);
      x = vgg_train::normalize(x, stats).to(device);
      const at::Tensor y = data.train.labels.index_select(0, index).to(device);
      optimizer.zero_grad();
      const at::Tensor logits = model->forward(x);
      const at::Tensor loss = torch::nn::functional::cross_entropy(logits, y);
      loss.backward();
      optimizer.step();
      ++progress.steps;
      const double batch_loss = loss.item<double>();
      if (!std::isfinite(batch_loss)) {
        throw std::runtime_error("the training loss is " + std::to_string(batch_loss) +
                                 " at step " + std::to_string(progress.steps) +
                                 ": the run diverged; lower --lr");
      }
      loss_sum += batch_loss * static_cast<double>(index.size(0));
      correct += logits.argmax(1).eq(y).sum().item<int64_t>();
      seen += index.size(0);
      line.update(epoch, options.epochs, b + 1, batches, loss_sum / static_cast<double>(seen));
    }
    const Evaluation test = evaluate(model, data.test, stats, options.batch_size, device);
    EpochRecord record;
    record.epoch = epoch;
    record.steps = progress.steps;
    record.train_loss = loss_sum / static_cast<double>(seen);
    record.train_accuracy = static_cast<double>(correct) / static_cast<double>(seen);
    record.test_loss = test.loss;
    record.test_accuracy = test.accuracy;
    record.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    // Losses with every digit (runs compare them exactly), accuracies as counts allow.
    std::cout << "epoch " << epoch << "/" << options.epochs << " steps " << progress.steps
              << std::setprecision(17) << " train_loss " << record.train_loss
              << std::setprecision(6) << " train_acc " << record.train_accuracy
              << std::setprecision(17) << " test_loss " << record.test_loss
              << std::setprecision(6) << " test_acc " << record.test_accuracy << std::endl;
    log.append(record);
    progress.epoch = epoch;
    if (!options.checkpoint.empty()) {
      vgg_train::save_checkpoint(options.checkpoint, key, *model, optimizer, generator, progress);
    }
  }
  if (!options.save_params.empty()) write_params(options.save_params, model);
  vgg_train::write_run_record(options, data.dir, progress.epoch, progress.steps);
  std::cout << "done: " << progress.epoch << " epochs, " << progress.steps << " steps; log "
            << options.csv << ", record " << vgg_train::run_record_path(options.csv) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  TrainOptions options;
  try {
    options = vgg_train::parse_train_options(argc, argv);
  } catch (const std::exception& error) {
    std::cerr << "vgg_train: " << error.what() << "\n(vgg_train --help lists the options)\n";
    return 2;
  }
  if (options.help) {
    std::cout << vgg_train::usage();
    return 0;
  }
  try {
    return run(options);
  } catch (const c10::Error& error) {
    std::cerr << "vgg_train: error: " << error.what_without_backtrace() << "\n";
  } catch (const std::exception& error) {
    std::cerr << "vgg_train: error: " << error.what() << "\n";
  }
  return 1;
}
