// ModelWeights::load reads every tensor's bytes exactly, into 64-byte-aligned memory, through
// either path (direct reads into host-accessible memory, or staging + upload), widens vectors
// to F32, and fails cleanly (no leaks) when a file changes under it or memory runs out.
//
// A test-local host-memory Backend isolates the loader from the real backends.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/half.h"
#include "engine/model/weights.h"
#include "tests/support/safetensors_writer.h"

namespace {

using nlohmann::json;
using sparkd::Backend;
using sparkd::Buffer;
using sparkd::DType;
using sparkd::Expected;
using sparkd::StatusCode;
using sparkd::Tensor;
using sparkd::model::ModelWeights;
using sparkd::model::WeightLoadOptions;
using sparkd::testing::TensorBytes;

// Memory from aligned_alloc; every op is unused by the loader. Counts what is live so tests
// can check nothing leaks on error paths.
class TestBackend final : public Backend {
 public:
  explicit TestBackend(bool host_accessible) : host_accessible_(host_accessible) {}

  std::string name() const override { return "test"; }
  DType activation_dtype() const override { return DType::kF32; }
  Expected<Buffer> allocate(size_t size_bytes) override {
    if (before_allocate) before_allocate();
    if (allocations_left == 0) {
      return sparkd::Status(StatusCode::kResourceExhausted, "test backend: out of memory");
    }
    --allocations_left;
    const size_t rounded = (size_bytes + 63) / 64 * 64;
    void* data = std::aligned_alloc(64, rounded);
    std::memset(data, 0xAB, rounded);
    ++live_buffers;
    return Buffer(data, size_bytes, [this](void* p) {
      std::free(p);
      --live_buffers;
    });
  }
  bool memory_is_host_accessible() const override { return host_accessible_; }
  void upload(void* dst, const void* src_host, size_t size_bytes) override {
    REQUIRE_FALSE(host_accessible_);
    std::memcpy(dst, src_host, size_bytes);
    ++uploads;
  }
  void fill_zero(void*, size_t) override { std::abort(); }
  void download_f32(const Tensor&, std::span<float>) override { std::abort(); }
  void linear(const Tensor&, const Tensor&, const Tensor*, Tensor&) override { std::abort(); }
  void gather_rows(const Tensor&, std::span<const int32_t>, Tensor&) override { std::abort(); }
  void scatter_add_rows(const Tensor&, std::span<const int32_t>, std::span<const float>,
                        Tensor&) override {
    std::abort();
  }
  void add(const Tensor&, const Tensor&, Tensor&) override { std::abort(); }
  void rms_norm(const Tensor&, const Tensor&, float, Tensor&) override { std::abort(); }
  void layer_norm(const Tensor&, const Tensor&, const Tensor&, float, Tensor&) override {
    std::abort();
  }
  void silu_mul(const Tensor&, const Tensor&, Tensor&) override { std::abort(); }
  void clamped_swiglu(const Tensor&, const Tensor&, float, float, Tensor&) override {
    std::abort();
  }
  void sigmoid_mul(const Tensor&, const Tensor&, Tensor&) override { std::abort(); }
  void split_head_halves(const Tensor&, Tensor&, Tensor&) override { std::abort(); }
  void causal_conv1d_silu(const Tensor&, const Tensor&, std::span<const sparkd::RecurrentSequence>,
                          Tensor&) override {
    std::abort();
  }
  void gated_delta_net(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                       int32_t, bool, std::span<const sparkd::RecurrentSequence>,
                       Tensor&) override {
    std::abort();
  }
  void gelu(const Tensor&, bool, Tensor&) override { std::abort(); }
  void tanh(const Tensor&, Tensor&) override { std::abort(); }
  void rope(Tensor&, std::span<const int32_t>, const Tensor&) override { std::abort(); }
  void store_kv(const Tensor&, const Tensor&, std::span<const int32_t>,
                const sparkd::KvLayerView&) override {
    std::abort();
  }
  void attention(const Tensor&, const sparkd::KvLayerView&,
                 std::span<const sparkd::AttentionSequence>, const sparkd::AttentionParams&,
                 Tensor&) override {
    std::abort();
  }
  void mean_rows(const Tensor&, std::span<const sparkd::RowSpan>, Tensor&) override {
    std::abort();
  }
  void l2_normalize_rows(Tensor&) override { std::abort(); }

  int live_buffers = 0;
  int uploads = 0;
  int allocations_left = 1 << 30;
  std::function<void()> before_allocate;

 private:
  bool host_accessible_;
};

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("sparkd-weights-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  void write(const std::string& name, const std::string& content) const {
    std::ofstream(path / name, std::ios::binary) << content;
  }
};

