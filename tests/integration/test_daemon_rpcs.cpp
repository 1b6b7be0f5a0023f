// The real daemon, started as a process on a temporary socket with fixture models: every RPC
// over the socket gives the results the engine gives when called directly.
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "engine/sched/sampler.h"
#include "engine/tasks/chat_template.h"
#include "tests/integration/daemon_test_helpers.h"
#include "tests/support/daemon_process.h"
#include "tests/support/loaded_fixture.h"

namespace {

using namespace sparkd;
using namespace sparkd::testing;

const std::vector<std::string> kTexts = {"the quick brown fox", "unified memory on one box",
                                         "a reranker scores pairs", "tokens per second"};

// What the engine generates greedily, ignoring EOS, for `text` tokenized as the daemon should.
struct GreedyRun {
  std::vector<int32_t> prompt_ids, new_ids;
};
GreedyRun greedy_run(const LoadedFixture& engine, const std::string& text, bool add_special_tokens,
                     int max_new_tokens) {
  auto ids = engine.model->tokenizer().encode(text, add_special_tokens);
  REQUIRE(ids.has_value());
  GreedyRun run;
  run.prompt_ids.assign(ids->ids.begin(), ids->ids.end());
  tasks::GenerateOptions options;
  options.max_new_tokens = max_new_tokens;
  options.ignore_eos = true;
  auto generated = tasks::generate_greedy(*engine.model, run.prompt_ids, options);
  REQUIRE(generated.has_value());
  run.new_ids = generated->new_ids;
  return run;
}

// The daemon's answer is that run: the same prompt length and the same tokens.
void check_generated(const v1::Response& response, const GreedyRun& expected) {
  REQUIRE(error_code(response) == v1::OK);
  CHECK(response.usage().prompt_tokens() == expected.prompt_ids.size());
  CHECK(std::vector<int32_t>(response.generate().token_ids().begin(),
                             response.generate().token_ids().end()) == expected.new_ids);
}

}  // namespace

