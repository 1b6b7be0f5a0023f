#include "engine/sched/scheduler.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace sparkd::sched {

Scheduler::Scheduler(const SchedulerConfig& config, kv::PrefixCache& cache,
                     RecurrentStateSource* states)
    : config_(config), cache_(cache), states_(states) {}

void Scheduler::add(RequestId id, std::vector<int32_t> prompt, int32_t priority,
                    uint64_t cache_salt) {
  if (prompt.empty() || sequences_.count(id) != 0) {
    std::fprintf(stderr, "sparkd scheduler: request %llu is empty or already known\n",
                 static_cast<unsigned long long>(id));
    std::abort();
  }
  auto seq = std::make_unique<SequenceState>();
  seq->id = id;
  seq->priority = priority;
  seq->arrival = next_arrival_++;
  seq->cache_salt = cache_salt;
  seq->prompt_tokens = static_cast<int32_t>(prompt.size());
  seq->tokens = std::move(prompt);
  enqueue_waiting(*seq, /*front=*/false);
  sequences_.emplace(id, std::move(seq));
}

const SequenceState* Scheduler::find(RequestId id) const {
  const auto it = sequences_.find(id);
  return it == sequences_.end() ? nullptr : it->second.get();
}

size_t Scheduler::waiting() const {
  size_t count = 0;
  for (const auto& [priority, queue] : waiting_) count += queue.size();
  return count;
}

RequestId Scheduler::next_waiting() const {
  for (const auto& [priority, queue] : waiting_) {
    if (!queue.empty()) return queue.front();
  }
  return 0;
}

void Scheduler::enqueue_waiting(SequenceState& seq, bool front) {
  std::deque<RequestId>& queue = waiting_[seq.priority];
  if (front) {
    queue.push_front(seq.id);
  } else {
    queue.push_back(seq.id);
  }
}

bool Scheduler::grow_blocks(SequenceState& seq, int32_t tokens) {
  const int32_t block_tokens = cache_.block_tokens();
  const size_t needed = static_cast<size_t>((tokens + block_tokens - 1) / block_tokens);
  while (seq.block_table.size() < needed) {
    const std::optional<int32_t> block = cache_.allocate_block();
    if (!block) return false;
    seq.block_table.push_back(*block);
  }
  return true;
}

void Scheduler::release(SequenceState& seq) {
  // Tail first, so the prefix cache evicts a sequence's last blocks before its first ones.
  std::vector<int32_t> blocks(seq.block_table.rbegin(), seq.block_table.rend());
  cache_.release_blocks(blocks);
  seq.block_table.clear();
  seq.block_keys.clear();
  seq.computed_tokens = 0;
  if (seq.state_slot >= 0) {
    states_->release_state(seq.state_slot);
    seq.state_slot = -1;
  }
}

bool Scheduler::preempt_one(RequestId keep, StepPlan& plan) {
  // Only sequences not yet given work in this plan may yield: the lowest priority class
  // first, the newest within it.
  auto scheduled = [&](RequestId id) {
    return std::any_of(plan.chunks.begin(), plan.chunks.end(),
                       [&](const ScheduledChunk& c) { return c.id == id; });
  };
  SequenceState* victim = nullptr;
  for (RequestId id : running_) {
    if (id == keep || scheduled(id)) continue;
    SequenceState* candidate = sequences_.at(id).get();
    if (!victim || candidate->priority > victim->priority ||
        (candidate->priority == victim->priority && candidate->arrival > victim->arrival)) {
      victim = candidate;
    }
  }
  if (!victim) return false;
  running_.erase(std::find(running_.begin(), running_.end(), victim->id));
  release(*victim);
  victim->running = false;
  ++victim->preemptions;
  ++stats_.preemptions;
  enqueue_waiting(*victim, /*front=*/true);
  plan.preempted.push_back(victim->id);
  return true;
}

RequestId Scheduler::preempt_newest() {
  StepPlan none;
  if (!preempt_one(/*keep=*/0, none)) return 0;  // request ids start at 1
  return none.preempted.front();
}

