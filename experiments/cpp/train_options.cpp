#include "train_options.h"

#include <cmath>
#include <functional>
#include <map>
#include <sstream>
#include <stdexcept>

#include "datasets.h"

namespace vgg_train {
namespace {

// The whole of `value` read by `convert` (std::stod, std::stoll), or an error
// naming the option and what it expects.
template <class Convert>
auto parse_whole(const std::string& name, const std::string& value, const char* expected,
                 Convert convert) {
  std::size_t used = 0;
  decltype(convert(value, &used)) x = 0;
  try {
    x = convert(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != value.size()) {
    throw std::invalid_argument("--" + name + " expects " + expected + ", got '" + value + "'");
  }
  return x;
}

double parse_number(const std::string& name, const std::string& value) {
  return parse_whole(name, value, "a number",
                     [](const std::string& v, std::size_t* used) { return std::stod(v, used); });
}

int64_t parse_integer(const std::string& name, const std::string& value, int64_t minimum) {
  const long long x = parse_whole(
      name, value, "an integer",
      [](const std::string& v, std::size_t* used) { return std::stoll(v, used); });
  if (x < minimum) {
    throw std::invalid_argument("--" + name + " must be >= " + std::to_string(minimum) +
                                ", got " + value);
  }
  return x;
}

bool parse_bool(const std::string& name, const std::string& value) {
  if (value == "1" || value == "true" || value == "yes") return true;
  if (value == "0" || value == "false" || value == "no") return false;
  throw std::invalid_argument("--" + name + " expects true/false (or 1/0), got '" + value + "'");
}

std::vector<int64_t> parse_widths(const std::string& name, const std::string& value) {
  std::vector<int64_t> widths;
  if (value.empty() || value == "none") return widths;
  std::stringstream stream(value);
  std::string item;
  while (std::getline(stream, item, ',')) widths.push_back(parse_integer(name, item, 1));
  return widths;
}

using Setter = std::function<void(TrainOptions&, const std::string&, const std::string&)>;

const std::map<std::string, Setter>& setters() {
  static const std::map<std::string, Setter> table = {
      {"dataset", [](TrainOptions& o, const std::string&, const std::string& v) {
         default_data_dir(v);  // checks the name
         o.dataset = v;
       }},
      {"data-dir",
       [](TrainOptions& o, const std::string&, const std::string& v) { o.data_dir = v; }},
      {"train-limit", [](TrainOptions& o, const std::string& n, const std::string& v) {
         o.train_limit = parse_integer(n, v, 0);
       }},
      {"test-limit", [](TrainOptions& o, const std::string& n, const std::string& v) {
         o.test_limit = parse_integer(n, v, 0);
       }},
      {"width", [](TrainOptions& o, const std::string& n, const std::string& v) {
         o.width = parse_number(n, v);
         if (!(o.width > 0) || !std::isfinite(o.width)) {
           throw std::invalid_argument("--width must be a finite number > 0, got " + v);
         }
       }},
      {"head-hidden", [](TrainOptions& o, const std::string& n, const std::string& v) {
         o.head_hidden = parse_widths(n, v);
       }},
      {"mirror",
       [](TrainOptions& o, const std::string&, const std::string& v) { o.optimizer.mirror(v); }},
      {"beta", [](TrainOptions& o, const std::string& n, const std::string& v) {
         o.optimizer.beta(parse_number(n, v));
       }},
      {"degree", [](TrainOptions& o, const std::string& n, const std::string& v) {
         o.optimizer.degree(parse_number(n, v));
       }},
      {"beta-scaling", [](TrainOptions& o, const std::string&, const std::string& v) {
         o.optimizer.beta_scaling(v);
       }},
      {"update",
       [](TrainOptions& o, const std::string&, const std::string& v) { o.optimizer.update(v); }},
      {"normalize", [](TrainOptions& o, const std::string& n, const std::string& v) {
         o.optimizer.normalize(parse_bool(n, v));
       }},
      {"lr", [](TrainOptions& o, const std::string& n, const std::string& v) {
         o.optimizer.lr(parse_number(n, v));
       }},
      {"batch-size", [](TrainOptions& o, const std::string& n, const std::string& v) {
         o.batch_size = parse_integer(n, v, 1);
       }},
      {"epochs", [](TrainOptions& o, const std::string& n, const std::string& v) {
         o.epochs = parse_integer(n, v, 0);
       }},
      {"max-steps", [](TrainOptions& o, const std::string& n, const std::string& v) {
         o.max_steps = parse_integer(n, v, 0);
       }},
      {"seed", [](TrainOptions& o, const std::string& n, const std::string& v) {
         o.seed = static_cast<uint64_t>(parse_integer(n, v, 0));
       }},
      {"threads", [](TrainOptions& o, const std::string& n, const std::string& v) {
         o.threads = parse_integer(n, v, 0);
       }},
      {"augment", [](TrainOptions& o, const std::string& n, const std::string& v) {
         o.augment = parse_bool(n, v);
       }},
      {"device", [](TrainOptions& o, const std::string&, const std::string& v) {
         try {
           const c10::Device device(v);
           (void)device;
         } catch (const c10::Error&) {
           throw std::invalid_argument("--device must be cpu, cuda or cuda:N, got '" + v + "'");
         }
         o.device = v;
       }},
      {"csv", [](TrainOptions& o, const std::string&, const std::string& v) { o.csv = v; }},
      {"checkpoint", [](TrainOptions& o, const std::string&, const std::string& v) {
         o.checkpoint = v;
       }},
      {"save-params", [](TrainOptions& o, const std::string&, const std::string& v) {
         o.save_params = v;
       }},
      {"progress", [](TrainOptions& o, const std::string& n, const std::string& v) {
         o.progress = parse_bool(n, v);
       }},
  };
  return table;
}

}  // namespace

TrainOptions parse_train_options(int argc, const char* const* argv) {
  TrainOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      options.help = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      throw std::invalid_argument("expected an option --name value, got '" + arg + "'");
    }
    std::string name = arg.substr(2);
    std::string value;
    const auto eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      throw std::invalid_argument("--" + name + " needs a value");
    }
    const auto it = setters().find(name);
    if (it == setters().end()) {
      throw std::invalid_argument("unknown option --" + name + " (see --help)");
    }
    it->second(options, name, value);
  }
  try {
    options.optimizer.validated();
  } catch (const c10::Error& error) {
    throw std::invalid_argument(error.what_without_backtrace());
  }
  if (options.csv.empty()) throw std::invalid_argument("--csv must name a file, got ''");
  return options;
}

