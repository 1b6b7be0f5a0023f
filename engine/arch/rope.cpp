#include "engine/arch/rope.h"

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
  }
  return inv_freq;
}

}  // namespace sparkd::arch
