// The CPU backend op by op against straightforward double-precision references written here,
// independently of the kernels: no blocking, no online softmax, no lanes. Tolerances are
// those of F32 arithmetic: 1e-5 of the magnitude of what was summed, or a few ulps for
// elementwise functions. Each op runs on three backends (the default one, the portable
// kernels, one thread) so that every code path meets the same reference.

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cpu/cpu_erf.h"
#include "engine/backend/half.h"
#include "tests/support/check_aborts.h"

namespace {

using sparkd::AttentionParams;
using sparkd::AttentionSequence;
using sparkd::Backend;
using sparkd::Buffer;
using sparkd::DType;
using sparkd::KvLayerView;
using sparkd::RowSpan;
using sparkd::Tensor;

struct NamedBackend {
  std::string name;
  std::unique_ptr<Backend> backend;
};

// The default backend (widest vector kernels, all threads), AVX2 kernels (on a CPU with
// AVX-512 the default takes other GEMM kernels), the portable kernels, and one thread (the
// serial paths of every op).
std::vector<NamedBackend> all_backends() {
  std::vector<NamedBackend> backends;
  backends.push_back({"default", sparkd::make_cpu_backend()});
  sparkd::CpuBackendOptions avx2;
  avx2.kernels = sparkd::CpuKernels::kAvx2;
  avx2.num_threads = 2;
  backends.push_back({"avx2", sparkd::make_cpu_backend(avx2)});
  sparkd::CpuBackendOptions portable;
  portable.kernels = sparkd::CpuKernels::kPortable;
  portable.num_threads = 2;
  backends.push_back({"portable", sparkd::make_cpu_backend(portable)});
  sparkd::CpuBackendOptions serial;
  serial.num_threads = 1;
  backends.push_back({"one thread", sparkd::make_cpu_backend(serial)});
  return backends;
}

// `value` as stored in `dtype` and read back: what the reference must compute with.
float round_to(DType dtype, float value) {
  switch (dtype) {
    case DType::kF32:
      return value;
    case DType::kF16:
      return sparkd::f16_to_f32(sparkd::f32_to_f16(value));
    case DType::kBF16:
      return sparkd::bf16_to_f32(sparkd::f32_to_bf16(value));
    default:
      FAIL("round_to: " << sparkd::dtype_name(dtype) << " is not a float type");
  }
  return value;
}

std::vector<float> random_values(size_t count, uint32_t seed, float low = -1.0f,
                                 float high = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(low, high);
  std::vector<float> values(count);
  for (float& v : values) v = dist(rng);
  return values;
}

std::vector<float> rounded(std::vector<float> values, DType dtype) {
  for (float& v : values) v = round_to(dtype, v);
  return values;
}

// Owns backend memory for the tensors of one test.
class TensorStore {
 public:
  explicit TensorStore(Backend& backend) : backend_(backend) {}

  Tensor make(DType dtype, std::vector<int64_t> shape) {
    Tensor t(dtype, std::move(shape), nullptr);
    auto buffer = backend_.allocate(t.size_bytes());
    REQUIRE(buffer.has_value());
    t.data = buffer->data();
    std::memset(t.data, 0, t.size_bytes());
    buffers_.push_back(std::move(*buffer));
    return t;
  }

  // A tensor holding `values` converted to `dtype`.
  Tensor make(DType dtype, std::vector<int64_t> shape, const std::vector<float>& values) {
    Tensor t = make(dtype, std::move(shape));
    REQUIRE(static_cast<int64_t>(values.size()) == t.numel());
    for (size_t i = 0; i < values.size(); ++i) {
      switch (dtype) {
        case DType::kF32:
          t.as<float>()[i] = values[i];
          break;
        case DType::kF16:
          t.as<uint16_t>()[i] = sparkd::f32_to_f16(values[i]);
          break;
        case DType::kBF16:
          t.as<uint16_t>()[i] = sparkd::f32_to_bf16(values[i]);
          break;
        default:
          FAIL("make: quantized tensors are built from blocks, not values");
      }
    }
    return t;
  }

  std::vector<float> read(const Tensor& t) {
    std::vector<float> values(static_cast<size_t>(t.numel()));
    backend_.download_f32(t, values);
    return values;
  }

 private:
  Backend& backend_;
  std::vector<Buffer> buffers_;
};

// Every element within abs_tolerance[i] of expected[i]; reports the worst one.
void check_close(const std::vector<float>& actual, const std::vector<double>& expected,
                 const std::vector<double>& tolerance) {
  REQUIRE(actual.size() == expected.size());
  size_t worst = 0;
  double worst_ratio = 0.0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double error = std::abs(static_cast<double>(actual[i]) - expected[i]);
    const double ratio = error == 0.0 ? 0.0 : error / tolerance[i];  // tolerance 0: exact
    if (!(ratio <= worst_ratio)) {                                   // also catches NaN
      worst_ratio = ratio;
      worst = i;
    }
  }
  INFO("worst element " << worst << ": got " << actual[worst] << ", want " << expected[worst]
                        << " (tolerance " << tolerance[worst] << ")");
  CHECK(worst_ratio <= 1.0);
}

// Relative tolerance on each element's own magnitude, with a floor for values near zero.
void check_close(const std::vector<float>& actual, const std::vector<double>& expected,
                 double relative, double absolute_floor) {
  std::vector<double> tolerance(expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    tolerance[i] = relative * std::abs(expected[i]) + absolute_floor;
  }
  check_close(actual, expected, tolerance);
}

