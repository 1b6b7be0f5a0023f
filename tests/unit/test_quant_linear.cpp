// Linear on block-quantized weights (cpu_quant_linear.cpp) against the F64 product of the
// dequantized weights, for every quantized type, decode and prefill batch sizes, and every
// kernel level the CPU has.
//
// The quantized path rounds each row of x to 8 bits per block (scale d = max|x| / 127), so
// each product may be off by at most Σ|w| · d / 2 over its blocks: that bound (plus 1e-3 of
// Σ|w·x| for the F16 scales and F32 sums) is the tolerance, computed per output.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cpu/cpu_kernels.h"
#include "engine/backend/half.h"
#include "engine/backend/quant_blocks.h"

namespace {

using sparkd::Backend;
using sparkd::Buffer;
using sparkd::DType;
using sparkd::Tensor;

// Byte offsets of each type's F16 scales within a block (the rest may be any bytes).
std::vector<int> f16_scale_offsets(DType dtype) {
  switch (dtype) {
    case DType::kQ4_0:
    case DType::kQ5_0:
    case DType::kQ8_0:
      return {0};
    case DType::kQ4_1:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
      return {0, 2};
    case DType::kQ2_K:
      return {80, 82};
    case DType::kQ3_K:
      return {108};
    case DType::kQ6_K:
      return {208};
    default:
      return {};
  }
}

// Random valid blocks: random bytes, with finite scales of a realistic size.
std::vector<uint8_t> random_blocks(DType dtype, int64_t rows, int64_t cols, std::mt19937& rng) {
  const sparkd::DTypeTraits traits = sparkd::dtype_traits(dtype);
  std::vector<uint8_t> bytes(sparkd::dtype_row_bytes(dtype, cols) * static_cast<size_t>(rows));
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(byte(rng));
  std::normal_distribution<float> scale(0.0f, 0.02f);
  for (size_t block = 0; block < bytes.size() / traits.block_bytes; ++block) {
    uint8_t* at = bytes.data() + block * traits.block_bytes;
    for (int offset : f16_scale_offsets(dtype)) {
      const uint16_t h = sparkd::f32_to_f16(scale(rng));
      std::memcpy(at + offset, &h, 2);
    }
    if (dtype == DType::kMXFP4) at[0] = static_cast<uint8_t>(118 + byte(rng) % 8);  // 2^-9..2^-2
  }
  return bytes;
}

struct Problem {
  int64_t m, k, n;
};

// One linear on `backend` with W of `dtype` built from `w_bytes`.
std::vector<float> run_linear(Backend& backend, DType dtype, const std::vector<uint8_t>& w_bytes,
                              const std::vector<float>& x_values, const std::vector<float>& bias,
                              const Problem& p) {
  Buffer w_buffer = backend.allocate(w_bytes.size()).value();
  std::memcpy(w_buffer.data(), w_bytes.data(), w_bytes.size());
  Buffer x_buffer = backend.allocate(x_values.size() * 4).value();
  std::memcpy(x_buffer.data(), x_values.data(), x_values.size() * 4);
  Buffer b_buffer = backend.allocate(bias.size() * 4).value();
  std::memcpy(b_buffer.data(), bias.data(), bias.size() * 4);
  Buffer y_buffer = backend.allocate(static_cast<size_t>(p.m * p.n) * 4).value();
  const Tensor w(dtype, {p.n, p.k}, w_buffer.data());
  const Tensor x(DType::kF32, {p.m, p.k}, x_buffer.data());
  const Tensor b(DType::kF32, {p.n}, b_buffer.data());
  Tensor y(DType::kF32, {p.m, p.n}, y_buffer.data());
  backend.linear(x, w, &b, y);
  std::vector<float> out(static_cast<size_t>(p.m * p.n));
  backend.download_f32(y, out);
  return out;
}

}  // namespace

