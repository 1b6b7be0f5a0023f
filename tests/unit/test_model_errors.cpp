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
#include "tests/support/model_copy.h"
#include "tests/support/run_command.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

void require_error(const sparkd::Status& status, std::initializer_list<const char*> substrings) {
  INFO("error: " << status.to_string());
  REQUIRE_FALSE(status.is_ok());
  for (const char* s : substrings) CHECK_THAT(status.message(), Catch::Contains(s));
}

}  // namespace

TEST_CASE("an intact fixture loads (the baseline the broken copies differ from)",
          "[model_errors]") {
  sparkd::testing::ModelCopy model("qwen2_f32");
  CHECK(model.load().is_ok());
}

TEST_CASE("unsupported architecture lists the supported ones", "[model_errors]") {
  sparkd::testing::ModelCopy model("qwen2_f32");
  model.edit_config([](json& c) { c["architectures"] = {"GPT2LMHeadModel"}; });
  require_error(model.load(), {"GPT2LMHeadModel", "LlamaForCausalLM", "Qwen3ForCausalLM",
                               "XLMRobertaForSequenceClassification"});
}

TEST_CASE("a tensor missing from the file is named with its expected shape", "[model_errors]") {
  sparkd::testing::ModelCopy model("qwen2_f32");
  model.edit_safetensors_header([](json& h) { h.erase("model.layers.1.mlp.up_proj.weight"); });
  require_error(model.load(), {"model.layers.1.mlp.up_proj.weight", "missing"});
}

TEST_CASE("a tensor whose shape disagrees with config.json names both shapes", "[model_errors]") {
  sparkd::testing::ModelCopy model("qwen2_f32");
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
  sparkd::testing::ModelCopy model("bert_embed");
  std::vector<char> bytes = sparkd::testing::read_bytes(model.dir() / "model.safetensors");
  bytes.resize(bytes.size() - 100);
  sparkd::testing::write_bytes(model.dir() / "model.safetensors", bytes);
  require_error(model.load(), {"truncated", "model.safetensors"});
}

TEST_CASE("a header length past the end of the file is reported", "[model_errors]") {
  sparkd::testing::ModelCopy model("bert_embed");
  std::vector<char> bytes = sparkd::testing::read_bytes(model.dir() / "model.safetensors");
  const uint64_t huge = bytes.size() + 1000;
  std::memcpy(bytes.data(), &huge, 8);
  sparkd::testing::write_bytes(model.dir() / "model.safetensors", bytes);
  require_error(model.load(), {"header length", "model.safetensors"});
}

TEST_CASE("overlapping tensors are named", "[model_errors]") {
  sparkd::testing::ModelCopy model("bert_embed");
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
  sparkd::testing::ModelCopy model("bert_embed");
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
    sparkd::testing::ModelCopy model("bert_embed");
    fs::remove(model.dir() / "config.json");
    require_error(model.load(), {"config.json"});
  }
  {
    sparkd::testing::ModelCopy model("bert_embed");
    fs::remove(model.dir() / "tokenizer.json");
    require_error(model.load(), {"tokenizer.json"});
  }
}

TEST_CASE("sparkd-run reports a broken model and exits non-zero", "[model_errors][cli]") {
  sparkd::testing::ModelCopy model("qwen2_f32");
  model.edit_safetensors_header([](json& h) { h.erase("model.norm.weight"); });
  const auto result = sparkd::testing::run_command(
      std::string(SPARKD_RUN_BINARY) + " " + model.dir().string() + " generate --json 2>&1",
      "\"hello\"\n");
  CHECK(result.exit_code == 1);
  REQUIRE_FALSE(result.lines.empty());
  CHECK_THAT(result.lines.back(), Catch::Contains("model.norm.weight"));
}