const char* dtype_label(DType dtype) {
  return sparkd::dtype_name(dtype);
}

}  // namespace

TEST_CASE("cpu backend: memory", "[cpu_backend]") {
  auto backend = sparkd::make_cpu_backend();
  CHECK(backend->name() == "cpu");
  CHECK(backend->activation_dtype() == DType::kF32);
  CHECK(backend->memory_is_host_accessible());
  for (size_t size :
       {size_t{0}, size_t{1}, size_t{63}, size_t{64}, size_t{1000}, size_t{1} << 20}) {
    auto buffer = backend->allocate(size);
    REQUIRE(buffer.has_value());
    CHECK(buffer->size_bytes() == size);
    CHECK(buffer->data() != nullptr);
    CHECK(reinterpret_cast<uintptr_t>(buffer->data()) % 64 == 0);
  }

  auto too_big = backend->allocate(size_t{1} << 62);
  REQUIRE_FALSE(too_big.has_value());
  CHECK(too_big.status().code() == sparkd::StatusCode::kResourceExhausted);
  CHECK(too_big.status().message().find(std::to_string(size_t{1} << 62)) != std::string::npos);

  const std::vector<float> values = {1.5f, -2.25f, 3.0f, 0.0f};
  auto buffer = backend->allocate(values.size() * sizeof(float));
  REQUIRE(buffer.has_value());
  backend->upload(buffer->data(), values.data(), values.size() * sizeof(float));
  std::vector<float> back(values.size());
  backend->download_f32(Tensor(DType::kF32, {2, 2}, buffer->data()), back);
  CHECK(back == values);
}

TEST_CASE("cpu backend: download_f32 converts every F16 and BF16 value exactly", "[cpu_backend]") {
  auto backend = sparkd::make_cpu_backend();
  std::vector<uint16_t> all_values(65536);
  std::iota(all_values.begin(), all_values.end(), uint16_t{0});
  std::vector<float> converted(all_values.size());
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    backend->download_f32(Tensor(dtype, {65536}, all_values.data()), converted);
    int mismatches = 0;
    for (uint32_t h = 0; h < 65536; ++h) {
      const float want = dtype == DType::kF16 ? sparkd::f16_to_f32(static_cast<uint16_t>(h))
                                              : sparkd::bf16_to_f32(static_cast<uint16_t>(h));
      mismatches += std::memcmp(&want, &converted[h], sizeof want) != 0;
    }
    INFO(dtype_label(dtype));
    CHECK(mismatches == 0);
  }
}

namespace {

// y = x·Wᵀ + b in double from the values the backend sees, and per-element tolerances of
// 1e-5 of Σ|x·w| + |b| (the F32 rounding scale of that sum).
void reference_linear(const std::vector<float>& x, const std::vector<float>& weight,
                      const std::vector<float>* bias, int64_t m, int64_t k, int64_t n,
                      std::vector<double>& y, std::vector<double>& tolerance) {
  y.assign(static_cast<size_t>(m * n), 0.0);
  tolerance.assign(y.size(), 0.0);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0.0, magnitude = 0.0;
      for (int64_t c = 0; c < k; ++c) {
        const double product = double{x[i * k + c]} * double{weight[j * k + c]};
        sum += product;
        magnitude += std::abs(product);
      }
      if (bias) {
        sum += (*bias)[j];
        magnitude += std::abs((*bias)[j]);
      }
      y[i * n + j] = sum;
      tolerance[i * n + j] = 1e-5 * magnitude + 1e-30;
    }
  }
}

}  // namespace

TEST_CASE("cpu backend: linear matches a double reference", "[cpu_backend]") {
  struct Shape {
    int64_t m, k, n;
  };
  // Odd sizes around the kernels' blocks: GEMV (m <= 8, in passes of 8 up to 16) and GEMM
  // (per-task weight panels for one row block, shared ones for several), partial micro-tiles
  // in both directions, several depth slices (256) and row blocks (192), k of 1, and shapes
  // large enough to run multi-threaded.
  const std::vector<Shape> shapes = {{1, 1, 1},      {1, 7, 5},     {1, 64, 33},   {2, 130, 17},
                                     {3, 257, 100},  {4, 1000, 3},  {5, 300, 40},  {6, 256, 16},
                                     {12, 32, 32},   {13, 100, 49}, {37, 513, 77}, {64, 256, 300},
                                     {200, 600, 70}, {7, 1, 9},     {1, 512, 300}, {3, 700, 129},
                                     {8, 300, 33},   {16, 260, 65}, {17, 90, 31}};
  for (auto& [backend_name, backend] : all_backends()) {
    TensorStore store(*backend);
    for (DType weight_dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
      for (const Shape& shape : shapes) {
        for (bool with_bias : {false, true}) {
          INFO(backend_name << ", W " << dtype_label(weight_dtype) << ", m " << shape.m << " k "
                            << shape.k << " n " << shape.n << (with_bias ? ", bias" : ""));
          const uint32_t seed = static_cast<uint32_t>(shape.m * 1000003 + shape.k * 101 + shape.n);
          const std::vector<float> x = random_values(static_cast<size_t>(shape.m * shape.k), seed);
          const std::vector<float> weight = rounded(
              random_values(static_cast<size_t>(shape.n * shape.k), seed + 1), weight_dtype);
          const std::vector<float> bias = random_values(static_cast<size_t>(shape.n), seed + 2);
          Tensor x_t = store.make(DType::kF32, {shape.m, shape.k}, x);
          Tensor w_t = store.make(weight_dtype, {shape.n, shape.k}, weight);
          Tensor b_t = store.make(DType::kF32, {shape.n}, bias);
          Tensor y_t = store.make(DType::kF32, {shape.m, shape.n});
          backend->linear(x_t, w_t, with_bias ? &b_t : nullptr, y_t);
          std::vector<double> want, tolerance;
          reference_linear(x, weight, with_bias ? &bias : nullptr, shape.m, shape.k, shape.n, want,
                           tolerance);
          check_close(store.read(y_t), want, tolerance);
        }
      }
    }
  }
}

