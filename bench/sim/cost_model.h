// The roofline cost model of the governor's trace simulator: how long a forward step, an
// encoder batch and a model load take on a machine, from the bytes they move and the FLOPs
// they compute. Only the model forward passes are replaced by this; everything else in the
// simulator is the daemon's own code.
//
//   step  = max(bytes read / bandwidth, FLOPs / compute) + fixed overhead
//           (the sum instead of the max where the machine does not overlap the two: a CPU
//           whose few cores both stream and compute; FLOPs of a step of at most
//           small_step_tokens tokens at small_step_tflops, where small matrix products run
//           well below the large ones' rate)
//   bytes = weights read (dense layers; of an MoE, only the experts the batch routes to)
//           + the KV every chunk's attention reads
//   FLOPs = 2 x active parameters x tokens + attention (4 x layers x q width x context per
//           token)
//   load  = weight bytes / read bandwidth
//
// A pure decode step is memory bound (the first term), a long prefill compute bound (the
// second): the roofline's two sides.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "common/status.h"

namespace sparkd::sim {

// One machine's figures (bench/profiles/*.toml).
struct MachineProfile {
  std::string name;
  double bandwidth_gbs = 0;     // sustained memory bandwidth, weights and KV streaming
  double compute_tflops = 0;    // sustained dense matrix FLOPs at the serving dtype
  double load_gbs = 0;          // model file reads (disk to memory)
  double step_overhead_ms = 0;  // per forward step: launches, sampling, scheduling
  // Whether streaming and computing overlap (a GPU's: the step takes the longer of the two)
  // or add up (a CPU's).
  bool overlap = true;
  // Steps of at most this many tokens compute at small_step_tflops (0: no such regime).
  int32_t small_step_tokens = 0;
  double small_step_tflops = 0;
  uint64_t memory_bytes = 0;  // MemTotal
  uint64_t os_bytes = 0;      // what the OS and everything else hold when idle
};

// Parses a machine profile; errors name the file and the key.
Expected<MachineProfile> load_machine_profile(const std::string& path);

enum class ModelKind { kGenerate, kEmbed, kRerank };
const char* model_kind_name(ModelKind kind);

// What the cost model and the memory policies need of one model.
struct ModelShape {
  ModelKind kind = ModelKind::kGenerate;
  double dense_params = 0;   // parameters every token uses (attention, embeddings, dense MLPs)
  double expert_params = 0;  // all experts' parameters together (0: a dense model)
  int32_t experts = 0;       // per MoE layer
  int32_t experts_per_token = 0;
  double bytes_per_param = 2;  // the weights' storage (BF16 2, Q8_0 1.06, Q4_K_M ~0.6)
  int32_t layers = 0;
  int32_t q_width = 0;  // query heads x head dim
  int32_t kv_heads = 0;
  int32_t head_dim = 0;
  int32_t kv_bytes_per_element = 2;
  uint64_t workspace_bytes = 0;

  uint64_t weight_bytes() const;
  uint64_t kv_bytes_per_token() const;
  // Parameters one token runs through.
  double active_params() const;
};

// One sequence's part of a step: tokens [begin, begin + count) of its context.
struct ChunkShape {
  int64_t begin = 0;
  int64_t count = 0;
};

struct StepCost {
  double seconds = 0;
  double bytes = 0;
  double flops = 0;
};

class CostModel {
 public:
  explicit CostModel(MachineProfile machine) : machine_(std::move(machine)) {}
  const MachineProfile& machine() const { return machine_; }

  // A decoder step over `chunks` (decodes are chunks of one token).
  StepCost decoder_step(const ModelShape& model, std::span<const ChunkShape> chunks) const;
  // An encoder batch (embed or rerank) of `tokens` tokens over `sequences` sequences.
  StepCost encoder_batch(const ModelShape& model, int64_t tokens, int64_t sequences) const;
  // Reading the weights from disk.
  double load_seconds(const ModelShape& model) const;

 private:
  StepCost finish(double bytes, double flops, double tokens) const;
  MachineProfile machine_;
};

}  // namespace sparkd::sim
