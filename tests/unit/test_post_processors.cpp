// Post-processors built from the JSON the Python `tokenizers` 0.23.3 library serializes
// (json.loads(tok.to_str())["post_processor"]), checked against
// `tok.post_process(a, pair=b, add_special_tokens=...)`. Inputs come from a WordLevel
// model over "[UNK] [CLS] [SEP] <s> </s> a b c d e f g h i j k l m n o p" (ids 0..20) with
// a Whitespace pre-tokenizer: `tok.encode("a b c", add_special_tokens=False)` gives ids
// 5 6 7, offsets (0,1) (2,3) (4,5), type ids 0 (the pair too, since it is encoded alone).
#include <catch2/catch.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/tokenizer/encoding.h"
#include "engine/tokenizer/error.h"
#include "engine/tokenizer/post_processors.h"
#include "tests/support/tokenizer_helpers.h"

namespace {

using sparkd::testing::error_of;
using sparkd::testing::letters;

using sparkd::tokenizer::ConfigError;
using sparkd::tokenizer::EncodeError;
using sparkd::tokenizer::Encoding;
using sparkd::tokenizer::make_post_processor;
using sparkd::tokenizer::Offsets;
using sparkd::tokenizer::PostProcessor;
using sparkd::tokenizer::TruncationDirection;
using sparkd::tokenizer::TruncationParams;
using sparkd::tokenizer::TruncationStrategy;
using Ids = std::vector<uint32_t>;
using Words = std::vector<std::optional<uint32_t>>;
using OffsetList = std::vector<Offsets>;
using Strings = std::vector<std::string>;
constexpr std::nullopt_t kNone = std::nullopt;

// An encoding with explicit ids, tokens and offsets (words 0.., type ids 0).
Encoding raw(Ids ids, Strings tokens, OffsetList offsets) {
  Encoding e;
  e.ids = std::move(ids);
  e.tokens = std::move(tokens);
  e.offsets = std::move(offsets);
  for (uint32_t i = 0; i < e.ids.size(); ++i) e.words.emplace_back(i);
  e.type_ids.assign(e.ids.size(), 0);
  e.special_tokens_mask.assign(e.ids.size(), 0);
  e.attention_mask.assign(e.ids.size(), 1);
  return e;
}

// Python's Encoding.sequence_ids, with -1 for None.
std::vector<int> sequence_ids(const Encoding& e) {
  std::vector<int> out(e.size(), -1);
  const size_t n = e.sequence_ranges.empty() ? 1 : e.sequence_ranges.size();
  for (size_t s = 0; s < n; ++s) {
    auto it = e.sequence_ranges.find(s);
    const auto range =
        it == e.sequence_ranges.end() ? std::pair<size_t, size_t>{0, e.size()} : it->second;
    for (size_t i = range.first; i < range.second; ++i) out[i] = static_cast<int>(s);
  }
  return out;
}

std::vector<Ids> overflow_ids(const Encoding& e) {
  std::vector<Ids> out;
  for (const Encoding& o : e.overflowing) out.push_back(o.ids);
  return out;
}

// Tokenizer.post_process: truncation (leaving room for the special tokens when they are
// added), then the processor.
Encoding post_process(const PostProcessor& pp, Encoding a, std::optional<Encoding> b,
                      bool add_special_tokens = true,
                      std::optional<TruncationParams> truncation = std::nullopt) {
  if (truncation) {
    const size_t added = pp.added_tokens(b.has_value());
    if (add_special_tokens && added > 0) truncation->max_length -= added;
    sparkd::tokenizer::truncate_encodings(&a, b ? &*b : nullptr, *truncation);
  }
  return pp.process(std::move(a), std::move(b), add_special_tokens);
}

TruncationParams longest_first(size_t max_length, size_t stride) {
  TruncationParams p;
  p.max_length = max_length;
  p.stride = stride;
  p.strategy = TruncationStrategy::kLongestFirst;
  p.direction = TruncationDirection::kRight;
  return p;
}

// processors.TemplateProcessing(single="[CLS] $A [SEP]",
//     pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
const char* kBertTemplate = R"({"type": "TemplateProcessing",
  "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
             {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
  "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
           {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
           {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
  "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]},
                     "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}}})";

std::unique_ptr<PostProcessor> load(const char* json) {
  return make_post_processor(nlohmann::json::parse(json));
}

}  // namespace

TEST_CASE("TemplateProcessing single and pair", "[post_processors]") {
  auto pp = load(kBertTemplate);
  // num_special_tokens_to_add(False), (True)
  CHECK(pp->added_tokens(false) == 2);
  CHECK(pp->added_tokens(true) == 3);

  // tok.post_process(encode("a b c"))
  Encoding single = post_process(*pp, letters("a b c"), std::nullopt);
  CHECK(single.ids == Ids{1, 5, 6, 7, 2});
  CHECK(single.tokens == Strings{"[CLS]", "a", "b", "c", "[SEP]"});
  CHECK(single.type_ids == Ids{0, 0, 0, 0, 0});
  CHECK(sequence_ids(single) == std::vector<int>{-1, 0, 0, 0, -1});
  CHECK(single.offsets == OffsetList{{0, 0}, {0, 1}, {2, 3}, {4, 5}, {0, 0}});
  CHECK(single.words == Words{kNone, 0, 1, 2, kNone});
  CHECK(single.special_tokens_mask == Ids{1, 0, 0, 0, 1});
  CHECK(single.attention_mask == Ids{1, 1, 1, 1, 1});

  // tok.post_process(encode("a b c"), pair=encode("d e"))
  Encoding pair = post_process(*pp, letters("a b c"), letters("d e"));
  CHECK(pair.ids == Ids{1, 5, 6, 7, 2, 8, 9, 2});
  CHECK(pair.type_ids == Ids{0, 0, 0, 0, 0, 1, 1, 1});
  CHECK(sequence_ids(pair) == std::vector<int>{-1, 0, 0, 0, -1, 1, 1, -1});
  CHECK(pair.offsets == OffsetList{{0, 0}, {0, 1}, {2, 3}, {4, 5}, {0, 0}, {0, 1}, {2, 3}, {0, 0}});
  CHECK(pair.words == Words{kNone, 0, 1, 2, kNone, 0, 1, kNone});
  CHECK(pair.special_tokens_mask == Ids{1, 0, 0, 0, 1, 0, 0, 1});

  // add_special_tokens=False: no tokens added, but the template's type ids still apply.
  Encoding bare = post_process(*pp, letters("a b c"), letters("d e"), false);
  CHECK(bare.ids == Ids{5, 6, 7, 8, 9});
  CHECK(bare.type_ids == Ids{0, 0, 0, 1, 1});
  CHECK(sequence_ids(bare) == std::vector<int>{0, 0, 0, 1, 1});
  CHECK(bare.special_tokens_mask == Ids{0, 0, 0, 0, 0});
}

TEST_CASE("TemplateProcessing with overflowing", "[post_processors]") {
  auto pp = load(kBertTemplate);
  // enable_truncation(8, stride=1, strategy="only_first");
  // post_process(encode("a b c d e f"), pair=encode("d e"))
  TruncationParams p = longest_first(8, 1);
  p.strategy = TruncationStrategy::kOnlyFirst;
  Encoding r = post_process(*pp, letters("a b c d e f"), letters("d e"), true, p);
  CHECK(r.ids == Ids{1, 5, 6, 7, 2, 8, 9, 2});
  CHECK(overflow_ids(r) == std::vector<Ids>{{1, 7, 8, 9, 2, 8, 9, 2}, {1, 9, 10, 2, 8, 9, 2}});
  CHECK(r.overflowing[0].type_ids == Ids{0, 0, 0, 0, 0, 1, 1, 1});
  CHECK(sequence_ids(r.overflowing[0]) == std::vector<int>{-1, 0, 0, 0, -1, 1, 1, -1});
  CHECK(r.overflowing[1].special_tokens_mask == Ids{1, 0, 0, 1, 0, 0, 1});
  CHECK(sequence_ids(r.overflowing[1]) == std::vector<int>{-1, 0, 0, -1, 1, 1, -1});
}

TEST_CASE("TemplateProcessing multi-token specials, reordering and type ids", "[post_processors]") {
  // TemplateProcessing(single="$0 [EOS]:2", pair="[BOS] $B:1 [EOS] $A:3",
  //   special_tokens=[{"id": "[BOS]", "ids": [3, 1], "tokens": ["<s>", "[CLS]"]}, ("[EOS]", 4)])
  auto pp = load(R"({"type": "TemplateProcessing",
    "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[EOS]", "type_id": 2}}],
    "pair": [{"SpecialToken": {"id": "[BOS]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
             {"SpecialToken": {"id": "[EOS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 3}}],
    "special_tokens": {"[BOS]": {"id": "[BOS]", "ids": [3, 1], "tokens": ["<s>", "[CLS]"]},
                       "[EOS]": {"id": "[EOS]", "ids": [4], "tokens": ["[EOS]"]}}})");
  CHECK(pp->added_tokens(false) == 1);
  CHECK(pp->added_tokens(true) == 3);

  Encoding single = post_process(*pp, letters("a b"), std::nullopt);
  CHECK(single.ids == Ids{5, 6, 4});
  CHECK(single.type_ids == Ids{0, 0, 2});
  CHECK(sequence_ids(single) == std::vector<int>{0, 0, -1});

  Encoding pair = post_process(*pp, letters("a b"), letters("c"));
  CHECK(pair.ids == Ids{3, 1, 7, 4, 5, 6});
  CHECK(pair.tokens == Strings{"<s>", "[CLS]", "c", "[EOS]", "a", "b"});
  CHECK(pair.type_ids == Ids{0, 0, 1, 0, 3, 3});
  CHECK(sequence_ids(pair) == std::vector<int>{-1, -1, 1, -1, 0, 0});
  CHECK(pair.special_tokens_mask == Ids{1, 1, 0, 1, 0, 0});
  CHECK(pair.offsets == OffsetList{{0, 0}, {0, 0}, {0, 1}, {0, 0}, {0, 1}, {2, 3}});

  Encoding bare = post_process(*pp, letters("a b"), letters("c"), false);
  CHECK(bare.ids == Ids{7, 5, 6});
  CHECK(bare.type_ids == Ids{1, 3, 3});
  CHECK(sequence_ids(bare) == std::vector<int>{1, 0, 0});
}

TEST_CASE("TemplateProcessing string forms", "[post_processors]") {
  // The same template as kBertTemplate, written as strings (Python's constructor form).
  auto from_string = load(R"({"type": "TemplateProcessing",
    "single": "[CLS] $A [SEP]",
    "pair": ["[CLS]:0", "$0", "[SEP]", "$B:1", "[SEP]:1"],
    "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]},
                       "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}}})");
  Encoding pair = post_process(*from_string, letters("a b c"), letters("d e"));
  CHECK(pair.ids == Ids{1, 5, 6, 7, 2, 8, 9, 2});
  CHECK(pair.type_ids == Ids{0, 0, 0, 0, 0, 1, 1, 1});
  CHECK(from_string->added_tokens(true) == 3);

  // "$1" is sequence A with type id 1; "$b" is B.
  auto numbered = load(R"({"type": "TemplateProcessing", "single": "$1",
    "pair": "$ $b:2", "special_tokens": {}})");
  CHECK(post_process(*numbered, letters("a"), std::nullopt).type_ids == Ids{1});
  CHECK(post_process(*numbered, letters("a"), letters("b c")).type_ids == Ids{0, 2, 2});

  CHECK_THAT(error_of<ConfigError>([&] {
               load(R"({"type": "TemplateProcessing", "single": "$C:1", "pair": "$A $B",
               "special_tokens": {}})");
             }),
             Catch::Matchers::Contains("Cannot build Piece from string \"$C:1\""));
  CHECK_THROWS_AS(load(R"({"type": "TemplateProcessing", "single": "$A:", "pair": "$A $B",
                           "special_tokens": {}})"),
                  ConfigError);
  CHECK_THROWS_AS(load(R"({"type": "TemplateProcessing", "single": "a:1:2", "pair": "$A $B",
                           "special_tokens": {}})"),
                  ConfigError);
}

