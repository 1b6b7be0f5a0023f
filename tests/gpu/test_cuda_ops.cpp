// Every CUDA op against the CPU backend (the reference), in the manner of llama.cpp's
// test-backend-ops: the same random inputs through both, across shapes (odd sizes, batch 1 to
// 256, long contexts, paged and contiguous KV) and dtypes. Outputs are poisoned with NaN
// before each GPU run, so an element a kernel forgets to write fails the comparison.
//
// Tolerances are norm-wise, ||gpu - cpu|| / ||cpu||:
//   1e-5  F32 arithmetic on both sides in another summation order (elementwise ops, norms,
//         attention, decode GEMVs, the delta rule, F32 GEMMs);
//   1e-6  conversions and dequantization (the same products; only FMA contraction differs);
//   2e-2  prefill GEMMs with BF16 inputs (the default), against F32 on the CPU;
// and quantized linear is compared with the CPU's dequantized weights in F32 (the CPU's own
// quantized kernels round activations to 8 bits, which the GPU does not).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cuda/cuda_backend.h"
#include "engine/backend/half.h"
#include "engine/backend/quantize.h"

namespace {

using sparkd::AttentionParams;
using sparkd::AttentionSequence;
using sparkd::Backend;
using sparkd::Buffer;
using sparkd::DType;
using sparkd::KvLayerView;
using sparkd::RecurrentSequence;
using sparkd::RowSpan;
using sparkd::Tensor;

std::unique_ptr<Backend> cuda_backend(bool f32_gemm = false, int attention_split_keys = 0,
                                      int attention_tiling = 0) {
  sparkd::CudaBackendOptions options;
  options.f32_gemm = f32_gemm;
  options.attention_split_keys = attention_split_keys;
  options.attention_tiling = attention_tiling;
  auto backend = sparkd::make_cuda_backend(options);
  if (!backend) FAIL("CUDA backend: " << backend.status().to_string());
  return std::move(backend).value();
}

// Host bytes of a tensor of any dtype, made from floats.
std::vector<uint8_t> encode(const std::vector<float>& values, DType dtype, int64_t cols) {
  const size_t rows = cols == 0 ? 0 : values.size() / static_cast<size_t>(cols);
  std::vector<uint8_t> bytes(rows * sparkd::dtype_row_bytes(dtype, cols));
  for (size_t i = 0; i < values.size(); ++i) {
    switch (dtype) {
      case DType::kF32:
        std::memcpy(bytes.data() + 4 * i, &values[i], 4);
        break;
      case DType::kF16: {
        const uint16_t h = sparkd::f32_to_f16(values[i]);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
        break;
      }
      case DType::kBF16: {
        const uint16_t h = sparkd::f32_to_bf16(values[i]);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
        break;
      }
      default:
        break;
    }
  }
  if (sparkd::dtype_is_quantized(dtype)) {
    for (size_t r = 0; r < rows; ++r) {
      sparkd::quant::quantize_row(values.data() + r * cols, cols, dtype,
                                  bytes.data() + r * sparkd::dtype_row_bytes(dtype, cols));
    }
  }
  return bytes;
}

// Random quantized rows for the types sparkd does not quantize to (Q2_K, Q3_K, MXFP4): random
// bytes with the scales set to moderate values, so every block is valid and finite.
std::vector<uint8_t> random_blocks(DType dtype, int64_t rows, int64_t cols, std::mt19937& rng) {
  std::vector<uint8_t> bytes(static_cast<size_t>(rows) * sparkd::dtype_row_bytes(dtype, cols));
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(byte(rng));
  const auto traits = sparkd::dtype_traits(dtype);
  const size_t blocks = bytes.size() / static_cast<size_t>(traits.block_bytes);
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  for (size_t b = 0; b < blocks; ++b) {
    uint8_t* block = bytes.data() + b * static_cast<size_t>(traits.block_bytes);
    const auto set_half = [&](size_t offset) {
      const uint16_t h = sparkd::f32_to_f16(scale(rng));
      std::memcpy(block + offset, &h, 2);
    };
    if (dtype == DType::kQ2_K) {
      set_half(80);
      set_half(82);
    } else if (dtype == DType::kQ3_K) {
      set_half(108);
    } else if (dtype == DType::kMXFP4) {
      block[0] = static_cast<uint8_t>(118 + byte(rng) % 8);  // 2^-9 .. 2^-2
    }
  }
  return bytes;
}

std::vector<float> random_values(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// Tensors of one test on one backend; their memory lives as long as this does.
class On {
 public:
  explicit On(Backend& backend) : backend_(backend) {}
  Backend& backend() { return backend_; }

  Tensor bytes(DType dtype, std::vector<int64_t> shape, const std::vector<uint8_t>& data) {
    Tensor t(dtype, std::move(shape), nullptr);
    REQUIRE(data.size() == t.size_bytes());
    auto buffer = backend_.allocate(std::max<size_t>(data.size(), 1));
    REQUIRE(buffer.has_value());
    t.data = buffer->data();
    backend_.upload(t.data, data.data(), data.size());
    buffers_.push_back(std::move(buffer).value());
    return t;
  }
  Tensor values(DType dtype, std::vector<int64_t> shape, const std::vector<float>& data) {
    const int64_t cols = shape.empty() ? 1 : shape.back();
    return bytes(dtype, std::move(shape), encode(data, dtype, cols));
  }
  Tensor f32(std::vector<int64_t> shape, const std::vector<float>& data) {
    return values(DType::kF32, std::move(shape), data);
  }
  // An F32 output filled with NaN: any element left unwritten shows.
  Tensor poisoned(std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return f32(std::move(shape),
               std::vector<float>(static_cast<size_t>(n), std::numeric_limits<float>::quiet_NaN()));
  }
  std::vector<float> read(const Tensor& t) {
    std::vector<float> out(static_cast<size_t>(t.numel()));
    backend_.download_f32(t, out);
    return out;
  }

 private:
  Backend& backend_;
  std::vector<Buffer> buffers_;
};

// ||got - want|| / ||want|| (absolute when want is all zeros); NaN anywhere fails.
void check_close(const std::vector<float>& got, const std::vector<float>& want, double tolerance,
                 const std::string& what) {
  INFO(what);
  REQUIRE(got.size() == want.size());
  double diff = 0, norm = 0;
  size_t nan = 0, first_nan = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i]) != std::isnan(want[i])) {
      if (nan++ == 0) first_nan = i;
      continue;
    }
    if (std::isnan(want[i])) continue;
    diff += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    norm += double{want[i]} * want[i];
  }
  INFO(nan << " NaN mismatches (first at " << first_nan << ")");
  CHECK(nan == 0);
  const double error = norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
  INFO("relative error " << error << ", tolerance " << tolerance);
  CHECK(error <= tolerance);
}

