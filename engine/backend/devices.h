// The accelerators this build can use. Without CUDA support compiled in, the list is empty
// and every model runs on the CPU backend.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace sparkd {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  size_t total_memory_bytes = 0;
  int multiprocessor_count = 0;
  size_t shared_memory_per_block_optin_bytes = 0;
  bool integrated = false;  // true on unified-memory parts such as GB10 (DGX Spark)
};

// Whether this binary was built with the CUDA backend.
bool cuda_compiled_in();
// Devices the CUDA runtime reports; empty without CUDA, a driver or a GPU. When the runtime
// reports an error, `error` (if given) receives its text.
std::vector<DeviceInfo> list_devices(std::string* error = nullptr);

}  // namespace sparkd
