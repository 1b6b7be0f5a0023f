// Where a model runs: the CPU or one CUDA device, as config.toml's `device` names it.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "engine/backend/backend.h"
#include "engine/backend/cpu/cpu_backend.h"

namespace sparkd {

struct Placement {
  enum class Kind { kCpu, kCuda };
  Kind kind = Kind::kCpu;
  int device = 0;  // kCuda only

  // "cpu" or "cuda:N".
  std::string to_string() const;
  bool operator==(const Placement&) const = default;
};

// "cpu", "cuda" (device 0) or "cuda:N"; "auto" (and "") is default_placement(). Errors:
// INVALID_ARGUMENT naming what is accepted.
Expected<Placement> parse_placement(std::string_view text);
// cuda:0 when this build has CUDA and the machine a device, else cpu.
Placement default_placement();

// The KV dtype the backend for `placement` will keep (its kv_dtype()), for footprints
// computed before the backend exists.
DType kv_dtype_for(const Placement& placement);

// The backend for `placement`; cpu_options apply to the CPU backend. Errors: UNAVAILABLE when
// the device is missing or the build has no CUDA.
Expected<std::unique_ptr<Backend>> make_backend(const Placement& placement,
                                                const CpuBackendOptions& cpu_options = {});

}  // namespace sparkd