std::string shape_name(int64_t m, int64_t k, int64_t n) {
  return std::to_string(m) + "x" + std::to_string(k) + " . " + std::to_string(n) + "x" +
         std::to_string(k);
}

}  // namespace

TEST_CASE("cuda: devices, memory and conversions", "[gpu]") {
  auto gpu = cuda_backend();
  auto cpu = sparkd::make_cpu_backend();
  std::mt19937 rng(11);
  CHECK(gpu->activation_dtype() == DType::kF32);
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    const std::vector<float> values = random_values(1000, rng, 3.0f);
    On g(*gpu), c(*cpu);
    check_close(g.read(g.values(dtype, {10, 100}, values)),
                c.read(c.values(dtype, {10, 100}, values)), 0.0, sparkd::dtype_name(dtype));
  }
  {
    // Large uploads go through the pinned double buffer (32 MiB pieces): 84 MB, not a
    // multiple of the piece.
    On g(*gpu);
    const std::vector<float> large = random_values(21'000'003, rng);
    check_close(g.read(g.f32({21'000'003}, large)), large, 0.0, "staged upload of 84 MB");
  }
  On g(*gpu);
  Tensor zeroed = g.poisoned({3, 5});
  gpu->fill_zero(zeroed.data, zeroed.size_bytes());
  check_close(g.read(zeroed), std::vector<float>(15, 0.0f), 0.0, "fill_zero");
}

TEST_CASE("cuda: gather_rows of float and quantized rows", "[gpu]") {
  auto gpu = cuda_backend();
  auto cpu = sparkd::make_cpu_backend();
  std::mt19937 rng(12);
  const std::vector<int32_t> rows = {4, 0, 9, 4, 7};
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ4_0, DType::kQ4_1,
                      DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kQ2_K, DType::kQ3_K,
                      DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kMXFP4}) {
    const int64_t cols = sparkd::dtype_is_quantized(dtype) ? 512 : 77;
    const std::vector<uint8_t> bytes =
        dtype == DType::kQ2_K || dtype == DType::kQ3_K || dtype == DType::kMXFP4
            ? random_blocks(dtype, 10, cols, rng)
            : encode(random_values(static_cast<size_t>(10 * cols), rng), dtype, cols);
    On g(*gpu), c(*cpu);
    const Tensor src_g = g.bytes(dtype, {10, cols}, bytes);
    const Tensor src_c = c.bytes(dtype, {10, cols}, bytes);
    Tensor out_g = g.poisoned({5, cols});
    Tensor out_c = c.poisoned({5, cols});
    gpu->gather_rows(src_g, rows, out_g);
    cpu->gather_rows(src_c, rows, out_c);
    check_close(g.read(out_g), c.read(out_c), 1e-6,
                std::string("gather_rows ") + sparkd::dtype_name(dtype));
    // The whole tensor, dequantized (download_f32 of a weight).
    check_close(g.read(src_g), c.read(src_c), 1e-6,
                std::string("download_f32 ") + sparkd::dtype_name(dtype));
  }
}

