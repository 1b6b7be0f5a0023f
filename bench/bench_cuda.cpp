// bench_cuda: the CUDA backend against the GPU's own ceilings, side by side in one run.
//
//   bench_cuda [--device N] [--layers L] [--context C] [--weights bf16|q4_k|q8_0] [--quick]
//
// 1. Bandwidth probe: a 1 GiB device-to-device copy (bytes read + written), the decode
//    roofline.
// 2. Decode: one step of a synthetic Llama-3-8B (hidden 4096, 32 heads / 8 KV heads of 128,
//    MLP 14336, vocab 128256) run op by op through the Backend as DecoderModel runs it, at
//    batch 1 .. 128 with a `--context`-token KV each, in the backend's KV dtype. Every layer reads
//    the same weights (one layer's worth is allocated; 436 MB in BF16 is far larger than any L2, so
//    each layer still streams its weights from memory): tok/s, the weight bytes a token moves, and
//    batch 1 as % of the probe (target >= 85 %); batch B as a multiple of batch 1 (targets:
//    20x at 32, 50x at 128).
// 3. Prefill: linear at 2048 tokens for the layer's four matrix shapes, through the backend
//    (BF16 tensor cores, F32 out) and through cuBLAS directly on the same BF16 operands:
//    TFLOP/s of each and the ratio (target >= 70 %).
// 4. Prefill attention: one layer's causal attention over a 2048-token prompt (32 heads / 8 KV
//    heads of 128, the backend's KV dtype), the tiled kernel against the per-row one: ms and
//    the ratio.
// 5. MoE decode: one sparse layer shaped like Qwen3-30B-A3B's (hidden 2048, experts of 768,
//    top 8 of 32 experts here, BF16) at 1, 4 and 16 tokens: the device path (routing and
//    grouped GEMVs on the GPU) against the host-grouped one (routing downloaded, an expert at
//    a time): ms and the GB/s of expert weights each reads.
//
// Timing: the backend's stream is synchronised around each repetition and the median of the
// repetitions is printed; inputs are pseudo-random (never zeros).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/cuda/cuda_cublas.h"
#include "engine/backend/half.h"
#include "engine/backend/moe.h"
#include "engine/backend/quantize.h"

namespace {

using sparkd::AttentionParams;
using sparkd::AttentionSequence;
using sparkd::Backend;
using sparkd::Buffer;
using sparkd::DType;
using sparkd::KvLayerView;
using sparkd::Tensor;
using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "bench_cuda: %s\n", message.c_str());
  std::exit(1);
}

