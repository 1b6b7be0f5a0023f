// Encoding truncation (stride, overflowing, direction), merging, and truncate_encodings
// under every strategy. Expected values come from the Python `tokenizers` 0.23.3 library:
// a WordLevel model over the vocab
//   "[UNK] [CLS] [SEP] <s> </s> a b c d e f g h i j k l m n o p" (ids 0..20)
// with a Whitespace pre-tokenizer, so "a b c" encodes to ids 5 6 7 with offsets (0,1)
// (2,3) (4,5). `tok.encode(text, add_special_tokens=False)` builds the inputs below.
#include <catch2/catch.hpp>
#include <cstdint>
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

using sparkd::tokenizer::EncodeError;
using sparkd::tokenizer::Encoding;
using sparkd::tokenizer::Offsets;
using sparkd::tokenizer::TruncationDirection;
using sparkd::tokenizer::TruncationParams;
using sparkd::tokenizer::TruncationStrategy;
using Ids = std::vector<uint32_t>;
using OffsetList = std::vector<Offsets>;

// Python's Encoding.sequence_ids (get_sequence_ids in encoding.rs), with -1 for None.
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

TruncationParams params(TruncationStrategy strategy, size_t max_length, size_t stride,
                        TruncationDirection direction) {
  TruncationParams p;
  p.strategy = strategy;
  p.max_length = max_length;
  p.stride = stride;
  p.direction = direction;
  return p;
}

// tok.enable_truncation(...); tok.post_process(a, pair=b) with no post-processor.
Encoding truncate_and_merge(Encoding a, std::optional<Encoding> b, const TruncationParams& p) {
  sparkd::tokenizer::truncate_encodings(&a, b ? &*b : nullptr, p);
  return sparkd::tokenizer::default_post_process(std::move(a), std::move(b));
}

constexpr auto kLeft = TruncationDirection::kLeft;
constexpr auto kRight = TruncationDirection::kRight;
constexpr auto kLongest = TruncationStrategy::kLongestFirst;
constexpr auto kOnlyFirst = TruncationStrategy::kOnlyFirst;
constexpr auto kOnlySecond = TruncationStrategy::kOnlySecond;

}  // namespace

TEST_CASE("Encoding::truncate right with stride", "[encoding]") {
  // e = tok.encode("a b c d e f g h i j"); e.truncate(4, 1, "right")
  Encoding e = letters("a b c d e f g h i j");
  e.truncate(4, 1, kRight);
  CHECK(e.ids == Ids{5, 6, 7, 8});
  CHECK(e.offsets == OffsetList{{0, 1}, {2, 3}, {4, 5}, {6, 7}});
  CHECK(e.words == std::vector<std::optional<uint32_t>>{0, 1, 2, 3});
  CHECK(overflow_ids(e) == std::vector<Ids>{{8, 9, 10, 11}, {11, 12, 13, 14}});
  CHECK(e.overflowing[0].offsets == OffsetList{{6, 7}, {8, 9}, {10, 11}, {12, 13}});
  CHECK(e.overflowing[1].overflowing.empty());

  // e.truncate(4, 2, "right")
  Encoding e2 = letters("a b c d e f g h i j");
  e2.truncate(4, 2, kRight);
  CHECK(e2.ids == Ids{5, 6, 7, 8});
  CHECK(overflow_ids(e2) == std::vector<Ids>{{7, 8, 9, 10}, {9, 10, 11, 12}, {11, 12, 13, 14}});

  // e.truncate(3, 0, "right"): the last window is shorter.
  Encoding e3 = letters("a b c d e f g h i j");
  e3.truncate(3, 0, kRight);
  CHECK(e3.ids == Ids{5, 6, 7});
  CHECK(overflow_ids(e3) == std::vector<Ids>{{8, 9, 10}, {11, 12, 13}, {14}});
  CHECK(e3.overflowing[2].offsets == OffsetList{{18, 19}});
}

