#include "bench/sim/trace.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <numbers>

namespace sparkd::sim {
namespace {

using nlohmann::json;
constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t kMiB = 1ull << 20;

// splitmix64: the generators' randomness, the same on every platform and standard library
// (std::*_distribution are not), so a seed names one trace everywhere.
uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() { return mix64(state_++); }
  // In [0, 1).
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }
  double exponential(double mean) { return -mean * std::log1p(-uniform()); }
  // Around `mean`, spread by +-`spread` (a fraction), at least 1.
  int32_t around(int32_t mean, double spread) {
    const double v = mean * (1.0 + spread * (2.0 * uniform() - 1.0));
    return std::max<int32_t>(1, static_cast<int32_t>(std::lround(v)));
  }
  int32_t below(int32_t n) { return static_cast<int32_t>(next() % static_cast<uint64_t>(n)); }

 private:
  uint64_t state_;
};

// ---- the models the generators use: real models' shapes ----

ModelShape embed_0_6b() {  // Qwen3-Embedding-0.6B, BF16
  return {.kind = ModelKind::kEmbed,
          .dense_params = 0.6e9,
          .bytes_per_param = 2,
          .layers = 28,
          .q_width = 2048,
          .kv_heads = 8,
          .head_dim = 128,
          .workspace_bytes = 256 * kMiB};
}
ModelShape rerank_0_6b() {  // bge-reranker-v2-m3 (XLM-R large), BF16
  return {.kind = ModelKind::kRerank,
          .dense_params = 0.568e9,
          .bytes_per_param = 2,
          .layers = 24,
          .q_width = 1024,
          .kv_heads = 16,
          .head_dim = 64,
          .workspace_bytes = 256 * kMiB};
}
ModelShape chat_8b() {  // Llama-3.1-8B-Instruct, BF16
  return {.dense_params = 8.03e9,
          .bytes_per_param = 2,
          .layers = 32,
          .q_width = 4096,
          .kv_heads = 8,
          .head_dim = 128,
          .workspace_bytes = 512 * kMiB};
}
ModelShape coder_30b_a3b() {  // Qwen3-Coder-30B-A3B-Instruct, Q8_0: 30.5B total, 3.3B active
  return {.dense_params = 1.5e9,
          .expert_params = 29.0e9,
          .experts = 128,
          .experts_per_token = 8,
          .bytes_per_param = 1.0625,
          .layers = 48,
          .q_width = 4096,
          .kv_heads = 4,
          .head_dim = 128,
          .workspace_bytes = 512 * kMiB};
}
ModelShape big_70b() {  // Llama-3.3-70B-Instruct, Q4_K_M (~4.8 bits a parameter)
  return {.dense_params = 70.6e9,
          .bytes_per_param = 0.6,
          .layers = 80,
          .q_width = 8192,
          .kv_heads = 8,
          .head_dim = 128,
          .workspace_bytes = 1024 * kMiB};
}
// Qwen3.5-122B-A10B, Q4_K_M: 122B total, 10B active, 256 experts top-8; only its 12 full
// attention layers (of 48) keep a KV cache that grows with the context.
ModelShape judge_122b_a10b() {
  return {.dense_params = 6.4e9,
          .expert_params = 115.6e9,
          .experts = 256,
          .experts_per_token = 8,
          .bytes_per_param = 0.6,
          .layers = 12,
          .q_width = 8192,
          .kv_heads = 2,
          .head_dim = 256,
          .workspace_bytes = 1024 * kMiB};
}

TraceModel model(std::string name, ModelShape shape, int32_t priority, bool pinned,
                 double kv_min_gib, double kv_max_gib, double static_fraction) {
  TraceModel m;
  m.name = std::move(name);
  m.shape = shape;
  m.priority = priority;
  m.pinned = pinned;
  m.kv_min_bytes = static_cast<uint64_t>(kv_min_gib * double(kGiB));
  m.kv_max_bytes = static_cast<uint64_t>(kv_max_gib * double(kGiB));
  m.static_fraction = static_fraction;
  return m;
}