TEST_CASE("cpu backend: linear with rank-3 x, 16-bit bias, and y in place of x", "[cpu_backend]") {
  for (auto& [backend_name, backend] : all_backends()) {
    INFO(backend_name);
    TensorStore store(*backend);
    const int64_t m = 9, k = 40;
    const std::vector<float> x = random_values(static_cast<size_t>(m * k), 7);
    const std::vector<float> weight =
        rounded(random_values(static_cast<size_t>(k * k), 8), DType::kBF16);
    const std::vector<float> bias = rounded(random_values(static_cast<size_t>(k), 9), DType::kBF16);
    std::vector<double> want, tolerance;
    reference_linear(x, weight, &bias, m, k, k, want, tolerance);

    // x as [3, 3, k]; y is x's own memory (N == K).
    Tensor x_t = store.make(DType::kF32, {3, 3, k}, x);
    Tensor w_t = store.make(DType::kBF16, {k, k}, weight);
    Tensor b_t = store.make(DType::kBF16, {k}, bias);
    backend->linear(x_t, w_t, &b_t, x_t);
    check_close(store.read(x_t), want, tolerance);

    // The same through the decode path (m <= 4).
    Tensor x_small =
        store.make(DType::kF32, {2, k}, std::vector<float>(x.begin(), x.begin() + 2 * k));
    backend->linear(x_small, w_t, &b_t, x_small);
    check_close(store.read(x_small), std::vector<double>(want.begin(), want.begin() + 2 * k),
                std::vector<double>(tolerance.begin(), tolerance.begin() + 2 * k));
  }
}

TEST_CASE("cpu backend: gather_rows converts dtypes", "[cpu_backend]") {
  auto backend = sparkd::make_cpu_backend();
  TensorStore store(*backend);
  const int64_t rows = 11, cols = 37;
  const std::vector<int32_t> picks = {3, 0, 10, 3, 7};
  for (DType src_dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (DType out_dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
      INFO(dtype_label(src_dtype) << " -> " << dtype_label(out_dtype));
      const std::vector<float> src = rounded(random_values(rows * cols, 21), src_dtype);
      Tensor src_t = store.make(src_dtype, {rows, cols}, src);
      Tensor out_t = store.make(out_dtype, {static_cast<int64_t>(picks.size()), cols});
      backend->gather_rows(src_t, picks, out_t);
      std::vector<double> want;
      for (int32_t row : picks) {
        for (int64_t c = 0; c < cols; ++c) want.push_back(round_to(out_dtype, src[row * cols + c]));
      }
      check_close(store.read(out_t), want, 0.0, 0.0);  // exact
    }
  }
}

TEST_CASE("cpu backend: add, elementwise and broadcast over rows", "[cpu_backend]") {
  for (auto& [backend_name, backend] : all_backends()) {
    INFO(backend_name);
    TensorStore store(*backend);
    for (int64_t rows : {1, 5, 300}) {
      const int64_t cols = 131;
      const std::vector<float> a = random_values(rows * cols, 31);
      const std::vector<float> b = random_values(rows * cols, 32);
      const std::vector<float> row = random_values(cols, 33);
      Tensor a_t = store.make(DType::kF32, {rows, cols}, a);
      Tensor b_t = store.make(DType::kF32, {rows, cols}, b);
      Tensor row_t = store.make(DType::kF32, {cols}, row);
      Tensor out_t = store.make(DType::kF32, {rows, cols});
      std::vector<double> want_full, want_broadcast;
      for (int64_t i = 0; i < rows * cols; ++i) {
        want_full.push_back(static_cast<double>(a[i] + b[i]));  // one F32 rounding: exact
        want_broadcast.push_back(static_cast<double>(a[i] + row[i % cols]));
      }
      backend->add(a_t, b_t, out_t);
      check_close(store.read(out_t), want_full, 0.0, 0.0);
      backend->add(a_t, row_t, out_t);
      check_close(store.read(out_t), want_broadcast, 0.0, 0.0);
      backend->add(a_t, b_t, a_t);  // in place
      check_close(store.read(a_t), want_full, 0.0, 0.0);
    }
  }
}