TEST_CASE("cuda: linear over every weight type, decode and prefill shapes", "[gpu]") {
  auto gpu = cuda_backend();
  auto gpu_f32 = cuda_backend(/*f32_gemm=*/true);
  auto cpu = sparkd::make_cpu_backend();
  std::mt19937 rng(13);
  struct Case {
    DType dtype;
    int64_t k;
  };
  const std::vector<Case> cases = {
      {DType::kF32, 100},  {DType::kF16, 96},   {DType::kBF16, 96},  {DType::kBF16, 33},
      {DType::kF16, 7},    {DType::kQ4_0, 256}, {DType::kQ4_1, 96},  {DType::kQ5_0, 128},
      {DType::kQ5_1, 64},  {DType::kQ8_0, 320}, {DType::kQ2_K, 256}, {DType::kQ3_K, 512},
      {DType::kQ4_K, 768}, {DType::kQ5_K, 256}, {DType::kQ6_K, 512}, {DType::kMXFP4, 160},
  };
  for (const Case& test : cases) {
    for (int64_t m : {1, 3, 8, 9, 23, 24, 33, 256}) {
      for (int64_t n : {1, 7, 129}) {
        const int64_t k = test.k;
        const std::vector<uint8_t> weight_bytes =
            test.dtype == DType::kQ2_K || test.dtype == DType::kQ3_K || test.dtype == DType::kMXFP4
                ? random_blocks(test.dtype, n, k, rng)
                : encode(random_values(static_cast<size_t>(n * k), rng, 0.1f), test.dtype, k);
        const std::vector<float> x = random_values(static_cast<size_t>(m * k), rng);
        const std::vector<float> bias = random_values(static_cast<size_t>(n), rng);
        const std::string what =
            std::string(sparkd::dtype_name(test.dtype)) + " " + shape_name(m, k, n);
        // The reference: the CPU's dequantized (or exact) weights, F32 linear on the CPU.
        On c(*cpu);
        const std::vector<float> weight_f32 = c.read(c.bytes(test.dtype, {n, k}, weight_bytes));
        const Tensor w_c = c.f32({n, k}, weight_f32);
        const Tensor x_c = c.f32({m, k}, x);
        const Tensor b_c = c.values(DType::kBF16, {n}, bias);
        Tensor y_c = c.poisoned({m, n});
        cpu->linear(x_c, w_c, &b_c, y_c);
        const std::vector<float> want = c.read(y_c);

        for (Backend* backend : {gpu.get(), gpu_f32.get()}) {
          On g(*backend);
          const Tensor w = g.bytes(test.dtype, {n, k}, weight_bytes);
          const Tensor x_g = g.f32({m, k}, x);
          const Tensor b_g = g.values(DType::kBF16, {n}, bias);
          Tensor y = g.poisoned({m, n});
          backend->linear(x_g, w, &b_g, y);
          // Prefill shapes take the GEMM, BF16 inputs unless f32_gemm.
          const bool bf16_gemm = backend == gpu.get() && m >= 24 && test.dtype != DType::kF32;
          check_close(g.read(y), want, bf16_gemm ? 2e-2 : 1e-5,
                      what + (backend == gpu.get() ? " (default)" : " (f32_gemm)"));
        }
      }
    }
  }
}

TEST_CASE("cuda: linear in place, y over x", "[gpu]") {
  auto gpu = cuda_backend(/*f32_gemm=*/true);
  auto cpu = sparkd::make_cpu_backend();
  std::mt19937 rng(14);
  for (int64_t m : {1, 40}) {
    const int64_t k = 64;
    const std::vector<float> w = random_values(static_cast<size_t>(k * k), rng, 0.2f);
    const std::vector<float> x = random_values(static_cast<size_t>(m * k), rng);
    On g(*gpu), c(*cpu);
    Tensor x_g = g.f32({m, k}, x), x_c = c.f32({m, k}, x);
    gpu->linear(x_g, g.values(DType::kBF16, {k, k}, w), nullptr, x_g);
    cpu->linear(x_c, c.values(DType::kBF16, {k, k}, w), nullptr, x_c);
    check_close(g.read(x_g), c.read(x_c), 1e-5, "in place, m = " + std::to_string(m));
  }
}