#define BENCH_CUDA(call)                                              \
  do {                                                                \
    const cudaError_t bench_error = (call);                           \
    if (bench_error != cudaSuccess)                                   \
      die(#call ": " + std::string(cudaGetErrorString(bench_error))); \
  } while (0)

// Median seconds of fn() over `repeats` runs after `warmup` runs; `sync` waits for the GPU.
double median_seconds(int warmup, int repeats, const std::function<void()>& fn,
                      const std::function<void()>& sync) {
  for (int i = 0; i < warmup; ++i) fn();
  sync();
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    const auto start = Clock::now();
    fn();
    sync();
    times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Device tensors filled from pseudo-random host values (uploaded in pieces).
class DeviceMemory {
 public:
  explicit DeviceMemory(Backend& backend) : backend_(backend) {}
  Tensor make(DType dtype, std::vector<int64_t> shape) {
    Tensor t(dtype, std::move(shape), nullptr);
    auto buffer = backend_.allocate(t.size_bytes());
    if (!buffer) die(buffer.status().to_string());
    t.data = buffer->data();
    buffers_.push_back(std::move(*buffer));
    return t;
  }
  Tensor random(DType dtype, std::vector<int64_t> shape, uint32_t seed, float scale = 1.0f) {
    Tensor t = make(dtype, std::move(shape));
    const int64_t cols = t.cols();
    std::vector<float> row(static_cast<size_t>(cols));
    std::vector<uint8_t> bytes(t.row_bytes());
    for (int64_t r = 0; r < t.rows(); ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const uint32_t hash =
            (static_cast<uint32_t>(r * cols + c) + seed * 0x9e3779b9u) * 0x85ebca6bu;
        row[static_cast<size_t>(c)] = (static_cast<float>(hash >> 8) * 0x1p-23f - 1.0f) * scale;
      }
      encode_row(row, dtype, bytes.data());
      backend_.upload(static_cast<char*>(t.data) + r * t.row_bytes(), bytes.data(), bytes.size());
    }
    return t;
  }

 private:
  static void encode_row(const std::vector<float>& row, DType dtype, uint8_t* out) {
    if (sparkd::dtype_is_quantized(dtype)) {
      sparkd::quant::quantize_row(row.data(), static_cast<int64_t>(row.size()), dtype, out);
      return;
    }
    for (size_t i = 0; i < row.size(); ++i) {
      if (dtype == DType::kF32) {
        std::memcpy(out + 4 * i, &row[i], 4);
      } else {
        const uint16_t h =
            dtype == DType::kBF16 ? sparkd::f32_to_bf16(row[i]) : sparkd::f32_to_f16(row[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
    }
  }

  Backend& backend_;
  std::vector<Buffer> buffers_;
};

struct Shape {
  int64_t hidden = 4096, heads = 32, kv_heads = 8, head_dim = 128, mlp = 14336, vocab = 128256;
};

struct LayerWeights {
  Tensor q, k, v, o, gate, up, down, attention_norm, mlp_norm;
};

double probe_copy_gbs() {
  const size_t bytes = size_t{1} << 30;
  void* a = nullptr;
  void* b = nullptr;
  BENCH_CUDA(cudaMalloc(&a, bytes));
  BENCH_CUDA(cudaMalloc(&b, bytes));
  BENCH_CUDA(cudaMemset(a, 1, bytes));
  const double seconds = median_seconds(
      2, 20, [&] { BENCH_CUDA(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice)); },
      [] { BENCH_CUDA(cudaDeviceSynchronize()); });
  cudaFree(a);
  cudaFree(b);
  return 2.0 * static_cast<double>(bytes) / seconds / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  int device = 0, layers = 32, context = 512;
  DType weight_type = DType::kBF16;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto next = [&]() -> std::string {
      if (i + 1 >= argc) die(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--device") {
      device = std::atoi(next().c_str());
    } else if (arg == "--layers") {
      layers = std::max(1, std::atoi(next().c_str()));
    } else if (arg == "--context") {
      context = std::max(1, std::atoi(next().c_str()));
    } else if (arg == "--weights") {
      const std::string name = next();
      weight_type = name == "q4_k"   ? DType::kQ4_K
                    : name == "q8_0" ? DType::kQ8_0
                    : name == "bf16" ? DType::kBF16
                                     : (die("--weights: bf16, q4_k or q8_0"), DType::kBF16);
    } else if (arg == "--quick") {
      quick = true;
    } else {
      die("unknown option " + arg);
    }
  }
  cudaDeviceProp prop{};
  BENCH_CUDA(cudaGetDeviceProperties(&prop, device));
  sparkd::CudaBackendOptions options;
  options.device = device;
  auto made = sparkd::make_cuda_backend(options);
  if (!made) die(made.status().to_string());
  Backend& backend = **made;
  const auto sync = [&] { backend.synchronize(); };
  const int repeats = quick ? 3 : 10;

  std::printf("device: %s (sm_%d%d, %d SMs, %.0f GiB%s)\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, static_cast<double>(prop.totalGlobalMem) / (1 << 30),
              prop.integrated ? ", integrated" : "");
  const double probe_gbs = probe_copy_gbs();
  std::printf("bandwidth probe: device-to-device copy %.0f GB/s (read + write)\n\n", probe_gbs);

  // ---- decode ----------------------------------------------------------------------------
  const Shape s;
  DeviceMemory memory(backend);
  LayerWeights w;
  const float weight_scale = 0.02f;
  w.q = memory.random(weight_type, {s.heads * s.head_dim, s.hidden}, 1, weight_scale);
  w.k = memory.random(weight_type, {s.kv_heads * s.head_dim, s.hidden}, 2, weight_scale);
  w.v = memory.random(weight_type, {s.kv_heads * s.head_dim, s.hidden}, 3, weight_scale);
  w.o = memory.random(weight_type, {s.hidden, s.heads * s.head_dim}, 4, weight_scale);
  w.gate = memory.random(weight_type, {s.mlp, s.hidden}, 5, weight_scale);
  w.up = memory.random(weight_type, {s.mlp, s.hidden}, 6, weight_scale);
  w.down = memory.random(weight_type, {s.hidden, s.mlp}, 7, weight_scale);
  w.attention_norm = memory.random(DType::kBF16, {s.hidden}, 8);
  w.mlp_norm = memory.random(DType::kBF16, {s.hidden}, 9);
  const Tensor lm_head = memory.random(weight_type, {s.vocab, s.hidden}, 10, weight_scale);
  const Tensor final_norm = memory.random(DType::kBF16, {s.hidden}, 11);
  std::vector<float> inv_freq_host(static_cast<size_t>(s.head_dim / 2));
  for (size_t i = 0; i < inv_freq_host.size(); ++i) {
    inv_freq_host[i] =
        std::pow(500000.0f, -2.0f * static_cast<float>(i) / static_cast<float>(s.head_dim));
  }
  Tensor inv_freq = memory.make(DType::kF32, {s.head_dim / 2});
  backend.upload(inv_freq.data, inv_freq_host.data(), inv_freq_host.size() * 4);
  const uint64_t layer_bytes = w.q.size_bytes() + w.k.size_bytes() + w.v.size_bytes() +
                               w.o.size_bytes() + w.gate.size_bytes() + w.up.size_bytes() +
                               w.down.size_bytes();
  const uint64_t token_weight_bytes =
      layer_bytes * static_cast<uint64_t>(layers) + lm_head.size_bytes();

  const std::vector<int> batches =
      quick ? std::vector<int>{1, 8, 32} : std::vector<int>{1, 2, 4, 8, 16, 32, 64, 128};
  const int max_batch = batches.back();
  // One KV cache per layer would be layers x the memory; every layer attends to the same one
  // (the bytes read per layer are the same).
  const int64_t slots = int64_t{max_batch} * (context + 1);
  Tensor keys = memory.random(backend.kv_dtype(), {slots, s.kv_heads, s.head_dim}, 12);
  Tensor values = memory.random(backend.kv_dtype(), {slots, s.kv_heads, s.head_dim}, 13);
  const KvLayerView kv{keys, values, 0};
  Tensor x = memory.random(DType::kF32, {max_batch, s.hidden}, 14);
  Tensor h = memory.make(DType::kF32, {max_batch, s.hidden});
  Tensor q = memory.make(DType::kF32, {max_batch, s.heads, s.head_dim});
  Tensor k = memory.make(DType::kF32, {max_batch, s.kv_heads, s.head_dim});
  Tensor v = memory.make(DType::kF32, {max_batch, s.kv_heads, s.head_dim});
  Tensor attended = memory.make(DType::kF32, {max_batch, s.heads, s.head_dim});
  Tensor gate = memory.make(DType::kF32, {max_batch, s.mlp});
  Tensor up = memory.make(DType::kF32, {max_batch, s.mlp});
  Tensor logits = memory.make(DType::kF32, {max_batch, s.vocab});

  std::printf(
      "decode: synthetic Llama-3-8B, %d layers, %s weights (%.2f GB read per step), "
      "%d-token context per sequence, %s KV\n",
      layers, sparkd::dtype_name(weight_type), static_cast<double>(token_weight_bytes) / 1e9,
      context, sparkd::dtype_name(backend.kv_dtype()));
  std::printf("%6s %10s %10s %12s %10s\n", "batch", "step ms", "tok/s", "x batch 1", "% of probe");
  double batch1_tps = 0;
  for (int batch : batches) {
    const auto rows = [&](Tensor t) { return t.row_range(0, batch); };
    std::vector<int32_t> positions(static_cast<size_t>(batch), context);
    std::vector<int32_t> slots_now(static_cast<size_t>(batch));
    std::vector<AttentionSequence> sequences(static_cast<size_t>(batch));
    for (int b = 0; b < batch; ++b) {
      slots_now[static_cast<size_t>(b)] = b * (context + 1) + context;
      sequences[static_cast<size_t>(b)] = {b, 1, context + 1, b * (context + 1), {}};
    }
    AttentionParams params;
    params.scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
    const auto step = [&] {
      Tensor x_b = rows(x), h_b = rows(h);
      Tensor q_b = q.row_range(0, batch).reshaped({batch, s.heads, s.head_dim});
      Tensor k_b = k.row_range(0, batch).reshaped({batch, s.kv_heads, s.head_dim});
      Tensor v_b = v.row_range(0, batch).reshaped({batch, s.kv_heads, s.head_dim});
      Tensor attended_b = attended.row_range(0, batch).reshaped({batch, s.heads, s.head_dim});
      Tensor gate_b = rows(gate), up_b = rows(up), logits_b = rows(logits);
      for (int l = 0; l < layers; ++l) {
        backend.rms_norm(x_b, w.attention_norm, 1e-5f, h_b);
        Tensor q_flat = q_b.reshaped({batch, s.heads * s.head_dim});
        Tensor k_flat = k_b.reshaped({batch, s.kv_heads * s.head_dim});
        Tensor v_flat = v_b.reshaped({batch, s.kv_heads * s.head_dim});
        backend.linear(h_b, w.q, nullptr, q_flat);
        backend.linear(h_b, w.k, nullptr, k_flat);
        backend.linear(h_b, w.v, nullptr, v_flat);
        backend.rope(q_b, positions, inv_freq);
        backend.rope(k_b, positions, inv_freq);
        backend.store_kv(k_b, v_b, slots_now, kv);
        backend.attention(q_b, kv, sequences, params, attended_b);
        backend.linear(attended_b.reshaped({batch, s.heads * s.head_dim}), w.o, nullptr, h_b);
        backend.add(x_b, h_b, x_b);
        backend.rms_norm(x_b, w.mlp_norm, 1e-5f, h_b);
        backend.linear(h_b, w.gate, nullptr, gate_b);
        backend.linear(h_b, w.up, nullptr, up_b);
        backend.silu_mul(gate_b, up_b, gate_b);
        backend.linear(gate_b, w.down, nullptr, h_b);
        backend.add(x_b, h_b, x_b);
      }
      backend.rms_norm(x_b, final_norm, 1e-5f, h_b);
      backend.linear(h_b, lm_head, nullptr, logits_b);
    };
    const double seconds = median_seconds(1, repeats, step, sync);
    const double tps = batch / seconds;
    if (batch == 1) batch1_tps = tps;
    const double achieved_gbs = static_cast<double>(token_weight_bytes) / seconds / 1e9;
    std::printf("%6d %10.2f %10.1f %11.1fx %9.1f%%\n", batch, seconds * 1e3, tps, tps / batch1_tps,
                100.0 * achieved_gbs / probe_gbs);
  }

  // ---- prefill ---------------------------------------------------------------------------
  auto blas = sparkd::cuda::load_cublas();
  if (!blas) die(blas.status().to_string());
  cublasHandle_t handle = nullptr;
  if ((*blas)->create(&handle) != CUBLAS_STATUS_SUCCESS) die("cublasCreate failed");
  const int64_t tokens = 2048;
  std::printf(
      "\nprefill: %lld tokens, BF16 weights; sparkd's linear (x converted to BF16, F32 "
      "out) vs cuBLAS GemmEx on the same BF16 operands\n",
      static_cast<long long>(tokens));
  std::printf("%-22s %12s %12s %8s\n", "shape (n x k)", "sparkd TF/s", "cuBLAS TF/s", "ratio");
  Tensor px = memory.random(DType::kF32, {tokens, s.mlp}, 20);
  Tensor px_bf16 = memory.random(DType::kBF16, {tokens, s.mlp}, 21);
  Tensor py = memory.make(DType::kF32, {tokens, s.mlp});
  for (const auto& [n, k_dim] :
       std::vector<std::pair<int64_t, int64_t>>{{s.heads * s.head_dim, s.hidden},
                                                {s.kv_heads * s.head_dim, s.hidden},
                                                {s.mlp, s.hidden},
                                                {s.hidden, s.mlp}}) {
    const Tensor weight = memory.random(DType::kBF16, {n, k_dim}, 22, 0.02f);
    const Tensor x_in(DType::kF32, {tokens, k_dim}, px.data);
    Tensor y_out(DType::kF32, {tokens, n}, py.data);
    const double flops = 2.0 * static_cast<double>(tokens * n * k_dim);
    const double ours = median_seconds(
        2, repeats, [&] { backend.linear(x_in, weight, nullptr, y_out); }, sync);
    const float alpha = 1.0f, beta = 0.0f;
    const double theirs = median_seconds(
        2, repeats,
        [&] {
          (*blas)->gemm_ex(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                           static_cast<int>(tokens), static_cast<int>(k_dim), &alpha, weight.data,
                           CUDA_R_16BF, static_cast<int>(k_dim), px_bf16.data, CUDA_R_16BF,
                           static_cast<int>(k_dim), &beta, py.data, CUDA_R_32F, static_cast<int>(n),
                           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        },
        [] { BENCH_CUDA(cudaDeviceSynchronize()); });
    char shape[64];
    std::snprintf(shape, sizeof shape, "%lld x %lld", static_cast<long long>(n),
                  static_cast<long long>(k_dim));
    std::printf("%-22s %12.1f %12.1f %7.0f%%\n", shape, flops / ours / 1e12, flops / theirs / 1e12,
                100.0 * theirs / ours);
  }
  (*blas)->destroy(handle);

  // ---- prefill attention -----------------------------------------------------------------
  // The same memory, read by two more backends that differ only in the attention kernel.
  const auto attention_backend = [&](int tiling) {
    sparkd::CudaBackendOptions forced = options;
    forced.attention_tiling = tiling;
    auto made_forced = sparkd::make_cuda_backend(forced);
    if (!made_forced) die(made_forced.status().to_string());
    return std::move(made_forced).value();
  };
  auto tiled = attention_backend(1);
  auto per_row = attention_backend(-1);
  Tensor prompt_keys = memory.random(backend.kv_dtype(), {tokens, s.kv_heads, s.head_dim}, 30);
  Tensor prompt_values = memory.random(backend.kv_dtype(), {tokens, s.kv_heads, s.head_dim}, 31);
  const KvLayerView prompt_kv{prompt_keys, prompt_values, 0};
  const Tensor prompt_q = memory.random(DType::kF32, {tokens, s.heads, s.head_dim}, 32);
  Tensor prompt_out = memory.make(DType::kF32, {tokens, s.heads, s.head_dim});
  const std::vector<AttentionSequence> prompt = {
      {0, static_cast<int32_t>(tokens), static_cast<int32_t>(tokens), 0, {}}};
  AttentionParams causal;
  causal.scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  const auto attention_seconds = [&](Backend& b) {
    return median_seconds(
        2, repeats, [&] { b.attention(prompt_q, prompt_kv, prompt, causal, prompt_out); },
        [&] { b.synchronize(); });
  };
  const double tiled_seconds = attention_seconds(*tiled);
  const double per_row_seconds = attention_seconds(*per_row);
  // q·k and p·v over the causal half: 2 x 2 x heads x head_dim x tokens² / 2.
  const double attention_flops = 2.0 * static_cast<double>(s.heads * s.head_dim) *
                                 static_cast<double>(tokens) * static_cast<double>(tokens);
  std::printf("\nprefill attention: %lld tokens, causal, %s KV, one layer\n",
              static_cast<long long>(tokens), sparkd::dtype_name(backend.kv_dtype()));
  std::printf("%-10s %10s %10s\n", "kernel", "ms", "TF/s");
  std::printf("%-10s %10.3f %10.2f\n", "tiled", tiled_seconds * 1e3,
              attention_flops / tiled_seconds / 1e12);
  std::printf("%-10s %10.3f %10.2f\n", "per row", per_row_seconds * 1e3,
              attention_flops / per_row_seconds / 1e12);
  std::printf("tiled / per row: %.1fx faster\n", per_row_seconds / tiled_seconds);

  // ---- MoE decode ------------------------------------------------------------------------
  const int32_t experts_count = 32, top_k = 8;
  const int64_t moe_hidden = 2048, moe_inter = 768;
  std::vector<Tensor> expert_gate, expert_up, expert_down;
  for (int32_t e = 0; e < experts_count; ++e) {
    const auto seed = static_cast<uint32_t>(40 + 3 * e);
    expert_gate.push_back(memory.random(DType::kBF16, {moe_inter, moe_hidden}, seed, 0.02f));
    expert_up.push_back(memory.random(DType::kBF16, {moe_inter, moe_hidden}, seed + 1, 0.02f));
    expert_down.push_back(memory.random(DType::kBF16, {moe_hidden, moe_inter}, seed + 2, 0.02f));
  }
  sparkd::MoeExperts experts;
  experts.gate = expert_gate;
  experts.up = expert_up;
  experts.down = expert_down;
  const Tensor router = memory.random(DType::kBF16, {experts_count, moe_hidden}, 39, 0.05f);
  const double expert_set_bytes =
      static_cast<double>(3 * expert_gate[0].size_bytes());  // gate, up and down alike
  std::printf("\nMoE decode: one layer, %d experts of %lld x %lld, top %d, BF16\n", experts_count,
              static_cast<long long>(moe_inter), static_cast<long long>(moe_hidden), top_k);
  std::printf("%6s %14s %10s %14s %10s\n", "tokens", "device ms", "GB/s", "host ms", "GB/s");
  for (int64_t moe_tokens : {1, 4, 16}) {
    const int64_t rows = sparkd::moe_scratch_rows(moe_tokens, top_k);
    const sparkd::MoeScratch scratch{
        memory.make(DType::kF32, {rows, moe_hidden}), memory.make(DType::kF32, {rows, moe_inter}),
        memory.make(DType::kF32, {rows, moe_inter}), memory.make(DType::kF32, {rows, moe_hidden})};
    const Tensor moe_x = memory.random(DType::kF32, {moe_tokens, moe_hidden}, 50);
    Tensor moe_residual = memory.random(DType::kF32, {moe_tokens, moe_hidden}, 51);
    Tensor logits_moe = memory.make(DType::kF32, {moe_tokens, experts_count});
    Tensor ids = memory.make(DType::kF32, {moe_tokens, top_k});
    Tensor routing_weights = memory.make(DType::kF32, {moe_tokens, top_k});
    int64_t device_reads = 0, host_reads = 0;
    const double device_seconds = median_seconds(
        2, repeats,
        [&] {
          backend.linear(moe_x, router, nullptr, logits_moe);
          backend.moe_route(logits_moe, top_k, true, ids, routing_weights);
          device_reads =
              backend.moe_experts(moe_x, ids, routing_weights, experts, scratch, moe_residual);
        },
        sync);
    const double host_seconds = median_seconds(
        2, repeats,
        [&] {
          backend.linear(moe_x, router, nullptr, logits_moe);
          sparkd::route_on_host(backend, logits_moe, top_k, true, ids, routing_weights);
          host_reads = sparkd::run_experts_by_expert(backend, moe_x, ids, routing_weights, experts,
                                                     scratch, moe_residual);
        },
        sync);
    std::printf("%6lld %14.3f %10.0f %14.3f %10.0f\n", static_cast<long long>(moe_tokens),
                device_seconds * 1e3,
                static_cast<double>(device_reads) * expert_set_bytes / device_seconds / 1e9,
                host_seconds * 1e3,
                static_cast<double>(host_reads) * expert_set_bytes / host_seconds / 1e9);
  }
  return 0;
}