TEST_CASE("Encoding::truncate left with stride", "[encoding]") {
  // e.truncate(4, 1, "left")
  Encoding e = letters("a b c d e f g h i j");
  e.truncate(4, 1, kLeft);
  CHECK(e.ids == Ids{11, 12, 13, 14});
  CHECK(e.offsets == OffsetList{{12, 13}, {14, 15}, {16, 17}, {18, 19}});
  CHECK(e.words == std::vector<std::optional<uint32_t>>{6, 7, 8, 9});
  CHECK(overflow_ids(e) == std::vector<Ids>{{8, 9, 10, 11}, {5, 6, 7, 8}});

  // e.truncate(3, 0, "left")
  Encoding e2 = letters("a b c d e f g h i j");
  e2.truncate(3, 0, kLeft);
  CHECK(e2.ids == Ids{12, 13, 14});
  CHECK(overflow_ids(e2) == std::vector<Ids>{{9, 10, 11}, {6, 7, 8}, {5}});
  CHECK(e2.overflowing[2].offsets == OffsetList{{0, 1}});

  // e.truncate(9, 8, "left")
  Encoding e3 = letters("a b c d e f g h i j");
  e3.truncate(9, 8, kLeft);
  CHECK(e3.ids == Ids{6, 7, 8, 9, 10, 11, 12, 13, 14});
  CHECK(overflow_ids(e3) == std::vector<Ids>{{5, 6, 7, 8, 9, 10, 11, 12, 13}});
}

TEST_CASE("Encoding::truncate edge cases", "[encoding]") {
  SECTION("max_length 0 moves everything to overflowing") {
    // e.truncate(0, 0, "right")
    Encoding e = letters("a b c d e f g h i j");
    e.truncate(0, 0, kRight);
    CHECK(e.empty());
    CHECK(e.offsets.empty());
    REQUIRE(e.overflowing.size() == 1);
    CHECK(e.overflowing[0].ids == Ids{5, 6, 7, 8, 9, 10, 11, 12, 13, 14});
  }
  SECTION("no-op when it fits, even with a too-large stride") {
    // e.truncate(10, 20, "right") leaves e unchanged
    Encoding e = letters("a b c d e f g h i j");
    e.set_sequence_id(0);
    e.truncate(10, 20, kRight);
    CHECK(e.ids == Ids{5, 6, 7, 8, 9, 10, 11, 12, 13, 14});
    CHECK(e.overflowing.empty());
    CHECK(e.sequence_ranges.size() == 1);
  }
  SECTION("stride >= max_length") {
    // e.truncate(4, 4) raises PanicException with this message
    Encoding e = letters("a b c d e f g h i j");
    CHECK_THROWS_MATCHES(
        e.truncate(4, 4, kRight), EncodeError,
        Catch::Matchers::Message(
            "`stride` must be strictly less than `max_len=4` (note that `max_len` may be "
            "shorter than the max length of the original model, as it subtracts the number "
            "of special characters"));
  }
  SECTION("truncation drops sequence ranges") {
    Encoding e = letters("a b c d e");
    e.set_sequence_id(1);
    e.truncate(2, 0, kRight);
    CHECK(e.sequence_ranges.empty());
  }
}

