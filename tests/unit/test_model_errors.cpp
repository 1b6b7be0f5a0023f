// Damaged and mismatched model directories: each gives an error that names the file, the
// tensor or the field, and what was expected, so a person can act on it. The fixture models
// are copied to a temporary directory and broken there.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/tasks/loaded_model.h"
#include "tests/support/run_command.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<char> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const fs::path& path, const std::vector<char>& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A copy of a fixture model in a fresh temporary directory, removed at the end of the test.
class BrokenModel {
 public:
  explicit BrokenModel(const std::string& fixture) {
    static int counter = 0;
    dir_ = fs::temp_directory_path() /
           ("sparkd-broken-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(dir_);
    fs::copy(fs::path(SPARKD_SOURCE_DIR) / "tests/fixtures/models" / fixture, dir_,
             fs::copy_options::recursive);
  }
  ~BrokenModel() { fs::remove_all(dir_); }
  const fs::path& dir() const { return dir_; }

  void edit_config(const std::function<void(json&)>& edit) {
    std::ifstream in(dir_ / "config.json");
    json config = json::parse(in);
    edit(config);
    std::ofstream(dir_ / "config.json", std::ios::trunc) << config.dump(2);
  }
  // Rewrites model.safetensors with an edited header and the same data area.
  void edit_safetensors_header(const std::function<void(json&)>& edit) {
    const fs::path path = dir_ / "model.safetensors";
    std::vector<char> bytes = read_bytes(path);
    uint64_t header_length = 0;
    std::memcpy(&header_length, bytes.data(), 8);
    json header = json::parse(std::string(bytes.data() + 8, header_length));
    edit(header);
    const std::string text = header.dump();
    std::vector<char> out(8);
    const uint64_t new_length = text.size();
    std::memcpy(out.data(), &new_length, 8);
    out.insert(out.end(), text.begin(), text.end());
    out.insert(out.end(), bytes.begin() + 8 + static_cast<std::ptrdiff_t>(header_length),
               bytes.end());
    write_bytes(path, out);
  }

  sparkd::Status load() const {
    auto backend = sparkd::make_cpu_backend();
    auto model = sparkd::tasks::LoadedModel::load(dir_.string(), *backend);
    return model ? sparkd::Status::ok() : model.status();
  }

 private:
  fs::path dir_;
};

void require_error(const sparkd::Status& status, std::initializer_list<const char*> substrings) {
  INFO("error: " << status.to_string());
  REQUIRE_FALSE(status.is_ok());
  for (const char* s : substrings) CHECK_THAT(status.message(), Catch::Contains(s));
}

}  // namespace

TEST_CASE("an intact fixture loads (the baseline the broken copies differ from)",
          "[model_errors]") {
  BrokenModel model("qwen2_f32");
  CHECK(model.load().is_ok());
}

TEST_CASE("unsupported architecture lists the supported ones", "[model_errors]") {
  BrokenModel model("qwen2_f32");
  model.edit_config([](json& c) { c["architectures"] = {"GPT2LMHeadModel"}; });
  require_error(model.load(), {"GPT2LMHeadModel", "LlamaForCausalLM", "Qwen3ForCausalLM",
                               "XLMRobertaForSequenceClassification"});
}

TEST_CASE("a tensor missing from the file is named with its expected shape", "[model_errors]") {
  BrokenModel model("qwen2_f32");
  model.edit_safetensors_header([](json& h) { h.erase("model.layers.1.mlp.up_proj.weight"); });
  require_error(model.load(), {"model.layers.1.mlp.up_proj.weight", "missing"});
}

TEST_CASE("a tensor whose shape disagrees with config.json names both shapes", "[model_errors]") {
  BrokenModel model("qwen2_f32");
  int64_t intermediate = 0;
  model.edit_config([&](json& c) {
    intermediate = c["intermediate_size"].get<int64_t>();
    c["intermediate_size"] = intermediate + 8;
  });
  const std::string hidden = std::to_string(64);
  const sparkd::Status status = model.load();
  require_error(status, {"mlp.gate_proj.weight"});
  CHECK_THAT(status.message(), Catch::Contains("[" + std::to_string(intermediate) + ", "));
  CHECK_THAT(status.message(), Catch::Contains("[" + std::to_string(intermediate + 8) + ", "));
}

TEST_CASE("a truncated weights file is reported as truncated", "[model_errors]") {
  BrokenModel model("bert_embed");
  std::vector<char> bytes = read_bytes(model.dir() / "model.safetensors");
  bytes.resize(bytes.size() - 100);
  write_bytes(model.dir() / "model.safetensors", bytes);
  require_error(model.load(), {"truncated", "model.safetensors"});
}

TEST_CASE("a header length past the end of the file is reported", "[model_errors]") {
  BrokenModel model("bert_embed");
  std::vector<char> bytes = read_bytes(model.dir() / "model.safetensors");
  const uint64_t huge = bytes.size() + 1000;
  std::memcpy(bytes.data(), &huge, 8);
  write_bytes(model.dir() / "model.safetensors", bytes);
  require_error(model.load(), {"header length", "model.safetensors"});
}

TEST_CASE("overlapping tensors are named", "[model_errors]") {
  BrokenModel model("bert_embed");
  std::string first, second;
  model.edit_safetensors_header([&](json& h) {
    // Point the second tensor of the data area at the first one's bytes.
    std::vector<std::pair<uint64_t, std::string>> by_offset;
    for (auto& [name, entry] : h.items()) {
      if (name != "__metadata__")
        by_offset.emplace_back(entry["data_offsets"][0].get<uint64_t>(), name);
    }
    std::sort(by_offset.begin(), by_offset.end());
    first = by_offset[0].second;
    second = by_offset[1].second;
    auto& offsets = h[second]["data_offsets"];
    const uint64_t size = offsets[1].get<uint64_t>() - offsets[0].get<uint64_t>();
    const uint64_t begin = h[first]["data_offsets"][1].get<uint64_t>() - 4;
    offsets = {begin, begin + size};
  });
  require_error(model.load(), {"overlap", first.c_str(), second.c_str()});
}

TEST_CASE("an unknown dtype is reported with the supported ones", "[model_errors]") {
  BrokenModel model("bert_embed");
  model.edit_safetensors_header([](json& h) {
    for (auto& [name, entry] : h.items()) {
      if (name != "__metadata__") {
        entry["dtype"] = "Q4_WEIRD";
        break;
      }
    }
  });
  require_error(model.load(), {"Q4_WEIRD", "BF16"});
}

TEST_CASE("missing config.json and tokenizer.json are named", "[model_errors]") {
  {
    BrokenModel model("bert_embed");
    fs::remove(model.dir() / "config.json");
    require_error(model.load(), {"config.json"});
  }
  {
    BrokenModel model("bert_embed");
    fs::remove(model.dir() / "tokenizer.json");
    require_error(model.load(), {"tokenizer.json"});
  }
}

TEST_CASE("sparkd-run reports a broken model and exits non-zero", "[model_errors][cli]") {
  BrokenModel model("qwen2_f32");
  model.edit_safetensors_header([](json& h) { h.erase("model.norm.weight"); });
  const auto result = sparkd::testing::run_command(
      std::string(SPARKD_RUN_BINARY) + " " + model.dir().string() + " generate --json 2>&1",
      "\"hello\"\n");
  CHECK(result.exit_code == 1);
  REQUIRE_FALSE(result.lines.empty());
  CHECK_THAT(result.lines.back(), Catch::Contains("model.norm.weight"));
}