TEST_CASE("cpu backend: rms_norm and layer_norm", "[cpu_backend]") {
  for (auto& [backend_name, backend] : all_backends()) {
    TensorStore store(*backend);
    for (int64_t cols : {1, 7, 64, 1000, 4096}) {
      for (int64_t rows : {1, 3, 40}) {
        INFO(backend_name << ", " << rows << " x " << cols);
        const float eps = 1e-6f;
        std::vector<float> x = random_values(rows * cols, 41, -3.0f, 3.0f);
        for (int64_t c = 0; c < cols; ++c) x[c] += 5.0f;  // a row with a large mean
        const std::vector<float> weight = random_values(cols, 42, 0.5f, 1.5f);
        const std::vector<float> bias = random_values(cols, 43);
        Tensor x_t = store.make(DType::kF32, {rows, cols}, x);
        Tensor w_t = store.make(DType::kF32, {cols}, weight);
        Tensor b_t = store.make(DType::kF32, {cols}, bias);
        Tensor out_t = store.make(DType::kF32, {rows, cols});

        std::vector<double> want_rms, want_layer, layer_tolerance;
        for (int64_t r = 0; r < rows; ++r) {
          const float* row = x.data() + r * cols;
          double mean = 0.0, mean_square = 0.0;
          for (int64_t c = 0; c < cols; ++c) {
            mean += row[c];
            mean_square += double{row[c]} * row[c];
          }
          mean /= static_cast<double>(cols);
          mean_square /= static_cast<double>(cols);
          double variance = 0.0;
          for (int64_t c = 0; c < cols; ++c) variance += (row[c] - mean) * (row[c] - mean);
          variance /= static_cast<double>(cols);
          const double inv_rms = 1.0 / std::sqrt(mean_square + eps);
          const double inv_std = 1.0 / std::sqrt(variance + eps);
          for (int64_t c = 0; c < cols; ++c) {
            want_rms.push_back(row[c] * inv_rms * weight[c]);
            want_layer.push_back((row[c] - mean) * inv_std * weight[c] + bias[c]);
            // (x - mean) loses the bits of the mean's rounding: scale by |x| * inv_std.
            layer_tolerance.push_back(
                1e-5 * ((std::abs(row[c]) + std::abs(mean)) * inv_std * weight[c] +
                        std::abs(bias[c])) +
                1e-6);
          }
        }
        backend->rms_norm(x_t, w_t, eps, out_t);
        check_close(store.read(out_t), want_rms, 1e-5, 1e-6);
        backend->layer_norm(x_t, w_t, b_t, eps, out_t);
        check_close(store.read(out_t), want_layer, layer_tolerance);
        backend->rms_norm(x_t, w_t, eps, x_t);  // in place
        check_close(store.read(x_t), want_rms, 1e-5, 1e-6);
      }
    }
  }
}

TEST_CASE("cpu backend: rms_norm of all-zero rows is zero, layer_norm too", "[cpu_backend]") {
  auto backend = sparkd::make_cpu_backend();
  TensorStore store(*backend);
  Tensor x = store.make(DType::kF32, {2, 8}, std::vector<float>(16, 0.0f));
  Tensor w = store.make(DType::kF32, {8}, std::vector<float>(8, 1.0f));
  Tensor out = store.make(DType::kF32, {2, 8});
  backend->rms_norm(x, w, 1e-6f, out);
  check_close(store.read(out), std::vector<double>(16, 0.0), 0.0, 0.0);
  backend->layer_norm(x, w, w, 1e-6f, out);
  check_close(store.read(out), std::vector<double>(16, 1.0), 0.0, 0.0);
}

TEST_CASE("cpu backend: silu_mul, gelu (exact and tanh), tanh", "[cpu_backend]") {
  for (auto& [backend_name, backend] : all_backends()) {
    INFO(backend_name);
    TensorStore store(*backend);
    for (int64_t count : {1, 33, 100000}) {
      std::vector<float> x = random_values(count, 51, -12.0f, 12.0f);
      if (count > 10) {  // the extremes of every function
        x[0] = 0.0f;
        x[1] = -100.0f;
        x[2] = 100.0f;
        x[3] = 1e-30f;
      }
      const std::vector<float> up = random_values(count, 52, -2.0f, 2.0f);
      Tensor x_t = store.make(DType::kF32, {count}, x);
      Tensor up_t = store.make(DType::kF32, {count}, up);
      Tensor out_t = store.make(DType::kF32, {count});
      std::vector<double> silu, gelu_exact, gelu_tanh, tanh_values;
      for (int64_t i = 0; i < count; ++i) {
        const double v = x[i];
        silu.push_back(v / (1.0 + std::exp(-v)) * up[i]);
        gelu_exact.push_back(0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))));
        gelu_tanh.push_back(0.5 * v *
                            (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v))));
        tanh_values.push_back(std::tanh(v));
      }
      backend->silu_mul(x_t, up_t, out_t);
      check_close(store.read(out_t), silu, 1e-6, 1e-37);
      // For negative x, 1 + erf (or 1 + tanh) cancels: PyTorch's F32 formula, which the
      // backend follows, is only good to an ulp of 1 there, times 0.5 * |x|.
      std::vector<double> gelu_tolerance_exact, gelu_tolerance_tanh;
      for (int64_t i = 0; i < count; ++i) {
        const double cancellation = 0.5 * std::abs(double{x[i]}) * 2.4e-7;
        gelu_tolerance_exact.push_back(1e-6 * std::abs(gelu_exact[i]) + cancellation + 1e-37);
        gelu_tolerance_tanh.push_back(1e-6 * std::abs(gelu_tanh[i]) + cancellation + 1e-37);
      }
      backend->gelu(x_t, false, out_t);
      check_close(store.read(out_t), gelu_exact, gelu_tolerance_exact);
      backend->gelu(x_t, true, out_t);
      check_close(store.read(out_t), gelu_tanh, gelu_tolerance_tanh);
      backend->tanh(x_t, out_t);
      check_close(store.read(out_t), tanh_values, 1e-6, 1e-37);
      backend->silu_mul(x_t, up_t, x_t);  // in place
      check_close(store.read(x_t), silu, 1e-6, 1e-37);
    }
  }
}

