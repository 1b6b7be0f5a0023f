// A fixture model (tests/fixtures/models/NAME) loaded on its own CPU backend.
#pragma once

#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/tasks/loaded_model.h"

namespace sparkd::testing {

inline std::string fixture_model_dir(const std::string& name) {
  return std::string(SPARKD_SOURCE_DIR) + "/tests/fixtures/models/" + name;
}

struct LoadedFixture {
  std::unique_ptr<Backend> backend = make_cpu_backend();
  std::unique_ptr<tasks::LoadedModel> model;

  // `name_or_dir`: a fixture's name, or a model directory (a path with a '/').
  explicit LoadedFixture(const std::string& name_or_dir) {
    const std::string dir =
        name_or_dir.find('/') == std::string::npos ? fixture_model_dir(name_or_dir) : name_or_dir;
    auto loaded = tasks::LoadedModel::load(dir, *backend);
    INFO(dir << ": " << (loaded ? std::string() : loaded.status().message()));
    REQUIRE(loaded.has_value());
    model = std::move(loaded).value();
  }
};

}  // namespace sparkd::testing