TEST_CASE("cuda: elementwise ops, norms, rope, pooling", "[gpu]") {
  auto gpu = cuda_backend();
  auto cpu = sparkd::make_cpu_backend();
  std::mt19937 rng(15);
  for (int64_t rows : {1, 5, 256}) {
    for (int64_t cols : {1, 7, 64, 1000, 4097}) {
      const size_t n = static_cast<size_t>(rows * cols);
      const std::vector<float> a = random_values(n, rng, 2.0f), b = random_values(n, rng, 2.0f);
      const std::vector<float> row = random_values(static_cast<size_t>(cols), rng);
      const std::string shape = std::to_string(rows) + "x" + std::to_string(cols);
      // Runs one op on both backends and compares.
      const auto compare = [&](const std::string& what, double tolerance, auto&& op) {
        On g(*gpu), c(*cpu);
        Tensor out_g = g.poisoned({rows, cols});
        Tensor out_c = c.poisoned({rows, cols});
        op(*gpu, g, out_g);
        op(*cpu, c, out_c);
        check_close(g.read(out_g), c.read(out_c), tolerance, what + " " + shape);
      };
      compare("add", 1e-6, [&](Backend& be, On& on, Tensor& out) {
        be.add(on.f32({rows, cols}, a), on.f32({rows, cols}, b), out);
      });
      compare("add broadcast F16", 1e-6, [&](Backend& be, On& on, Tensor& out) {
        be.add(on.f32({rows, cols}, a), on.values(DType::kF16, {cols}, row), out);
      });
      compare("rms_norm", 1e-5, [&](Backend& be, On& on, Tensor& out) {
        be.rms_norm(on.f32({rows, cols}, a), on.values(DType::kBF16, {cols}, row), 1e-6f, out);
      });
      compare("layer_norm", 1e-5, [&](Backend& be, On& on, Tensor& out) {
        be.layer_norm(on.f32({rows, cols}, a), on.f32({cols}, row),
                      on.values(DType::kF16, {cols}, row), 1e-12f, out);
      });
      compare("silu_mul", 1e-6, [&](Backend& be, On& on, Tensor& out) {
        be.silu_mul(on.f32({rows, cols}, a), on.f32({rows, cols}, b), out);
      });
      compare("clamped_swiglu", 1e-6, [&](Backend& be, On& on, Tensor& out) {
        be.clamped_swiglu(on.f32({rows, cols}, a), on.f32({rows, cols}, b), 1.702f, 3.0f, out);
      });
      compare("gelu erf", 1e-6, [&](Backend& be, On& on, Tensor& out) {
        be.gelu(on.f32({rows, cols}, a), false, out);
      });
      compare("gelu tanh", 1e-6, [&](Backend& be, On& on, Tensor& out) {
        be.gelu(on.f32({rows, cols}, a), true, out);
      });
      compare("tanh", 1e-6, [&](Backend& be, On& on, Tensor& out) {
        be.tanh(on.f32({rows, cols}, a), out);
      });
      compare("sigmoid_mul", 1e-6, [&](Backend& be, On& on, Tensor& out) {
        be.sigmoid_mul(on.f32({rows, cols}, a), on.f32({rows, cols}, b), out);
      });
      compare("sigmoid_mul, a gate per row", 1e-6, [&](Backend& be, On& on, Tensor& out) {
        be.sigmoid_mul(on.f32({rows, 1}, std::vector<float>(a.begin(), a.begin() + rows)),
                       on.f32({rows, cols}, b), out);
      });
      compare("l2_normalize_rows", 1e-6, [&](Backend& be, On& on, Tensor& out) {
        std::vector<float> with_zero_row = a;
        std::fill_n(with_zero_row.begin(), cols, 0.0f);  // stays zero
        Tensor x = on.f32({rows, cols}, with_zero_row);
        be.l2_normalize_rows(x);
        be.add(x, on.f32({rows, cols}, std::vector<float>(n, 0.0f)), out);
      });
    }
  }
}

