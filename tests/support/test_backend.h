// The backend whole-model tests run on: the CPU backend in sparkd_tests, the CUDA backend in
// sparkd_gpu_tests (tests/gpu/), so one test file checks every backend against the same
// references (transformers, sentence-transformers, llama.cpp).
#pragma once

#include <memory>
#include <string>

#include "engine/backend/backend.h"

namespace sparkd::testing {

std::unique_ptr<Backend> make_test_backend();
// "cpu" or "cuda", for messages.
std::string test_backend_name();

}  // namespace sparkd::testing