// Arrivals of a Poisson process whose rate follows a compressed day: quiet at the start and
// the end, busiest in the middle (thinning against the peak rate).
std::vector<double> diurnal_arrivals(Rng& rng, double duration_s, double peak_per_s) {
  std::vector<double> times;
  for (double t = rng.exponential(1.0 / peak_per_s); t < duration_s;
       t += rng.exponential(1.0 / peak_per_s)) {
    const double day = std::sin(std::numbers::pi * t / duration_s);
    if (rng.uniform() < 0.15 + 0.85 * day * day) times.push_back(t);
  }
  return times;
}

TraceRequest request(double at, int32_t model, std::vector<PromptSegment> shared, int32_t unique,
                     int32_t output, double ttft, double tpot, double deadline) {
  TraceRequest r;
  r.arrival_s = at;
  r.model = model;
  r.shared = std::move(shared);
  r.unique_tokens = unique;
  r.output_tokens = output;
  r.ttft_slo_s = ttft;
  r.tpot_slo_s = tpot;
  r.deadline_s = deadline;
  return r;
}

// Shared-prefix groups: each generator names its groups from these bases.
constexpr int32_t kSystemGroup = 1;
constexpr int32_t kRepoGroup = 100;
constexpr int32_t kAgentHistoryGroup = 10000;
constexpr int32_t kDocumentGroup = 500;

// RAG office: a team's retrieval app (embed the question, rerank 20 passages, answer on the
// 8B chat model), document ingestion bursts, developers on a coder MoE with their repository
// as context, and a rarely used 70B; the load follows a day.
void rag_office_requests(Trace& t, Rng& rng, double scale) {
  const int32_t embed = t.model_index("embed-0.6b");
  const int32_t rerank = t.model_index("rerank-0.6b");
  const int32_t chat = t.model_index("chat-8b");
  const int32_t coder = t.model_index("coder-30b-a3b");
  const int32_t big = t.model_index("big-70b");
  for (double at : diurnal_arrivals(rng, t.duration_s, 0.3 * scale)) {
    // embed and rerank: output_tokens is the number of texts / pairs.
    t.requests.push_back(request(at, embed, {}, rng.around(24, 0.5), 1, 0.5, 0, 10));
    t.requests.push_back(request(at + 0.05, rerank, {}, 20 * rng.around(256, 0.3), 20, 1.0, 0, 10));
    t.requests.push_back(request(at + 0.3, chat, {{kSystemGroup, 512}}, rng.around(3000, 0.3),
                                 rng.around(250, 0.6), 2.0, 0.25, 120));
  }
  for (double burst = rng.exponential(600); burst < t.duration_s; burst += rng.exponential(600)) {
    for (int i = 0; i < 30 * scale; ++i) {
      t.requests.push_back(request(burst + rng.uniform() * 20, embed, {}, 16 * rng.around(400, 0.3),
                                   16, 30, 0, 120));
    }
  }
  for (double at : diurnal_arrivals(rng, t.duration_s, 0.05 * scale)) {
    const int32_t developer = rng.below(6);
    t.requests.push_back(request(at, coder, {{kRepoGroup + developer, 8000}}, rng.around(600, 0.5),
                                 rng.around(400, 0.5), 4.0, 0.1, 180));
  }
  for (double at = rng.exponential(600); at < t.duration_s; at += rng.exponential(600)) {
    t.requests.push_back(request(at, big, {{kSystemGroup + 1, 1500}}, rng.around(2000, 0.4),
                                 rng.around(600, 0.4), 30, 0.3, 600));
  }
}

