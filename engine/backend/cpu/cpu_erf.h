// The vector erf behind exact GELU (cpu_rows.cpp), declared apart from cpu_kernels.h so
// that its test, built without OpenMP, can call it directly.
#pragma once

#include <cstdint>

namespace sparkd::cpu {

// out[i] = erf(x[i]) by the AVX2 approximation exact GELU uses (within 1e-7 of std::erf),
// on the calling thread. Returns false, computing nothing, where the CPU has no AVX2 (GELU
// then calls std::erf).
bool vector_erf(const float* x, int64_t count, float* out);

}  // namespace sparkd::cpu
