// llama_logits: llama.cpp's logits and greedy continuation for a prompt, as JSON, so sparkd's
// GGUF tests can compare against the peer's numbers and not only its text. Our program,
// linked against the llama.cpp libraries tools/peers/build_llama_cpp.sh builds (nothing of
// llama.cpp is committed); it is built there too, into .deps/llama.cpp/bin.
//
//   llama_logits MODEL.gguf NEW_TOKENS < prompt.txt
//     -> {"prompt_ids": [...], "logits": [[...] per prompt position], "greedy_ids": [...],
//         "greedy_logits": [[...] per generated token]}
//
// The prompt is tokenized as llama-tokenize does by default (special tokens parsed, BOS as
// the model says). One sequence, one thread count (2), F32 KV cache and no flash attention:
// attention in F32, as sparkd computes it.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "llama.h"

namespace {

void print_floats(const float* values, int count) {
  std::printf("[");
  for (int i = 0; i < count; ++i) std::printf(i ? ",%.9g" : "%.9g", static_cast<double>(values[i]));
  std::printf("]");
}

void print_ids(const std::vector<llama_token>& ids) {
  std::printf("[");
  for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? ",%d" : "%d", ids[i]);
  std::printf("]");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: llama_logits MODEL.gguf NEW_TOKENS < prompt.txt\n");
    return 2;
  }
  const int new_tokens = std::stoi(argv[2]);
  const std::string prompt(std::istreambuf_iterator<char>(std::cin), {});
  llama_log_set([](ggml_log_level, const char*, void*) {}, nullptr);
  llama_backend_init();

  llama_model* model = llama_model_load_from_file(argv[1], llama_model_default_params());
  if (!model) {
    std::fprintf(stderr, "llama_logits: cannot load %s\n", argv[1]);
    return 1;
  }
  const llama_vocab* vocab = llama_model_get_vocab(model);
  const int vocab_size = llama_vocab_n_tokens(vocab);

  std::vector<llama_token> ids(prompt.size() + 8);
  const int count = llama_tokenize(vocab, prompt.data(), static_cast<int32_t>(prompt.size()),
                                   ids.data(), static_cast<int32_t>(ids.size()),
                                   /*add_special=*/true, /*parse_special=*/true);
  if (count <= 0) {
    std::fprintf(stderr, "llama_logits: the prompt gave no tokens\n");
    return 1;
  }
  ids.resize(static_cast<size_t>(count));

  llama_context_params params = llama_context_default_params();
  params.n_ctx = static_cast<uint32_t>(count + new_tokens + 8);
  params.n_batch = params.n_ctx;
  params.n_ubatch = params.n_ctx;
  params.n_threads = params.n_threads_batch = 2;
  params.type_k = GGML_TYPE_F32;
  params.type_v = GGML_TYPE_F32;
  params.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  llama_context* context = llama_init_from_model(model, params);
  if (!context) {
    std::fprintf(stderr, "llama_logits: cannot create a context\n");
    return 1;
  }

  llama_batch batch = llama_batch_init(count, 0, 1);
  for (int i = 0; i < count; ++i) {
    batch.token[i] = ids[static_cast<size_t>(i)];
    batch.pos[i] = i;
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = 1;
  }
  batch.n_tokens = count;
  if (llama_decode(context, batch) != 0) {
    std::fprintf(stderr, "llama_logits: decode failed\n");
    return 1;
  }
  std::printf("{\"prompt_ids\":");
  print_ids(ids);
  std::printf(",\"logits\":[");
  for (int i = 0; i < count; ++i) {
    if (i) std::printf(",");
    print_floats(llama_get_logits_ith(context, i), vocab_size);
  }
  std::printf("]");

  std::vector<llama_token> greedy;
  std::vector<std::vector<float>> greedy_logits;
  const float* last = llama_get_logits_ith(context, count - 1);
  for (int n = 0; n < new_tokens; ++n) {
    llama_token best = 0;
    for (llama_token t = 1; t < vocab_size; ++t) {
      if (last[t] > last[best]) best = t;
    }
    greedy.push_back(best);
    llama_batch next = llama_batch_get_one(&greedy.back(), 1);
    if (llama_decode(context, next) != 0) {
      std::fprintf(stderr, "llama_logits: decode failed\n");
      return 1;
    }
    last = llama_get_logits_ith(context, -1);
    greedy_logits.emplace_back(last, last + vocab_size);
  }
  std::printf(",\"greedy_ids\":");
  print_ids(greedy);
  std::printf(",\"greedy_logits\":[");
  for (size_t i = 0; i < greedy_logits.size(); ++i) {
    if (i) std::printf(",");
    print_floats(greedy_logits[i].data(), vocab_size);
  }
  std::printf("]}\n");

  llama_batch_free(batch);
  llama_free(context);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