TEST_CASE("cpu backend: sigmoid_mul, elementwise and with a gate per row", "[cpu_backend]") {
  for (auto& [backend_name, backend] : all_backends()) {
    INFO(backend_name);
    TensorStore store(*backend);
    const int64_t rows = 7, cols = 33;
    const std::vector<float> x = random_values(rows * cols, 61, -3.0f, 3.0f);
    const std::vector<float> gates = random_values(rows * cols, 62, -8.0f, 8.0f);
    const Tensor x_t = store.make(DType::kF32, {rows, cols}, x);
    Tensor out_t = store.make(DType::kF32, {rows, cols});
    std::vector<double> elementwise, per_row;
    for (int64_t i = 0; i < rows * cols; ++i) {
      elementwise.push_back(x[i] / (1.0 + std::exp(-double{gates[i]})));
      per_row.push_back(x[i] / (1.0 + std::exp(-double{gates[i / cols]})));
    }
    backend->sigmoid_mul(store.make(DType::kF32, {rows, cols}, gates), x_t, out_t);
    check_close(store.read(out_t), elementwise, 1e-6, 1e-37);
    const std::vector<float> row_gates(gates.begin(), gates.begin() + rows);
    backend->sigmoid_mul(store.make(DType::kF32, {rows, 1}, row_gates), x_t, out_t);
    check_close(store.read(out_t), per_row, 1e-6, 1e-37);
  }
}

// Exact GELU's vector erf against std::erf over the whole float range: every 251st bit
// pattern of each sign (all binades, subnormals and the saturated tails included), a dense
// sweep of [-4.5, 4.5] where the polynomial pieces meet, and the special values.
TEST_CASE("cpu backend: vector erf is within 1e-7 of std::erf", "[cpu_backend]") {
  std::vector<float> x;
  for (uint32_t bits = 0; bits < 0x7f800000u; bits += 251) {
    float v;
    std::memcpy(&v, &bits, sizeof v);
    x.push_back(v);
    x.push_back(-v);
  }
  for (int i = -450000; i <= 450000; ++i) x.push_back(static_cast<float>(i) * 1e-5f);
  for (float piece = 0.0f; piece <= 4.0f; piece += 0.5f) {
    for (float v : {std::nextafter(piece, 0.0f), piece, std::nextafter(piece, 5.0f)}) {
      x.push_back(v);
      x.push_back(-v);
    }
  }
  const float infinity = std::numeric_limits<float>::infinity();
  x.insert(x.end(), {0.0f, -0.0f, infinity, -infinity, std::numeric_limits<float>::quiet_NaN(),
                     std::numeric_limits<float>::denorm_min(), 1e-30f, -1e-30f});
  // A count that is no multiple of 8, so the vector tail runs too.
  while (x.size() % 8 != 5) x.push_back(0.5f);
  std::vector<float> out(x.size());
  if (!sparkd::cpu::vector_erf(x.data(), static_cast<int64_t>(x.size()), out.data())) {
    WARN("no AVX2 on this CPU: GELU uses std::erf");
    return;
  }
  {
    double worst = 0.0;
    float worst_x = 0.0f;
    int64_t nan_misses = 0;
    int64_t saturation_misses = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const float want = std::erf(x[i]);
      if (std::isnan(want)) {
        nan_misses += std::isnan(out[i]) ? 0 : 1;
        continue;
      }
      const double error = std::abs(double{out[i]} - double{want});
      if (error > worst) {
        worst = error;
        worst_x = x[i];
      }
      // Odd, and exactly ±1 where std::erf saturates.
      if (std::abs(want) == 1.0f && out[i] != want) ++saturation_misses;
    }
    CHECK(nan_misses == 0);
    CHECK(saturation_misses == 0);
    INFO("worst at x = " << worst_x);
    CHECK(worst <= 1e-7);
  }
}

