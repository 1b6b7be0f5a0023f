// What every CPU kernel shares: failing checks, CPU feature detection, per-thread scratch
// memory and whole-row dtype conversions.
#include <array>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "engine/backend/cpu/cpu_kernels.h"
#include "engine/backend/half.h"

#if SPARKD_CPU_X86
#include <cpuid.h>
#endif
#if SPARKD_CPU_ARM
#include <sys/auxv.h>
#endif

namespace sparkd::cpu {

void fail(const char* op, const std::string& message) {
  std::fprintf(stderr, "sparkd cpu backend: %s: %s\n", op, message.c_str());
  std::fflush(stderr);
  std::abort();
}

SimdLevel detected_simd_level() {
#if SPARKD_CPU_X86
  __builtin_cpu_init();
  // The AVX2 kernels also use FMA and F16C; the AVX-512 level keeps using them for decode.
  // (Clang's __builtin_cpu_supports does not know "f16c": ask cpuid, leaf 1.)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  if (avx2 && __builtin_cpu_supports("avx512f")) return SimdLevel::kAvx512;
  if (avx2) return SimdLevel::kAvx2;
#endif
  return SimdLevel::kPortable;
}

bool detected_avx512_vnni() {
#if SPARKD_CPU_X86
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

// The kernel's hwcaps (bits from <asm/hwcap.h>, spelled out for older headers).
bool detected_arm_dotprod() {
#if SPARKD_CPU_ARM
  constexpr unsigned long kHwcapAsimdDotProduct = 1UL << 20;
  return (getauxval(AT_HWCAP) & kHwcapAsimdDotProduct) != 0;
#else
  return false;
#endif
}

bool detected_arm_i8mm() {
#if SPARKD_CPU_ARM
  constexpr unsigned long kHwcap2I8mm = 1UL << 13;
  return (getauxval(AT_HWCAP2) & kHwcap2I8mm) != 0;
#else
  return false;
#endif
}

float* thread_scratch(int slot, size_t floats) {
  thread_local std::array<std::vector<float>, 7> buffers;
  std::vector<float>& buffer = buffers.at(static_cast<size_t>(slot));
  if (buffer.size() < floats) buffer.resize(floats);
  return buffer.data();
}

namespace {

SPARKD_CPU_CLONES
void bf16_row_to_f32(const uint16_t* src, int64_t count, float* dst) {
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) dst[i] = bf16_to_f32(src[i]);
}

SPARKD_CPU_CLONES
void f16_row_to_f32(const uint16_t* src, int64_t count, float* dst) {
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) dst[i] = f16_to_f32_branchless(src[i]);
}

}  // namespace

void convert_to_f32(const void* src, DType dtype, int64_t offset, int64_t count, float* dst) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, static_cast<const float*>(src) + offset, sizeof(float) * count);
      return;
    case DType::kBF16:
      bf16_row_to_f32(static_cast<const uint16_t*>(src) + offset, count, dst);
      return;
    case DType::kF16:
      f16_row_to_f32(static_cast<const uint16_t*>(src) + offset, count, dst);
      return;
    default:
      SPARKD_CPU_CHECK(offset % dtype_traits(dtype).block_elements == 0 &&
                           count % dtype_traits(dtype).block_elements == 0,
                       "convert_to_f32",
                       std::string(dtype_name(dtype)) + " values are converted in whole blocks");
      dequantize(static_cast<const uint8_t*>(src) + dtype_row_bytes(dtype, offset), dtype, count,
                 dst);
      return;
  }
}

void convert_from_f32(const float* src, int64_t count, DType dtype, void* dst, int64_t offset) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(static_cast<float*>(dst) + offset, src, sizeof(float) * count);
      return;
    case DType::kBF16: {
      uint16_t* out = static_cast<uint16_t*>(dst) + offset;
      for (int64_t i = 0; i < count; ++i) out[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::kF16: {
      uint16_t* out = static_cast<uint16_t*>(dst) + offset;
      for (int64_t i = 0; i < count; ++i) out[i] = f32_to_f16(src[i]);
      return;
    }
    default:
      fail("convert_from_f32", std::string("activations are never stored as ") + dtype_name(dtype));
  }
}

}  // namespace sparkd::cpu
