// Workload traces for the governor's simulator: what arrives when, for which model, with how
// many prompt tokens (and which of them are shared prefixes), how many output tokens, and the
// SLOs it must meet. Traces are written by seeded generators to replayable files, so every
// policy is measured on exactly the same requests.
//
// File format (JSON Lines): the first line is the header (name, seed, duration, models, the
// baselines' settings, host-memory bursts); each further line is one request, in arrival
// order. A prompt is a list of shared segments ([group, tokens]: the first `tokens` tokens of
// group `group`, the same in every request that names it) followed by `unique` tokens of its
// own; so requests of one group share a real prefix the prefix cache can find.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bench/sim/cost_model.h"
#include "common/status.h"

namespace sparkd::sim {

struct TraceModel {
  std::string name;
  ModelShape shape;
  // The governor's settings for it, as in config.toml.
  int32_t priority = 0;
  bool pinned = true;  // false: on_demand
  std::optional<double> keep_alive_s;
  uint64_t kv_min_bytes = 0;
  uint64_t kv_max_bytes = 0;
  int32_t max_seqs = 64;
  int32_t max_batch_tokens = 2048;
  // Static partitioning: the share of the machine's memory this model's process is given
  // (vLLM's gpu_memory_utilization), weights and workspace included.
  double static_fraction = 0;
};

// How the baselines are configured, as their users configure them.
struct BaselineSettings {
  // count-LRU (Ollama's scheduler, llama.cpp's router): models loaded at most, and each
  // loaded model's fixed KV: parallel slots x context tokens.
  int32_t lru_max_loaded = 3;
  int32_t lru_parallel = 4;
  int32_t lru_context = 8192;
  // no governor (sparkd before it): one KV budget all models share, everything pinned.
  uint64_t fixed_kv_bytes = 16ull << 30;
};

// Another process on the host takes `bytes`, ramping up over ramp_s, holds them hold_s, and
// gives them back.
struct HostBurst {
  double at_s = 0;
  uint64_t bytes = 0;
  double ramp_s = 0;
  double hold_s = 0;
};

struct PromptSegment {
  int32_t group = 0;
  int32_t tokens = 0;
};

struct TraceRequest {
  double arrival_s = 0;
  int32_t model = 0;  // index into Trace::models
  std::vector<PromptSegment> shared;
  int32_t unique_tokens = 0;
  int32_t output_tokens = 0;  // generators; 1 for embed and rerank
  int32_t priority = 0;
  double ttft_slo_s = 0;  // first token (embed/rerank: the answer) within this
  double tpot_slo_s = 0;  // mean time per output token after the first within this (0: none)
  double deadline_s = 0;  // after arrival, the request is dropped (0: none)

  int32_t prompt_tokens() const;
};

struct Trace {
  std::string name;
  uint64_t seed = 0;
  double duration_s = 0;
  std::vector<TraceModel> models;
  BaselineSettings baselines;
  std::vector<HostBurst> host;
  std::vector<TraceRequest> requests;  // by arrival

  // -1 when there is none of that name.
  int32_t model_index(const std::string& model_name) const;
};

Status write_trace(const Trace& trace, const std::string& path);
// Errors name the file, the line and what is wrong.
Expected<Trace> read_trace(const std::string& path);

// The generators: "rag-office", "agent-fleet", "judge-pipeline", "pressure-mix".
std::vector<std::string> trace_generator_names();
Expected<Trace> generate_trace(const std::string& name, uint64_t seed);

// The token ids of a request's prompt: segment tokens depend only on (group, position), the
// unique ones on (request index, position).
std::vector<int32_t> prompt_token_ids(const TraceRequest& request, uint64_t request_index);

}  // namespace sparkd::sim