TEST_CASE("Daemon: embed, rerank, generate, tokenize equal the engine's direct results",
          "[daemon]") {
  DaemonProcess daemon([](const auto& dir) {
    std::string config = fixture_config(dir);
    // The reranker is on_demand so that the admin section may unload it.
    const size_t rerank = config.find("name = \"rerank\"\n");
    config.insert(rerank, "residency = \"on_demand\"\n");
    return config;
  });
  api::Client client = daemon.connect();

  SECTION("embed") {
    LoadedFixture engine("bert_embed");
    auto expected = tasks::embed_texts(*engine.model, kTexts);
    REQUIRE(expected.has_value());
    v1::Response response = call_once(client, embed_request("embed", kTexts));
    REQUIRE(error_code(response) == v1::OK);
    REQUIRE(response.embed().embeddings_size() == 4);
    CHECK(response.embed().dimensions() == static_cast<uint32_t>(expected->dimensions));
    const auto dims = static_cast<size_t>(expected->dimensions);
    for (size_t i = 0; i < kTexts.size(); ++i) {
      const auto& values = response.embed().embeddings(static_cast<int>(i)).values();
      REQUIRE(static_cast<size_t>(values.size()) == dims);
      for (size_t d = 0; d < dims; ++d) {
        CHECK(values[static_cast<int>(d)] == Approx(expected->values[i * dims + d]).margin(1e-5));
      }
    }
    uint32_t tokens = 0;
    for (int32_t count : expected->token_counts) tokens += static_cast<uint32_t>(count);
    CHECK(response.usage().prompt_tokens() == tokens);
    CHECK(response.timing().total_ms() >= response.timing().compute_ms());
  }

  SECTION("rerank, sorted with top_n and documents") {
    LoadedFixture engine("bert_rerank");
    auto expected = tasks::rerank(*engine.model, "what is unified memory", kTexts);
    REQUIRE(expected.has_value());
    v1::Request request = rerank_request("rerank", "what is unified memory", kTexts);
    request.mutable_rerank()->set_top_n(3);
    request.mutable_rerank()->set_return_documents(true);
    v1::Response response = call_once(client, request);
    REQUIRE(error_code(response) == v1::OK);
    REQUIRE(response.rerank().results_size() == 3);
    float previous = 2.0f;
    for (const v1::RerankResult& result : response.rerank().results()) {
      CHECK(result.score() == Approx(expected->probabilities[result.index()]).margin(1e-6));
      CHECK(result.document() == kTexts[result.index()]);
      CHECK(result.score() <= previous);
      previous = result.score();
    }
    request.mutable_rerank()->set_raw_scores(true);
    request.set_id(0);
    response = call_once(client, request);
    CHECK(response.rerank().results(0).score() ==
          Approx(*std::max_element(expected->logits.begin(), expected->logits.end())).margin(1e-5));
  }

  SECTION("greedy generate, streamed and not, equals generate_greedy") {
    LoadedFixture engine("qwen3_f32");
    const std::string prompt = "The daemon serves";
    auto ids = engine.model->tokenizer().encode(prompt);
    REQUIRE(ids.has_value());
    const std::vector<int32_t> prompt_ids(ids->ids.begin(), ids->ids.end());
    tasks::GenerateOptions options;
    options.max_new_tokens = 12;
    options.ignore_eos = true;
    auto expected = tasks::generate_greedy(*engine.model, prompt_ids, options);
    REQUIRE(expected.has_value());

    v1::Request request = generate_request("gen", prompt, 12);
    request.mutable_generate()->set_ignore_eos(true);
    v1::Response whole = call_once(client, request);
    REQUIRE(error_code(whole) == v1::OK);
    CHECK(std::vector<int32_t>(whole.generate().token_ids().begin(),
                               whole.generate().token_ids().end()) == expected->new_ids);
    CHECK(whole.generate().finish_reason() == "length");
    CHECK(whole.usage().prompt_tokens() == prompt_ids.size());
    CHECK(whole.usage().completion_tokens() == 12);

    request.mutable_generate()->set_stream(true);
    request.set_id(0);
    auto chunks = client.call(request);
    REQUIRE(chunks.has_value());
    REQUIRE(chunks->size() >= 2);
    std::vector<int32_t> streamed;
    std::string text;
    for (const v1::Response& chunk : *chunks) {
      streamed.insert(streamed.end(), chunk.generate().token_ids().begin(),
                      chunk.generate().token_ids().end());
      text += chunk.generate().text();
    }
    CHECK(streamed == expected->new_ids);
    CHECK(text == whole.generate().text());
    CHECK(chunks->back().final());
    CHECK(chunks->back().timing().ttft_ms() > 0);
    for (size_t i = 0; i + 1 < chunks->size(); ++i) CHECK_FALSE((*chunks)[i].final());
  }

  SECTION("chat messages are rendered with the family's template (Qwen3: ChatML)") {
    LoadedFixture engine("qwen3_f32");
    const std::vector<tasks::ChatMessage> messages = {{"system", "Be brief."},
                                                      {"user", "What is unified memory?"}};
    auto rendered = tasks::render_chat(tasks::ChatTemplateKind::kChatMl, messages, true);
    REQUIRE(rendered.has_value());
    const GreedyRun expected = greedy_run(engine, *rendered, /*add_special_tokens=*/true, 8);

    v1::Request request = generate_request("gen", "", 8);
    auto* chat = request.mutable_generate()->mutable_chat();
    for (const auto& m : messages) {
      v1::ChatMessage* message = chat->add_messages();
      message->set_role(m.role);
      message->set_content(m.content);
    }
    request.mutable_generate()->set_ignore_eos(true);
    check_generated(call_once(client, request), expected);
    // A conversation the template refuses is the client's error.
    chat->mutable_messages(1)->set_role("narrator");
    request.set_id(0);
    CHECK(error_code(call_once(client, request)) == v1::INVALID_ARGUMENT);
  }

  SECTION("logprobs: one entry per token, the greedy token first among its top-n") {
    v1::Request request = generate_request("gen", "The daemon serves", 6);
    request.mutable_generate()->set_ignore_eos(true);
    request.mutable_generate()->mutable_sampling()->set_logprobs(3);
    for (const bool stream : {false, true}) {
      request.mutable_generate()->set_stream(stream);
      request.set_id(0);
      auto responses = client.call(request);
      REQUIRE(responses.has_value());
      std::vector<v1::TokenLogprob> logprobs;
      std::vector<int32_t> tokens;
      for (const v1::Response& r : *responses) {
        REQUIRE(error_code(r) == v1::OK);
        logprobs.insert(logprobs.end(), r.generate().logprobs().begin(),
                        r.generate().logprobs().end());
        tokens.insert(tokens.end(), r.generate().token_ids().begin(),
                      r.generate().token_ids().end());
      }
      INFO("stream " << stream);
      REQUIRE(logprobs.size() == 6);
      for (size_t i = 0; i < logprobs.size(); ++i) {
        CHECK(logprobs[i].token_id() == tokens[i]);
        REQUIRE(logprobs[i].top_size() == 3);
        CHECK(logprobs[i].top(0).token_id() == tokens[i]);
        CHECK(logprobs[i].logprob() == logprobs[i].top(0).logprob());
        CHECK(logprobs[i].logprob() <= 0.0f);
      }
    }
  }

  SECTION("tokenize and detokenize") {
    LoadedFixture engine("qwen3_f32");
    v1::Request request;
    request.mutable_tokenize()->set_model("gen");
    request.mutable_tokenize()->set_text("héllo wörld");
    request.mutable_tokenize()->set_return_tokens(true);
    v1::Response response = call_once(client, request);
    auto expected = engine.model->tokenizer().encode("héllo wörld");
    REQUIRE(expected.has_value());
    CHECK(std::vector<uint32_t>(response.tokenize().ids().begin(),
                                response.tokenize().ids().end()) == expected->ids);
    CHECK(std::vector<std::string>(response.tokenize().tokens().begin(),
                                   response.tokenize().tokens().end()) == expected->tokens);
    v1::Request back;
    back.mutable_detokenize()->set_model("gen");
    back.mutable_detokenize()->mutable_ids()->Add(response.tokenize().ids().begin(),
                                                  response.tokenize().ids().end());
    CHECK(call_once(client, back).detokenize().text() == "héllo wörld");
  }

  SECTION("models, status, health") {
    v1::Request models;
    models.mutable_list_models();
    v1::Response listed = call_once(client, models);
    REQUIRE(listed.list_models().models_size() == 3);
    std::map<std::string, std::string> tasks;
    for (const auto& m : listed.list_models().models()) {
      tasks[m.name()] = m.task();
      // The on_demand reranker has had no request: listed, with its task, not loaded.
      const bool on_demand = m.name() == "rerank";
      CHECK(m.state() == (on_demand ? "unloaded" : "ready"));
      CHECK((m.weights_bytes() > 0) == !on_demand);
    }
    CHECK(tasks == std::map<std::string, std::string>{
                       {"embed", "embed"}, {"rerank", "rerank"}, {"gen", "generate"}});
    v1::Request health;
    health.mutable_health();
    v1::Response healthy = call_once(client, health);
    CHECK(healthy.health().ready());
    CHECK(healthy.health().status() == "serving");
    v1::Request status;
    status.mutable_status();
    v1::Response st = call_once(client, status);
    CHECK(st.status().models_size() == 3);
    CHECK(st.status().connections() >= 1);
    CHECK(st.status().mem_available_bytes() > 0);
  }

  SECTION("admin: unload, load by config name, load by path, reload") {
    v1::Request unload_pinned;
    unload_pinned.mutable_unload()->set_name("embed");
    v1::Response refused = call_once(client, unload_pinned);
    CHECK(error_code(refused) == v1::FAILED_PRECONDITION);
    CHECK_THAT(refused.error().message(), Catch::Contains("pinned"));
    v1::Request unload;
    unload.mutable_unload()->set_name("rerank");
    // on_demand and never used: not loaded, nothing to unload.
    CHECK(error_code(call_once(client, unload)) == v1::FAILED_PRECONDITION);
    // Its first request loads it; unloaded, it stays listed and its next request loads it again.
    CHECK(error_code(call_once(client, rerank_request("rerank", "q", {"d"}))) == v1::OK);
    CHECK(error_code(call_once(client, unload)) == v1::OK);
    CHECK(error_code(call_once(client, rerank_request("rerank", "q", {"d"}))) == v1::OK);
    CHECK(error_code(call_once(client, unload)) == v1::OK);
    v1::Request load;
    load.mutable_load()->set_name("rerank");
    CHECK(error_code(call_once(client, load)) == v1::OK);
    CHECK(error_code(call_once(client, rerank_request("rerank", "q", {"d"}))) == v1::OK);
    v1::Request load_path;
    load_path.mutable_load()->set_name("xlmr");
    load_path.mutable_load()->set_path(fixture_model_dir("xlmr_embed"));
    CHECK(error_code(call_once(client, load_path)) == v1::OK);
    CHECK(error_code(call_once(client, embed_request("xlmr", {"hello"}))) == v1::OK);
    v1::Request reload;
    reload.mutable_reload();
    v1::Response reloaded = call_once(client, reload);
    // A reload applies the config; a model an admin loaded from a path is not the config's, so
    // it stays.
    CHECK(error_code(reloaded) == v1::OK);
    CHECK(reloaded.admin().message() == "no model changed");
    CHECK(error_code(call_once(client, embed_request("xlmr", {"hello"}))) == v1::OK);
    // It was loaded on_demand (the default for admin loads), so it can be unloaded again.
    v1::Request unload_xlmr;
    unload_xlmr.mutable_unload()->set_name("xlmr");
    CHECK(error_code(call_once(client, unload_xlmr)) == v1::OK);
    CHECK(error_code(call_once(client, embed_request("xlmr", {"hello"}))) == v1::NOT_FOUND);
  }
  daemon.signal(SIGTERM);
  CHECK(daemon.wait_exit() == 0);
}