TEST_CASE("cuda: split_head_halves, rope (full and partial), mean_rows, scatter_add_rows",
          "[gpu]") {
  auto gpu = cuda_backend();
  auto cpu = sparkd::make_cpu_backend();
  std::mt19937 rng(16);
  for (int64_t tokens : {1, 9, 130}) {
    const int64_t heads = 6, head_dim = 64;
    const std::vector<float> x =
        random_values(static_cast<size_t>(tokens * heads * 2 * head_dim), rng);
    std::vector<int32_t> positions(static_cast<size_t>(tokens));
    std::uniform_int_distribution<int32_t> position(0, 100000);
    for (int32_t& p : positions) p = position(rng);
    std::vector<float> inv_freq(head_dim / 2);
    for (size_t i = 0; i < inv_freq.size(); ++i) {
      inv_freq[i] = std::pow(10000.0f, -2.0f * static_cast<float>(i) / head_dim);
    }
    const std::vector<float> partial(inv_freq.begin(), inv_freq.begin() + 8);
    std::vector<RowSpan> spans = {{0, static_cast<int32_t>(tokens)}};
    if (tokens > 2) spans.push_back({1, static_cast<int32_t>(tokens - 2)});
    std::vector<int32_t> rows(static_cast<size_t>(std::min<int64_t>(tokens, 3)));
    std::iota(rows.rbegin(), rows.rend(), 0);  // distinct, descending
    const std::vector<float> scales = {0.5f, -2.0f, 1.25f};

    // The chain on one backend: its four results.
    const auto run = [&](Backend& be) {
      On on(be);
      Tensor first = on.poisoned({tokens, heads, head_dim});
      Tensor second = on.poisoned({tokens, heads, head_dim});
      be.split_head_halves(on.f32({tokens, heads, 2 * head_dim}, x), first, second);
      std::vector<std::vector<float>> results = {on.read(first)};
      be.rope(first, positions, on.f32({head_dim / 2}, inv_freq));
      be.rope(second, positions, on.f32({8}, partial));
      Tensor pooled = on.poisoned({static_cast<int64_t>(spans.size()), heads * head_dim});
      be.mean_rows(first.reshaped({tokens, heads * head_dim}), spans, pooled);
      Tensor flat = second.reshaped({tokens, heads * head_dim});
      be.scatter_add_rows(on.f32({static_cast<int64_t>(rows.size()), heads * head_dim},
                                 std::vector<float>(rows.size() * heads * head_dim, 1.5f)),
                          rows, std::span<const float>(scales.data(), rows.size()), flat);
      results.push_back(on.read(first));
      results.push_back(on.read(pooled));
      results.push_back(on.read(flat));
      return results;
    };
    const auto got = run(*gpu);
    const auto want = run(*cpu);
    const std::string shape = std::to_string(tokens) + " tokens";
    check_close(got[0], want[0], 0.0, "split_head_halves " + shape);
    // Angles reach 1e5 radians, where F32 cos/sin of the same float agree to a few ulps.
    check_close(got[1], want[1], 1e-5, "rope " + shape);
    check_close(got[2], want[2], 1e-5, "mean_rows " + shape);
    check_close(got[3], want[3], 1e-5, "partial rope + scatter_add_rows " + shape);
  }
}

namespace {

struct AttentionCase {
  int32_t heads, kv_heads, head_dim;
  DType kv_dtype;
  int32_t block_tokens;  // 0: contiguous
  AttentionParams params;
  std::string name;
  bool decode_only = false;
};

constexpr int32_t kContiguousGap = 5;  // unused slots after each contiguous sequence

// A step of four sequences: a decode over a long context, a whole prefill, two prefill chunks
// after earlier tokens (the last over several key tiles of the tiled kernel). Every context
// position is stored first (store_kv), then attended.
std::vector<float> run_attention(Backend& be, const AttentionCase& test, uint32_t seed) {
  std::mt19937 rng(seed);
  struct Seq {
    int32_t query_tokens, context_tokens;
  };
  // A lone decode row leaves most of the GPU idle: the backend's own choice splits it.
  const std::vector<Seq> seqs = test.decode_only
                                    ? std::vector<Seq>{{1, 4100}}
                                    : std::vector<Seq>{{1, 4100}, {37, 37}, {5, 20}, {70, 131}};
  const int32_t block = test.block_tokens > 0 ? test.block_tokens : 1;
  int32_t slots_needed = 0;
  for (const Seq& s : seqs) slots_needed += (s.context_tokens + block - 1) / block * block;
  // Spare blocks never referenced (paged), or the gaps left between sequences (contiguous).
  const int32_t total_slots =
      slots_needed + (test.block_tokens > 0 ? 3 * block : kContiguousGap * 3);
  const int64_t row = int64_t{test.kv_heads} * test.head_dim;

  On on(be);
  Tensor keys = on.values(test.kv_dtype, {total_slots, test.kv_heads, test.head_dim},
                          std::vector<float>(static_cast<size_t>(total_slots * row), 0.0f));
  Tensor values = on.values(test.kv_dtype, {total_slots, test.kv_heads, test.head_dim},
                            std::vector<float>(static_cast<size_t>(total_slots * row), 0.0f));
  const KvLayerView kv{keys, values, test.block_tokens};

  // Paged: each sequence's blocks are a shuffled set of the pool's block ids.
  std::vector<int32_t> block_ids(static_cast<size_t>(total_slots / block));
  std::iota(block_ids.begin(), block_ids.end(), 0);
  std::shuffle(block_ids.begin(), block_ids.end(), rng);
  std::vector<std::vector<int32_t>> tables(seqs.size());
  std::vector<AttentionSequence> sequences;
  std::vector<int32_t> slots;
  int32_t next_block = 0, next_slot = 0, query_rows = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    AttentionSequence seq;
    seq.query_begin = query_rows;
    seq.query_tokens = seqs[s].query_tokens;
    seq.context_tokens = seqs[s].context_tokens;
    if (test.block_tokens > 0) {
      for (int32_t b = 0; b < (seqs[s].context_tokens + block - 1) / block; ++b) {
        tables[s].push_back(block_ids[static_cast<size_t>(next_block++)]);
      }
      for (int32_t p = 0; p < seqs[s].context_tokens; ++p) {
        slots.push_back(tables[s][static_cast<size_t>(p / block)] * block + p % block);
      }
      seq.block_table = tables[s];
    } else {
      seq.kv_slot_begin = next_slot;
      for (int32_t p = 0; p < seqs[s].context_tokens; ++p) slots.push_back(next_slot + p);
      next_slot += seqs[s].context_tokens + kContiguousGap;
    }
    sequences.push_back(seq);
    query_rows += seqs[s].query_tokens;
  }
  const int64_t positions = static_cast<int64_t>(slots.size());
  std::mt19937 data_rng(seed + 1);
  const std::vector<float> k = random_values(static_cast<size_t>(positions * row), data_rng);
  const std::vector<float> v = random_values(static_cast<size_t>(positions * row), data_rng);
  be.store_kv(on.f32({positions, test.kv_heads, test.head_dim}, k),
              on.f32({positions, test.kv_heads, test.head_dim}, v), slots, kv);

