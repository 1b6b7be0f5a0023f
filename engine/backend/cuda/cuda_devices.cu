// Device discovery through the CUDA runtime. Memory figures here are the device's totals;
// on unified-memory parts (GB10) the governor trusts /proc/meminfo instead.
#include <cuda_runtime.h>

#include "engine/backend/devices.h"

namespace sparkd {

bool cuda_compiled_in() {
  return true;
}

std::vector<DeviceInfo> list_devices(std::string* error) {
  std::vector<DeviceInfo> devices;
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    if (error) *error = cudaGetErrorString(status);
    return devices;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    status = cudaGetDeviceProperties(&prop, i);
    if (status != cudaSuccess) {
      if (error) *error = cudaGetErrorString(status);
      continue;
    }
    DeviceInfo info;
    info.index = i;
    info.name = prop.name;
    info.compute_capability_major = prop.major;
    info.compute_capability_minor = prop.minor;
    info.total_memory_bytes = prop.totalGlobalMem;
    info.multiprocessor_count = prop.multiProcessorCount;
    info.shared_memory_per_block_optin_bytes = prop.sharedMemPerBlockOptin;
    info.integrated = prop.integrated != 0;
    devices.push_back(info);
  }
  return devices;
}

}  // namespace sparkd