StepPlan Scheduler::schedule() {
  StepPlan plan;
  int32_t budget = config_.max_batch_tokens;

  // 1. Running sequences: decodes and unfinished prefill chunks.
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    SequenceState& seq = *sequences_.at(running_[i]);
    const int32_t remaining = static_cast<int32_t>(seq.tokens.size()) - seq.computed_tokens;
    const int32_t count = std::min(remaining, budget);
    if (!grow_blocks(seq, seq.computed_tokens + count)) {
      if (preempt_one(seq.id, plan)) continue;  // retry with the freed blocks
      // Nobody else to preempt: this one yields and waits for blocks.
      running_.erase(running_.begin() + static_cast<std::ptrdiff_t>(i));
      release(seq);
      seq.running = false;
      ++seq.preemptions;
      ++stats_.preemptions;
      enqueue_waiting(seq, /*front=*/true);
      plan.preempted.push_back(seq.id);
      continue;
    }
    const bool samples = seq.computed_tokens + count == static_cast<int32_t>(seq.tokens.size());
    plan.chunks.push_back({seq.id, seq.computed_tokens, count, samples});
    budget -= count;
    ++i;
  }

  // 2. Waiting sequences, by priority class then arrival, while budget and blocks allow.
  // A sequence preempted in this very step is not readmitted until the next one.
  bool stop_admitting = false;
  for (auto& [priority, queue] : waiting_) {
    while (!stop_admitting && !queue.empty() && budget > 0 &&
           running_.size() < static_cast<size_t>(config_.max_seqs)) {
      SequenceState& seq = *sequences_.at(queue.front());
      if (std::find(plan.preempted.begin(), plan.preempted.end(), seq.id) != plan.preempted.end()) {
        stop_admitting = true;  // it would only take back the blocks it just gave up
        break;
      }
      if (states_ != nullptr) {
        const std::optional<int32_t> slot = states_->acquire_state();
        if (!slot) {
          stop_admitting = true;  // no memory for its state: it waits at the head of its queue
          break;
        }
        seq.state_slot = *slot;
      } else {
        seq.block_table = cache_.acquire_cached_prefix(seq.tokens, seq.cache_salt, &seq.block_keys);
      }
      const int32_t block_tokens = cache_.block_tokens();
      const int32_t cached = static_cast<int32_t>(seq.block_table.size()) * block_tokens;
      seq.computed_tokens = cached;
      const int32_t remaining = static_cast<int32_t>(seq.tokens.size()) - cached;
      const int32_t count = std::min(remaining, budget);
      if (!grow_blocks(seq, cached + count)) {
        release(seq);  // not now: it keeps its place at the head of its queue
        stop_admitting = true;
        break;
      }
      queue.pop_front();
      seq.running = true;
      running_.push_back(seq.id);
      const bool samples = cached + count == static_cast<int32_t>(seq.tokens.size());
      plan.chunks.push_back({seq.id, cached, count, samples});
      plan.cached_prefix_tokens += cached;
      budget -= count;
    }
  }
  plan.total_tokens = config_.max_batch_tokens - budget;
  return plan;
}

void Scheduler::complete(const StepPlan& plan, std::span<const int32_t> sampled) {
  size_t next_sample = 0;
  const int32_t block_tokens = cache_.block_tokens();
  for (const ScheduledChunk& chunk : plan.chunks) {
    const auto it = sequences_.find(chunk.id);
    if (it == sequences_.end()) {  // finished (e.g. cancelled) while the step ran
      if (chunk.samples) ++next_sample;
      continue;
    }
    SequenceState& seq = *it->second;
    seq.computed_tokens = chunk.begin + chunk.count;
    // Every block now full of computed tokens becomes findable by later requests.
    while (static_cast<int32_t>(seq.block_keys.size() + 1) * block_tokens <= seq.computed_tokens) {
      const size_t b = seq.block_keys.size();
      const kv::BlockKey parent = b == 0 ? kv::kRootBlockKey : seq.block_keys.back();
      seq.block_keys.push_back(cache_.register_full_block(
          seq.block_table[b], parent, std::span(seq.tokens).subspan(b * block_tokens, block_tokens),
          seq.cache_salt));
    }
    if (chunk.samples) {
      if (next_sample >= sampled.size()) {
        std::fprintf(stderr, "sparkd scheduler: fewer sampled tokens than sampling chunks\n");
        std::abort();
      }
      seq.tokens.push_back(sampled[next_sample++]);
    }
  }
  stats_.steps += 1;
  stats_.computed_tokens += static_cast<uint64_t>(plan.total_tokens);
  stats_.cached_prefix_tokens += static_cast<uint64_t>(plan.cached_prefix_tokens);
}

void Scheduler::finish(RequestId id) {
  const auto it = sequences_.find(id);
  if (it == sequences_.end()) return;
  SequenceState& seq = *it->second;
  release(seq);
  running_.erase(std::remove(running_.begin(), running_.end(), id), running_.end());
  std::deque<RequestId>& queue = waiting_[seq.priority];
  queue.erase(std::remove(queue.begin(), queue.end(), id), queue.end());
  sequences_.erase(it);
}

}  // namespace sparkd::sched
