// Mixture-of-experts on the device: routing, and the routed experts of a few tokens (decode)
// without a trip through the host.
//
// Routing: one warp per token. Each lane holds up to 32 experts' logits; the softmax's max and
// sum are warp reductions, then top_k rounds of a warp argmax (larger probability, or equal and
// the lower expert id, as route_tokens orders them) pick the experts. Lane 0 writes them in
// ascending expert order with their weights, divided by the chosen ones' sum when asked.
//
// Experts: every (token, routed expert) pair is an "assignment", tokens x top_k of them. A
// grouped GEMV computes all assignments' gate and up rows in one launch (blockIdx.y is the
// assignment, which reads its expert's matrix through a device table of pointers), the
// activation runs over all of them, a second grouped GEMV computes their down rows, and a last
// kernel adds each token's rows into the residual, weighted, in ascending expert order (the
// order run_experts_by_expert adds them in). An expert chosen by several tokens is read once
// per assignment: few tokens is the case this path is for. Many tokens (prefill) take the
// host-grouped path instead (moe.h), each expert read once over all of its tokens.
#include <climits>

#include "engine/backend/cuda/cuda_common.cuh"
#include "engine/backend/cuda/cuda_gemv.cuh"
#include "engine/backend/cuda/cuda_kernels.h"

namespace sparkd::cuda {
namespace {

constexpr int kExpertsPerLane = kMaxRoutedExperts / kWarp;
constexpr int kRouteWarps = 4;  // tokens per block

__global__ void moe_route_kernel(const float* logits, int64_t tokens, int32_t experts,
                                 int32_t top_k, bool normalize, float* ids, float* weights) {
  const int lane = threadIdx.x % kWarp;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kRouteWarps + threadIdx.x / kWarp;
  if (t >= tokens) return;  // the whole warp: t is the same in every lane
  const float* row = logits + t * experts;

  // Softmax over all experts; lane l holds experts l, l + 32, ...
  float p[kExpertsPerLane];
  float local_max = -INFINITY;
#pragma unroll
  for (int i = 0; i < kExpertsPerLane; ++i) {
    const int e = lane + i * kWarp;
    p[i] = e < experts ? row[e] : -INFINITY;
    local_max = fmaxf(local_max, p[i]);
  }
  const float max = warp_max(local_max);
  float local_sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kExpertsPerLane; ++i) {
    p[i] = lane + i * kWarp < experts ? expf(p[i] - max) : 0.0f;
    local_sum += p[i];
  }
  const float sum = warp_sum(local_sum);
#pragma unroll
  for (int i = 0; i < kExpertsPerLane; ++i) p[i] /= sum;

