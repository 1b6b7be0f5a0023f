// Every quantized type's dequantization, bit for bit against the gguf package's
// gguf.quants.dequantize (tests/fixtures/gguf/quant_types.gguf, written by
// tools/fixtures/make_gguf_fixtures.py). Needs only the GGUF reader and the CPU backend, so
// tools/check_aarch64.sh runs it under qemu too.
#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/model/gguf.h"
#include "tests/support/file_range.h"

namespace {

using sparkd::DType;

const std::string kQuantTypes =
    std::string(SPARKD_SOURCE_DIR) + "/tests/fixtures/gguf/quant_types.gguf";

}  // namespace

TEST_CASE("every quantized type dequantizes bit-exact against the gguf package", "[dequantize]") {
  auto model = sparkd::model::read_gguf_model(kQuantTypes);
  REQUIRE(model.has_value());
  const auto tensors = model->tensors();
  int checked = 0;
  for (int t = 0; t < sparkd::kDTypeCount; ++t) {
    const DType dtype = static_cast<DType>(t);
    const std::string name = sparkd::dtype_name(dtype);
    DYNAMIC_SECTION(name) {
      REQUIRE(tensors.count("raw." + name) == 1);
      REQUIRE(tensors.count("dequantized." + name) == 1);
      const auto& raw = *tensors.at("raw." + name);
      const auto& expected_info = *tensors.at("dequantized." + name);
      CHECK(raw.dtype == dtype);
      CHECK(raw.shape == std::vector<int64_t>{3, 512});
      CHECK(raw.size_bytes == 3 * sparkd::dtype_row_bytes(dtype, 512));
      const auto raw_bytes =
          sparkd::testing::read_file_range(kQuantTypes, raw.file_offset, raw.size_bytes);
      const auto expected_bytes = sparkd::testing::read_file_range(
          kQuantTypes, expected_info.file_offset, expected_info.size_bytes);
      std::vector<float> expected(3 * 512), got(3 * 512, -12345.0f);
      std::memcpy(expected.data(), expected_bytes.data(), expected_bytes.size());
      // Row by row through the CPU backend (offsets in whole blocks).
      auto backend = sparkd::make_cpu_backend();
      const sparkd::Tensor tensor(dtype, {3, 512}, const_cast<uint8_t*>(raw_bytes.data()));
      for (int64_t row = 0; row < 3; ++row) {
        backend->download_f32(tensor.row_range(row, 1),
                              std::span<float>(got.data() + row * 512, 512));
      }
      int mismatches = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        uint32_t a, b;
        std::memcpy(&a, &got[i], 4);
        std::memcpy(&b, &expected[i], 4);
        if (a != b && mismatches++ < 5) {
          FAIL_CHECK(name << " value " << i << ": " << got[i] << " != " << expected[i]);
        }
      }
      CHECK(mismatches == 0);
      ++checked;
    }
  }
  CHECK(checked >= 1);
}