TEST_CASE("quantized linear: every type against the dequantized product", "[quant_linear]") {
  auto reference_backend = sparkd::make_cpu_backend();
  auto widest = sparkd::make_cpu_backend();
  sparkd::CpuBackendOptions avx2_options;
  avx2_options.kernels = sparkd::CpuKernels::kAvx2;
  auto avx2 = sparkd::make_cpu_backend(avx2_options);
  sparkd::CpuBackendOptions portable_options;
  portable_options.kernels = sparkd::CpuKernels::kPortable;
  auto portable = sparkd::make_cpu_backend(portable_options);
  sparkd::CpuBackendOptions serial_options;
  serial_options.num_threads = 1;
  auto serial = sparkd::make_cpu_backend(serial_options);

  for (int t = 0; t < sparkd::kDTypeCount; ++t) {
    const DType dtype = static_cast<DType>(t);
    if (!sparkd::dtype_is_quantized(dtype)) continue;
    // n = 37: not a multiple of the 16-row tasks and tiles; k = 512: two K-quant blocks;
    // m = 17 and 40: prefill (the K-quants' int8 GEMM, over one and three 16-row panels).
    for (const Problem p :
         {Problem{1, 512, 37}, Problem{3, 512, 37}, Problem{17, 768, 21}, Problem{40, 512, 37}}) {
      DYNAMIC_SECTION(sparkd::dtype_name(dtype) << " m=" << p.m << " k=" << p.k << " n=" << p.n) {
        std::mt19937 rng(static_cast<uint32_t>(1000 * t + p.m));
        const std::vector<uint8_t> w_bytes = random_blocks(dtype, p.n, p.k, rng);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        std::vector<float> x(static_cast<size_t>(p.m * p.k)), bias(static_cast<size_t>(p.n));
        for (float& v : x) v = normal(rng);
        for (float& v : bias) v = normal(rng);

        // The dequantized weights, through the bit-exact reference conversion.
        std::vector<float> w(static_cast<size_t>(p.n * p.k));
        reference_backend->download_f32(
            Tensor(dtype, {p.n, p.k}, const_cast<uint8_t*>(w_bytes.data())), w);
        std::vector<double> expected(static_cast<size_t>(p.m * p.n)), tolerance(expected.size());
        for (int64_t i = 0; i < p.m; ++i) {
          for (int64_t j = 0; j < p.n; ++j) {
            double sum = bias[j], magnitude = 0, rounding = 0;
            for (int64_t c = 0; c < p.k; c += 32) {
              double amax = 0, block_w = 0;
              for (int64_t l = c; l < c + 32; ++l) {
                const double wv = w[j * p.k + l], xv = x[i * p.k + l];
                sum += wv * xv;
                magnitude += std::abs(wv * xv);
                amax = std::max(amax, std::abs(xv));
                block_w += std::abs(wv);
              }
              rounding += block_w * amax / 127.0 / 2.0;
            }
            expected[i * p.n + j] = sum;
            tolerance[i * p.n + j] = rounding + 1e-3 * magnitude + 1e-5;
          }
        }

        const std::vector<float> fast = run_linear(*widest, dtype, w_bytes, x, bias, p);
        const std::vector<float> vector_dots = run_linear(*avx2, dtype, w_bytes, x, bias, p);
        const std::vector<float> reference = run_linear(*portable, dtype, w_bytes, x, bias, p);
        const std::vector<float> one_thread = run_linear(*serial, dtype, w_bytes, x, bias, p);
        // The same integers summed in another order: equal to F32 rounding of the magnitude.
        auto same_sums = [&](float a, float b, size_t i) {
          return std::abs(a - b) <= 1e-5 * (std::abs(expected[i]) + tolerance[i]);
        };
        for (size_t i = 0; i < expected.size(); ++i) {
          INFO("output " << i << ": widest " << fast[i] << ", avx2 " << vector_dots[i]
                         << ", portable " << reference[i] << ", exact " << expected[i]
                         << ", tolerance " << tolerance[i]);
          REQUIRE(std::abs(reference[i] - expected[i]) <= tolerance[i]);
          REQUIRE(std::abs(fast[i] - expected[i]) <= tolerance[i]);
          REQUIRE(same_sums(fast[i], reference[i], i));
          REQUIRE(same_sums(vector_dots[i], reference[i], i));
          REQUIRE(one_thread[i] == fast[i]);  // the split over threads changes no sum
        }

        // Each row of a batch is what that row alone gives: bit for bit on the dot-product
        // path (m <= 8), to F32 rounding where the batch takes the GEMM.
        for (int64_t i = 0; i < p.m; ++i) {
          const Problem single{1, p.k, p.n};
          const std::vector<float> row(x.begin() + i * p.k, x.begin() + (i + 1) * p.k);
          const std::vector<float> alone = run_linear(*widest, dtype, w_bytes, row, bias, single);
          for (int64_t j = 0; j < p.n; ++j) {
            const size_t at = static_cast<size_t>(i * p.n + j);
            if (p.m <= 8) {
              REQUIRE(alone[j] == fast[at]);
            } else {
              REQUIRE(same_sums(alone[j], fast[at], at));
            }
          }
        }
      }
    }
  }
}