TEST_CASE("Encoding::merge combines overflowing parts", "[encoding]") {
  // e1 = tok.encode("a b c d e"); e1.truncate(3, 1); e2 = tok.encode("f g h")
  Encoding e1 = letters("a b c d e");
  e1.truncate(3, 1, kRight);
  const Encoding e2 = letters("f g h");

  // Encoding.merge([e1, e2], growing_offsets=True)
  Encoding grown = Encoding::merge({e1, e2}, true);
  CHECK(grown.ids == Ids{5, 6, 7, 10, 11, 12});
  CHECK(grown.offsets == OffsetList{{0, 1}, {2, 3}, {4, 5}, {5, 6}, {7, 8}, {9, 10}});
  CHECK(grown.words == std::vector<std::optional<uint32_t>>{0, 1, 2, 0, 1, 2});
  REQUIRE(grown.overflowing.size() == 1);
  CHECK(grown.overflowing[0].ids == Ids{7, 8, 9, 10, 11, 12});
  CHECK(grown.overflowing[0].offsets ==
        OffsetList{{4, 5}, {6, 7}, {8, 9}, {9, 10}, {11, 12}, {13, 14}});

  // Encoding.merge([e1, e2], growing_offsets=False)
  Encoding flat = Encoding::merge({e1, e2}, false);
  CHECK(flat.offsets == OffsetList{{0, 1}, {2, 3}, {4, 5}, {0, 1}, {2, 3}, {4, 5}});
  CHECK(flat.overflowing[0].offsets == OffsetList{{4, 5}, {6, 7}, {8, 9}, {0, 1}, {2, 3}, {4, 5}});

  // e3 = tok.encode("f g h i"); e3.truncate(2, 0); Encoding.merge([e1, e3], True)
  Encoding e3 = letters("f g h i");
  e3.truncate(2, 0, kRight);
  Encoding both = Encoding::merge({e1, e3}, true);
  CHECK(both.ids == Ids{5, 6, 7, 10, 11});
  CHECK(both.offsets == OffsetList{{0, 1}, {2, 3}, {4, 5}, {5, 6}, {7, 8}});
  CHECK(overflow_ids(both) ==
        std::vector<Ids>{{7, 8, 9, 10, 11}, {7, 8, 9, 12, 13}, {5, 6, 7, 12, 13}});
  CHECK(overflow_ids(both.overflowing[0]) == std::vector<Ids>{{7, 8, 9, 12, 13}});
  CHECK(both.overflowing[0].overflowing[0].offsets ==
        OffsetList{{4, 5}, {6, 7}, {8, 9}, {13, 14}, {15, 16}});
  CHECK(both.overflowing[1].overflowing.empty());
  CHECK(overflow_ids(both.overflowing[2]) == std::vector<Ids>{{7, 8, 9, 12, 13}});
  CHECK(both.overflowing[2].offsets == OffsetList{{0, 1}, {2, 3}, {4, 5}, {9, 10}, {11, 12}});
}

TEST_CASE("Encoding::merge shifts sequence ranges", "[encoding]") {
  Encoding a = letters("a b");
  a.set_sequence_id(0);
  Encoding b = letters("c d e");
  b.set_sequence_id(1);
  a.merge_with(b, false);
  CHECK(a.sequence_ranges.at(0) == std::pair<size_t, size_t>{0, 2});
  CHECK(a.sequence_ranges.at(1) == std::pair<size_t, size_t>{2, 5});
  CHECK(sequence_ids(a) == std::vector<int>{0, 0, 1, 1, 1});
  a.set_type_ids(3);
  CHECK(a.type_ids == Ids{3, 3, 3, 3, 3});
}