Trace rag_office(uint64_t seed, const std::string& name, double scale) {
  Trace t;
  t.name = name;
  t.seed = seed;
  t.duration_s = 1800;
  t.models = {
      model("embed-0.6b", embed_0_6b(), 0, true, 0, 0, 0.02),
      model("rerank-0.6b", rerank_0_6b(), 0, true, 0, 0, 0.02),
      model("chat-8b", chat_8b(), 0, true, 2, 48, 0.20),
      model("coder-30b-a3b", coder_30b_a3b(), 1, false, 1, 32, 0.30),
      model("big-70b", big_70b(), 2, false, 1, 16, 0.36),
  };
  t.baselines.lru_max_loaded = 3;
  t.baselines.lru_parallel = 4;
  t.baselines.lru_context = 8192;
  t.baselines.fixed_kv_bytes = 16 * kGiB;
  Rng rng(seed);
  rag_office_requests(t, rng, scale);
  return t;
}

// Agent fleet: 24 agents in loops of tool calls, 16 on the 8B chat model and 8 on the coder,
// each call a long shared system prompt with tool schemas, the agent's own growing history,
// and a tool result; short outputs (the next tool call).
Trace agent_fleet(uint64_t seed) {
  Trace t;
  t.name = "agent-fleet";
  t.seed = seed;
  t.duration_s = 900;
  t.models = {
      model("embed-0.6b", embed_0_6b(), 0, true, 0, 0, 0.02),
      model("chat-8b", chat_8b(), 0, true, 2, 64, 0.40),
      model("coder-30b-a3b", coder_30b_a3b(), 0, true, 2, 64, 0.48),
  };
  t.baselines.lru_max_loaded = 3;
  t.baselines.lru_parallel = 4;
  t.baselines.lru_context = 16384;
  t.baselines.fixed_kv_bytes = 16 * kGiB;
  Rng rng(seed);
  const int32_t embed = t.model_index("embed-0.6b");
  int32_t history = kAgentHistoryGroup;
  for (int32_t agent = 0; agent < 24; ++agent) {
    const int32_t target = agent < 16 ? t.model_index("chat-8b") : t.model_index("coder-30b-a3b");
    const int32_t kind = agent % 3;
    double at = rng.uniform() * 30;
    int32_t turn = 0;
    int32_t session = history++;
    while (at < t.duration_s) {
      if (turn == 12) {  // a new task: a fresh history
        turn = 0;
        session = history++;
      }
      std::vector<PromptSegment> shared = {{kSystemGroup + 10 + kind, 6000}};
      if (turn > 0) shared.push_back({session, 600 * turn});
      t.requests.push_back(request(at, target, std::move(shared), rng.around(200, 0.5),
                                   rng.around(150, 0.5), 3.0, 0.3, 60));
      if (rng.uniform() < 0.2) {  // a memory lookup
        t.requests.push_back(request(at + 0.01, embed, {}, rng.around(64, 0.5), 1, 0.5, 0, 10));
      }
      ++turn;
      at += rng.exponential(30.0) + 2.0;
    }
  }
  return t;
}

// Judge pipeline: in each of 4 stages, 8 candidate summaries of one document from the 8B
// model, then 8 long-reasoning evaluations of them on a 122B-A10B MoE (~2.5k tokens in,
// ~10k out).
Trace judge_pipeline(uint64_t seed) {
  Trace t;
  t.name = "judge-pipeline";
  t.seed = seed;
  t.duration_s = 3600;
  t.models = {
      model("chat-8b", chat_8b(), 0, true, 2, 32, 0.22),
      model("judge-122b-a10b", judge_122b_a10b(), 0, true, 2, 24, 0.68),
  };
  t.baselines.lru_max_loaded = 3;
  t.baselines.lru_parallel = 4;
  t.baselines.lru_context = 16384;
  t.baselines.fixed_kv_bytes = 16 * kGiB;
  Rng rng(seed);
  const int32_t chat = t.model_index("chat-8b");
  const int32_t judge = t.model_index("judge-122b-a10b");
  for (int32_t stage = 0; stage < 4; ++stage) {
    const double start = stage * 900.0;
    for (int i = 0; i < 8; ++i) {
      t.requests.push_back(request(start + rng.uniform(), chat, {{kDocumentGroup + stage, 2500}},
                                   rng.around(100, 0.5), rng.around(400, 0.4), 5, 0.15, 300));
    }
    for (int i = 0; i < 8; ++i) {
      t.requests.push_back(request(start + 90 + rng.uniform(), judge,
                                   {{kDocumentGroup + 100 + stage, 2500}}, rng.around(400, 0.3),
                                   rng.around(10000, 0.2), 10, 0.1, 1800));
    }
  }
  return t;
}

