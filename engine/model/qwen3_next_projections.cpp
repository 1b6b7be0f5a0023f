#include "engine/model/qwen3_next_projections.h"

namespace sparkd::model {

namespace {

bool ends_with(const std::string& text, const std::string& tail) {
  return text.size() >= tail.size() &&
         text.compare(text.size() - tail.size(), tail.size(), tail) == 0;
}

// The rows of each key head's group, part by part: all groups' part 0, then all groups' part
// 1, ... (parts: the sizes of the consecutive pieces of one group).
std::vector<int64_t> ungroup(int64_t groups, const std::vector<int64_t>& parts) {
  int64_t group_rows = 0;
  for (int64_t part : parts) group_rows += part;
  std::vector<int64_t> order;
  order.reserve(static_cast<size_t>(groups * group_rows));
  int64_t part_begin = 0;
  for (int64_t part : parts) {
    for (int64_t g = 0; g < groups; ++g) {
      for (int64_t i = 0; i < part; ++i) order.push_back(g * group_rows + part_begin + i);
    }
    part_begin += part;
  }
  return order;
}

}  // namespace

std::vector<int64_t> qwen3_next_row_order(const ModelSpec& spec, const std::string& name,
                                          int64_t rows) {
  const LinearAttentionSpec& linear = spec.linear_attention;
  if (!linear.fused_projections || linear.key_heads <= 0) return {};
  const int64_t groups = linear.key_heads;
  const int64_t per_key = linear.value_heads / linear.key_heads;
  if (ends_with(name, ".linear_attn.in_proj_qkvz.weight")) {
    const int64_t values = per_key * linear.value_head_dim;
    std::vector<int64_t> order =
        ungroup(groups, {linear.key_head_dim, linear.key_head_dim, values, values});
    if (static_cast<int64_t>(order.size()) == rows) return order;
  } else if (ends_with(name, ".linear_attn.in_proj_ba.weight")) {
    std::vector<int64_t> order = ungroup(groups, {per_key, per_key});
    if (static_cast<int64_t>(order.size()) == rows) return order;
  }
  return {};
}

}  // namespace sparkd::model
