// Sentence-embedding pooling over a packed batch of hidden states, as sentence-transformers'
// Pooling (+ Normalize) modules compute it.
#pragma once

#include <span>
#include <vector>

#include "common/status.h"
#include "engine/arch/activations.h"
#include "engine/backend/backend.h"
#include "engine/model/model_spec.h"

namespace sparkd::arch {

// hidden: [tokens, hidden_size]; spans: each sequence's rows. Returns [spans, hidden_size]
// host F32 embeddings.
Expected<std::vector<float>> pool_embeddings(Backend& backend, Activations& activations,
                                             const Tensor& hidden, std::span<const RowSpan> spans,
                                             model::Pooling pooling, bool normalize);

}  // namespace sparkd::arch
