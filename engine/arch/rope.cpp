#include "engine/arch/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace sparkd::arch {

std::vector<float> rope_inv_freq(const model::RopeSpec& rope, int head_dim) {
  std::vector<float> inv_freq(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) {
    // transformers computes this in float32: exponent, power and reciprocal each rounded.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    const float power = std::pow(rope.theta, exponent);
    inv_freq[i] = 1.0f / power;
  }
  using Scaling = model::RopeSpec::Scaling;
  if (rope.scaling == Scaling::kLinear) {
    for (float& f : inv_freq) f /= rope.factor;
  } else if (rope.scaling == Scaling::kLlama3) {
    const float old_context = static_cast<float>(rope.original_max_position_embeddings);
    const float low_freq_wavelen = old_context / rope.low_freq_factor;
    const float high_freq_wavelen = old_context / rope.high_freq_factor;
    for (float& f : inv_freq) {
      const float wavelen = 2.0f * std::numbers::pi_v<float> / f;
      if (wavelen > low_freq_wavelen) {
        f = f / rope.factor;
      } else if (wavelen >= high_freq_wavelen) {  // the band in between: blend
        const float smooth = (old_context / wavelen - rope.low_freq_factor) /
                             (rope.high_freq_factor - rope.low_freq_factor);
        f = (1.0f - smooth) * f / rope.factor + smooth * f;
      }
    }
  } else if (rope.scaling == Scaling::kYarn) {
    // transformers' _compute_yarn_parameters: the dimensions that rotate fewer than beta_slow
    // times over the original context are interpolated (divided by factor), those that rotate
    // more than beta_fast times kept, with a linear ramp between (float32, as torch does).
    const double dim = head_dim;
    const double original = rope.original_max_position_embeddings;
    const auto correction_dim = [&](double rotations) {
      return dim * std::log(original / (rotations * 2 * std::numbers::pi)) /
             (2 * std::log(static_cast<double>(rope.theta)));
    };
    double low = correction_dim(rope.beta_fast);
    double high = correction_dim(rope.beta_slow);
    if (rope.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, dim - 1);
    if (low == high) high += 0.001;  // no singularity
    for (int i = 0; i < head_dim / 2; ++i) {
      const float extrapolated = inv_freq[i];
      const float power =
          std::pow(rope.theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
      const float interpolated = 1.0f / (rope.factor * power);
      const float ramp = std::clamp(
          (static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low), 0.0f,
          1.0f);
      const float keep = 1.0f - ramp;  // inv_freq_extrapolation_factor
      inv_freq[i] = interpolated * (1.0f - keep) + extrapolated * keep;
    }
  }
  return inv_freq;
}

}  // namespace sparkd::arch
