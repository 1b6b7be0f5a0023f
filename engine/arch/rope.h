// Rotary position embedding frequencies, with the scaling schemes transformers implements
// folded in, so the backend's rope op only ever sees one inv_freq table.
#pragma once

#include <vector>

#include "engine/model/model_spec.h"

namespace sparkd::arch {

// inv_freq[i] = 1 / theta^(2i / head_dim), i < head_dim / 2, then scaled: "linear" divides
// every frequency by factor; "llama3" divides only the low frequencies (wavelength beyond
// original_max_position_embeddings / low_freq_factor) and blends the band in between.
std::vector<float> rope_inv_freq(const model::RopeSpec& rope, int head_dim);

}  // namespace sparkd::arch