TEST_CASE("cpu backend: rope rotates (i, i + half) pairs by position * inv_freq", "[cpu_backend]") {
  for (auto& [backend_name, backend] : all_backends()) {
    TensorStore store(*backend);
    for (int64_t head_dim : {2, 8, 64, 128}) {
      INFO(backend_name << ", head_dim " << head_dim);
      const int64_t tokens = 7, heads = 3, half = head_dim / 2;
      const std::vector<int32_t> positions = {0, 1, 2, 17, 511, 4095, 100000};
      std::vector<float> inv_freq(half);
      for (int64_t i = 0; i < half; ++i) {
        inv_freq[i] = static_cast<float>(
            1.0 / std::pow(10000.0, static_cast<double>(2 * i) / static_cast<double>(head_dim)));
      }
      const std::vector<float> x = random_values(tokens * heads * head_dim, 61);
      Tensor x_t = store.make(DType::kF32, {tokens, heads, head_dim}, x);
      Tensor inv_freq_t = store.make(DType::kF32, {half}, inv_freq);
      backend->rope(x_t, positions, inv_freq_t);

      std::vector<double> want(x.size());
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t h = 0; h < heads; ++h) {
          const float* in = x.data() + (t * heads + h) * head_dim;
          double* out = want.data() + (t * heads + h) * head_dim;
          for (int64_t i = 0; i < half; ++i) {
            // The angle is a float32 product, as in transformers; its cos/sin are exact here.
            const double angle = static_cast<float>(positions[t]) * inv_freq[i];
            out[i] = in[i] * std::cos(angle) - in[i + half] * std::sin(angle);
            out[i + half] = in[i + half] * std::cos(angle) + in[i] * std::sin(angle);
          }
        }
      }
      check_close(store.read(x_t), want, 1e-6, 1e-6);
    }
  }
}

TEST_CASE("cpu backend: mean_rows and l2_normalize_rows", "[cpu_backend]") {
  for (auto& [backend_name, backend] : all_backends()) {
    INFO(backend_name);
    TensorStore store(*backend);
    const int64_t rows = 50, cols = 77;
    std::vector<float> x = random_values(rows * cols, 71);
    for (int64_t c = 0; c < cols; ++c) x[4 * cols + c] = 0.0f;  // row 4 is all zeros
    const std::vector<RowSpan> spans = {{0, 1}, {1, 30}, {31, 19}, {4, 1}};
    Tensor x_t = store.make(DType::kF32, {rows, cols}, x);
    Tensor pooled = store.make(DType::kF32, {static_cast<int64_t>(spans.size()), cols});
    backend->mean_rows(x_t, spans, pooled);
    std::vector<double> want_mean;
    for (const RowSpan& span : spans) {
      for (int64_t c = 0; c < cols; ++c) {
        double sum = 0.0;
        for (int32_t r = span.begin; r < span.begin + span.count; ++r) sum += x[r * cols + c];
        want_mean.push_back(sum / span.count);
      }
    }
    check_close(store.read(pooled), want_mean, 1e-5, 1e-6);

    backend->l2_normalize_rows(x_t);
    std::vector<double> want_normalized;
    for (int64_t r = 0; r < rows; ++r) {
      double norm = 0.0;
      for (int64_t c = 0; c < cols; ++c) norm += double{x[r * cols + c]} * x[r * cols + c];
      norm = std::max(std::sqrt(norm), 1e-12);
      for (int64_t c = 0; c < cols; ++c) want_normalized.push_back(x[r * cols + c] / norm);
    }
    check_close(store.read(x_t), want_normalized, 1e-6, 1e-7);
  }
}

