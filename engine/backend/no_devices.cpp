// CPU-only build: no accelerators.
#include "engine/backend/devices.h"

namespace sparkd {

bool cuda_compiled_in() {
  return false;
}

std::vector<DeviceInfo> list_devices(std::string* error) {
  if (error) *error = "built without CUDA";
  return {};
}

}  // namespace sparkd