std::string usage() {
  return R"(usage: vgg_train [--option value ...]

Trains VGG-16 (bias only in the first convolution, no batch norm, He
initialisation) with mirrorflow::MirrorDescent; prints each epoch's train
loss/accuracy and test loss/accuracy and appends them to a CSV file.

data
  --dataset NAME        fashion-mnist (default) or cifar10
  --data-dir DIR        default: /usr/share/datasets/fashion-mnist (Debian's
                        dataset-fashion-mnist) or data/cifar10 (holding
                        cifar-10-batches-bin/, as for the Python pipeline)
  --train-limit N       use the first N training samples (0: all; default 0)
  --test-limit N        use the first N test samples (0: all; default 0)
  --augment BOOL        random crop (4-pixel padding), and flips for CIFAR-10
                        (default true)
model
  --width W             width multiplier: max(1, round(W*c)) channels (default 1)
  --head-hidden A,B     hidden widths of the classifier head, multiplied by W
                        too (default: none, one linear layer)
optimizer (MirrorDescent; no momentum, no weight decay)
  --mirror NAME         euclidean (default), hyperbolic, power
  --beta B              beta of hyperbolic/power (default 1)
  --degree L            L of power (default 3)
  --beta-scaling S      none (default) or fan_in
  --update U            metric (default) or dual
  --normalize BOOL      per-layer normalised inverse metric (default true)
  --lr ETA              learning rate (default 0.02)
training
  --batch-size N        (default 128)
  --epochs N            (default 10)
  --max-steps N         stop after N optimizer steps in all (0: no limit)
  --seed S              initialisation, data order and augmentation (default 0)
  --threads N           intra-op threads (0: LibTorch's default)
  --device D            cpu (default), cuda, cuda:1, ...
outputs
  --csv FILE            per-epoch log (default runs/cpp_vgg/train_log.csv)
  --checkpoint FILE     saved after every epoch; an existing one is resumed
  --save-params FILE    the final parameters, pairs (name, tensor) that
                        Python's dict(torch.load(FILE)) reads
  --progress BOOL       progress line on a terminal's stderr (default true)
)";
}

std::string trajectory_key(const TrainOptions& o) {
  std::ostringstream key;
  key.precision(17);
  key << "dataset=" << o.dataset << " train_limit=" << o.train_limit
      << " width=" << o.width << " head_hidden=";
  for (int64_t h : o.head_hidden) key << h << ",";
  const auto& opt = o.optimizer;
  key << " mirror=" << opt.mirror() << " beta=" << opt.beta() << " degree=" << opt.degree()
      << " beta_scaling=" << opt.beta_scaling() << " update=" << opt.update()
      << " normalize=" << opt.normalize() << " lr=" << opt.lr() << " batch_size=" << o.batch_size
      << " seed=" << o.seed << " augment=" << o.augment;
  return key.str();
}

}  // namespace vgg_train
