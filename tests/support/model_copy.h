// A fixture model copied into a fresh temporary directory, to be broken or edited there
// (config.json, generation_config.json, the safetensors header) by a test; removed after.
#pragma once

#include <unistd.h>

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

namespace sparkd::testing {

namespace fs = std::filesystem;
using nlohmann::json;

inline std::vector<char> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const fs::path& path, const std::vector<char>& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A copy of a fixture model in a fresh temporary directory, removed at the end of the test.
class ModelCopy {
 public:
  explicit ModelCopy(const std::string& fixture) {
    static int counter = 0;
    dir_ = fs::temp_directory_path() /
           ("sparkd-broken-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(dir_);
    fs::copy(fs::path(SPARKD_SOURCE_DIR) / "tests/fixtures/models" / fixture, dir_,
             fs::copy_options::recursive);
  }
  ~ModelCopy() { fs::remove_all(dir_); }
  const fs::path& dir() const { return dir_; }

  // Edits a JSON file of the copy (created empty when absent).
  void edit_json(const std::string& file, const std::function<void(json&)>& edit) {
    json content = json::object();
    if (fs::exists(dir_ / file)) {
      std::ifstream in(dir_ / file);
      content = json::parse(in);
    }
    edit(content);
    std::ofstream(dir_ / file, std::ios::trunc) << content.dump(2);
  }
  void edit_config(const std::function<void(json&)>& edit) { edit_json("config.json", edit); }
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

}  // namespace sparkd::testing
