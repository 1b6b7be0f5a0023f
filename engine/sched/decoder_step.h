// Executes a scheduler StepPlan on a decoder: the bridge between bookkeeping (which
// sequences, which tokens) and the model (one batched forward over the paged KV cache).
#pragma once

#include <vector>

#include "common/status.h"
#include "engine/arch/decoder.h"
#include "engine/kv/kv_cache.h"
#include "engine/sched/scheduler.h"

namespace sparkd::sched {

// Runs every chunk of `plan` in one forward pass, each sequence reading and writing its KV
// through its block table in `kv` (whose block_tokens must be the prefix cache's). Returns
// the logits (host F32, [sampling chunks, vocab]) of the chunks that sample, in plan order.
// `states` holds the sequences' recurrent states when the model has any (nullptr otherwise).
Expected<std::vector<float>> run_decoder_step(arch::DecoderModel& model, const KvCache& kv,
                                              const RecurrentStatePool* states,
                                              const Scheduler& scheduler, const StepPlan& plan);

}  // namespace sparkd::sched
