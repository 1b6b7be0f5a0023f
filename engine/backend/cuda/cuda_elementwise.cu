// Conversions, gathers, adds, activations, norms, rope and pooling: memory-bound kernels, one
// thread per element (grid-stride) or one block per row where a row is reduced.
#include "engine/backend/cuda/cuda_common.cuh"
#include "engine/backend/cuda/cuda_kernels.h"
#include "engine/backend/cuda/cuda_quant.cuh"

namespace sparkd::cuda {
namespace {

constexpr int kRowThreads = 256;  // one block per row for the reductions

#define SPARKD_GRID_STRIDE(i, n)                                                         \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

__global__ void convert_kernel(const void* src, DType src_type, void* dst, DType dst_type,
                               int64_t n) {
  SPARKD_GRID_STRIDE(i, n) store_f32(dst, dst_type, i, load_f32(src, src_type, i));
}

__global__ void gather_float_kernel(const void* src, DType src_type, int64_t cols,
                                    const int32_t* rows, int64_t count, void* out, DType out_type) {
  SPARKD_GRID_STRIDE(i, count * cols) {
    const int64_t r = i / cols, c = i % cols;
    const int64_t row = rows != nullptr ? rows[r] : r;
    store_f32(out, out_type, i, load_f32(src, src_type, row * cols + c));
  }
}

// One thread per 32-value chunk of the gathered rows.
template <DType kType>
__global__ void gather_quantized_kernel(const uint8_t* src, size_t row_bytes, int64_t cols,
                                        const int32_t* rows, int64_t count, void* out,
                                        DType out_type) {
  const int64_t chunks_per_row = cols / kChunk;
  SPARKD_GRID_STRIDE(i, count * chunks_per_row) {
    const int64_t r = i / chunks_per_row, chunk = i % chunks_per_row;
    const int64_t row = rows != nullptr ? rows[r] : r;
    float v[kChunk];
    dequantize_chunk<kType>(src + row * row_bytes, chunk, v);
    const int64_t first = r * cols + chunk * kChunk;
#pragma unroll
    for (int j = 0; j < kChunk; ++j) store_f32(out, out_type, first + j, v[j]);
  }
}

__global__ void scatter_add_rows_kernel(const float* src, const int32_t* rows, const float* scales,
                                        int64_t count, int64_t cols, float* dst) {
  // Rows are distinct (the op's contract), so no two threads add into one element.
  SPARKD_GRID_STRIDE(i, count * cols) {
    const int64_t r = i / cols, c = i % cols;
    dst[static_cast<int64_t>(rows[r]) * cols + c] += scales[r] * src[i];
  }
}

__global__ void add_kernel(const float* a, const void* b, DType b_type, bool broadcast, int64_t n,
                           int64_t cols, float* out) {
  SPARKD_GRID_STRIDE(i, n) out[i] = a[i] + load_f32(b, b_type, broadcast ? i % cols : i);
}

// The CPU's formulas (cpu_rows.cpp): PyTorch's silu, gpt-oss's clamped SwiGLU, exact and tanh
// GELU. Precise expf/erff/tanhf: the build never passes --use_fast_math.
template <Pointwise kOp>
__global__ void pointwise_kernel(const float* a, const float* b, float alpha, float limit,
                                 int64_t n, float* out) {
  SPARKD_GRID_STRIDE(i, n) {
    const float x = a[i];
    if constexpr (kOp == Pointwise::kSiluMul) {
      out[i] = x / (1.0f + expf(-x)) * b[i];
    } else if constexpr (kOp == Pointwise::kClampedSwiglu) {
      const float g = fminf(x, limit);
      const float u = fminf(fmaxf(b[i], -limit), limit);
      out[i] = (u + 1.0f) * (g / (1.0f + expf(-alpha * g)));
    } else if constexpr (kOp == Pointwise::kSigmoidMul) {
      out[i] = b[i] / (1.0f + expf(-x));
    } else if constexpr (kOp == Pointwise::kGeluErf) {
      out[i] = x * 0.5f * (1.0f + erff(x * 0.70710678118654752440f));
    } else if constexpr (kOp == Pointwise::kGeluTanh) {
      const float inner = 0.79788456080286535588f * (x + 0.044715f * x * x * x);
      out[i] = 0.5f * x * (1.0f + tanhf(inner));
    } else {
      out[i] = tanhf(x);
    }
  }
}

__global__ void rms_norm_kernel(const float* x, const void* weight, DType weight_type, float eps,
                                int64_t cols, float* out) {
  __shared__ float scratch[kWarp];
  const float* row = x + blockIdx.x * cols;
  float* dst = out + blockIdx.x * cols;
  float sum = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += row[c] * row[c];
  const float variance = block_sum(sum, scratch) / static_cast<float>(cols);
  const float inv_rms = 1.0f / sqrtf(variance + eps);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    dst[c] = row[c] * inv_rms * load_f32(weight, weight_type, c);
  }
}

__global__ void layer_norm_kernel(const float* x, const void* weight, DType weight_type,
                                  const void* bias, DType bias_type, float eps, int64_t cols,
                                  float* out) {
  __shared__ float scratch[kWarp];
  const float* row = x + blockIdx.x * cols;
  float* dst = out + blockIdx.x * cols;
  float sum = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += row[c];
  const float mean = block_sum(sum, scratch) / static_cast<float>(cols);
  float squares = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const float centred = row[c] - mean;
    squares += centred * centred;
  }
  const float variance = block_sum(squares, scratch) / static_cast<float>(cols);
  const float inv_std = 1.0f / sqrtf(variance + eps);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    dst[c] =
        (row[c] - mean) * inv_std * load_f32(weight, weight_type, c) + load_f32(bias, bias_type, c);
  }
}

