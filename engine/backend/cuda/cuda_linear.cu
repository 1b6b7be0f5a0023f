// y = x·Wᵀ + b on the GPU.
//
// Decode (few rows of x): GEMV kernels, one warp per output column n, reading W's row n once
// for up to kGemvRows rows of x with F32 accumulation. W is read as stored (F32, F16, BF16 or
// quantized, dequantized in registers 32 values at a time), so the bytes moved are the
// weights' own: the number that matters on a bandwidth-bound machine.
//
// Prefill (many rows): cuBLAS GEMMs on the tensor cores. BF16 inputs with F32 accumulation by
// default (x rounded to BF16; F16 and quantized W converted to BF16 in tiles of rows); F32
// weights, or every weight with LinearContext::f32_gemm, through an F32 GEMM instead.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "engine/backend/cuda/cuda_common.cuh"
#include "engine/backend/cuda/cuda_gemv.cuh"
#include "engine/backend/cuda/cuda_kernels.h"

namespace sparkd::cuda {
namespace {

// Rows of x one GEMV launch serves; more rows up to kGemmMinRows run as several launches.
constexpr int kGemvRows = 8;
// From this many rows on, the GEMM (whose weight reads are amortised over all rows) wins.
constexpr int64_t kGemmMinRows = 24;
// Weight rows dequantized per GEMM tile: bounded scratch whatever the matrix.
constexpr size_t kWeightTileBytes = size_t{64} << 20;

template <int kRows, typename T, bool kVector>
__global__ void gemv_float_kernel(const float* x, int rows, int64_t k, const T* w, int64_t n_total,
                                  const void* bias, DType bias_type, float* y, int64_t ldy) {
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / kWarp;
  if (n >= n_total) return;
  float acc[kRows] = {};
  gemv_float_row<kRows, T, kVector>(w + n * k, x, rows, k, acc);
  gemv_store<kRows>(acc, rows, n, ldy, bias, bias_type, y);
}

template <int kRows, DType kType>
__global__ void gemv_quantized_kernel(const float* x, int rows, int64_t k, const uint8_t* w,
                                      size_t row_bytes, int64_t n_total, const void* bias,
                                      DType bias_type, float* y, int64_t ldy) {
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / kWarp;
  if (n >= n_total) return;
  float acc[kRows] = {};
  gemv_quantized_row<kRows, kType>(w + n * row_bytes, x, rows, k, acc);
  gemv_store<kRows>(acc, rows, n, ldy, bias, bias_type, y);
}

template <typename T>
void launch_gemv_float(const float* x, int rows, int64_t k, const void* weight, int64_t n,
                       const void* bias, DType bias_type, float* y, cudaStream_t stream) {
  const T* w = static_cast<const T*>(weight);
  const bool vector = sizeof(T) < 4 && k % 8 == 0 &&
                      reinterpret_cast<uintptr_t>(weight) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(x) % 16 == 0;
  const dim3 grid(gemv_blocks(n)), block(kGemvWarps * kWarp);
  if (vector) {
    gemv_float_kernel<kGemvRows, T, true>
        <<<grid, block, 0, stream>>>(x, rows, k, w, n, bias, bias_type, y, n);
  } else {
    gemv_float_kernel<kGemvRows, T, false>
        <<<grid, block, 0, stream>>>(x, rows, k, w, n, bias, bias_type, y, n);
  }
  SPARKD_CUDA_LAUNCHED();
}

// Up to kGemvRows rows of x (x and y already offset to them).
void gemv(const float* x, int rows, int64_t k, const void* weight, DType weight_type, int64_t n,
          const void* bias, DType bias_type, float* y, cudaStream_t stream) {
  switch (weight_type) {
    case DType::kF32:
      return launch_gemv_float<float>(x, rows, k, weight, n, bias, bias_type, y, stream);
    case DType::kF16:
      return launch_gemv_float<__half>(x, rows, k, weight, n, bias, bias_type, y, stream);
    case DType::kBF16:
      return launch_gemv_float<__nv_bfloat16>(x, rows, k, weight, n, bias, bias_type, y, stream);
    default:
      break;
  }
  dispatch_quantized(weight_type, [&](auto type) {
    gemv_quantized_kernel<kGemvRows, decltype(type)::value>
        <<<gemv_blocks(n), kGemvWarps * kWarp, 0, stream>>>(
            x, rows, k, static_cast<const uint8_t*>(weight), dtype_row_bytes(weight_type, k), n,
            bias, bias_type, y, n);
  });
  SPARKD_CUDA_LAUNCHED();
}

__global__ void add_bias_kernel(float* y, int64_t m, int64_t n, const void* bias, DType bias_type) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < m * n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] += load_f32(bias, bias_type, i % n);
  }
}

