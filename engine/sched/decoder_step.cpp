#include "engine/sched/decoder_step.h"

#include <span>

namespace sparkd::sched {

Expected<std::vector<float>> run_decoder_step(arch::DecoderModel& model, const KvCache& kv,
                                              const RecurrentStatePool* states,
                                              const Scheduler& scheduler, const StepPlan& plan) {
  std::vector<arch::DecoderStepSequence> batch;
  batch.reserve(plan.chunks.size());
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
    if (states != nullptr && seq->state_slot >= 0) {
      step.recurrent_state = states->state(seq->state_slot);
    }
    // A prefill chunk that does not finish its prompt samples nothing: no vocabulary
    // projection for it.
    step.logits = chunk.samples ? arch::StepLogits::kLast : arch::StepLogits::kNone;
    batch.push_back(step);
  }
  if (batch.empty()) return std::vector<float>{};
  return model.forward(batch, kv);
}

}  // namespace sparkd::sched