__global__ void split_head_halves_kernel(const float* x, int64_t rows, int64_t half, float* first,
                                         float* second) {
  SPARKD_GRID_STRIDE(i, rows * half) {
    const int64_t r = i / half, c = i % half;
    first[i] = x[r * 2 * half + c];
    second[i] = x[r * 2 * half + half + c];
  }
}

// One thread per (token, head, rotated pair): rotate_half on the first 2 * rotary_half dims.
__global__ void rope_kernel(float* x, int64_t tokens, int64_t heads, int64_t head_dim,
                            int64_t rotary_half, const int32_t* positions, const void* inv_freq,
                            DType inv_freq_type) {
  SPARKD_GRID_STRIDE(i, tokens * heads * rotary_half) {
    const int64_t pair = i % rotary_half;
    const int64_t token_head = i / rotary_half;
    const int64_t token = token_head / heads;
    const float angle =
        static_cast<float>(positions[token]) * load_f32(inv_freq, inv_freq_type, pair);
    const float cos_angle = cosf(angle), sin_angle = sinf(angle);
    float* first = x + token_head * head_dim + pair;
    float* second = first + rotary_half;
    const float a = *first, b = *second;
    *first = a * cos_angle - b * sin_angle;
    *second = b * cos_angle + a * sin_angle;
  }
}

__global__ void mean_rows_kernel(const float* x, int64_t cols, const RowSpan* spans, int64_t count,
                                 float* out) {
  SPARKD_GRID_STRIDE(i, count * cols) {
    const int64_t s = i / cols, c = i % cols;
    const RowSpan span = spans[s];
    float sum = 0.0f;
    for (int64_t r = span.begin; r < span.begin + span.count; ++r) sum += x[r * cols + c];
    out[i] = sum / static_cast<float>(span.count);
  }
}

// torch.nn.functional.normalize: x / max(||x||, 1e-12).
__global__ void l2_normalize_rows_kernel(float* x, int64_t cols) {
  __shared__ float scratch[kWarp];
  float* row = x + blockIdx.x * cols;
  float sum = 0.0f;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) sum += row[c] * row[c];
  const float norm = fmaxf(sqrtf(block_sum(sum, scratch)), 1e-12f);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) row[c] /= norm;
}

// Rows of a reduction kernel: one block each (grid.x is at most 2^31 - 1).
unsigned row_blocks(int64_t rows) {
  return static_cast<unsigned>(rows);
}

}  // namespace

void convert(const void* src, DType src_type, void* dst, DType dst_type, int64_t n,
             cudaStream_t stream) {
  if (n == 0) return;
  convert_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(src, src_type, dst,
                                                                            dst_type, n);
  SPARKD_CUDA_LAUNCHED();
}

void gather_rows(const void* src, DType src_type, int64_t cols, const int32_t* rows, int64_t count,
                 void* out, DType out_type, cudaStream_t stream) {
  if (count == 0 || cols == 0) return;
  const bool quantized = dispatch_quantized(src_type, [&](auto type) {
    const int64_t chunks = count * (cols / kChunk);
    gather_quantized_kernel<decltype(type)::value>
        <<<elementwise_blocks(chunks), kElementwiseThreads, 0, stream>>>(
            static_cast<const uint8_t*>(src), dtype_row_bytes(src_type, cols), cols, rows, count,
            out, out_type);
  });
  if (!quantized) {
    gather_float_kernel<<<elementwise_blocks(count * cols), kElementwiseThreads, 0, stream>>>(
        src, src_type, cols, rows, count, out, out_type);
  }
  SPARKD_CUDA_LAUNCHED();
}

void scatter_add_rows(const float* src, const int32_t* rows, const float* scales, int64_t count,
                      int64_t cols, float* dst, cudaStream_t stream) {
  if (count == 0 || cols == 0) return;
  scatter_add_rows_kernel<<<elementwise_blocks(count * cols), kElementwiseThreads, 0, stream>>>(
      src, rows, scales, count, cols, dst);
  SPARKD_CUDA_LAUNCHED();
}