template <typename T>
std::string raw_bytes(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

// Each tensor after a 3-byte gap, at an odd offset, so the loader cannot rely on the file's
// alignment.
std::string file_of(const std::vector<TensorBytes>& tensors) {
  return sparkd::testing::safetensors_file(tensors, /*gap_bytes=*/3);
}

// A sharded model directory: each shard's file, and the index that maps its tensors to it.
struct Shard {
  std::string file;
  std::vector<TensorBytes> tensors;
};

void write_shards(const TempDir& dir, const std::vector<Shard>& shards) {
  json weight_map = json::object();
  for (const Shard& shard : shards) {
    dir.write(shard.file, file_of(shard.tensors));
    for (const TensorBytes& tensor : shard.tensors) weight_map[tensor.name] = shard.file;
  }
  dir.write("model.safetensors.index.json", json{{"weight_map", weight_map}}.dump());
}

const std::vector<float> kMatrix = {1.0f, -2.5f, 3.25f, 1e-7f, -0.0f, 65504.0f};
const std::vector<uint16_t> kBf16Matrix = {sparkd::f32_to_bf16(0.5f), sparkd::f32_to_bf16(-3.0f),
                                           sparkd::f32_to_bf16(7.0f), sparkd::f32_to_bf16(1e10f)};
const std::vector<uint16_t> kF16Vector = {sparkd::f32_to_f16(1.5f), sparkd::f32_to_f16(-2.0f),
                                          sparkd::f32_to_f16(0.25f)};
const std::vector<uint16_t> kBf16Vector = {sparkd::f32_to_bf16(-1.0f), sparkd::f32_to_bf16(8.0f)};

void write_model(const TempDir& dir) {
  dir.write("model.safetensors", file_of({{"matrix", "F32", {2, 3}, raw_bytes(kMatrix)},
                                          {"bf16_matrix", "BF16", {2, 2}, raw_bytes(kBf16Matrix)},
                                          {"f16_vector", "F16", {3}, raw_bytes(kF16Vector)},
                                          {"bf16_vector", "BF16", {2}, raw_bytes(kBf16Vector)},
                                          {"empty", "F32", {0, 4}, ""}}));
}

template <typename T>
std::vector<T> values_of(const Tensor& tensor) {
  std::vector<T> out(static_cast<size_t>(tensor.numel()));
  if (!out.empty()) std::memcpy(out.data(), tensor.data, out.size() * sizeof(T));
  return out;
}

void check_model(const ModelWeights& weights) {
  REQUIRE(weights.tensors().size() == 5);
  for (const auto& [name, tensor] : weights.tensors()) {
    INFO(name);
    CHECK(reinterpret_cast<uintptr_t>(tensor.data) % 64 == 0);
  }
  const Tensor& matrix = weights.tensors().at("matrix");
  CHECK(matrix.dtype == DType::kF32);
  CHECK(matrix.shape == std::vector<int64_t>{2, 3});
  const std::vector<float> matrix_values = values_of<float>(matrix);
  CHECK(std::memcmp(matrix_values.data(), kMatrix.data(), 24) == 0);  // bit-exact, -0.0 too

  const Tensor& bf16_matrix = weights.tensors().at("bf16_matrix");
  CHECK(bf16_matrix.dtype == DType::kBF16);  // matrices keep their file dtype
  CHECK(values_of<uint16_t>(bf16_matrix) == kBf16Matrix);

  const Tensor& f16_vector = weights.tensors().at("f16_vector");
  CHECK(f16_vector.dtype == DType::kF32);  // vectors are widened
  CHECK(f16_vector.shape == std::vector<int64_t>{3});
  CHECK(values_of<float>(f16_vector) == std::vector<float>{1.5f, -2.0f, 0.25f});
  const Tensor& bf16_vector = weights.tensors().at("bf16_vector");
  CHECK(bf16_vector.dtype == DType::kF32);
  CHECK(values_of<float>(bf16_vector) == std::vector<float>{-1.0f, 8.0f});

  CHECK(weights.tensors().at("empty").numel() == 0);
  CHECK(weights.size_bytes() == 24 + 8 + 12 + 8);
  CHECK(weights.stats().bytes_read == 24 + 8 + 6 + 4);
  CHECK(weights.stats().seconds >= 0.0);
}

// Loads write_model's file through `backend` and checks every tensor; the weights are freed
// before it returns.
void load_and_check_model(TestBackend& backend) {
  TempDir dir;
  write_model(dir);
  auto weights = ModelWeights::load(dir.path.string(), backend);
  REQUIRE(weights.has_value());
  check_model(*weights);
  CHECK(weights->contains("matrix"));
  CHECK_FALSE(weights->contains("missing"));
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("weights load bit-exact into host-accessible memory", "[model][weights]") {
  TestBackend backend(/*host_accessible=*/true);
  load_and_check_model(backend);
  CHECK(backend.uploads == 0);
  CHECK(backend.live_buffers == 0);
}

TEST_CASE("weights load through staging when memory is not host-accessible", "[model][weights]") {
  TestBackend backend(/*host_accessible=*/false);
  load_and_check_model(backend);
  CHECK(backend.uploads >= 4);
}

TEST_CASE("vectors keep their dtype when vectors_as_f32 is off", "[model][weights]") {
  TempDir dir;
  write_model(dir);
  TestBackend backend(/*host_accessible=*/true);
  WeightLoadOptions options;
  options.vectors_as_f32 = false;
  auto weights = ModelWeights::load(dir.path.string(), backend, options);
  REQUIRE(weights.has_value());
  const Tensor& vector = weights->tensors().at("bf16_vector");
  CHECK(vector.dtype == DType::kBF16);
  CHECK(values_of<uint16_t>(vector) == kBf16Vector);
}

TEST_CASE("sharded weights load from every shard", "[model][weights]") {
  TempDir dir;
  write_shards(dir, {{"model-00001-of-00002.safetensors",
                      {{"a", "F32", {2}, raw_bytes(std::vector<float>{1.0f, 2.0f})}}},
                     {"model-00002-of-00002.safetensors",
                      {{"b", "F32", {1, 1}, raw_bytes(std::vector<float>{3.0f})}}}});
  TestBackend backend(/*host_accessible=*/true);
  auto weights = ModelWeights::load(dir.path.string(), backend);
  REQUIRE(weights.has_value());
  CHECK(values_of<float>(weights->tensors().at("a")) == std::vector<float>{1.0f, 2.0f});
  CHECK(values_of<float>(weights->tensors().at("b")) == std::vector<float>{3.0f});
  CHECK(weights->stats().bytes_read == 12);
}

TEST_CASE("get() checks the name and the shape", "[model][weights]") {
  TempDir dir;
  dir.write("model.safetensors",
            file_of({{"model.norm.weight", "F32", {2}, raw_bytes(std::vector<float>{1, 2})},
                     {"lm_head.weight", "F32", {2, 3}, raw_bytes(std::vector<float>(6, 0.0f))}}));
  TestBackend backend(/*host_accessible=*/true);
  auto weights = ModelWeights::load(dir.path.string(), backend);
  REQUIRE(weights.has_value());

  auto good = weights->get("lm_head.weight", {2, 3});
  REQUIRE(good.has_value());
  CHECK(good->shape == std::vector<int64_t>{2, 3});

  auto missing = weights->get("embed_tokens.weight", {10, 2});
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.status().code() == StatusCode::kNotFound);
  CHECK(missing.status().message() ==
        "model is missing tensor 'embed_tokens.weight' (expected shape [10, 2])");

  // A different prefix is pointed out.
  auto prefixed = weights->get("norm.weight", {2});
  REQUIRE_FALSE(prefixed.has_value());
  CHECK(contains(prefixed.status().message(), "the file has 'model.norm.weight'"));

  auto wrong = weights->get("lm_head.weight", {3, 2});
  REQUIRE_FALSE(wrong.has_value());
  CHECK(wrong.status().code() == StatusCode::kInvalidArgument);
  CHECK(wrong.status().message() ==
        "tensor 'lm_head.weight' has shape [2, 3] but the model config needs [3, 2]");
}

TEST_CASE("a file truncated after its header was checked is DATA_LOSS", "[model][weights]") {
  TempDir dir;
  write_model(dir);
  const std::filesystem::path file = dir.path / "model.safetensors";
  const auto full_size = std::filesystem::file_size(file);
  TestBackend backend(/*host_accessible=*/true);
  // The header has been validated by the time memory is allocated: cut the file then.
  backend.before_allocate = [&] {
    if (std::filesystem::file_size(file) == full_size) {
      std::filesystem::resize_file(file, full_size - 5);
    }
  };
  {
    auto weights = ModelWeights::load(dir.path.string(), backend);
    REQUIRE_FALSE(weights.has_value());
    INFO(weights.status().to_string());
    CHECK(weights.status().code() == StatusCode::kDataLoss);
    CHECK(contains(weights.status().message(), file.string()));
    CHECK(contains(weights.status().message(), "short read"));
    CHECK(contains(weights.status().message(), "'bf16_vector'"));
    CHECK(contains(weights.status().message(), "truncated after its header was checked"));
  }
  CHECK(backend.live_buffers == 0);

  // The same through the staging path.
  write_model(dir);
  TestBackend staged(/*host_accessible=*/false);
  staged.before_allocate = backend.before_allocate;
  auto weights = ModelWeights::load(dir.path.string(), staged);
  REQUIRE_FALSE(weights.has_value());
  CHECK(contains(weights.status().message(), "short read"));
  CHECK(staged.live_buffers == 0);
}

TEST_CASE("a shard that changes size after its header was checked is DATA_LOSS",
          "[model][weights]") {
  TempDir dir;
  write_shards(dir, {{"model-00001-of-00002.safetensors",
                      {{"a", "F32", {2}, raw_bytes(std::vector<float>{1.0f, 2.0f})}}},
                     {"model-00002-of-00002.safetensors",
                      {{"b", "F32", {1}, raw_bytes(std::vector<float>{3.0f})}}}});
  TestBackend backend(/*host_accessible=*/true);
  // While the first shard loads, the second is rewritten (both headers are already checked).
  bool rewritten = false;
  backend.before_allocate = [&] {
    if (rewritten) return;
    rewritten = true;
    std::ofstream(dir.path / "model-00002-of-00002.safetensors", std::ios::app) << "more";
  };
  auto weights = ModelWeights::load(dir.path.string(), backend);
  REQUIRE_FALSE(weights.has_value());
  INFO(weights.status().to_string());
  CHECK(weights.status().code() == StatusCode::kDataLoss);
  CHECK(contains(weights.status().message(), "model-00002-of-00002.safetensors"));
  CHECK(contains(weights.status().message(), "file changed while loading"));
  CHECK(backend.live_buffers == 0);
}

TEST_CASE("an allocation failure names the tensor and frees what was allocated",
          "[model][weights]") {
  TempDir dir;
  write_model(dir);
  TestBackend backend(/*host_accessible=*/true);
  backend.allocations_left = 2;
  auto weights = ModelWeights::load(dir.path.string(), backend);
  REQUIRE_FALSE(weights.has_value());
  CHECK(weights.status().code() == StatusCode::kResourceExhausted);
  CHECK(contains(weights.status().message(), "tensor 'f16_vector'"));
  CHECK(contains(weights.status().message(), "out of memory"));
  CHECK(backend.live_buffers == 0);
}

TEST_CASE("load errors from the directory pass through", "[model][weights]") {
  TempDir dir;
  TestBackend backend(/*host_accessible=*/true);
  auto none = ModelWeights::load(dir.path.string(), backend);
  REQUIRE_FALSE(none.has_value());
  CHECK(none.status().code() == StatusCode::kNotFound);
  dir.write("model.safetensors", "bad");
  auto bad = ModelWeights::load(dir.path.string(), backend);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.status().code() == StatusCode::kDataLoss);
}