TEST_CASE("TemplateProcessing problems surface when encoding", "[post_processors]") {
  // The library loads these and panics only when it needs the missing piece
  // ("no entry found for key" / "index out of bounds").
  auto missing = load(R"({"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "[X]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    "pair": [{"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {}})");
  CHECK(missing->added_tokens(false) == 0);
  CHECK(post_process(*missing, letters("a"), std::nullopt, false).ids == Ids{5});
  CHECK_THROWS_AS(post_process(*missing, letters("a"), std::nullopt, true), EncodeError);
  // A pair template that ignores B drops it.
  CHECK(post_process(*missing, letters("a"), letters("b"), false).ids == Ids{5});

  auto single_b = load(R"({"type": "TemplateProcessing",
    "single": [{"Sequence": {"id": "B", "type_id": 0}}],
    "pair": [{"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {}})");
  CHECK_THROWS_AS(post_process(*single_b, letters("a"), std::nullopt, false), EncodeError);
}

TEST_CASE("BertProcessing", "[post_processors]") {
  // processors.BertProcessing(("[SEP]", 2), ("[CLS]", 1))
  auto pp = load(R"({"type": "BertProcessing", "sep": ["[SEP]", 2], "cls": ["[CLS]", 1]})");
  CHECK(pp->added_tokens(false) == 2);
  CHECK(pp->added_tokens(true) == 3);

  Encoding single = post_process(*pp, letters("a b c"), std::nullopt);
  CHECK(single.ids == Ids{1, 5, 6, 7, 2});
  CHECK(sequence_ids(single) == std::vector<int>{-1, 0, 0, 0, -1});
  CHECK(single.words == Words{kNone, 0, 1, 2, kNone});

  Encoding pair = post_process(*pp, letters("a b c"), letters("d e"));
  CHECK(pair.ids == Ids{1, 5, 6, 7, 2, 8, 9, 2});
  CHECK(pair.tokens == Strings{"[CLS]", "a", "b", "c", "[SEP]", "d", "e", "[SEP]"});
  CHECK(pair.type_ids == Ids{0, 0, 0, 0, 0, 1, 1, 1});
  CHECK(sequence_ids(pair) == std::vector<int>{-1, 0, 0, 0, -1, 1, 1, -1});
  CHECK(pair.special_tokens_mask == Ids{1, 0, 0, 0, 1, 0, 0, 1});
  CHECK(pair.attention_mask == Ids{1, 1, 1, 1, 1, 1, 1, 1});

  Encoding bare = post_process(*pp, letters("a b c"), letters("d e"), false);
  CHECK(bare.ids == Ids{5, 6, 7, 8, 9});
  CHECK(bare.type_ids == Ids{0, 0, 0, 1, 1});
  CHECK(sequence_ids(bare) == std::vector<int>{0, 0, 0, 1, 1});

  // enable_truncation(7, stride=1); post_process(encode("a b c d e f"), pair=encode("d e f"))
  Encoding r =
      post_process(*pp, letters("a b c d e f"), letters("d e f"), true, longest_first(7, 1));
  CHECK(r.ids == Ids{1, 5, 6, 2, 8, 9, 2});
  CHECK(r.type_ids == Ids{0, 0, 0, 0, 1, 1, 1});
  CHECK(overflow_ids(r) == std::vector<Ids>{{1, 6, 7, 2, 8, 9, 2},
                                            {1, 6, 7, 2, 9, 10, 2},
                                            {1, 7, 8, 2, 8, 9, 2},
                                            {1, 7, 8, 2, 9, 10, 2},
                                            {1, 8, 9, 2, 8, 9, 2},
                                            {1, 8, 9, 2, 9, 10, 2},
                                            {1, 9, 10, 2, 8, 9, 2},
                                            {1, 9, 10, 2, 9, 10, 2},
                                            {1, 5, 6, 2, 9, 10, 2}});
  // The pair's overflowing part keeps its original type ids (0 here): only the last
  // [SEP] gets 1.
  CHECK(r.overflowing[1].type_ids == Ids{0, 0, 0, 0, 0, 0, 1});
  CHECK(r.overflowing[0].type_ids == Ids{0, 0, 0, 0, 1, 1, 1});
  CHECK(sequence_ids(r.overflowing[1]) == std::vector<int>{-1, 0, 0, -1, 1, 1, -1});
  CHECK(overflow_ids(r.overflowing[0]) == std::vector<Ids>{{1, 6, 7, 2, 9, 10, 2}});
  CHECK(r.overflowing[0].overflowing[0].type_ids == Ids{0, 0, 0, 0, 0, 0, 1});
  CHECK(overflow_ids(r.overflowing[8]) == std::vector<Ids>{{1, 6, 7, 2, 9, 10, 2},
                                                           {1, 7, 8, 2, 9, 10, 2},
                                                           {1, 8, 9, 2, 9, 10, 2},
                                                           {1, 9, 10, 2, 9, 10, 2}});
}

TEST_CASE("RobertaProcessing", "[post_processors]") {
  // processors.RobertaProcessing(("</s>", 4), ("<s>", 3))
  auto pp = load(R"({"type": "RobertaProcessing", "sep": ["</s>", 4], "cls": ["<s>", 3],
                     "trim_offsets": true, "add_prefix_space": true})");
  CHECK(pp->added_tokens(false) == 2);
  CHECK(pp->added_tokens(true) == 4);

  Encoding pair = post_process(*pp, letters("a b c"), letters("d e"));
  CHECK(pair.ids == Ids{3, 5, 6, 7, 4, 4, 8, 9, 4});
  CHECK(pair.type_ids == Ids{0, 0, 0, 0, 0, 0, 0, 0, 0});
  CHECK(sequence_ids(pair) == std::vector<int>{-1, 0, 0, 0, -1, -1, 1, 1, -1});
  CHECK(pair.special_tokens_mask == Ids{1, 0, 0, 0, 1, 1, 0, 0, 1});
  CHECK(pair.words == Words{kNone, 0, 1, 2, kNone, kNone, 0, 1, kNone});

  // Without special tokens every type id is still 0.
  Encoding bare = post_process(*pp, letters("a b c"), letters("d e"), false);
  CHECK(bare.ids == Ids{5, 6, 7, 8, 9});
  CHECK(bare.type_ids == Ids{0, 0, 0, 0, 0});
  CHECK(sequence_ids(bare) == std::vector<int>{0, 0, 0, 1, 1});

  // enable_truncation(8, stride=1); post_process(encode("a b c d e f"), pair=encode("d e f"))
  Encoding r =
      post_process(*pp, letters("a b c d e f"), letters("d e f"), true, longest_first(8, 1));
  CHECK(r.ids == Ids{3, 5, 6, 4, 4, 8, 9, 4});
  REQUIRE(r.overflowing.size() == 9);
  CHECK(r.overflowing[1].ids == Ids{3, 6, 7, 4, 4, 9, 10, 4});
  CHECK(r.overflowing[1].type_ids == Ids{0, 0, 0, 0, 0, 0, 0, 0});
  CHECK(sequence_ids(r.overflowing[1]) == std::vector<int>{-1, 0, 0, -1, -1, 1, 1, -1});
  CHECK(r.overflowing[8].ids == Ids{3, 5, 6, 4, 4, 9, 10, 4});
}