namespace {

// One sequence of an attention test, its keys and values given per position (logical
// order), independent of where the cache puts them.
struct TestSequence {
  int32_t query_tokens;
  int32_t context_tokens;
  std::vector<float> keys;    // [context, kv_heads, head_dim]
  std::vector<float> values;  // [context, kv_heads, head_dim]
};

struct AttentionShape {
  int64_t heads;
  int64_t kv_heads;
  int64_t head_dim;
};

// Softmax(q·kᵀ · scale) · v in double over exactly the keys each query may see.
std::vector<double> reference_attention(const std::vector<float>& q,
                                        const std::vector<TestSequence>& sequences,
                                        const AttentionShape& shape,
                                        const AttentionParams& params) {
  std::vector<double> out(q.size(), 0.0);
  const int64_t group = shape.heads / shape.kv_heads, d = shape.head_dim;
  int64_t row = 0;
  for (const TestSequence& s : sequences) {
    for (int32_t i = 0; i < s.query_tokens; ++i, ++row) {
      const int64_t position = s.context_tokens - s.query_tokens + i;
      for (int64_t h = 0; h < shape.heads; ++h) {
        const int64_t kv_head = h / group;
        const float* query = q.data() + (row * shape.heads + h) * d;
        std::vector<double> scores;
        std::vector<int64_t> keys;
        for (int64_t j = 0; j < s.context_tokens; ++j) {
          if (params.causal && j > position) continue;
          if (params.causal && params.sliding_window > 0 && j <= position - params.sliding_window)
            continue;
          const float* key = s.keys.data() + (j * shape.kv_heads + kv_head) * d;
          double dot = 0.0;
          for (int64_t c = 0; c < d; ++c) dot += double{query[c]} * key[c];
          scores.push_back(dot * params.scale);
          keys.push_back(j);
        }
        const double max_score = *std::max_element(scores.begin(), scores.end());
        double denominator = 0.0;
        for (double& score : scores) denominator += (score = std::exp(score - max_score));
        double* dst = out.data() + (row * shape.heads + h) * d;
        for (size_t n = 0; n < keys.size(); ++n) {
          const float* value = s.values.data() + (keys[n] * shape.kv_heads + kv_head) * d;
          for (int64_t c = 0; c < d; ++c) dst[c] += scores[n] / denominator * value[c];
        }
      }
    }
  }
  return out;
}

enum class Layout { kContiguous, kPaged };

// Writes every sequence's keys and values into a cache of `layout` with store_kv, runs
// attention, and returns its output.
std::vector<float> run_attention(Backend& backend, Layout layout, DType cache_dtype,
                                 int32_t block_tokens, const std::vector<float>& q,
                                 const std::vector<TestSequence>& sequences,
                                 const AttentionShape& shape, const AttentionParams& params) {
  TensorStore store(backend);
  const int64_t row = shape.kv_heads * shape.head_dim;
  int64_t total_context = 0, total_queries = 0;
  for (const TestSequence& s : sequences) {
    total_context += s.context_tokens;
    total_queries += s.query_tokens;
  }
  // Room for padding: contiguous sequences start at odd offsets, paged blocks are shuffled
  // among spare blocks.
  std::vector<AttentionSequence> views(sequences.size());
  std::vector<std::vector<int32_t>> block_tables(sequences.size());
  std::vector<std::vector<int32_t>> slots(sequences.size());
  int64_t slot_count = 0;
  if (layout == Layout::kContiguous) {
    int64_t next = 3;
    for (size_t s = 0; s < sequences.size(); ++s) {
      views[s].kv_slot_begin = static_cast<int32_t>(next);
      for (int32_t p = 0; p < sequences[s].context_tokens; ++p) {
        slots[s].push_back(static_cast<int32_t>(next + p));
      }
      next += sequences[s].context_tokens + 5;
    }
    slot_count = next;
  } else {
    int64_t blocks_needed = 0;
    for (const TestSequence& s : sequences) {
      blocks_needed += (s.context_tokens + block_tokens - 1) / block_tokens;
    }
    const int64_t block_count = blocks_needed * 2 + 1;
    std::vector<int32_t> free_blocks(block_count);
    std::iota(free_blocks.begin(), free_blocks.end(), 0);
    std::shuffle(free_blocks.begin(), free_blocks.end(), std::mt19937(99));
    size_t next_block = 0;
    for (size_t s = 0; s < sequences.size(); ++s) {
      for (int32_t p = 0; p < sequences[s].context_tokens; p += block_tokens) {
        block_tables[s].push_back(free_blocks[next_block++]);
      }
      for (int32_t p = 0; p < sequences[s].context_tokens; ++p) {
        slots[s].push_back(block_tables[s][p / block_tokens] * block_tokens + p % block_tokens);
      }
      views[s].block_table = block_tables[s];
    }
    slot_count = block_count * block_tokens;
  }

  KvLayerView kv;
  kv.keys = store.make(cache_dtype, {slot_count, shape.kv_heads, shape.head_dim});
  kv.values = store.make(cache_dtype, {slot_count, shape.kv_heads, shape.head_dim});
  kv.block_tokens = layout == Layout::kPaged ? block_tokens : 0;
  for (size_t s = 0; s < sequences.size(); ++s) {
    const int64_t context = sequences[s].context_tokens;
    Tensor k =
        store.make(DType::kF32, {context, shape.kv_heads, shape.head_dim}, sequences[s].keys);
    Tensor v =
        store.make(DType::kF32, {context, shape.kv_heads, shape.head_dim}, sequences[s].values);
    backend.store_kv(k, v, slots[s], kv);
  }
  REQUIRE(row > 0);

  int32_t query_begin = 0;
  for (size_t s = 0; s < sequences.size(); ++s) {
    views[s].query_begin = query_begin;
    views[s].query_tokens = sequences[s].query_tokens;
    views[s].context_tokens = sequences[s].context_tokens;
    query_begin += sequences[s].query_tokens;
  }
  Tensor q_t = store.make(DType::kF32, {total_queries, shape.heads, shape.head_dim}, q);
  Tensor out_t = store.make(DType::kF32, {total_queries, shape.heads, shape.head_dim});
  backend.attention(q_t, kv, views, params, out_t);
  std::vector<float> out = store.read(out_t);
  // The same call with out in place of q gives the same result.
  backend.attention(q_t, kv, views, params, q_t);
  CHECK(store.read(q_t) == out);
  static_cast<void>(total_context);
  return out;
}

}  // namespace

