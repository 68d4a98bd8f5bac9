#include "datasets.h"

#include <stdexcept>

#include "cifar10_binary.h"
#include "fashion_mnist.h"

namespace vgg_train {

const std::vector<std::string>& dataset_names() {
  static const std::vector<std::string> names = {"cifar10", "fashion-mnist"};
  return names;
}

std::string default_data_dir(const std::string& name) {
  if (name == "fashion-mnist") return kFashionMnistDefaultDir;
  if (name == "cifar10") return kCifar10DefaultDir;
  throw std::invalid_argument("--dataset must be one of cifar10, fashion-mnist, got '" + name +
                              "'");
}

Dataset load_dataset(const std::string& name, const std::string& given_dir, int64_t train_limit,
                     int64_t test_limit) {
  Dataset data;
  data.name = name;
  data.dir = given_dir.empty() ? default_data_dir(name) : given_dir;
  if (name == "fashion-mnist") {
    data.train = load_fashion_mnist(data.dir, true, train_limit);
    data.test = load_fashion_mnist(data.dir, false, test_limit);
    data.flip = false;
  } else if (name == "cifar10") {
    data.train = load_cifar10_binary(data.dir, true, train_limit);
    data.test = load_cifar10_binary(data.dir, false, test_limit);
    data.dir = cifar10_binary_dir(data.dir);
    data.flip = true;
  } else {
    default_data_dir(name);  // throws the message naming the choices
  }
  return data;
}

}  // namespace vgg_train