TEST_CASE("truncate_encodings longest_first", "[encoding]") {
  SECTION("both cut, the longer keeps the odd token") {
    // enable_truncation(5, stride=0, strategy="longest_first");
    // post_process(encode("a b c d e f"), pair=encode("a b c"))
    Encoding r = truncate_and_merge(letters("a b c d e f"), letters("a b c"),
                                    params(kLongest, 5, 0, kRight));
    CHECK(r.ids == Ids{5, 6, 7, 5, 6});
    CHECK(sequence_ids(r) == std::vector<int>{0, 0, 0, 1, 1});
    CHECK(r.offsets == OffsetList{{0, 1}, {2, 3}, {4, 5}, {0, 1}, {2, 3}});
    CHECK(overflow_ids(r) == std::vector<Ids>{{8, 9, 10, 5, 6}, {8, 9, 10, 7}, {5, 6, 7, 7}});
    CHECK(sequence_ids(r.overflowing[0]) == std::vector<int>{0, 0, 0, 0, 0});
    CHECK(sequence_ids(r.overflowing[2]) == std::vector<int>{0, 0, 0, -1});
    CHECK(overflow_ids(r.overflowing[0]) == std::vector<Ids>{{8, 9, 10, 7}});
    CHECK(overflow_ids(r.overflowing[2]) == std::vector<Ids>{{8, 9, 10, 7}});
  }
  SECTION("only the longer one is cut") {
    // post_process(encode("a b"), pair=encode("a b c d e f")), max_length 5
    Encoding r =
        truncate_and_merge(letters("a b"), letters("a b c d e f"), params(kLongest, 5, 0, kRight));
    CHECK(r.ids == Ids{5, 6, 5, 6, 7});
    CHECK(sequence_ids(r) == std::vector<int>{0, 0, 1, 1, 1});
    CHECK(overflow_ids(r) == std::vector<Ids>{{5, 6, 8, 9, 10}});
    CHECK(sequence_ids(r.overflowing[0]) == std::vector<int>{0, 0, -1, -1, -1});
  }
  SECTION("left with stride") {
    // enable_truncation(5, stride=1, strategy="longest_first", direction="left");
    // post_process(encode("a b c d e f"), pair=encode("a b c d"))
    Encoding r = truncate_and_merge(letters("a b c d e f"), letters("a b c d"),
                                    params(kLongest, 5, 1, kLeft));
    CHECK(r.ids == Ids{8, 9, 10, 7, 8});
    CHECK(r.words == std::vector<std::optional<uint32_t>>{3, 4, 5, 2, 3});
    CHECK(overflow_ids(r) == std::vector<Ids>{{6, 7, 8, 7, 8},
                                              {6, 7, 8, 6, 7},
                                              {6, 7, 8, 5, 6},
                                              {5, 6, 7, 8},
                                              {5, 6, 6, 7},
                                              {5, 6, 5, 6},
                                              {8, 9, 10, 6, 7},
                                              {8, 9, 10, 5, 6}});
    CHECK(overflow_ids(r.overflowing[0]) == std::vector<Ids>{{6, 7, 8, 6, 7}, {6, 7, 8, 5, 6}});
    CHECK(overflow_ids(r.overflowing[3]) == std::vector<Ids>{{5, 6, 6, 7}, {5, 6, 5, 6}});
    CHECK(overflow_ids(r.overflowing[7]) == std::vector<Ids>{{6, 7, 8, 5, 6}, {5, 6, 5, 6}});
    CHECK(sequence_ids(r.overflowing[6]) == std::vector<int>{0, 0, 0, -1, -1});
  }
  SECTION("single input with stride") {
    // enable_truncation(4, stride=1); post_process(encode("a b c d e f"))
    Encoding r =
        truncate_and_merge(letters("a b c d e f"), std::nullopt, params(kLongest, 4, 1, kRight));
    CHECK(r.ids == Ids{5, 6, 7, 8});
    CHECK(overflow_ids(r) == std::vector<Ids>{{8, 9, 10}});
  }
  SECTION("stride too large for the halves") {
    // enable_truncation(6, stride=3); both inputs of 6 tokens get max_len=3: PanicException
    Encoding a = letters("a b c d e f");
    Encoding b = letters("a b c d e f");
    CHECK_THAT(error_of<EncodeError>([&] {
                 sparkd::tokenizer::truncate_encodings(&a, &b, params(kLongest, 6, 3, kRight));
               }),
               Catch::Matchers::Contains("`stride` must be strictly less than `max_len=3`"));
  }
}

