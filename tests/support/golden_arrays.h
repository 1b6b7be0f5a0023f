// The F32 arrays of a golden expected.safetensors (or any F32 tensor of a safetensors file),
// by name, for tests that compare against tools/fixtures' outputs.
#pragma once

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/model/safetensors.h"

namespace sparkd::testing {

class GoldenArrays {
 public:
  explicit GoldenArrays(const std::filesystem::path& path) : path_(path.string()) {
    auto header = sparkd::model::read_safetensors_header(path_);
    INFO(path_);
    REQUIRE(header.has_value());
    header_ = *header;
  }
  std::vector<float> get(const std::string& name, std::vector<int64_t>* shape = nullptr) const {
    for (const auto& t : header_.tensors) {
      if (t.name != name) continue;
      REQUIRE(t.dtype == sparkd::DType::kF32);
      std::vector<float> values(t.size_bytes / sizeof(float));
      std::FILE* f = std::fopen(path_.c_str(), "rb");
      REQUIRE(f != nullptr);
      REQUIRE(std::fseek(f, static_cast<long>(t.file_offset), SEEK_SET) == 0);
      REQUIRE(std::fread(values.data(), 1, t.size_bytes, f) == t.size_bytes);
      std::fclose(f);
      if (shape) *shape = t.shape;
      return values;
    }
    FAIL("no array " << name << " in " << path_);
    return {};
  }

 private:
  std::string path_;
  sparkd::model::SafetensorsHeader header_;
};

}  // namespace sparkd::testing
