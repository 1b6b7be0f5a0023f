#include <dlfcn.h>

#include <mutex>
#include <string>

#include "engine/backend/cuda/cuda_cublas.h"

namespace sparkd::cuda {
namespace {

// Where to look: the soname of the toolkit we were built with (the dynamic linker's paths,
// the executable's run path), then the toolkit's own library directory.
Expected<void*> open_library() {
  const std::string soname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
  std::string errors;
  for (const std::string& name : {soname, std::string(SPARKD_CUDA_LIBRARY_DIR) + "/" + soname}) {
    if (void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) return handle;
    errors += std::string(errors.empty() ? "" : "; ") + dlerror();
  }
  return Status(StatusCode::kUnavailable, "cannot load cuBLAS: " + errors);
}

template <typename Fn>
bool bind(void* library, const char* symbol, Fn& fn, std::string& missing) {
  fn = reinterpret_cast<Fn>(dlsym(library, symbol));
  if (fn == nullptr) missing += std::string(missing.empty() ? "" : ", ") + symbol;
  return fn != nullptr;
}

}  // namespace

Expected<const Cublas*> load_cublas() {
  static std::once_flag once;
  static Cublas cublas;
  static Status status;
  std::call_once(once, [] {
    auto library = open_library();
    if (!library) {
      status = library.status();
      return;
    }
    std::string missing;
    bind(*library, "cublasCreate_v2", cublas.create, missing);
    bind(*library, "cublasDestroy_v2", cublas.destroy, missing);
    bind(*library, "cublasSetStream_v2", cublas.set_stream, missing);
    bind(*library, "cublasGemmEx", cublas.gemm_ex, missing);
    bind(*library, "cublasGetStatusString", cublas.status_string, missing);
    if (!missing.empty()) {
      status = Status(StatusCode::kUnavailable, "cuBLAS lacks " + missing);
    }
  });
  if (!status.is_ok()) return status;
  return &cublas;
}

}  // namespace sparkd::cuda
