// The GPU tests' runner. Without a CUDA device (or a build without CUDA) it says so and exits
// with 77, which ctest reports as skipped: CI machines have no GPU. Listing tests needs no
// device.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <string_view>

#include "engine/backend/devices.h"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i) {
    listing = listing || std::string_view(argv[i]).rfind("--list", 0) == 0;
  }
  if (!listing) {
    std::string error;
    if (!sparkd::cuda_compiled_in() || sparkd::list_devices(&error).empty()) {
      std::printf("sparkd_gpu_tests: no CUDA device (%s): skipped\n",
                  sparkd::cuda_compiled_in() ? error.c_str() : "built without CUDA");
      return 77;
    }
  }
  return Catch::Session().run(argc, argv);
}
