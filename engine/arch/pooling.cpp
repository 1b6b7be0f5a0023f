#include "engine/arch/pooling.h"

namespace sparkd::arch {

Expected<std::vector<float>> pool_embeddings(Backend& backend, Activations& activations,
                                             const Tensor& hidden, std::span<const RowSpan> spans,
                                             model::Pooling pooling, bool normalize) {
  const int64_t count = static_cast<int64_t>(spans.size());
  SPARKD_ASSIGN_OR_RETURN(Tensor pooled, activations.make({count, hidden.cols()}));
  if (pooling == model::Pooling::kMean) {
    backend.mean_rows(hidden, spans, pooled);
  } else {
    std::vector<int32_t> rows;
    for (const RowSpan& span : spans) {
      rows.push_back(pooling == model::Pooling::kCls ? span.begin : span.begin + span.count - 1);
    }
    backend.gather_rows(hidden, rows, pooled);
  }
  if (normalize) backend.l2_normalize_rows(pooled);
  std::vector<float> host(static_cast<size_t>(pooled.numel()));
  backend.download_f32(pooled, host);
  return host;
}

}  // namespace sparkd::arch