// RAG office at 60 % of its load, while another process on the host takes 40 GiB for five
// minutes and later 16 GiB more.
Trace pressure_mix(uint64_t seed) {
  Trace t = rag_office(seed, "pressure-mix", 0.6);
  t.duration_s = 1200;
  t.requests.erase(
      std::remove_if(t.requests.begin(), t.requests.end(),
                     [&](const TraceRequest& r) { return r.arrival_s >= t.duration_s; }),
      t.requests.end());
  t.host = {{.at_s = 400, .bytes = 40 * kGiB, .ramp_s = 20, .hold_s = 300},
            {.at_s = 900, .bytes = 16 * kGiB, .ramp_s = 10, .hold_s = 120}};
  return t;
}

// ---- JSON ----

json shape_json(const ModelShape& s) {
  return {{"kind", model_kind_name(s.kind)},
          {"dense_params", s.dense_params},
          {"expert_params", s.expert_params},
          {"experts", s.experts},
          {"experts_per_token", s.experts_per_token},
          {"bytes_per_param", s.bytes_per_param},
          {"layers", s.layers},
          {"q_width", s.q_width},
          {"kv_heads", s.kv_heads},
          {"head_dim", s.head_dim},
          {"kv_bytes_per_element", s.kv_bytes_per_element},
          {"workspace_bytes", s.workspace_bytes}};
}

ModelShape shape_from(const json& j) {
  ModelShape s;
  const std::string kind = j.at("kind").get<std::string>();
  if (kind == "generate") {
    s.kind = ModelKind::kGenerate;
  } else if (kind == "embed") {
    s.kind = ModelKind::kEmbed;
  } else if (kind == "rerank") {
    s.kind = ModelKind::kRerank;
  } else {
    throw std::runtime_error("unknown model kind \"" + kind + "\"");
  }
  s.dense_params = j.at("dense_params").get<double>();
  s.expert_params = j.at("expert_params").get<double>();
  s.experts = j.at("experts").get<int32_t>();
  s.experts_per_token = j.at("experts_per_token").get<int32_t>();
  s.bytes_per_param = j.at("bytes_per_param").get<double>();
  s.layers = j.at("layers").get<int32_t>();
  s.q_width = j.at("q_width").get<int32_t>();
  s.kv_heads = j.at("kv_heads").get<int32_t>();
  s.head_dim = j.at("head_dim").get<int32_t>();
  s.kv_bytes_per_element = j.at("kv_bytes_per_element").get<int32_t>();
  s.workspace_bytes = j.at("workspace_bytes").get<uint64_t>();
  return s;
}

json header_json(const Trace& t) {
  json models = json::array();
  for (const TraceModel& m : t.models) {
    json jm = {{"name", m.name},
               {"shape", shape_json(m.shape)},
               {"priority", m.priority},
               {"pinned", m.pinned},
               {"kv_min_bytes", m.kv_min_bytes},
               {"kv_max_bytes", m.kv_max_bytes},
               {"max_seqs", m.max_seqs},
               {"max_batch_tokens", m.max_batch_tokens},
               {"static_fraction", m.static_fraction}};
    if (m.keep_alive_s) jm["keep_alive_s"] = *m.keep_alive_s;
    models.push_back(std::move(jm));
  }
  json host = json::array();
  for (const HostBurst& h : t.host) {
    host.push_back(
        {{"at_s", h.at_s}, {"bytes", h.bytes}, {"ramp_s", h.ramp_s}, {"hold_s", h.hold_s}});
  }
  return {{"trace", t.name},
          {"seed", t.seed},
          {"duration_s", t.duration_s},
          {"models", models},
          {"baselines",
           {{"lru_max_loaded", t.baselines.lru_max_loaded},
            {"lru_parallel", t.baselines.lru_parallel},
            {"lru_context", t.baselines.lru_context},
            {"fixed_kv_bytes", t.baselines.fixed_kv_bytes}}},
          {"host", host}};
}