// y[:, n0 : n0 + rows] (row-major, leading dimension ldy) = x · w_tileᵀ for a tile of `rows`
// weight rows of `type` (F32 or BF16), x already in that type. Row-major y is column-major
// yᵀ, so cuBLAS computes yᵀ = W · xᵀ: op(A) = Wᵀ of the column-major [k, rows] W.
void gemm_tile(const LinearContext& context, const void* x, int64_t m, int64_t k,
               const void* w_tile, int64_t rows, DType type, float* y, int64_t ldy) {
  const float alpha = 1.0f, beta = 0.0f;
  const cudaDataType_t input_type = type == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF;
  // F32 inputs: plain F32 arithmetic (no TF32), the reference path.
  const cublasComputeType_t compute =
      type == DType::kF32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
  SPARKD_CUBLAS_CHECK(
      context.blas->gemm_ex(context.cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(rows),
                            static_cast<int>(m), static_cast<int>(k), &alpha, w_tile, input_type,
                            static_cast<int>(k), x, input_type, static_cast<int>(k), &beta, y,
                            CUDA_R_32F, static_cast<int>(ldy), compute, CUBLAS_GEMM_DEFAULT));
}

void gemm(const LinearContext& context, const float* x, int64_t m, int64_t k, const void* weight,
          DType weight_type, int64_t n, const void* bias, DType bias_type, float* y) {
  const DType gemm_type =
      context.f32_gemm || weight_type == DType::kF32 ? DType::kF32 : DType::kBF16;
  const size_t element_bytes = dtype_size_bytes(gemm_type);
  const void* x_gemm = x;
  if (gemm_type != DType::kF32) {
    void* converted = context.x_scratch->get(static_cast<size_t>(m * k) * element_bytes);
    convert(x, DType::kF32, converted, gemm_type, m * k, context.stream);
    x_gemm = converted;
  }
  if (weight_type == gemm_type) {
    gemm_tile(context, x_gemm, m, k, weight, n, gemm_type, y, n);
  } else {
    // W converted (F16) or dequantized (quantized types) tile by tile into the GEMM's type.
    const int64_t tile_rows = std::max<int64_t>(
        1, std::min<int64_t>(n, static_cast<int64_t>(kWeightTileBytes /
                                                     (static_cast<size_t>(k) * element_bytes))));
    void* tile = context.weight_scratch->get(static_cast<size_t>(tile_rows * k) * element_bytes);
    const size_t row_bytes = dtype_row_bytes(weight_type, k);
    for (int64_t n0 = 0; n0 < n; n0 += tile_rows) {
      const int64_t rows = std::min(tile_rows, n - n0);
      gather_rows(static_cast<const char*>(weight) + n0 * row_bytes, weight_type, k, nullptr, rows,
                  tile, gemm_type, context.stream);
      gemm_tile(context, x_gemm, m, k, tile, rows, gemm_type, y + n0, n);
    }
  }
  if (bias != nullptr) {
    add_bias_kernel<<<elementwise_blocks(m * n), kElementwiseThreads, 0, context.stream>>>(
        y, m, n, bias, bias_type);
    SPARKD_CUDA_LAUNCHED();
  }
}

}  // namespace

DeviceScratch::~DeviceScratch() {
  if (data_ != nullptr) cudaFree(data_);
}

void* DeviceScratch::get(size_t bytes) {
  if (bytes <= size_bytes_) return data_;
  // Queued kernels may still read the old memory: wait for the device before freeing it.
  const size_t grown = std::max(bytes, size_bytes_ + size_bytes_ / 2);
  if (data_ != nullptr) {
    SPARKD_CUDA_CHECK(cudaDeviceSynchronize());
    SPARKD_CUDA_CHECK(cudaFree(data_));
  }
  data_ = nullptr;
  size_bytes_ = 0;
  SPARKD_CUDA_CHECK(cudaMalloc(&data_, grown));
  size_bytes_ = grown;
  return data_;
}

