// The CUDA backend's kernels, as host functions that launch them on a stream. Pointers are
// device pointers (tables of indices included: cuda_backend.cu copies them over first);
// shapes were checked by the caller. Activations are F32; weights, KV and small tensors may
// be 16-bit, and weights quantized.
//
// Files, read in this order:
//   cuda_common.cuh      error checks, dtype loads/stores, reductions
//   cuda_quant.cuh       quantized rows, 32 values at a time (the CPU's dequantize, on the GPU)
//   cuda_elementwise.cu  conversions, gathers, adds, activations, norms, rope, pooling
//   cuda_gemv.cuh        the GEMV building blocks (a warp per output column)
//   cuda_linear.cu       y = x·Wᵀ + b: GEMV kernels for decode, cuBLAS GEMMs for prefill
//   cuda_attention.cu    store_kv and attention over contiguous or paged KV
//   cuda_delta_net.cu    Gated DeltaNet: causal conv and the delta rule, per sequence
//   cuda_moe.cu          mixture of experts: routing, and few tokens' experts in grouped GEMVs
//   cuda_cublas.cu       cuBLAS, opened at run time
//   cuda_virtual_memory.cu  KV address ranges: CUDA VMM reserve / map / unmap
//   cuda_backend.cu      the Backend: memory, argument tables, checks, dispatch
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "engine/backend/backend.h"
#include "engine/backend/cuda/cuda_cublas.h"
#include "engine/backend/op_checks.h"

namespace sparkd::cuda {

// ---- elementwise (cuda_elementwise.cu) ----------------------------------------------------
// n values of a float type into another (F32, F16, BF16).
void convert(const void* src, DType src_type, void* dst, DType dst_type, int64_t n,
             cudaStream_t stream);
// out[i, :] = src[rows[i], :] converted to out_type (a float type); src may be quantized.
// rows == nullptr: the identity (src's first `count` rows).
void gather_rows(const void* src, DType src_type, int64_t cols, const int32_t* rows, int64_t count,
                 void* out, DType out_type, cudaStream_t stream);
void scatter_add_rows(const float* src, const int32_t* rows, const float* scales, int64_t count,
                      int64_t cols, float* dst, cudaStream_t stream);
void add(const float* a, const void* b, DType b_type, bool broadcast, int64_t rows, int64_t cols,
         float* out, cudaStream_t stream);

enum class Pointwise { kSiluMul, kClampedSwiglu, kSigmoidMul, kGeluErf, kGeluTanh, kTanh };
// out = op(a, b) elementwise; b is unused by the one-input ops, alpha and limit only by
// kClampedSwiglu.
void pointwise(Pointwise op, const float* a, const float* b, float alpha, float limit, int64_t n,
               float* out, cudaStream_t stream);

// out[i] = x[i] * sigmoid(gate[i / cols]): a gate per row of x [n / cols, cols].
void sigmoid_mul_rows(const float* gate, const float* x, int64_t n, int64_t cols, float* out,
                      cudaStream_t stream);
void rms_norm(const float* x, const void* weight, DType weight_type, float eps, int64_t rows,
              int64_t cols, float* out, cudaStream_t stream);
void layer_norm(const float* x, const void* weight, DType weight_type, const void* bias,
                DType bias_type, float eps, int64_t rows, int64_t cols, float* out,
                cudaStream_t stream);
void split_head_halves(const float* x, int64_t rows, int64_t half, float* first, float* second,
                       cudaStream_t stream);
void rope(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t rotary_half,
          const int32_t* positions, const void* inv_freq, DType inv_freq_type, cudaStream_t stream);
void mean_rows(const float* x, int64_t cols, const RowSpan* spans, int64_t count, float* out,
               cudaStream_t stream);
void l2_normalize_rows(float* x, int64_t rows, int64_t cols, cudaStream_t stream);

// ---- linear (cuda_linear.cu) --------------------------------------------------------------
// Device memory an op may use for intermediates, grown on demand and kept.
class DeviceScratch {
 public:
  DeviceScratch() = default;
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  ~DeviceScratch();
  // At least `bytes` bytes, 256-byte aligned; the contents are not kept across growth.
  void* get(size_t bytes);