// tools/check_aarch64.sh runs these tests under qemu with SPARKD_EXPECT_ARM_INT8=1: its CPU
// model has the dot-product and int8 matrix-multiply extensions, so above the widest backend
// ran the smmla GEMM and the sdot dot products, the "avx2" one the sdot GEMM, each checked
// against the dequantized product. Elsewhere there is nothing to check.
TEST_CASE("quantized linear: aarch64 int8 kernels are detected where expected", "[quant_linear]") {
  if (std::getenv("SPARKD_EXPECT_ARM_INT8") == nullptr) return;
  const std::vector<std::string> features = sparkd::detected_cpu_kernel_features();
  for (const char* feature : {"arm_dotprod", "arm_i8mm"}) {
    INFO(feature);
    CHECK(std::find(features.begin(), features.end(), feature) != features.end());
  }
}

// The activation quantizer every K-quant product starts from: the AVX2 one must give
// ggml's bytes exactly (the scale from the first x of the largest magnitude, ties to even),
// as the portable one does.
TEST_CASE("quantized linear: Q8_K activations are the same bytes on every kernel level",
          "[quant_linear]") {
  constexpr int64_t kValues = 256;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::vector<float>> rows;
  for (int r = 0; r < 64; ++r) {
    std::vector<float> row(kValues);
    for (float& v : row) v = normal(rng) * std::pow(10.0f, static_cast<float>(r % 7 - 3));
    rows.push_back(row);
  }
  std::vector<float> tie(kValues, 0.5f);
  tie[5] = -3.0f;  // the first of two largest magnitudes is negative: the scale's sign follows it
  tie[100] = 3.0f;
  rows.push_back(tie);
  tie[5] = 3.0f;
  tie[100] = -3.0f;
  rows.push_back(tie);
  rows.emplace_back(kValues, 0.0f);
  std::vector<float> halves(kValues);  // many x * iscale exactly halfway between integers
  for (int64_t i = 0; i < kValues; ++i) halves[i] = static_cast<float>(i % 255 - 127) + 0.5f;
  halves[0] = 127.0f;
  rows.push_back(halves);

  sparkd::cpu::KernelConfig portable;
  sparkd::cpu::KernelConfig widest;
  widest.simd = sparkd::cpu::detected_simd_level();
  for (size_t r = 0; r < rows.size(); ++r) {
    INFO("row " << r);
    sparkd::quant::BlockQ8_K expected{}, actual{};
    sparkd::cpu::quantize_row_q8_k(portable, rows[r].data(), kValues, &expected);
    sparkd::cpu::quantize_row_q8_k(widest, rows[r].data(), kValues, &actual);
    CHECK(std::memcmp(&expected, &actual, sizeof expected) == 0);
    // The chosen extreme quantizes to -127 and the scale carries its sign.
    if (r == 64) CHECK((expected.qs[5] == -127 && expected.qs[0] == 21 && expected.d > 0));
    if (r == 65) CHECK((expected.qs[5] == -127 && expected.qs[0] == -21 && expected.d < 0));
  }
}
