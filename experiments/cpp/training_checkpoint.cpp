#include "training_checkpoint.h"

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <stdexcept>

#include "file_bytes.h"

namespace vgg_train {

void save_checkpoint(const std::string& path, const std::string& key, torch::nn::Module& model,
                     torch::optim::Optimizer& optimizer, const at::Generator& generator,
                     const TrainingProgress& progress) {
  torch::serialize::OutputArchive archive;
  torch::serialize::OutputArchive model_archive;
  model.save(model_archive);
  archive.write("model", model_archive);
  torch::serialize::OutputArchive optimizer_archive;
  optimizer.save(optimizer_archive);
  archive.write("optimizer", optimizer_archive);
  archive.write("generator", generator.get_state());
  archive.write("epoch", c10::IValue(progress.epoch));
  archive.write("steps", c10::IValue(progress.steps));
  archive.write("key", c10::IValue(key));
  replace_file(path, [&](const std::string& partial) { archive.save_to(partial); });
}

bool load_checkpoint(const std::string& path, const std::string& key, torch::nn::Module& model,
                     torch::optim::Optimizer& optimizer, at::Generator& generator,
                     TrainingProgress* progress) {
  if (!file_exists(path)) return false;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    c10::IValue saved_key;
    archive.read("key", saved_key);
    if (saved_key.toStringRef() != key) {
      throw std::runtime_error("it was written by a run with other settings:\n  checkpoint: " +
                               saved_key.toStringRef() + "\n  this run:   " + key +
                               "\nuse another --checkpoint, or delete it to start afresh");
    }
    torch::serialize::InputArchive model_archive;
    archive.read("model", model_archive);
    model.load(model_archive);
    torch::serialize::InputArchive optimizer_archive;
    archive.read("optimizer", optimizer_archive);
    optimizer.load(optimizer_archive);
    at::Tensor state;
    archive.read("generator", state);
    generator.set_state(state);
    c10::IValue epoch;
    c10::IValue steps;
    archive.read("epoch", epoch);
    archive.read("steps", steps);
    progress->epoch = epoch.toInt();
    progress->steps = steps.toInt();
  } catch (const c10::Error& error) {
    throw std::runtime_error("cannot resume from checkpoint " + path + ": " +
                             error.what_without_backtrace());
  } catch (const std::runtime_error& error) {
    throw std::runtime_error("cannot resume from checkpoint " + path + ": " + error.what());
  }
  return true;
}

}  // namespace vgg_train