TEST_CASE("Roberta and ByteLevel trim offsets", "[post_processors]") {
  // A WordLevel model over ['<s>', '</s>', 'a', 'Ġb', 'Ġ', 'Ġc', 'Ġa', 'ĠĠ', 'b', 'c'] with
  // pre_tokenizers.ByteLevel(add_prefix_space=False): encode("a b  c") and encode("b c").
  const Encoding a =
      raw({2, 3, 4, 5}, {"a", "\u0120b", "\u0120", "\u0120c"}, {{0, 1}, {1, 3}, {3, 4}, {4, 6}});
  const Encoding b = raw({8, 5}, {"b", "\u0120c"}, {{0, 1}, {1, 3}});
  auto roberta = load(R"({"type": "RobertaProcessing", "sep": ["</s>", 1], "cls": ["<s>", 0],
                          "trim_offsets": true, "add_prefix_space": false})");
  Encoding r = post_process(*roberta, a, b);
  CHECK(r.ids == Ids{0, 2, 3, 4, 5, 1, 1, 8, 5, 1});
  CHECK(r.offsets ==
        OffsetList{{0, 0}, {0, 1}, {2, 3}, {4, 4}, {5, 6}, {0, 0}, {0, 0}, {0, 1}, {2, 3}, {0, 0}});
  CHECK(post_process(*roberta, a, std::nullopt, false).offsets ==
        OffsetList{{0, 1}, {2, 3}, {4, 4}, {5, 6}});

  auto byte_level = load(R"({"type": "ByteLevel", "add_prefix_space": false,
                             "trim_offsets": true, "use_regex": true})");
  CHECK(byte_level->added_tokens(true) == 0);
  Encoding bl = post_process(*byte_level, a, b);
  CHECK(bl.ids == Ids{2, 3, 4, 5, 8, 5});
  CHECK(bl.type_ids == Ids{0, 0, 0, 0, 1, 1});
  CHECK(sequence_ids(bl) == std::vector<int>{0, 0, 0, 0, 1, 1});
  CHECK(bl.offsets == OffsetList{{0, 1}, {2, 3}, {4, 4}, {5, 6}, {0, 1}, {2, 3}});

  // Same vocab with add_prefix_space=True: encode("a   c") and encode("b c"). The first
  // token's single leading space was added by the pre-tokenizer, so it is kept.
  const Encoding a2 =
      raw({6, 7, 5}, {"\u0120a", "\u0120\u0120", "\u0120c"}, {{0, 1}, {1, 3}, {3, 5}});
  const Encoding b2 = raw({3, 5}, {"\u0120b", "\u0120c"}, {{0, 1}, {1, 3}});
  auto roberta_aps = load(R"({"type": "RobertaProcessing", "sep": ["</s>", 1],
      "cls": ["<s>", 0], "trim_offsets": true, "add_prefix_space": true})");
  CHECK(post_process(*roberta_aps, a2, b2).offsets ==
        OffsetList{{0, 0}, {0, 1}, {3, 3}, {4, 5}, {0, 0}, {0, 0}, {0, 1}, {2, 3}, {0, 0}});
  auto byte_level_aps = load(R"({"type": "ByteLevel", "add_prefix_space": true,
                                 "trim_offsets": true, "use_regex": true})");
  CHECK(post_process(*byte_level_aps, a2, b2).offsets ==
        OffsetList{{0, 1}, {3, 3}, {4, 5}, {0, 1}, {2, 3}});

  // trim_offsets=False leaves offsets alone.
  auto untrimmed = load(R"({"type": "ByteLevel", "add_prefix_space": true,
                            "trim_offsets": false})");
  CHECK(post_process(*untrimmed, a, std::nullopt).offsets == a.offsets);
}