TEST_CASE("truncate_encodings only_first / only_second", "[encoding]") {
  SECTION("only_first right with stride") {
    // enable_truncation(5, stride=1, strategy="only_first");
    // post_process(encode("a b c d e f"), pair=encode("a b"))
    Encoding r = truncate_and_merge(letters("a b c d e f"), letters("a b"),
                                    params(kOnlyFirst, 5, 1, kRight));
    CHECK(r.ids == Ids{5, 6, 7, 5, 6});
    CHECK(sequence_ids(r) == std::vector<int>{0, 0, 0, 1, 1});
    CHECK(overflow_ids(r) == std::vector<Ids>{{7, 8, 9, 5, 6}, {9, 10, 5, 6}});
  }
  SECTION("only_first left") {
    Encoding r =
        truncate_and_merge(letters("a b c d e f"), letters("a b"), params(kOnlyFirst, 5, 0, kLeft));
    CHECK(r.ids == Ids{8, 9, 10, 5, 6});
    CHECK(r.words == std::vector<std::optional<uint32_t>>{3, 4, 5, 0, 1});
    CHECK(overflow_ids(r) == std::vector<Ids>{{5, 6, 7, 5, 6}});
  }
  SECTION("only_second right with stride") {
    // post_process(encode("a b"), pair=encode("a b c d e f")), only_second, 5, stride 1
    Encoding r = truncate_and_merge(letters("a b"), letters("a b c d e f"),
                                    params(kOnlySecond, 5, 1, kRight));
    CHECK(r.ids == Ids{5, 6, 5, 6, 7});
    CHECK(sequence_ids(r) == std::vector<int>{0, 0, 1, 1, 1});
    CHECK(overflow_ids(r) == std::vector<Ids>{{5, 6, 7, 8, 9}, {5, 6, 9, 10}});
    CHECK(sequence_ids(r.overflowing[1]) == std::vector<int>{0, 0, -1, -1});
  }
  SECTION("only_second left") {
    Encoding r = truncate_and_merge(letters("a b"), letters("a b c d e f"),
                                    params(kOnlySecond, 5, 0, kLeft));
    CHECK(r.ids == Ids{5, 6, 8, 9, 10});
    CHECK(r.offsets == OffsetList{{0, 1}, {2, 3}, {6, 7}, {8, 9}, {10, 11}});
    CHECK(overflow_ids(r) == std::vector<Ids>{{5, 6, 5, 6, 7}});
  }
  SECTION("only_second without a pair") {
    // enable_truncation(5, strategy="only_second"); post_process(encode("a b c d e f"))
    Encoding a = letters("a b c d e f");
    CHECK_THROWS_MATCHES(
        sparkd::tokenizer::truncate_encodings(&a, nullptr, params(kOnlySecond, 5, 0, kRight)),
        EncodeError, Catch::Matchers::Message("Truncation error: Second sequence not provided"));
    // ...but it fits into 9 tokens, so nothing is truncated and there is no error.
    Encoding fits = letters("a b c d e f");
    sparkd::tokenizer::truncate_encodings(&fits, nullptr, params(kOnlySecond, 9, 0, kRight));
    CHECK(fits.size() == 6);
  }
  SECTION("sequence too short") {
    // enable_truncation(3, strategy="only_first"); post_process(encode("a b"), pair=encode("a b c
    // d"))
    Encoding a = letters("a b");
    Encoding b = letters("a b c d");
    CHECK_THROWS_MATCHES(
        sparkd::tokenizer::truncate_encodings(&a, &b, params(kOnlyFirst, 3, 0, kRight)),
        EncodeError,
        Catch::Matchers::Message("Truncation error: Sequence to truncate too short to respect "
                                 "the provided max_length"));
  }
  SECTION("max_length 0 moves both inputs to overflowing") {
    // enable_truncation(0, strategy="only_first"); post_process(encode("a b c"), pair=encode("d
    // e"))
    Encoding r =
        truncate_and_merge(letters("a b c"), letters("d e"), params(kOnlyFirst, 0, 0, kRight));
    CHECK(r.empty());
    CHECK(overflow_ids(r) == std::vector<Ids>{{5, 6, 7}, {5, 6, 7, 8, 9}, {8, 9}});
    CHECK(overflow_ids(r.overflowing[0]) == std::vector<Ids>{{5, 6, 7, 8, 9}});
    CHECK(sequence_ids(r.overflowing[2]) == std::vector<int>{-1, -1});
    CHECK(overflow_ids(r.overflowing[2]) == std::vector<Ids>{{5, 6, 7, 8, 9}});
  }
}
