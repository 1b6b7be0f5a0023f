// What a model will hold, from its headers alone: the weights figure matches what a load
// really holds, and a forward at the largest batch fits in the workspace sized from it.

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/kv/kv_block_pool.h"
#include "engine/tasks/loaded_model.h"
#include "engine/tasks/model_footprint.h"
#include "tests/support/loaded_fixture.h"

namespace {

using namespace sparkd;
using sparkd::testing::fixture_model_dir;
using sparkd::testing::LoadedFixture;

TEST_CASE("footprint: the weights from the headers are what a load holds", "[footprint]") {
  for (const char* name : {"bert_embed", "bert_rerank", "qwen3_f32", "qwen3_f16", "qwen2_f32",
                           "llama_bf16_sharded", "xlmr_embed", "qwen3_moe_f32", "gpt_oss_f32",
                           "gpt_oss_mxfp4", "qwen3_5_moe_f32", "qwen3_next_f32"}) {
    INFO(name);
    auto footprint = tasks::estimate_footprint(fixture_model_dir(name), {});
    REQUIRE(footprint.has_value());
    LoadedFixture loaded(name);
    CHECK(footprint->weights_bytes == loaded.model->weights().size_bytes());
    CHECK(footprint->file_bytes >= footprint->weights_bytes / 2);
    CHECK(footprint->spec.architecture == loaded.model->spec().architecture);
    if (loaded.model->spec().task == model::ModelTask::kGenerate) {
      const KvBlockPoolGeometry g = loaded.model->decoder()->kv_pool_geometry(1, 1);
      CHECK(footprint->kv_bytes_per_token ==
            2ull * g.num_layers * g.kv_heads * g.head_dim * dtype_size_bytes(g.dtype));
      CHECK(footprint->kv_geometry.num_layers == g.num_layers);
      CHECK(footprint->recurrent_state_bytes_per_sequence ==
            loaded.model->decoder()->recurrent_state_bytes());
    } else {
      CHECK(footprint->kv_bytes_per_token == 0);
    }
  }
}

TEST_CASE("footprint: a 16-bit KV (the GPU's) halves the KV per token and fits twice the blocks",
          "[footprint]") {
  tasks::FootprintOptions options;
  options.kv_max_bytes = 64ull << 20;
  auto f32 = tasks::estimate_footprint(fixture_model_dir("qwen3_f32"), options);
  options.kv_dtype = DType::kBF16;
  auto bf16 = tasks::estimate_footprint(fixture_model_dir("qwen3_f32"), options);
  REQUIRE((f32.has_value() && bf16.has_value()));
  CHECK(bf16->kv_bytes_per_token * 2 == f32->kv_bytes_per_token);
  CHECK(bf16->kv_geometry.dtype == DType::kBF16);
  // The cap holds whole granules per sub-range either way: twice the blocks, give or take
  // a granule's rounding.
  CHECK(bf16->kv_geometry.max_blocks >= 2 * f32->kv_geometry.max_blocks - 1);
  CHECK(bf16->kv_cap_bytes <= options.kv_max_bytes);
  // What a pool of that geometry commits at capacity is the cap the governor was told.
  CHECK(KvBlockPool::committed_bytes_at_capacity(bf16->kv_geometry) == bf16->kv_cap_bytes);
}

TEST_CASE("footprint: a broken model fails as its load would", "[footprint]") {
  auto missing = tasks::estimate_footprint("/nonexistent/sparkd/model", {});
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.status().code() == StatusCode::kNotFound);
}

TEST_CASE("footprint: the largest decoder step fits in the workspace", "[footprint]") {
  // A dense model, and a mixture of experts with its routing scratch.
  // Qwen3.5: gated attention and the linear-attention layers' scratch too.
  const char* name = GENERATE("qwen3_f32", "qwen3_moe_f32", "qwen3_5_moe_f32", "qwen3_next_f32");
  INFO(name);
  LoadedFixture f(name);
  auto states = f.model->decoder()->allocate_recurrent_states(8);
  REQUIRE(states.has_value());
  tasks::FootprintOptions options;
  // An odd token count: tensors of a few values per token are not whole 64-byte lines, which
  // Activations rounds each tensor up to.
  options.max_batch_tokens = 93;
  options.max_seqs = 8;
  auto footprint = tasks::estimate_footprint(fixture_model_dir(name), options);
  REQUIRE(footprint.has_value());
  REQUIRE(f.model->reserve_workspace(footprint->workspace_bytes).is_ok());
  // 8 sequences, 93 tokens in all, each wanting its last row's logits.
  auto kv = f.model->decoder()->allocate_kv_cache(96);
  REQUIRE(kv.has_value());
  std::vector<std::vector<int32_t>> tokens(8, std::vector<int32_t>(12, 7));
  tokens[7].resize(9);
  std::vector<arch::DecoderStepSequence> batch;
  for (int32_t i = 0; i < 8; ++i) {
    arch::DecoderStepSequence step;
    step.tokens = tokens[i];
    step.kv.kv_slot_begin = i * 12;
    step.recurrent_state = states->sequence(i);
    batch.push_back(step);
  }
  auto logits = f.model->decoder()->forward(batch, *kv);
  REQUIRE(logits.has_value());
  CHECK(f.model->workspace()->overflow_allocations() == 0);
  // A batch twice the size does not fit: the forward still runs (it allocates), and says so.
  std::vector<std::vector<int32_t>> more(8, std::vector<int32_t>(24, 7));
  auto big_kv = f.model->decoder()->allocate_kv_cache(192);
  REQUIRE(big_kv.has_value());
  for (int32_t i = 0; i < 8; ++i) {
    batch[i].tokens = more[i];
    batch[i].kv.kv_slot_begin = i * 24;
  }
  REQUIRE(f.model->decoder()->forward(batch, *big_kv).has_value());
  CHECK(f.model->workspace()->overflow_allocations() > 0);
}

TEST_CASE("footprint: the largest encoder batch fits in the workspace", "[footprint]") {
  for (const char* name : {"bert_embed", "bert_rerank"}) {
    INFO(name);
    LoadedFixture f(name);
    tasks::FootprintOptions options;
    options.max_batch_tokens = 128;
    auto footprint = tasks::estimate_footprint(fixture_model_dir(name), options);
    REQUIRE(footprint.has_value());
    REQUIRE(f.model->reserve_workspace(footprint->workspace_bytes).is_ok());
    // 16 inputs of 8 tokens: 128 tokens, every one its own row of output.
    std::vector<std::vector<int32_t>> inputs(16, std::vector<int32_t>{2, 9, 9, 9, 9, 9, 9, 3});
    if (f.model->spec().task == model::ModelTask::kEmbed) {
      REQUIRE(tasks::embed_batch(*f.model, inputs, true).has_value());
    } else {
      std::vector<arch::EncoderInput> batch;
      for (const auto& ids : inputs) batch.push_back({ids, {}});
      REQUIRE(f.model->encoder()->classify(batch).has_value());
    }
    CHECK(f.model->workspace()->overflow_allocations() == 0);
  }
}

}  // namespace