// A model that ships its own chat template (chat_template.jinja, as transformers saves it) is
// chatted with through it: the prompt is what the template renders, tokenized without adding
// special tokens (the template writes its own), and its raise_exception reaches the client.
TEST_CASE("Daemon: chat renders the model's own Jinja template", "[daemon]") {
  namespace fs = std::filesystem;
  const std::string own_template =
      "{%- for message in messages %}"
      "{%- if message['role'] == 'narrator' %}"
      "{{- raise_exception('This model does not take narrator messages.') }}"
      "{%- endif %}"
      "{%- if loop.first and message['role'] != 'system' %}"
      "{{- '<|im_start|>system\\nYou are a test assistant.<|im_end|>\\n' }}"
      "{%- endif %}"
      "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>\\n' "
      "}}"
      "{%- endfor %}"
      "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";
  DaemonProcess daemon([&](const fs::path& dir) {
    const fs::path model = dir / "own_template_model";
    fs::copy(fixture_model_dir("qwen3_f32"), model, fs::copy_options::recursive);
    std::ofstream(model / "chat_template.jinja") << own_template;
    return fixture_config(
        dir, "",
        "[[models]]\nname = \"own\"\npath = \"" + model.string() + "\"\nkv_max = \"16MiB\"\n");
  });
  api::Client client = daemon.connect();

  LoadedFixture engine("qwen3_f32");
  const std::string expected_prompt =
      "<|im_start|>system\nYou are a test assistant.<|im_end|>\n"
      "<|im_start|>user\nWhat is unified memory?<|im_end|>\n<|im_start|>assistant\n";
  const GreedyRun expected = greedy_run(engine, expected_prompt, /*add_special_tokens=*/false, 8);

  v1::Request request = generate_request("own", "", 8);
  v1::ChatMessage* message = request.mutable_generate()->mutable_chat()->add_messages();
  message->set_role("user");
  message->set_content("  What is unified memory?\n");  // the template trims it
  request.mutable_generate()->set_ignore_eos(true);
  check_generated(call_once(client, request), expected);

  message->set_role("narrator");
  request.set_id(0);
  const v1::Response response = call_once(client, request);
  CHECK(error_code(response) == v1::INVALID_ARGUMENT);
  CHECK_THAT(response.error().message(),
             Catch::Contains("This model does not take narrator messages."));
  CHECK_THAT(response.error().message(), Catch::Contains("chat_template.jinja"));
}