  // The top k, one warp argmax each; `taken` marks this lane's chosen experts. A NaN
  // probability (NaN or infinite logits) ranks below every number but above the -1 start,
  // so the row still routes to valid experts (with NaN weights, as on the CPU) instead of
  // to none.
  uint32_t taken = 0;
  int chosen_expert[kMaxRoutedTopK];
  float chosen_probability[kMaxRoutedTopK];
  float chosen_sum = 0.0f;
  for (int j = 0; j < top_k; ++j) {
    float best = -1.0f;  // below every probability
    int best_expert = INT_MAX;
#pragma unroll
    for (int i = 0; i < kExpertsPerLane; ++i) {
      const int e = lane + i * kWarp;
      // Ascending e within the lane and a strict >: equal probabilities keep the lower id.
      const float rank = isnan(p[i]) ? -0.5f : p[i];
      if (e < experts && ((taken >> i) & 1u) == 0 && rank > best) {
        best = rank;
        best_expert = e;
      }
    }
#pragma unroll
    for (int offset = kWarp / 2; offset > 0; offset /= 2) {
      const float other = __shfl_xor_sync(0xffffffffu, best, offset);
      const int other_expert = __shfl_xor_sync(0xffffffffu, best_expert, offset);
      if (other > best || (other == best && other_expert < best_expert)) {
        best = other;
        best_expert = other_expert;
      }
    }
    if (best_expert % kWarp == lane) taken |= 1u << (best_expert / kWarp);
    const float probability = best == -0.5f ? NAN : best;
    chosen_expert[j] = best_expert;
    chosen_probability[j] = probability;
    chosen_sum += probability;  // in rank order, as route_tokens sums them
  }
  if (lane != 0) return;
  // Ascending expert order (insertion sort of at most kMaxRoutedTopK).
  for (int j = 1; j < top_k; ++j) {
    const int e = chosen_expert[j];
    const float probability = chosen_probability[j];
    int i = j - 1;
    for (; i >= 0 && chosen_expert[i] > e; --i) {
      chosen_expert[i + 1] = chosen_expert[i];
      chosen_probability[i + 1] = chosen_probability[i];
    }
    chosen_expert[i + 1] = e;
    chosen_probability[i + 1] = probability;
  }
  for (int j = 0; j < top_k; ++j) {
    ids[t * top_k + j] = static_cast<float>(chosen_expert[j]);
    weights[t * top_k + j] = normalize ? chosen_probability[j] / chosen_sum : chosen_probability[j];
  }
}

// One grouped GEMV: y[a, :] = x[a / assignments_per_x_row, :] · W_e[:, :]ᵀ (+ b_e) for every
// assignment a, e its expert.
struct GroupedGemv {
  const float* x = nullptr;
  int32_t assignments_per_x_row = 1;  // top_k when x holds tokens, 1 when it holds assignments
  int64_t k = 0;                      // x's columns
  const float* ids = nullptr;         // [assignments]: expert ids as F32
  int32_t experts = 0;
  const void* const* weights = nullptr;  // [experts]: each [n, k]
  size_t row_bytes = 0;                  // of one quantized row of a weight
  const void* const* biases = nullptr;   // [experts] or none
  DType bias_type = DType::kF32;
  int64_t n = 0;  // output columns
  float* y = nullptr;
};

// The expert of assignment a. Ids come from moe_route; one out of range is a bug, and the
// kernel stops rather than read another matrix.
__device__ __forceinline__ int assignment_expert(const GroupedGemv& g, int64_t a) {
  const int e = static_cast<int>(g.ids[a]);
  if (e < 0 || e >= g.experts) __trap();
  return e;
}

// How a grouped GEMV reads one weight row: float rows of T, or quantized rows of kType.
template <typename T, bool kVector>
struct FloatRows {
  __device__ static void accumulate(const GroupedGemv& g, int e, int64_t n, const float* x,
                                    float (&acc)[1]) {
    gemv_float_row<1, T, kVector>(static_cast<const T*>(g.weights[e]) + n * g.k, x, 1, g.k, acc);
  }
};
template <DType kType>
struct QuantizedRows {
  __device__ static void accumulate(const GroupedGemv& g, int e, int64_t n, const float* x,
                                    float (&acc)[1]) {
    gemv_quantized_row<1, kType>(static_cast<const uint8_t*>(g.weights[e]) + n * g.row_bytes, x, 1,
                                 g.k, acc);
  }
};

// A warp per (output column, assignment): blockIdx.y is the assignment.
template <typename Rows>
__global__ void grouped_gemv_kernel(GroupedGemv g) {
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / kWarp;
  if (n >= g.n) return;
  const int64_t a = blockIdx.y;
  const int e = assignment_expert(g, a);
  float acc[1] = {};
  Rows::accumulate(g, e, n, g.x + (a / g.assignments_per_x_row) * g.k, acc);
  gemv_store<1>(acc, 1, n, g.n, g.biases != nullptr ? g.biases[e] : nullptr, g.bias_type,
                g.y + a * g.n);
}

// residual[t, c] += sum over j of weights[t, j] * outputs[t * top_k + j, c], j ascending.
__global__ void moe_combine_kernel(const float* outputs, const float* weights, int64_t tokens,
                                   int32_t top_k, int64_t hidden, float* residual) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < tokens * hidden;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / hidden, c = i % hidden;
    float acc = residual[i];
    for (int32_t j = 0; j < top_k; ++j) {
      acc += weights[t * top_k + j] * outputs[(t * top_k + j) * hidden + c];
    }
    residual[i] = acc;
  }
}