 private:
  void* data_ = nullptr;
  size_t size_bytes_ = 0;
};

struct LinearContext {
  cudaStream_t stream = nullptr;
  const Cublas* blas = nullptr;  // the library's entry points
  cublasHandle_t cublas = nullptr;
  DeviceScratch* x_scratch = nullptr;       // x converted for the GEMM
  DeviceScratch* weight_scratch = nullptr;  // weight rows dequantized for the GEMM
  DeviceScratch* input_copy = nullptr;      // x copied when y is x
  bool f32_gemm = false;                    // F32 GEMM inputs instead of BF16 (reference runs)
};
// Start-up check of the GEMM path on this device: a small BF16 product through cuBLAS against
// the GEMV kernel on the same operands. UNAVAILABLE, with what differed, when they disagree.
Status check_gemm(const LinearContext& context);
// y[m, n] = x[m, k] · weight[n, k]ᵀ (+ bias[n]). x may be y (in place).
void linear(const LinearContext& context, const float* x, int64_t m, int64_t k, const void* weight,
            DType weight_type, int64_t n, const void* bias, DType bias_type, float* y);

// ---- attention (cuda_attention.cu) --------------------------------------------------------
void store_kv(const float* k, const float* v, const int32_t* slots, int64_t tokens,
              int64_t row_elements, void* keys, void* values, DType kv_type, cudaStream_t stream);

// One sequence of an attention call, as the kernel reads it.
struct AttentionSequenceArgs {
  int32_t query_begin;
  int32_t query_tokens;
  int32_t context_tokens;
  int32_t kv_slot_begin;       // contiguous layout
  int32_t block_table_offset;  // paged layout: its table's first entry in block_tables
};
// A tile of consecutive query rows of one sequence, for the tiled (prefill) kernel.
struct AttentionTile {
  int32_t sequence;   // index into AttentionLaunch::sequences
  int32_t first_row;  // the tile's rows: [first_row, first_row + rows)
  int32_t rows;       // 1 … kAttentionTileRows
};
// Query rows per tile of the tiled kernel.
inline constexpr int kAttentionTileRows = 16;
struct AttentionLaunch {
  const float* q = nullptr;  // [rows, heads, head_dim]
  float* out = nullptr;      // the same shape; may be q
  int64_t first_row = 0;     // the query rows this launch computes: [first_row, +rows)
  int64_t rows = 0;
  int32_t heads = 0, kv_heads = 0, head_dim = 0;
  const void* keys = nullptr;
  const void* values = nullptr;
  DType kv_type = DType::kF32;
  int32_t block_tokens = 0;
  const AttentionSequenceArgs* sequences = nullptr;
  const int32_t* row_sequence = nullptr;  // [rows]: the sequence of each query row
  const int32_t* block_tables = nullptr;
  AttentionParams params;
  const float* sinks = nullptr;  // [heads] or none
  // Split-KV: > 0 cuts each row's keys into chunks of this many positions, `chunks` of them
  // (covering the longest context), merged by a second kernel through the partial buffers
  // (attention_partial_floats of them, carved as acc, then max, then sum).
  int32_t split_keys = 0;
  int32_t chunks = 1;
  float* partial_acc = nullptr;  // [rows][heads][chunks][head_dim]
  float* partial_max = nullptr;  // [rows][heads][chunks]
  float* partial_sum = nullptr;  // [rows][heads][chunks]
  // Tiled (prefill): when tile_count > 0 the launch computes these tiles, every query row of
  // a tile with each key it reads from global memory once, and never splits.
  const AttentionTile* tiles = nullptr;
  int32_t tile_count = 0;
};
// What the tiled kernel can take on this device, set up at start-up: the largest head_dim
// whose tiles fit the device's opt-in shared memory per block (0: none).
struct AttentionTiling {
  int32_t max_head_dim = 0;
};
// Start-up check that this binary has attention kernels for the device and that their
// launch shapes fit its limits (threads, shared memory per block). UNAVAILABLE otherwise.
// Also raises the tiled kernel's shared-memory limit where the device allows more than the
// default 48 KiB per block, and reports the head sizes it can tile.
Status check_attention_launches(const cudaDeviceProp& prop, AttentionTiling* tiling);
// Start-up check of the tiled kernel against the per-row one on one causal, paged, GQA
// prefill: UNAVAILABLE, with the difference, when they disagree.
Status check_attention_tiling(const AttentionTiling& tiling, cudaStream_t stream);
// The scratch floats a split launch of `rows` rows needs.
size_t attention_partial_floats(int64_t rows, int32_t heads, int32_t head_dim, int32_t chunks);
void attention(const AttentionLaunch& launch, cudaStream_t stream);

// ---- Gated DeltaNet (cuda_delta_net.cu) ----------------------------------------------------
struct RecurrentSequenceArgs {
  int32_t row_begin;
  int32_t rows;
  float* conv_state;
  float* delta_state;
};
void causal_conv1d_silu(const float* x, const void* weight, DType weight_type, int64_t channels,
                        int64_t kernel, const RecurrentSequenceArgs* sequences,
                        int64_t sequence_count, float* out, cudaStream_t stream);
void gated_delta_net(const float* qkv, const float* a, const float* b, const void* a_neg,
                     DType a_neg_type, const void* dt_bias, DType dt_bias_type,
                     const DeltaNetShape& shape, const RecurrentSequenceArgs* sequences,
                     int64_t sequence_count, float* out, cudaStream_t stream);

// ---- mixture of experts (cuda_moe.cu) ---------------------------------------------------
// moe_route's limits; a layer past them is routed on the host.
inline constexpr int32_t kMaxRoutedExperts = 1024;
inline constexpr int32_t kMaxRoutedTopK = 32;
// Backend::moe_route on the device: ids (as F32) and weights [tokens, top_k], each token's
// experts ascending.
void moe_route(const float* logits, int64_t tokens, int32_t experts, int32_t top_k, bool normalize,
               float* ids, float* weights, cudaStream_t stream);

// One projection of a layer's routed experts as the device reads it: tables of device
// pointers, one per expert.
struct MoeDeviceProjection {
  const void* const* weights = nullptr;
  const void* const* biases = nullptr;  // or none
  DType type = DType::kF32, bias_type = DType::kF32;
  // Every expert's matrix 16-byte aligned: the float GEMVs may load 8 values at once.
  bool aligned = false;
};
struct MoeDeviceExperts {
  int32_t count = 0;
  int64_t hidden = 0, inter = 0;
  MoeDeviceProjection gate, up;  // each expert's [inter, hidden]
  MoeDeviceProjection down;      // each expert's [hidden, inter]
  bool clamped_swiglu = false;
  float swiglu_alpha = 0.0f, swiglu_limit = 0.0f;
};
// Backend::moe_experts for few tokens: every (token, expert) assignment at once. gate and up
// hold [tokens * top_k, inter], output [tokens * top_k, hidden].
void moe_experts_assigned(const MoeDeviceExperts& experts, const float* x, int64_t tokens,
                          int32_t top_k, const float* ids, const float* weights, float* gate,
                          float* up, float* output, float* residual, cudaStream_t stream);

}  // namespace sparkd::cuda
