// cuBLAS, opened at run time (dlopen) instead of linked.
//
// Why: a process that merely has libcublasLt loaded at start-up cannot start civetweb, the
// HTTP server behind the metrics endpoint (measured: prometheus-cpp's Exposer fails with
// "null context when constructing CivetServer" as soon as libcublasLt.so.13 is linked, and
// works with it dlopen()ed later). It also keeps cuBLAS's ~150 MiB of resident memory out of
// processes that never use a GPU.
#pragma once

#include <cublas_v2.h>

#include "common/status.h"

namespace sparkd::cuda {

struct Cublas {
  cublasStatus_t (*create)(cublasHandle_t*) = nullptr;
  cublasStatus_t (*destroy)(cublasHandle_t) = nullptr;
  cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t) = nullptr;
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                            const void*, const void*, cudaDataType, int, const void*, cudaDataType,
                            int, const void*, void*, cudaDataType, int, cublasComputeType_t,
                            cublasGemmAlgo_t) = nullptr;
  const char* (*status_string)(cublasStatus_t) = nullptr;
};

// The library's entry points, loaded once per process. UNAVAILABLE when it cannot be found.
Expected<const Cublas*> load_cublas();

}  // namespace sparkd::cuda
