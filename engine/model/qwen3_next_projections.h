// Qwen3-Next's fused linear-attention input projections, regrouped at load.
//
// Qwen3NextGatedDeltaNet computes in_proj_qkvz [2 key_dim + 2 value_dim, hidden] and in_proj_ba
// [2 value_heads, hidden] with their rows grouped per key head: for key head g, q_g (key_head_dim
// rows), k_g, then its value heads' v (r x value_head_dim, r = value_heads / key_heads) and z
// rows; and b then a (r rows each). Qwen3.5 stores the same projections split and ungrouped
// (in_proj_qkv [all q | all k | all v], in_proj_z, in_proj_b, in_proj_a). Regrouping the rows
// as they are read gives Qwen3-Next's tensors that layout, so the decoder takes the four
// projections as row ranges and runs both families the same way.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model/model_spec.h"

namespace sparkd::model {

// Row r of the regrouped tensor `name` (of `rows` rows) is row order[r] of the stored one; empty
// when `name` is not a fused projection of `spec` (or has an unexpected size: the decoder's
// shape check then names it).
std::vector<int64_t> qwen3_next_row_order(const ModelSpec& spec, const std::string& name,
                                          int64_t rows);

}  // namespace sparkd::model