  const std::vector<float> q = random_values(
      static_cast<size_t>(int64_t{query_rows} * test.heads * test.head_dim), data_rng);
  Tensor out = on.poisoned({query_rows, test.heads, test.head_dim});
  AttentionParams params = test.params;
  params.scale = 1.0f / std::sqrt(static_cast<float>(test.head_dim));
  Tensor sinks;
  if (test.params.sinks != nullptr) {
    sinks = on.f32({test.heads}, random_values(static_cast<size_t>(test.heads), data_rng, 2.0f));
    params.sinks = &sinks;
  }
  be.attention(on.f32({query_rows, test.heads, test.head_dim}, q), kv, sequences, params, out);
  std::vector<float> result = on.read(out);
  // And the cache itself, as stored.
  const std::vector<float> stored = on.read(keys);
  result.insert(result.end(), stored.begin(), stored.end());
  return result;
}

}  // namespace

TEST_CASE("cuda: store_kv and attention (contiguous and paged, masks, GQA, sinks)", "[gpu]") {
  // Split-KV as the backend decides, always (chunks of 256 keys, so the 4100-token decode
  // takes 17 chunks and short rows leave chunks empty), and never; tiled attention as the
  // backend decides (the mixed step tiles), always (the lone decode row too) and never.
  std::vector<std::pair<std::string, std::unique_ptr<Backend>>> gpus;
  gpus.emplace_back("auto split, auto tiles", cuda_backend(false, 0, 0));
  gpus.emplace_back("split 256, untiled", cuda_backend(false, 256, -1));
  gpus.emplace_back("no split, untiled", cuda_backend(false, -1, -1));
  gpus.emplace_back("always tiled", cuda_backend(false, 0, 1));
  auto cpu = sparkd::make_cpu_backend();
  const Tensor some_sinks;  // marks "with sinks"; run_attention makes the real ones
  uint32_t seed = 100;
  for (int32_t head_dim : {64, 80, 128, 256}) {
    for (DType kv_dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
      for (int32_t block_tokens : {0, 16}) {
        for (int mode = 0; mode < 5; ++mode) {
          AttentionCase test{8, 2, head_dim, kv_dtype, block_tokens, {}, ""};
          test.decode_only = mode == 4;
          test.params.causal = mode != 1;
          test.params.sliding_window = mode == 2 ? 7 : 0;
          test.params.sinks = mode == 3 || mode == 4 ? &some_sinks : nullptr;
          test.name = "head_dim " + std::to_string(head_dim) + ", " + sparkd::dtype_name(kv_dtype) +
                      " cache, " + (block_tokens ? "paged" : "contiguous") + ", " +
                      (mode == 0   ? "causal"
                       : mode == 1 ? "bidirectional"
                       : mode == 2 ? "sliding window 7"
                       : mode == 3 ? "causal with sinks"
                                   : "one decode row with sinks");
          ++seed;
          const std::vector<float> want = run_attention(*cpu, test, seed);
          for (const auto& [how, gpu] : gpus) {
            check_close(run_attention(*gpu, test, seed), want, 1e-5, test.name + ", " + how);
          }
        }
      }
    }
  }
}