TEST_CASE("Sequence post-processor", "[post_processors]") {
  // processors.Sequence([processors.ByteLevel(trim_offsets=False), <kBertTemplate>])
  auto pp = load(R"({"type": "Sequence", "processors": [
    {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
    {"type": "TemplateProcessing",
     "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
     "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
              {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
              {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
     "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]},
                        "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}}}]})");
  CHECK(pp->added_tokens(false) == 2);
  CHECK(pp->added_tokens(true) == 3);
  Encoding pair = post_process(*pp, letters("a b c"), letters("d e"));
  CHECK(pair.ids == Ids{1, 5, 6, 7, 2, 8, 9, 2});
  CHECK(pair.type_ids == Ids{0, 0, 0, 0, 0, 1, 1, 1});
  CHECK(sequence_ids(pair) == std::vector<int>{-1, 0, 0, 0, -1, 1, 1, -1});

  // processors.Sequence([BertProcessing(("[SEP]", 2), ("[CLS]", 1)),
  //                      TemplateProcessing(single="$0", pair="$A $B:1", special_tokens=[])]):
  // the template re-labels Bert's whole output, special tokens included.
  auto chained = load(R"({"type": "Sequence", "processors": [
    {"type": "BertProcessing", "sep": ["[SEP]", 2], "cls": ["[CLS]", 1]},
    {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}}],
     "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
     "special_tokens": {}}]})");
  CHECK(chained->added_tokens(true) == 3);
  Encoding r = post_process(*chained, letters("a b c"), letters("d e"));
  CHECK(r.ids == Ids{1, 5, 6, 7, 2, 8, 9, 2});
  CHECK(r.type_ids == Ids{0, 0, 0, 0, 0, 1, 1, 1});
  CHECK(sequence_ids(r) == std::vector<int>{0, 0, 0, 0, 0, 1, 1, 1});
  CHECK(r.special_tokens_mask == Ids{1, 0, 0, 0, 1, 0, 0, 1});
}