void grouped_gemv(const GroupedGemv& g, int64_t assignments, DType weight_type, bool vector,
                  cudaStream_t stream) {
  const dim3 grid(gemv_blocks(g.n), static_cast<unsigned>(assignments));
  const int threads = kGemvWarps * kWarp;
  const auto float_kernel = [&](auto type_tag) {
    using T = decltype(type_tag);
    if (vector && sizeof(T) < 4) {
      grouped_gemv_kernel<FloatRows<T, true>><<<grid, threads, 0, stream>>>(g);
    } else {
      grouped_gemv_kernel<FloatRows<T, false>><<<grid, threads, 0, stream>>>(g);
    }
  };
  switch (weight_type) {
    case DType::kF32:
      float_kernel(float{});
      break;
    case DType::kF16:
      float_kernel(__half{});
      break;
    case DType::kBF16:
      float_kernel(__nv_bfloat16{});
      break;
    default:
      if (!dispatch_quantized(weight_type, [&](auto type) {
            grouped_gemv_kernel<QuantizedRows<decltype(type)::value>>
                <<<grid, threads, 0, stream>>>(g);
          })) {
        fail_call("moe_experts", "no grouped GEMV for this weight type", __FILE__, __LINE__);
      }
  }
  SPARKD_CUDA_LAUNCHED();
}

}  // namespace

void moe_route(const float* logits, int64_t tokens, int32_t experts, int32_t top_k, bool normalize,
               float* ids, float* weights, cudaStream_t stream) {
  if (tokens == 0) return;
  const unsigned blocks = static_cast<unsigned>((tokens + kRouteWarps - 1) / kRouteWarps);
  moe_route_kernel<<<blocks, kRouteWarps * kWarp, 0, stream>>>(logits, tokens, experts, top_k,
                                                               normalize, ids, weights);
  SPARKD_CUDA_LAUNCHED();
}

void moe_experts_assigned(const MoeDeviceExperts& experts, const float* x, int64_t tokens,
                          int32_t top_k, const float* ids, const float* weights, float* gate,
                          float* up, float* output, float* residual, cudaStream_t stream) {
  if (tokens == 0) return;
  const int64_t assignments = tokens * top_k;
  // y [assignments, n] = the projection of x's rows (a row per token or per assignment).
  const auto project = [&](const MoeDeviceProjection& projection, const float* x_rows,
                           int32_t assignments_per_x_row, int64_t k, int64_t n, float* y) {
    GroupedGemv g;
    g.x = x_rows;
    g.assignments_per_x_row = assignments_per_x_row;
    g.k = k;
    g.ids = ids;
    g.experts = experts.count;
    g.weights = projection.weights;
    g.row_bytes = dtype_row_bytes(projection.type, k);
    g.biases = projection.biases;
    g.bias_type = projection.bias_type;
    g.n = n;
    g.y = y;
    const bool vector =
        projection.aligned && reinterpret_cast<uintptr_t>(x_rows) % 16 == 0 && k % 8 == 0;
    grouped_gemv(g, assignments, projection.type, vector, stream);
  };
  project(experts.gate, x, top_k, experts.hidden, experts.inter, gate);
  project(experts.up, x, top_k, experts.hidden, experts.inter, up);
  pointwise(experts.clamped_swiglu ? Pointwise::kClampedSwiglu : Pointwise::kSiluMul, gate, up,
            experts.swiglu_alpha, experts.swiglu_limit, assignments * experts.inter, gate, stream);
  project(experts.down, gate, 1, experts.inter, experts.hidden, output);
  moe_combine_kernel<<<elementwise_blocks(tokens * experts.hidden), kElementwiseThreads, 0,
                       stream>>>(output, weights, tokens, top_k, experts.hidden, residual);
  SPARKD_CUDA_LAUNCHED();
}

}  // namespace sparkd::cuda
