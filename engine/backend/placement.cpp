#include "engine/backend/placement.h"

#include <charconv>

#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/devices.h"

namespace sparkd {

std::string Placement::to_string() const {
  return kind == Kind::kCpu ? "cpu" : "cuda:" + std::to_string(device);
}

Expected<Placement> parse_placement(std::string_view text) {
  if (text.empty() || text == "auto") return default_placement();
  if (text == "cpu") return Placement{Placement::Kind::kCpu, 0};
  if (text == "cuda") return Placement{Placement::Kind::kCuda, 0};
  if (text.substr(0, 5) == "cuda:" && text.size() > 5) {
    int device = -1;
    const char* begin = text.data() + 5;
    const char* end = text.data() + text.size();
    const auto [at, error] = std::from_chars(begin, end, device);
    if (error == std::errc() && at == end && device >= 0) {
      return Placement{Placement::Kind::kCuda, device};
    }
  }
  return Status(
      StatusCode::kInvalidArgument,
      "device \"" + std::string(text) +
          "\" is not one of \"auto\", \"cpu\", \"cuda\" or \"cuda:N\" (N a device index)");
}

Placement default_placement() {
  if (cuda_compiled_in() && !list_devices().empty()) return {Placement::Kind::kCuda, 0};
  return {Placement::Kind::kCpu, 0};
}

DType kv_dtype_for(const Placement& placement) {
  return placement.kind == Placement::Kind::kCuda ? kCudaKvDtype : DType::kF32;
}

Expected<std::unique_ptr<Backend>> make_backend(const Placement& placement,
                                                const CpuBackendOptions& cpu_options) {
  if (placement.kind == Placement::Kind::kCpu) return make_cpu_backend(cpu_options);
  CudaBackendOptions options;
  options.device = placement.device;
  return make_cuda_backend(options);
}

}  // namespace sparkd
