// CPU-only build: no accelerators, and the CUDA backend says why it cannot be made.
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/devices.h"

namespace sparkd {

bool cuda_compiled_in() {
  return false;
}

std::vector<DeviceInfo> list_devices(std::string* error) {
  if (error) *error = "built without CUDA";
  return {};
}

Expected<std::unique_ptr<Backend>> make_cuda_backend(const CudaBackendOptions& options) {
  static_cast<void>(options);
  return Status(StatusCode::kUnavailable,
                "this sparkd was built without CUDA (configure with the CUDA Toolkit installed)");
}

}  // namespace sparkd