TEST_CASE("rows regrouped at load stay regrouped when the tensor is quantized at load",
          "[model][weights]") {
  // Four rows of 32, row r all r + 1: one Q8_0 block each, whose scale is (r + 1) / 127.
  TempDir dir;
  std::vector<float> rows;
  for (int r = 0; r < 4; ++r) rows.insert(rows.end(), 32, static_cast<float>(r + 1));
  write_shards(dir, {{"model.safetensors", {{"w", "F32", {4, 32}, raw_bytes(rows)}}}});
  TestBackend backend(/*host_accessible=*/true);
  for (const bool quantized : {false, true}) {
    INFO((quantized ? "quantized to Q8_0" : "as stored"));
    WeightLoadOptions options;
    if (quantized) options.quantize = DType::kQ8_0;
    options.row_order = [](const std::string& name, int64_t count) {
      return name == "w" && count == 4 ? std::vector<int64_t>{3, 2, 1, 0} : std::vector<int64_t>{};
    };
    auto weights = ModelWeights::load(dir.path.string(), backend, options);
    REQUIRE(weights.has_value());
    const Tensor& w = weights->tensors().at("w");
    REQUIRE(w.dtype == (quantized ? DType::kQ8_0 : DType::kF32));
    for (int64_t r = 0; r < 4; ++r) {
      const Tensor row = w.row_range(r, 1);
      const float stored = static_cast<float>(4 - r);  // row r is the file's row 3 - r
      if (quantized) {
        uint16_t scale = 0;
        std::memcpy(&scale, row.data, sizeof(scale));
        CHECK(sparkd::f16_to_f32(scale) * 127.0f == Approx(stored).epsilon(1e-3));
      } else {
        CHECK(values_of<float>(row) == std::vector<float>(32, stored));
      }
    }
  }
}