void header_from(const json& j, Trace& t) {
  t.name = j.at("trace").get<std::string>();
  t.seed = j.at("seed").get<uint64_t>();
  t.duration_s = j.at("duration_s").get<double>();
  for (const json& jm : j.at("models")) {
    TraceModel m;
    m.name = jm.at("name").get<std::string>();
    m.shape = shape_from(jm.at("shape"));
    m.priority = jm.at("priority").get<int32_t>();
    m.pinned = jm.at("pinned").get<bool>();
    m.kv_min_bytes = jm.at("kv_min_bytes").get<uint64_t>();
    m.kv_max_bytes = jm.at("kv_max_bytes").get<uint64_t>();
    m.max_seqs = jm.at("max_seqs").get<int32_t>();
    m.max_batch_tokens = jm.at("max_batch_tokens").get<int32_t>();
    m.static_fraction = jm.at("static_fraction").get<double>();
    if (jm.contains("keep_alive_s")) m.keep_alive_s = jm.at("keep_alive_s").get<double>();
    if (m.shape.kind == ModelKind::kGenerate &&
        (m.shape.layers <= 0 || m.shape.kv_heads <= 0 || m.shape.head_dim <= 0)) {
      throw std::runtime_error("model \"" + m.name + "\" has no KV geometry");
    }
    t.models.push_back(std::move(m));
  }
  const json& b = j.at("baselines");
  t.baselines.lru_max_loaded = b.at("lru_max_loaded").get<int32_t>();
  t.baselines.lru_parallel = b.at("lru_parallel").get<int32_t>();
  t.baselines.lru_context = b.at("lru_context").get<int32_t>();
  t.baselines.fixed_kv_bytes = b.at("fixed_kv_bytes").get<uint64_t>();
  for (const json& h : j.at("host")) {
    t.host.push_back({.at_s = h.at("at_s").get<double>(),
                      .bytes = h.at("bytes").get<uint64_t>(),
                      .ramp_s = h.at("ramp_s").get<double>(),
                      .hold_s = h.at("hold_s").get<double>()});
  }
}

json request_json(const Trace& t, const TraceRequest& r) {
  json shared = json::array();
  for (const PromptSegment& s : r.shared) shared.push_back({s.group, s.tokens});
  return {{"t", r.arrival_s},           {"model", t.models.at(static_cast<size_t>(r.model)).name},
          {"shared", shared},           {"unique", r.unique_tokens},
          {"output", r.output_tokens},  {"priority", r.priority},
          {"ttft_slo_s", r.ttft_slo_s}, {"tpot_slo_s", r.tpot_slo_s},
          {"deadline_s", r.deadline_s}};
}

TraceRequest request_from(const Trace& t, const json& j) {
  TraceRequest r;
  r.arrival_s = j.at("t").get<double>();
  const std::string name = j.at("model").get<std::string>();
  r.model = t.model_index(name);
  if (r.model < 0) throw std::runtime_error("unknown model \"" + name + "\"");
  for (const json& s : j.at("shared")) {
    r.shared.push_back({s.at(0).get<int32_t>(), s.at(1).get<int32_t>()});
    if (r.shared.back().tokens <= 0) throw std::runtime_error("an empty shared segment");
  }
  r.unique_tokens = j.at("unique").get<int32_t>();
  r.output_tokens = j.at("output").get<int32_t>();
  r.priority = j.at("priority").get<int32_t>();
  r.ttft_slo_s = j.at("ttft_slo_s").get<double>();
  r.tpot_slo_s = j.at("tpot_slo_s").get<double>();
  r.deadline_s = j.at("deadline_s").get<double>();
  if (r.unique_tokens < 0 || r.prompt_tokens() <= 0 || r.output_tokens <= 0) {
    throw std::runtime_error("a request needs prompt and output tokens");
  }
  return r;
}

}  // namespace