Status check_gemm(const LinearContext& context) {
  // 32 x 96 . 64 x 96: the GEMM path (m >= kGemmMinRows), BF16 weights, values exact in BF16
  // so the two paths differ only by summation order and x's rounding to BF16.
  constexpr int64_t m = 32, k = 96, n = 64;
  std::vector<float> x_host(m * k);
  std::vector<uint16_t> w_host(n * k);
  for (int64_t i = 0; i < m * k; ++i) x_host[i] = static_cast<float>((i * 7) % 13 - 6) / 8.0f;
  for (int64_t i = 0; i < n * k; ++i) {
    const float w = static_cast<float>((i * 5) % 11 - 5) / 16.0f;
    uint32_t bits;
    std::memcpy(&bits, &w, 4);
    w_host[i] = static_cast<uint16_t>(bits >> 16);  // exact: few mantissa bits
  }
  float* x = nullptr;
  float* y_gemm = nullptr;
  float* y_gemv = nullptr;
  void* w = nullptr;
  const auto release = [&] {
    cudaFree(x);
    cudaFree(y_gemm);
    cudaFree(y_gemv);
    cudaFree(w);
  };
  if (cudaMalloc(&x, m * k * 4) != cudaSuccess || cudaMalloc(&y_gemm, m * n * 4) != cudaSuccess ||
      cudaMalloc(&y_gemv, m * n * 4) != cudaSuccess || cudaMalloc(&w, n * k * 2) != cudaSuccess) {
    release();
    cudaGetLastError();
    return Status(StatusCode::kUnavailable, "cannot allocate the GEMM self-check's buffers");
  }
  // On the backend's (non-blocking) stream: a plain cudaMemcpy is not ordered before it.
  SPARKD_CUDA_CHECK(
      cudaMemcpyAsync(x, x_host.data(), m * k * 4, cudaMemcpyHostToDevice, context.stream));
  SPARKD_CUDA_CHECK(
      cudaMemcpyAsync(w, w_host.data(), n * k * 2, cudaMemcpyHostToDevice, context.stream));
  gemm(context, x, m, k, w, DType::kBF16, n, nullptr, DType::kF32, y_gemm);
  for (int64_t r = 0; r < m; r += kGemvRows) {
    gemv(x + r * k, kGemvRows, k, w, DType::kBF16, n, nullptr, DType::kF32, y_gemv + r * n,
         context.stream);
  }
  std::vector<float> got(m * n), want(m * n);
  SPARKD_CUDA_CHECK(cudaStreamSynchronize(context.stream));
  SPARKD_CUDA_CHECK(cudaMemcpy(got.data(), y_gemm, m * n * 4, cudaMemcpyDeviceToHost));
  SPARKD_CUDA_CHECK(cudaMemcpy(want.data(), y_gemv, m * n * 4, cudaMemcpyDeviceToHost));
  release();
  // x's values are multiples of 1/8 below 1: exact in BF16, so the products agree closely.
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= 1e-3f * (1.0f + std::fabs(want[i])))) {
      return Status(StatusCode::kUnavailable,
                    "cuBLAS GEMM self-check failed: element " + std::to_string(i) + " is " +
                        std::to_string(got[i]) + ", the GEMV kernel gives " +
                        std::to_string(want[i]));
    }
  }
  return Status::ok();
}

void linear(const LinearContext& context, const float* x, int64_t m, int64_t k, const void* weight,
            DType weight_type, int64_t n, const void* bias, DType bias_type, float* y) {
  if (m == 0 || n == 0) return;
  const size_t x_bytes = static_cast<size_t>(m * k) * sizeof(float);
  const char* x_begin = reinterpret_cast<const char*>(x);
  const char* y_begin = reinterpret_cast<const char*>(y);
  const bool in_place =
      x_begin < y_begin + static_cast<size_t>(m * n) * sizeof(float) && y_begin < x_begin + x_bytes;
  if (in_place || reinterpret_cast<uintptr_t>(x) % 16 != 0) {
    // In place (N == K): every output column reads all of x, so x is read from a copy; so is
    // an x the kernels' 16-byte loads cannot read.
    void* copy = context.input_copy->get(x_bytes);
    SPARKD_CUDA_CHECK(cudaMemcpyAsync(copy, x, x_bytes, cudaMemcpyDeviceToDevice, context.stream));
    x = static_cast<const float*>(copy);
  }
  if (m >= kGemmMinRows) {
    gemm(context, x, m, k, weight, weight_type, n, bias, bias_type, y);
    return;
  }
  for (int64_t r = 0; r < m; r += kGemvRows) {
    const int rows = static_cast<int>(std::min<int64_t>(kGemvRows, m - r));
    gemv(x + r * k, rows, k, weight, weight_type, n, bias, bias_type, y + r * n, context.stream);
  }
}

}  // namespace sparkd::cuda