TEST_CASE("cuda: MoE routing and experts (grouped on the device, by expert on the host)", "[gpu]") {
  // F32 GEMMs for the host-grouped path's experts, so every case compares F32 arithmetic.
  auto gpu = cuda_backend(/*f32_gemm=*/true);
  auto cpu = sparkd::make_cpu_backend();
  std::mt19937 rng(17);
  struct Case {
    DType dtype;
    int32_t experts, top_k;
    bool normalize, biased_clamped;  // gpt-oss: biases and the clamped SwiGLU
    int64_t hidden, inter;
  };
  const std::vector<Case> cases = {
      {DType::kBF16, 8, 2, true, false, 256, 512},  {DType::kQ4_K, 64, 8, true, false, 256, 256},
      {DType::kF32, 32, 4, false, true, 128, 256},  {DType::kQ8_0, 128, 8, true, false, 96, 64},
      {DType::kMXFP4, 32, 4, true, true, 128, 160}, {DType::kF16, 512, 10, true, false, 64, 40},
      {DType::kQ4_0, 1100, 2, true, false, 64, 32},  // past the device router: routed on the host
  };
  for (const Case& test : cases) {
    const int64_t hidden = test.hidden, inter = test.inter;
    for (int64_t tokens : {1, 3, 16, 17, 40}) {
      const std::string what = std::string(sparkd::dtype_name(test.dtype)) + ", " +
                               std::to_string(test.experts) + " experts, top " +
                               std::to_string(test.top_k) + ", " + std::to_string(tokens) +
                               " tokens" + (test.biased_clamped ? ", biased, clamped" : "");
      INFO(what);
      const auto random_weight = [&](int64_t rows, int64_t cols) {
        return test.dtype == DType::kMXFP4
                   ? random_blocks(test.dtype, rows, cols, rng)
                   : encode(random_values(static_cast<size_t>(rows * cols), rng, 0.05f), test.dtype,
                            cols);
      };
      std::vector<std::vector<uint8_t>> gate_bytes, up_bytes, down_bytes;
      for (int32_t e = 0; e < test.experts; ++e) {
        gate_bytes.push_back(random_weight(inter, hidden));
        up_bytes.push_back(random_weight(inter, hidden));
        down_bytes.push_back(random_weight(hidden, inter));
      }
      const std::vector<float> x = random_values(static_cast<size_t>(tokens * hidden), rng);
      const std::vector<float> residual = random_values(static_cast<size_t>(tokens * hidden), rng);
      std::vector<float> logits =
          random_values(static_cast<size_t>(tokens * test.experts), rng, 2.0f);
      // Token 0's logits repeat every 3 experts: ties across the top-k boundary, which both
      // sides break towards the lower id.
      for (int32_t e = 3; e < test.experts; ++e) logits[static_cast<size_t>(e)] = logits[e % 3];
      // A bias of its own per expert and projection: a table that mixes them up shows.
      std::vector<std::vector<float>> gate_biases, up_biases, down_biases;
      for (int32_t e = 0; e < test.experts && test.biased_clamped; ++e) {
        gate_biases.push_back(random_values(static_cast<size_t>(inter), rng));
        up_biases.push_back(random_values(static_cast<size_t>(inter), rng));
        down_biases.push_back(random_values(static_cast<size_t>(hidden), rng));
      }

      // One backend's run: the routing and the residual after the experts. The CPU gets the
      // weights dequantized to F32 (its own quantized kernels round x to 8 bits).
      const auto run = [&](Backend& be, bool reference) {
        On on(be);
        std::vector<Tensor> gate, up, down, gate_bias, up_bias, down_bias;
        for (int32_t e = 0; e < test.experts; ++e) {
          const auto weight = [&](const std::vector<uint8_t>& bytes, int64_t rows, int64_t cols) {
            const Tensor stored = on.bytes(test.dtype, {rows, cols}, bytes);
            return reference ? on.f32({rows, cols}, on.read(stored)) : stored;
          };
          gate.push_back(weight(gate_bytes[e], inter, hidden));
          up.push_back(weight(up_bytes[e], inter, hidden));
          down.push_back(weight(down_bytes[e], hidden, inter));
          if (test.biased_clamped) {
            gate_bias.push_back(on.values(DType::kBF16, {inter}, gate_biases[e]));
            up_bias.push_back(on.values(DType::kBF16, {inter}, up_biases[e]));
            down_bias.push_back(on.values(DType::kBF16, {hidden}, down_biases[e]));
          }
        }
        sparkd::MoeExperts experts;
        experts.gate = gate;
        experts.up = up;
        experts.down = down;
        experts.gate_bias = gate_bias;
        experts.up_bias = up_bias;
        experts.down_bias = down_bias;
        experts.clamped_swiglu = test.biased_clamped;
        experts.swiglu_alpha = 1.702f;
        experts.swiglu_limit = 7.0f;
        const int64_t rows = sparkd::moe_scratch_rows(tokens, test.top_k);
        sparkd::MoeScratch scratch{on.poisoned({rows, hidden}), on.poisoned({rows, inter}),
                                   on.poisoned({rows, inter}), on.poisoned({rows, hidden})};
        Tensor ids = on.poisoned({tokens, test.top_k});
        Tensor weights = on.poisoned({tokens, test.top_k});
        be.moe_route(on.f32({tokens, test.experts}, logits), test.top_k, test.normalize, ids,
                     weights);
        Tensor out = on.f32({tokens, hidden}, residual);
        const int64_t read =
            be.moe_experts(on.f32({tokens, hidden}, x), ids, weights, experts, scratch, out);
        CHECK(read >= 1);
        CHECK(read <= tokens * test.top_k);
        // What the experts added: the residual would dwarf it.
        std::vector<float> added = on.read(out);
        for (size_t i = 0; i < added.size(); ++i) added[i] -= residual[i];
        return std::vector<std::vector<float>>{on.read(ids), on.read(weights), added};
      };
      const auto want = run(*cpu, true);
      const auto got = run(*gpu, false);
      CHECK(got[0] == want[0]);  // the same experts, in the same (ascending) order
      check_close(got[1], want[1], 1e-6, "routing weights");
      check_close(got[2], want[2], 1e-5, "the experts' sum");
    }
  }

  // NaN logits route to valid experts (with NaN weights) rather than stopping the device, and
  // the backend goes on working.
  On on(*gpu);
  std::vector<float> nan_logits(16, std::numeric_limits<float>::quiet_NaN());
  Tensor ids = on.poisoned({2, 4});
  Tensor weights = on.poisoned({2, 4});
  gpu->moe_route(on.f32({2, 8}, nan_logits), 4, true, ids, weights);
  for (float id : on.read(ids)) {
    CHECK(id >= 0.0f);
    CHECK(id < 8.0f);
  }
  CHECK(on.read(on.f32({1}, {2.5f})) == std::vector<float>{2.5f});
}

