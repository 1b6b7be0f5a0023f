#include "engine/sched/decoder_step.h"

#include <span>

namespace sparkd::sched {

Expected<std::vector<float>> run_decoder_step(arch::DecoderModel& model, const KvCache& kv,
                                              const Scheduler& scheduler, const StepPlan& plan) {
  std::vector<arch::DecoderStepSequence> batch;
  batch.reserve(plan.chunks.size());
  std::vector<size_t> sampling_rows;  // index in `batch` of each sampling chunk
  for (const ScheduledChunk& chunk : plan.chunks) {
    const SequenceState* seq = scheduler.find(chunk.id);
    if (seq == nullptr) {
      return Status(StatusCode::kInternal,
                    "planned request " + std::to_string(chunk.id) + " is unknown to the scheduler");
    }
    arch::DecoderStepSequence step;
    step.tokens = std::span(seq->tokens).subspan(chunk.begin, chunk.count);
    step.past_tokens = chunk.begin;
    step.kv.block_table = seq->block_table;
    if (chunk.samples) sampling_rows.push_back(batch.size());
    batch.push_back(step);
  }
  if (batch.empty()) return std::vector<float>{};
  // The forward returns one logits row per sequence (its last token); keep the rows of the
  // chunks that sample: a prefill chunk that does not finish its prompt samples nothing.
  SPARKD_ASSIGN_OR_RETURN(std::vector<float> logits, model.forward(batch, kv));
  const size_t vocab = static_cast<size_t>(model.spec().vocab_size);
  std::vector<float> wanted;
  wanted.reserve(sampling_rows.size() * vocab);
  for (size_t row : sampling_rows) {
    wanted.insert(wanted.end(), logits.begin() + static_cast<std::ptrdiff_t>(row * vocab),
                  logits.begin() + static_cast<std::ptrdiff_t>((row + 1) * vocab));
  }
  return wanted;
}

}  // namespace sparkd::sched