TEST_CASE("default_post_process", "[post_processors]") {
  // Tokenizer without a post-processor: post_process(encode("a b c"), pair=encode("d e"))
  Encoding pair = sparkd::tokenizer::default_post_process(letters("a b c"), letters("d e"));
  CHECK(pair.ids == Ids{5, 6, 7, 8, 9});
  CHECK(pair.type_ids == Ids{0, 0, 0, 0, 0});
  CHECK(sequence_ids(pair) == std::vector<int>{0, 0, 0, 1, 1});
  CHECK(pair.offsets == OffsetList{{0, 1}, {2, 3}, {4, 5}, {0, 1}, {2, 3}});

  Encoding single = sparkd::tokenizer::default_post_process(letters("a b c"), std::nullopt);
  CHECK(single.ids == Ids{5, 6, 7});
  CHECK(single.sequence_ranges.empty());
  CHECK(sequence_ids(single) == std::vector<int>{0, 0, 0});
}

TEST_CASE("post-processor config errors", "[post_processors]") {
  CHECK_THAT(error_of<ConfigError>([&] { load(R"({"type": "Foo"})"); }),
             Catch::Matchers::Contains("\"Foo\"") &&
                 Catch::Matchers::Contains("TemplateProcessing") &&
                 Catch::Matchers::Contains("RobertaProcessing"));
  CHECK_THAT(
      error_of<ConfigError>([&] { load(R"({"type": "BertProcessing", "sep": ["[SEP]", 2]})"); }),
      Catch::Matchers::Contains("cls"));
  CHECK_THAT(error_of<ConfigError>([&] {
               load(R"({"type": "RobertaProcessing", "sep": ["</s>", 2],
                                "cls": ["<s>", 0], "trim_offsets": true})");
             }),
             Catch::Matchers::Contains("add_prefix_space"));
  CHECK_THAT(error_of<ConfigError>([&] {
               load(R"({"type": "BertProcessing", "sep": ["[SEP]", -2],
                                "cls": ["[CLS]", 1]})");
             }),
             Catch::Matchers::Contains("sep"));
  CHECK_THAT(error_of<ConfigError>([&] {
               load(R"({"type": "TemplateProcessing", "single": "$A", "pair": "$A $B"})");
             }),
             Catch::Matchers::Contains("special_tokens"));
  CHECK_THAT(error_of<ConfigError>([&] {
               load(R"({"type": "TemplateProcessing", "single": "$A", "pair": "$A $B",
      "special_tokens": {"X": {"id": "X", "ids": [1, 2], "tokens": ["X"]}}})");
             }),
             Catch::Matchers::Contains("same length"));
  CHECK_THAT(error_of<ConfigError>([&] { load(R"({"type": "Sequence"})"); }),
             Catch::Matchers::Contains("processors"));
  CHECK_THROWS_AS(load(R"({"add_prefix_space": true, "trim_offsets": false})"), ConfigError);

  // Without "type", the library recognises Bert and Roberta by their fields.
  auto untyped = load(R"({"sep": ["[SEP]", 2], "cls": ["[CLS]", 1]})");
  CHECK(untyped->added_tokens(true) == 3);
  auto untyped_roberta = load(R"({"sep": ["</s>", 2], "cls": ["<s>", 0],
                                  "trim_offsets": true, "add_prefix_space": true})");
  CHECK(untyped_roberta->added_tokens(true) == 4);
}
