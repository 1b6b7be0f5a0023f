// The GPU kernels' dequantization (engine/backend/cuda/cuda_quant.cuh), compiled for the host
// as well, against the CPU backend's reference on random blocks of every quantized type: the
// value order and arithmetic of the CUDA kernels, checked on machines without a GPU. Only
// built when the CUDA backend is.
#if defined(SPARKD_WITH_CUDA)

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cuda/cuda_quant_host.h"
#include "engine/backend/half.h"

namespace {

using sparkd::DType;

// Offsets of a block's F16 scale fields, set to moderate values so no value is inf or NaN.
std::vector<size_t> scale_offsets(DType dtype) {
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

}  // namespace

TEST_CASE("the GPU's dequantization, run on the host, equals the CPU reference for every type",
          "[dequantize][cuda_host]") {
  auto cpu = sparkd::make_cpu_backend();
  std::mt19937 rng(21);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(-0.1f, 0.1f);
  for (DType dtype :
       {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kQ2_K,
        DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kMXFP4}) {
    INFO(sparkd::dtype_name(dtype));
    const int64_t count = 4 * 256;  // four K-quant super-blocks, 32 small blocks
    const auto traits = sparkd::dtype_traits(dtype);
    std::vector<uint8_t> blocks(sparkd::dtype_row_bytes(dtype, count));
    for (uint8_t& b : blocks) b = static_cast<uint8_t>(byte(rng));
    for (size_t block = 0; block < blocks.size() / traits.block_bytes; ++block) {
      uint8_t* at = blocks.data() + block * traits.block_bytes;
      for (size_t offset : scale_offsets(dtype)) {
        const uint16_t h = sparkd::f32_to_f16(scale(rng));
        std::memcpy(at + offset, &h, 2);
      }
      if (dtype == DType::kMXFP4) at[0] = static_cast<uint8_t>(byte(rng) % 256);  // every E8M0
    }
    std::vector<float> want(static_cast<size_t>(count)), got(static_cast<size_t>(count), NAN);
    cpu->download_f32(sparkd::Tensor(dtype, {count}, blocks.data()), want);
    REQUIRE(sparkd::cuda::dequantize_as_gpu(blocks.data(), dtype, count, got.data()));
    size_t mismatches = 0, first = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      // Equal but for a fused multiply-add the host compiler may form (one rounding).
      const bool same = got[i] == want[i] || (std::isnan(got[i]) && std::isnan(want[i])) ||
                        std::fabs(got[i] - want[i]) <= 1e-6f * std::fabs(want[i]);
      if (!same && mismatches++ == 0) first = i;
    }
    INFO(mismatches << " mismatches, the first at " << first << ": GPU code " << got[first]
                    << ", CPU " << want[first]);
    CHECK(mismatches == 0);
  }
  float unused[32];
  CHECK_FALSE(sparkd::cuda::dequantize_as_gpu(unused, DType::kBF16, 32, unused));
}

#endif  // SPARKD_WITH_CUDA