void add(const float* a, const void* b, DType b_type, bool broadcast, int64_t rows, int64_t cols,
         float* out, cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  add_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(a, b, b_type, broadcast, n,
                                                                        cols, out);
  SPARKD_CUDA_LAUNCHED();
}

namespace {
__global__ void sigmoid_mul_rows_kernel(const float* gate, const float* x, int64_t n, int64_t cols,
                                        float* out) {
  SPARKD_GRID_STRIDE(i, n) out[i] = x[i] / (1.0f + expf(-gate[i / cols]));
}
}  // namespace

void sigmoid_mul_rows(const float* gate, const float* x, int64_t n, int64_t cols, float* out,
                      cudaStream_t stream) {
  if (n == 0) return;
  sigmoid_mul_rows_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(gate, x, n,
                                                                                     cols, out);
  SPARKD_CUDA_LAUNCHED();
}

void pointwise(Pointwise op, const float* a, const float* b, float alpha, float limit, int64_t n,
               float* out, cudaStream_t stream) {
  if (n == 0) return;
  const unsigned blocks = elementwise_blocks(n);
  switch (op) {
    case Pointwise::kSiluMul:
      pointwise_kernel<Pointwise::kSiluMul>
          <<<blocks, kElementwiseThreads, 0, stream>>>(a, b, alpha, limit, n, out);
      break;
    case Pointwise::kClampedSwiglu:
      pointwise_kernel<Pointwise::kClampedSwiglu>
          <<<blocks, kElementwiseThreads, 0, stream>>>(a, b, alpha, limit, n, out);
      break;
    case Pointwise::kSigmoidMul:
      pointwise_kernel<Pointwise::kSigmoidMul>
          <<<blocks, kElementwiseThreads, 0, stream>>>(a, b, alpha, limit, n, out);
      break;
    case Pointwise::kGeluErf:
      pointwise_kernel<Pointwise::kGeluErf>
          <<<blocks, kElementwiseThreads, 0, stream>>>(a, b, alpha, limit, n, out);
      break;
    case Pointwise::kGeluTanh:
      pointwise_kernel<Pointwise::kGeluTanh>
          <<<blocks, kElementwiseThreads, 0, stream>>>(a, b, alpha, limit, n, out);
      break;
    case Pointwise::kTanh:
      pointwise_kernel<Pointwise::kTanh>
          <<<blocks, kElementwiseThreads, 0, stream>>>(a, b, alpha, limit, n, out);
      break;
  }
  SPARKD_CUDA_LAUNCHED();
}

void rms_norm(const float* x, const void* weight, DType weight_type, float eps, int64_t rows,
              int64_t cols, float* out, cudaStream_t stream) {
  if (rows == 0) return;
  rms_norm_kernel<<<row_blocks(rows), kRowThreads, 0, stream>>>(x, weight, weight_type, eps, cols,
                                                                out);
  SPARKD_CUDA_LAUNCHED();
}

void layer_norm(const float* x, const void* weight, DType weight_type, const void* bias,
                DType bias_type, float eps, int64_t rows, int64_t cols, float* out,
                cudaStream_t stream) {
  if (rows == 0) return;
  layer_norm_kernel<<<row_blocks(rows), kRowThreads, 0, stream>>>(x, weight, weight_type, bias,
                                                                  bias_type, eps, cols, out);
  SPARKD_CUDA_LAUNCHED();
}

void split_head_halves(const float* x, int64_t rows, int64_t half, float* first, float* second,
                       cudaStream_t stream) {
  if (rows * half == 0) return;
  split_head_halves_kernel<<<elementwise_blocks(rows * half), kElementwiseThreads, 0, stream>>>(
      x, rows, half, first, second);
  SPARKD_CUDA_LAUNCHED();
}

void rope(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t rotary_half,
          const int32_t* positions, const void* inv_freq, DType inv_freq_type,
          cudaStream_t stream) {
  const int64_t n = tokens * heads * rotary_half;
  if (n == 0) return;
  rope_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(
      x, tokens, heads, head_dim, rotary_half, positions, inv_freq, inv_freq_type);
  SPARKD_CUDA_LAUNCHED();
}

void mean_rows(const float* x, int64_t cols, const RowSpan* spans, int64_t count, float* out,
               cudaStream_t stream) {
  if (count * cols == 0) return;
  mean_rows_kernel<<<elementwise_blocks(count * cols), kElementwiseThreads, 0, stream>>>(
      x, cols, spans, count, out);
  SPARKD_CUDA_LAUNCHED();
}

void l2_normalize_rows(float* x, int64_t rows, int64_t cols, cudaStream_t stream) {
  if (rows == 0) return;
  l2_normalize_rows_kernel<<<row_blocks(rows), kRowThreads, 0, stream>>>(x, cols);
  SPARKD_CUDA_LAUNCHED();
}

}  // namespace sparkd::cuda