int32_t TraceRequest::prompt_tokens() const {
  int32_t n = unique_tokens;
  for (const PromptSegment& s : shared) n += s.tokens;
  return n;
}

int32_t Trace::model_index(const std::string& model_name) const {
  for (size_t i = 0; i < models.size(); ++i) {
    if (models[i].name == model_name) return static_cast<int32_t>(i);
  }
  return -1;
}

Status write_trace(const Trace& trace, const std::string& path) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) return Status(StatusCode::kInvalidArgument, "cannot write trace " + path);
  out << header_json(trace).dump() << '\n';
  for (const TraceRequest& r : trace.requests) out << request_json(trace, r).dump() << '\n';
  out.close();
  if (!out) return Status(StatusCode::kInternal, "writing trace " + path + " failed");
  return Status::ok();
}

Expected<Trace> read_trace(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status(StatusCode::kNotFound, "cannot open trace " + path);
  Trace trace;
  std::string line;
  int64_t number = 0;
  try {
    while (std::getline(in, line)) {
      ++number;
      if (line.empty()) continue;
      const json j = json::parse(line);
      if (number == 1) {
        header_from(j, trace);
        continue;
      }
      trace.requests.push_back(request_from(trace, j));
      if (trace.requests.size() > 1 &&
          trace.requests.back().arrival_s < trace.requests[trace.requests.size() - 2].arrival_s) {
        throw std::runtime_error("requests are not in arrival order");
      }
    }
  } catch (const std::exception& e) {
    return Status(StatusCode::kInvalidArgument,
                  "trace " + path + " line " + std::to_string(number) + ": " + e.what());
  }
  if (number == 0) return Status(StatusCode::kInvalidArgument, "trace " + path + " is empty");
  return trace;
}

std::vector<std::string> trace_generator_names() {
  return {"rag-office", "agent-fleet", "judge-pipeline", "pressure-mix"};
}

Expected<Trace> generate_trace(const std::string& name, uint64_t seed) {
  Trace trace;
  if (name == "rag-office") {
    trace = rag_office(seed, name, 1.0);
  } else if (name == "agent-fleet") {
    trace = agent_fleet(seed);
  } else if (name == "judge-pipeline") {
    trace = judge_pipeline(seed);
  } else if (name == "pressure-mix") {
    trace = pressure_mix(seed);
  } else {
    return Status(StatusCode::kInvalidArgument, "unknown trace generator \"" + name + "\"");
  }
  std::stable_sort(
      trace.requests.begin(), trace.requests.end(),
      [](const TraceRequest& a, const TraceRequest& b) { return a.arrival_s < b.arrival_s; });
  return trace;
}

std::vector<int32_t> prompt_token_ids(const TraceRequest& request, uint64_t request_index) {
  std::vector<int32_t> ids;
  ids.reserve(static_cast<size_t>(request.prompt_tokens()));
  for (const PromptSegment& s : request.shared) {
    const uint64_t group = mix64(0x5eed0000ull + static_cast<uint64_t>(s.group));
    for (int32_t i = 0; i < s.tokens; ++i) {
      ids.push_back(static_cast<int32_t>(mix64(group + static_cast<uint64_t>(i)) % 100000));
    }
  }
  const uint64_t own = mix64(~request_index);
  for (int32_t i = 0; i < request.unique_tokens; ++i) {
    ids.push_back(static_cast<int32_t>(100000 + mix64(own + static_cast<uint64_t>(i)) % 100000));
  }
  return ids;
}

}  // namespace sparkd::sim