TEST_CASE("cpu backend: attention matches a double reference in every layout", "[cpu_backend]") {
  struct Case {
    const char* name;
    AttentionShape shape;
    bool causal;
    int32_t sliding_window;
    // (query_tokens, context_tokens) per sequence of the batch
    std::vector<std::pair<int32_t, int32_t>> sequences;
  };
  const std::vector<Case> cases = {
      {"decode, GQA 8/2, mixed contexts", {8, 2, 64}, true, 0, {{1, 1}, {1, 17}, {1, 200}}},
      {"prefill, MHA", {4, 4, 32}, true, 0, {{37, 37}}},
      {"chunked prefill + decode batch", {6, 3, 16}, true, 0, {{20, 90}, {1, 5}, {33, 33}}},
      {"MQA, odd head_dim", {4, 1, 7}, true, 0, {{5, 70}, {1, 130}}},
      {"sliding window 16", {4, 2, 32}, true, 16, {{40, 100}, {1, 150}, {3, 10}}},
      {"bidirectional, two sequences", {4, 4, 24}, false, 0, {{19, 19}, {65, 65}}},
      {"head_dim 128, long context", {2, 1, 128}, true, 0, {{3, 600}}},
  };
  for (auto& [backend_name, backend] : all_backends()) {
    for (const Case& c : cases) {
      for (DType cache_dtype : {DType::kF32, DType::kBF16}) {
        INFO(backend_name << ", " << c.name << ", cache " << dtype_label(cache_dtype));
        const AttentionShape& shape = c.shape;
        AttentionParams params;
        params.scale = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
        params.causal = c.causal;
        params.sliding_window = c.sliding_window;
        std::vector<TestSequence> sequences;
        int64_t total_queries = 0;
        uint32_t seed = 1000;
        for (auto [query_tokens, context_tokens] : c.sequences) {
          const size_t cache_floats =
              static_cast<size_t>(context_tokens * shape.kv_heads * shape.head_dim);
          sequences.push_back(
              {query_tokens, context_tokens,
               rounded(random_values(cache_floats, seed++, -2.0f, 2.0f), cache_dtype),
               rounded(random_values(cache_floats, seed++), cache_dtype)});
          total_queries += query_tokens;
        }
        const std::vector<float> q = random_values(
            static_cast<size_t>(total_queries * shape.heads * shape.head_dim), seed, -2.0f, 2.0f);
        const std::vector<double> want = reference_attention(q, sequences, shape, params);

        const std::vector<float> contiguous = run_attention(
            *backend, Layout::kContiguous, cache_dtype, 0, q, sequences, shape, params);
        check_close(contiguous, want, 1e-5, 1e-5);
        for (int32_t block_tokens : {16, 5}) {
          INFO("paged, block_tokens " << block_tokens);
          const std::vector<float> paged = run_attention(*backend, Layout::kPaged, cache_dtype,
                                                         block_tokens, q, sequences, shape, params);
          // Same keys in the same order: the layouts agree bit for bit.
          CHECK(paged == contiguous);
        }
      }
    }
  }
}

TEST_CASE("cpu backend: store_kv writes rows to their slots", "[cpu_backend]") {
  auto backend = sparkd::make_cpu_backend();
  TensorStore store(*backend);
  const int64_t kv_heads = 2, head_dim = 3, slots = 10, row = kv_heads * head_dim;
  const std::vector<float> k = random_values(3 * row, 81);
  const std::vector<float> v = random_values(3 * row, 82);
  const std::vector<int32_t> targets = {7, 0, 4};
  for (DType cache_dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    INFO(dtype_label(cache_dtype));
    KvLayerView kv;
    kv.keys = store.make(cache_dtype, {slots, kv_heads, head_dim});
    kv.values = store.make(cache_dtype, {slots, kv_heads, head_dim});
    backend->store_kv(store.make(DType::kF32, {3, kv_heads, head_dim}, k),
                      store.make(DType::kF32, {3, kv_heads, head_dim}, v), targets, kv);
    const std::vector<float> keys = store.read(kv.keys), values = store.read(kv.values);
    std::vector<double> want_keys(keys.size(), 0.0), want_values(values.size(), 0.0);
    for (size_t t = 0; t < targets.size(); ++t) {
      for (int64_t c = 0; c < row; ++c) {
        want_keys[targets[t] * row + c] = round_to(cache_dtype, k[t * row + c]);
        want_values[targets[t] * row + c] = round_to(cache_dtype, v[t * row + c]);
      }
    }
    check_close(keys, want_keys, 0.0, 0.0);  // exact, untouched slots stay zero
    check_close(values, want_values, 0.0, 0.0);
  }
}

TEST_CASE("cpu backend: mismatched shapes abort naming the op", "[cpu_backend]") {
  auto backend = sparkd::make_cpu_backend();
  TensorStore store(*backend);
  Tensor x = store.make(DType::kF32, {2, 8});
  Tensor w = store.make(DType::kBF16, {4, 9});
  Tensor y = store.make(DType::kF32, {2, 4});
  sparkd::testing::check_aborts([&] { backend->linear(x, w, nullptr, y); },
                                "linear: shape mismatch");

  Tensor weight = store.make(DType::kF32, {7});
  sparkd::testing::check_aborts([&] { backend->rms_norm(x, weight, 1e-6f, x); }, "rms_norm");

  KvLayerView kv;
  kv.keys = store.make(DType::kF32, {32, 1, 8});
  kv.values = store.make(DType::kF32, {32, 1, 8});
  kv.block_tokens = 16;
  const std::vector<int32_t> block_table = {0, 2};  // block 2 is outside the 2-block cache
  AttentionSequence sequence;
  sequence.query_tokens = 1;
  sequence.context_tokens = 20;
  sequence.block_table = block_table;
  Tensor q = store.make(DType::kF32, {1, 1, 8});
  sparkd::testing::check_aborts(
      [&] {
        backend->attention(q, kv, {&sequence, 1}, AttentionParams{}, q);
      },
      "attention: block 2 outside the cache");

  // Two sequences claiming the same query row.
  Tensor q3 = store.make(DType::kF32, {3, 1, 8});
  const std::vector<int32_t> first_block = {0}, second_block = {1};
  std::vector<AttentionSequence> overlapping(2);
  overlapping[0].query_tokens = 2;
  overlapping[0].context_tokens = 2;
  overlapping[0].block_table = first_block;
  overlapping[1].query_begin = 1;
  overlapping[1].query_tokens = 2;
  overlapping[1].context_tokens = 2;
  overlapping[1].block_table = second_block;
  sparkd::testing::check_aborts(
      [&] { backend->attention(q3, kv, overlapping, AttentionParams{}, q3); },
      "attention: sequences share query rows: [0, 2) and [1, 3)");
}