TEST_CASE("cuda: Gated DeltaNet conv and delta rule, states carried", "[gpu]") {
  auto gpu = cuda_backend();
  auto cpu = sparkd::make_cpu_backend();
  struct Case {
    int64_t key_heads, value_heads, key_head_dim, value_head_dim;
    bool tiled;
  };
  for (const Case& test : {Case{2, 4, 32, 48, false}, Case{2, 4, 32, 48, true},
                           Case{4, 8, 128, 128, false}, Case{1, 1, 16, 8, false}}) {
    const int64_t kernel = 4;
    const int64_t channels =
        2 * test.key_heads * test.key_head_dim + test.value_heads * test.value_head_dim;
    const std::vector<int32_t> rows_per_sequence = {5, 0, 1, 17};
    const int64_t tokens = 23;
    const auto run = [&](Backend& be) {
      std::mt19937 rng(7);
      On on(be);
      std::vector<RecurrentSequence> sequences;
      int32_t row = 0;
      for (int32_t rows : rows_per_sequence) {
        RecurrentSequence seq;
        seq.row_begin = row;
        seq.rows = rows;
        seq.conv_state = on.f32({kernel - 1, channels},
                                random_values(static_cast<size_t>((kernel - 1) * channels), rng));
        seq.delta_state = on.f32(
            {test.value_heads, test.key_head_dim, test.value_head_dim},
            random_values(
                static_cast<size_t>(test.value_heads * test.key_head_dim * test.value_head_dim),
                rng, 0.1f));
        sequences.push_back(seq);
        row += rows;
      }
      const Tensor x =
          on.f32({tokens, channels}, random_values(static_cast<size_t>(tokens * channels), rng));
      const Tensor weight = on.values(DType::kBF16, {channels, kernel},
                                      random_values(static_cast<size_t>(channels * kernel), rng));
      Tensor conv = on.poisoned({tokens, channels});
      be.causal_conv1d_silu(x, weight, sequences, conv);
      const Tensor a = on.f32({tokens, test.value_heads},
                              random_values(static_cast<size_t>(tokens * test.value_heads), rng));
      const Tensor b = on.f32({tokens, test.value_heads},
                              random_values(static_cast<size_t>(tokens * test.value_heads), rng));
      const Tensor a_neg = on.f32({test.value_heads},
                                  std::vector<float>(static_cast<size_t>(test.value_heads), -0.5f));
      const Tensor dt_bias = on.values(DType::kBF16, {test.value_heads},
                                       random_values(static_cast<size_t>(test.value_heads), rng));
      Tensor out = on.poisoned({tokens, test.value_heads, test.value_head_dim});
      be.gated_delta_net(conv, a, b, a_neg, dt_bias, static_cast<int32_t>(test.key_heads),
                         test.tiled, sequences, out);
      std::vector<std::vector<float>> results = {on.read(conv), on.read(out)};
      for (const RecurrentSequence& seq : sequences) {
        results.push_back(on.read(seq.conv_state));
        results.push_back(on.read(seq.delta_state));
      }
      return results;
    };
    const auto got = run(*gpu);
    const auto want = run(*cpu);
    const std::string name = std::to_string(test.key_heads) + "/" +
                             std::to_string(test.value_heads) + " heads of " +
                             std::to_string(test.key_head_dim) + "/" +
                             std::to_string(test.value_head_dim) + (test.tiled ? ", tiled" : "");
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      check_close(got[i], want[i], 1e-5, name + ", result " + std::to_string(i));
    }
  }
}
