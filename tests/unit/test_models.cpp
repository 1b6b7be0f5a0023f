// Unit tests for the tokenization models (BPE, WordPiece, Unigram, WordLevel). Expected
// tokens were produced by the Python `tokenizers` library (0.23.3) with `model.tokenize(s)`
// on the very model JSON loaded here, and pasted as "id:value@begin-end" lists.

#include <atomic>
#include <catch2/catch.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/error.h"
#include "engine/tokenizer/model.h"
#include "engine/tokenizer/unigram_model.h"
#include "engine/tokenizer/wordlevel_model.h"
#include "engine/tokenizer/wordpiece_model.h"

namespace {

using sparkd::tokenizer::ConfigError;
using sparkd::tokenizer::EncodeError;
using sparkd::tokenizer::make_model;
using sparkd::tokenizer::Model;
using sparkd::tokenizer::Token;

std::unique_ptr<Model> load(std::string_view json) {
  return make_model(nlohmann::json::parse(json));
}

// "id:value@begin-end" joined by spaces: compact enough to paste the library's output.
std::string describe(const std::vector<Token>& tokens) {
  std::string out;
  for (const Token& t : tokens) {
    if (!out.empty()) out += ' ';
    out += std::to_string(t.id) + ':' + t.value + '@' + std::to_string(t.offsets.first) + '-' +
           std::to_string(t.offsets.second);
  }
  return out;
}

struct Case {
  const char* input;
  const char* expected;  // "ERROR ..." when the library returns an error
};

void check_cases(const Model& model, std::initializer_list<Case> cases) {
  for (const Case& c : cases) {
    INFO("input: \"" << c.input << "\"");
    const std::string expected = c.expected;
    if (expected.rfind("ERROR", 0) == 0) {
      CHECK_THROWS_AS(model.tokenize(c.input), EncodeError);
    } else {
      CHECK(describe(model.tokenize(c.input)) == expected);
      // A second call is served from the BPE word cache and must agree.
      CHECK(describe(model.tokenize(c.input)) == expected);
    }
  }
}

std::string config_error(std::string_view json) {
  try {
    load(json);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

// Expected: python3 / tokenizers 0.23.3, m = models.BPE(vocab, merges, unk_token="<unk>");
// m.tokenize(s) for each input, the model JSON being Tokenizer(m).to_str()["model"].
TEST_CASE("BPE: merges by rank, ties leftmost, unknown chars", "[models]") {
  const auto model = load(
      R"json({"type":"BPE","dropout":null,"unk_token":"<unk>","continuing_subword_prefix":null,"end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{"<unk>":0,"a":1,"b":2,"c":3,"d":4,"e":5,"h":6,"l":7,"o":8,"r":9,"s":10,"t":11,"w":12,"é":13,"lo":14,"low":15,"es":16,"est":17,"he":18,"ll":19,"hell":20,"hello":21,"aa":22,"aaaa":23,"lowest":24},"merges":[["l","o"],["lo","w"],["e","s"],["es","t"],["h","e"],["l","l"],["he","ll"],["hell","o"],["a","a"],["aa","aa"],["low","est"]]})json");
  check_cases(*model,
              {
                  {"", ""},
                  {"a", "1:a@0-1"},
                  {"hello", "18:he@0-2 7:l@2-3 14:lo@3-5"},
                  {"lowest", "24:lowest@0-6"},
                  {"low", "15:low@0-3"},
                  {"aaaaa", "23:aaaa@0-4 1:a@4-5"},
                  {"aaaaaaa", "23:aaaa@0-4 22:aa@4-6 1:a@6-7"},
                  {"helloworld", "18:he@0-2 7:l@2-3 15:low@3-6 8:o@6-7 9:r@7-8 7:l@8-9 4:d@9-10"},
                  {"xyz", "0:<unk>@0-1 0:<unk>@1-2 0:<unk>@2-3"},
                  {"hexxlo", "18:he@0-2 0:<unk>@2-3 0:<unk>@3-4 14:lo@4-6"},
                  {"héllo", "6:h@0-1 13:é@1-3 7:l@3-4 14:lo@4-6"},
                  {"lowestlowestlowestlowestlowestlowest",
                   "24:lowest@0-6 24:lowest@6-12 24:lowest@12-18 24:lowest@18-24 24:lowest@24-30 "
                   "24:lowest@30-36"},
              });
}

// Expected: python3 / tokenizers 0.23.3, m = models.BPE(vocab, merges, unk_token="<unk>",
// fuse_unk=True); m.tokenize(s) for each input, the model JSON being
// Tokenizer(m).to_str()["model"].
TEST_CASE("BPE: fuse_unk joins consecutive unknowns", "[models]") {
  const auto model = load(
      R"json({"type":"BPE","dropout":null,"unk_token":"<unk>","continuing_subword_prefix":null,"end_of_word_suffix":null,"fuse_unk":true,"byte_fallback":false,"ignore_merges":false,"vocab":{"<unk>":0,"a":1,"b":2,"c":3,"d":4,"e":5,"h":6,"l":7,"o":8,"r":9,"s":10,"t":11,"w":12,"é":13,"lo":14,"low":15,"es":16,"est":17,"he":18,"ll":19,"hell":20,"hello":21,"aa":22,"aaaa":23,"lowest":24},"merges":[["l","o"],["lo","w"],["e","s"],["es","t"],["h","e"],["l","l"],["he","ll"],["hell","o"],["a","a"],["aa","aa"],["low","est"]]})json");
  check_cases(*model,
              {
                  {"", ""},
                  {"a", "1:a@0-1"},
                  {"hello", "18:he@0-2 7:l@2-3 14:lo@3-5"},
                  {"lowest", "24:lowest@0-6"},
                  {"low", "15:low@0-3"},
                  {"aaaaa", "23:aaaa@0-4 1:a@4-5"},
                  {"aaaaaaa", "23:aaaa@0-4 22:aa@4-6 1:a@6-7"},
                  {"helloworld", "18:he@0-2 7:l@2-3 15:low@3-6 8:o@6-7 9:r@7-8 7:l@8-9 4:d@9-10"},
                  {"xyz", "0:<unk>@0-3"},
                  {"hexxlo", "18:he@0-2 0:<unk>@2-4 14:lo@4-6"},
                  {"héllo", "6:h@0-1 13:é@1-3 7:l@3-4 14:lo@4-6"},
                  {"lowestlowestlowestlowestlowestlowest",
                   "24:lowest@0-6 24:lowest@6-12 24:lowest@12-18 24:lowest@18-24 24:lowest@24-30 "
                   "24:lowest@30-36"},
              });
}

// Expected: python3 / tokenizers 0.23.3, m = models.BPE(vocab, merges);
// m.tokenize(s) for each input, the model JSON being Tokenizer(m).to_str()["model"].
TEST_CASE("BPE: without unk_token unknown chars are dropped", "[models]") {
  const auto model = load(
      R"json({"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,"end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{"<unk>":0,"a":1,"b":2,"c":3,"d":4,"e":5,"h":6,"l":7,"o":8,"r":9,"s":10,"t":11,"w":12,"é":13,"lo":14,"low":15,"es":16,"est":17,"he":18,"ll":19,"hell":20,"hello":21,"aa":22,"aaaa":23,"lowest":24},"merges":[["l","o"],["lo","w"],["e","s"],["es","t"],["h","e"],["l","l"],["he","ll"],["hell","o"],["a","a"],["aa","aa"],["low","est"]]})json");
  check_cases(*model,
              {
                  {"", ""},
                  {"a", "1:a@0-1"},
                  {"hello", "18:he@0-2 7:l@2-3 14:lo@3-5"},
                  {"lowest", "24:lowest@0-6"},
                  {"low", "15:low@0-3"},
                  {"aaaaa", "23:aaaa@0-4 1:a@4-5"},
                  {"aaaaaaa", "23:aaaa@0-4 22:aa@4-6 1:a@6-7"},
                  {"helloworld", "18:he@0-2 7:l@2-3 15:low@3-6 8:o@6-7 9:r@7-8 7:l@8-9 4:d@9-10"},
                  {"xyz", ""},
                  {"hexxlo", "18:he@0-2 14:lo@2-4"},
                  {"héllo", "6:h@0-1 13:é@1-3 7:l@3-4 14:lo@4-6"},
                  {"lowestlowestlowestlowestlowestlowest",
                   "24:lowest@0-6 24:lowest@6-12 24:lowest@12-18 24:lowest@18-24 24:lowest@24-30 "
                   "24:lowest@30-36"},
              });
}

// Expected: python3 / tokenizers 0.23.3, m = models.BPE(vocab, merges, unk_token="<unk>",
// ignore_merges=True); m.tokenize(s) for each input, the model JSON being
// Tokenizer(m).to_str()["model"].
TEST_CASE("BPE: ignore_merges emits whole in-vocab words", "[models]") {
  const auto model = load(
      R"json({"type":"BPE","dropout":null,"unk_token":"<unk>","continuing_subword_prefix":null,"end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":true,"vocab":{"<unk>":0,"a":1,"b":2,"c":3,"d":4,"e":5,"h":6,"l":7,"o":8,"r":9,"s":10,"t":11,"w":12,"é":13,"lo":14,"low":15,"es":16,"est":17,"he":18,"ll":19,"hell":20,"hello":21,"aa":22,"aaaa":23,"lowest":24},"merges":[["l","o"],["lo","w"],["e","s"],["es","t"],["h","e"],["l","l"],["he","ll"],["hell","o"],["a","a"],["aa","aa"],["low","est"]]})json");
  check_cases(*model, {
                          {"hello", "21:hello@0-5"},
                          {"lowest", "24:lowest@0-6"},
                          {"ab", "1:a@0-1 2:b@1-2"},
                          {"aaaa", "23:aaaa@0-4"},
                          {"hellx", "20:hell@0-4 0:<unk>@4-5"},
                      });
}

// Expected: python3 / tokenizers 0.23.3, m = models.BPE(vocab, merges, unk_token="<unk>",
// byte_fallback=True); m.tokenize(s) for each input, the model JSON being
// Tokenizer(m).to_str()["model"].
TEST_CASE("BPE: byte_fallback spells unknown chars as <0xNN>", "[models]") {
  const auto model = load(
      R"json({"type":"BPE","dropout":null,"unk_token":"<unk>","continuing_subword_prefix":null,"end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":true,"ignore_merges":false,"vocab":{"<unk>":0,"a":1,"b":2,"c":3,"d":4,"e":5,"h":6,"l":7,"o":8,"r":9,"s":10,"t":11,"w":12,"é":13,"lo":14,"low":15,"es":16,"est":17,"he":18,"ll":19,"hell":20,"hello":21,"aa":22,"aaaa":23,"lowest":24,"<0x78>":25,"<0x79>":26,"<0xC3>":27,"<0xA9>":28,"<0xE2>":29,"<0x82>":30,"<0xAC>":31,"<0x23>":32},"merges":[["l","o"],["lo","w"],["e","s"],["es","t"],["h","e"],["l","l"],["he","ll"],["hell","o"],["a","a"],["aa","aa"],["low","est"]]})json");
  check_cases(*model, {
                          {"xy", "25:<0x78>@0-1 26:<0x79>@1-2"},
                          {"hexy", "18:he@0-2 25:<0x78>@2-3 26:<0x79>@3-4"},
                          {"a€b", "1:a@0-1 29:<0xE2>@1-2 30:<0x82>@2-3 31:<0xAC>@3-4 2:b@4-5"},
                          {"aqz", "1:a@0-1 0:<unk>@1-2 0:<unk>@2-3"},
                          {"qxq", "25:<0x78>@0-1 0:<unk>@1-2 0:<unk>@2-3"},
                          {"€", "29:<0xE2>@0-1 30:<0x82>@1-2 31:<0xAC>@2-3"},
                      });
}

// Expected: python3 / tokenizers 0.23.3, m = models.BPE(vocab, merges, unk_token="<unk>",
// continuing_subword_prefix="##"); m.tokenize(s) for each input, the model JSON being
// Tokenizer(m).to_str()["model"].
TEST_CASE("BPE: continuing_subword_prefix", "[models]") {
  const auto model = load(
      R"json({"type":"BPE","dropout":null,"unk_token":"<unk>","continuing_subword_prefix":"##","end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{"<unk>":0,"a":1,"b":2,"c":3,"d":4,"h":5,"l":6,"o":7,"w":8,"##a":9,"##b":10,"##c":11,"##d":12,"##h":13,"##l":14,"##o":15,"##w":16,"lo":17,"low":18,"##lo":19,"##low":20,"ab":21,"abc":22,"<0x23>":23,"<0xC3>":24,"<0xA9>":25},"merges":[["l","##o"],["lo","##w"],["##l","##o"],["##lo","##w"],["a","##b"],["ab","##c"]]})json");
  check_cases(*model, {
                          {"low", "18:low@0-3"},
                          {"alow", "1:a@0-1 20:##low@1-4"},
                          {"abc", "22:abc@0-3"},
                          {"abcd", "22:abc@0-3 12:##d@3-4"},
                          {"lowlow", "18:low@0-3 20:##low@3-6"},
                          {"q", "0:<unk>@0-1"},
                          {"aqb", "1:a@0-1 0:<unk>@1-2 10:##b@2-3"},
                      });
}

// Expected: python3 / tokenizers 0.23.3, m = models.BPE(vocab, merges, unk_token="<unk>",
// continuing_subword_prefix="##", byte_fallback=True); m.tokenize(s) for each input, the model JSON
// being Tokenizer(m).to_str()["model"].
TEST_CASE("BPE: byte_fallback with a prefix keeps the library's offset quirk", "[models]") {
  const auto model = load(
      R"json({"type":"BPE","dropout":null,"unk_token":"<unk>","continuing_subword_prefix":"##","end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":true,"ignore_merges":false,"vocab":{"<unk>":0,"a":1,"b":2,"c":3,"d":4,"h":5,"l":6,"o":7,"w":8,"##a":9,"##b":10,"##c":11,"##d":12,"##h":13,"##l":14,"##o":15,"##w":16,"lo":17,"low":18,"##lo":19,"##low":20,"ab":21,"abc":22,"<0x23>":23,"<0xC3>":24,"<0xA9>":25},"merges":[["l","##o"],["lo","##w"],["##l","##o"],["##lo","##w"],["a","##b"],["ab","##c"]]})json");
  check_cases(
      *model,
      {
          {"aé", "1:a@0-1 23:<0x23>@1-2 23:<0x23>@2-3 24:<0xC3>@3-4 25:<0xA9>@4-5"},
          {"éa", "24:<0xC3>@0-1 25:<0xA9>@1-2 9:##a@2-3"},
          {"aéa", "1:a@0-1 23:<0x23>@1-2 23:<0x23>@2-3 24:<0xC3>@3-4 25:<0xA9>@4-5 9:##a@5-6"},
      });
}

// Expected: python3 / tokenizers 0.23.3, m = models.BPE(vocab, merges, unk_token="<unk>",
// end_of_word_suffix="</w>"); m.tokenize(s) for each input, the model JSON being
// Tokenizer(m).to_str()["model"].
TEST_CASE("BPE: end_of_word_suffix", "[models]") {
  const auto model = load(
      R"json({"type":"BPE","dropout":null,"unk_token":"<unk>","continuing_subword_prefix":null,"end_of_word_suffix":"</w>","fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{"<unk>":0,"a":1,"b":2,"c":3,"a</w>":4,"b</w>":5,"c</w>":6,"ab</w>":7,"ab":8,"abc</w>":9},"merges":[["a","b</w>"],["a","b"],["ab","c</w>"]]})json");
  check_cases(*model, {
                          {"ab", "7:ab</w>@0-2"},
                          {"abc", "9:abc</w>@0-3"},
                          {"abab", "8:ab@0-2 7:ab</w>@2-4"},
                          {"c", "6:c</w>@0-1"},
                          {"ba", "2:b@0-1 4:a</w>@1-2"},
                          {"bx", "2:b@0-1 0:<unk>@1-2"},
                      });
}

// Expected: python3 / tokenizers 0.23.3, m = models.Unigram(vocab, 0, False);
// m.tokenize(s) for each input, the model JSON being Tokenizer(m).to_str()["model"].
TEST_CASE("Unigram: Viterbi, tie-breaking and fused unknowns", "[models]") {
  const auto model = load(
      R"json({"type":"Unigram","unk_id":0,"vocab":[["<unk>",0.0],["a",-1.0],["b",-1.0],["ab",-2.0],["c",-2.5],["abc",-3.0],["bc",-1.5],["é",-2.0],["xy",-30.0],["<0x71>",-5.0],["<0xE2>",-5.0],["<0x82>",-5.0],["<0xAC>",-5.0],["▁",-0.5],["▁ab",-1.0]],"byte_fallback":false})json");
  check_cases(
      *model,
      {
          {"", ""},
          {"a", "1:a@0-1"},
          {"ab", "3:ab@0-2"},
          {"abc", "1:a@0-1 6:bc@1-3"},
          {"abcabc", "1:a@0-1 6:bc@1-3 1:a@3-4 6:bc@4-6"},
          {"aqqb", "1:a@0-1 0:qq@1-3 2:b@3-4"},
          {"q", "0:q@0-1"},
          {"xy", "8:xy@0-2"},
          {"axyb", "1:a@0-1 8:xy@1-3 2:b@3-4"},
          {"a<unk>q", "1:a@0-1 0:<unk>q@1-7"},
          {"é€é", "7:é@0-2 0:€@2-5 7:é@5-7"},
          {"▁ab▁abc", "14:▁ab@0-5 13:▁@5-8 1:a@8-9 6:bc@9-11"},
          {"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
           "2:b@0-1 2:b@1-2 2:b@2-3 2:b@3-4 2:b@4-5 2:b@5-6 2:b@6-7 2:b@7-8 2:b@8-9 2:b@9-10 "
           "2:b@10-11 2:b@11-12 2:b@12-13 2:b@13-14 2:b@14-15 2:b@15-16 2:b@16-17 2:b@17-18 "
           "2:b@18-19 2:b@19-20 2:b@20-21 2:b@21-22 2:b@22-23 2:b@23-24 2:b@24-25 2:b@25-26 "
           "2:b@26-27 2:b@27-28 2:b@28-29 2:b@29-30 2:b@30-31 2:b@31-32 2:b@32-33 2:b@33-34 "
           "2:b@34-35 2:b@35-36 2:b@36-37 2:b@37-38 2:b@38-39 2:b@39-40 2:b@40-41 2:b@41-42 "
           "2:b@42-43 2:b@43-44 2:b@44-45 2:b@45-46 2:b@46-47 2:b@47-48 2:b@48-49 2:b@49-50 "
           "2:b@50-51 2:b@51-52 2:b@52-53 2:b@53-54 2:b@54-55 2:b@55-56 2:b@56-57 2:b@57-58 "
           "2:b@58-59 2:b@59-60 2:b@60-61 2:b@61-62 2:b@62-63"},
      });
}

// Expected: python3 / tokenizers 0.23.3, m = models.Unigram(vocab, 0, True);
// m.tokenize(s) for each input, the model JSON being Tokenizer(m).to_str()["model"].
TEST_CASE("Unigram: byte_fallback", "[models]") {
  const auto model = load(
      R"json({"type":"Unigram","unk_id":0,"vocab":[["<unk>",0.0],["a",-1.0],["b",-1.0],["ab",-2.0],["c",-2.5],["abc",-3.0],["bc",-1.5],["é",-2.0],["xy",-30.0],["<0x71>",-5.0],["<0xE2>",-5.0],["<0x82>",-5.0],["<0xAC>",-5.0],["▁",-0.5],["▁ab",-1.0]],"byte_fallback":true})json");
  check_cases(
      *model,
      {
          {"", ""},
          {"a", "1:a@0-1"},
          {"ab", "3:ab@0-2"},
          {"abc", "1:a@0-1 6:bc@1-3"},
          {"abcabc", "1:a@0-1 6:bc@1-3 1:a@3-4 6:bc@4-6"},
          {"aqqb", "1:a@0-1 9:<0x71>@1-3 9:<0x71>@1-3 2:b@3-4"},
          {"q", "9:<0x71>@0-1"},
          {"xy", "8:xy@0-2"},
          {"axyb", "1:a@0-1 8:xy@1-3 2:b@3-4"},
          {"a<unk>q", "1:a@0-1 0:<unk>q@1-7"},
          {"é€é", "7:é@0-2 10:<0xE2>@2-5 11:<0x82>@2-5 12:<0xAC>@2-5 7:é@5-7"},
          {"▁ab▁abc", "14:▁ab@0-5 13:▁@5-8 1:a@8-9 6:bc@9-11"},
          {"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
           "2:b@0-1 2:b@1-2 2:b@2-3 2:b@3-4 2:b@4-5 2:b@5-6 2:b@6-7 2:b@7-8 2:b@8-9 2:b@9-10 "
           "2:b@10-11 2:b@11-12 2:b@12-13 2:b@13-14 2:b@14-15 2:b@15-16 2:b@16-17 2:b@17-18 "
           "2:b@18-19 2:b@19-20 2:b@20-21 2:b@21-22 2:b@22-23 2:b@23-24 2:b@24-25 2:b@25-26 "
           "2:b@26-27 2:b@27-28 2:b@28-29 2:b@29-30 2:b@30-31 2:b@31-32 2:b@32-33 2:b@33-34 "
           "2:b@34-35 2:b@35-36 2:b@36-37 2:b@37-38 2:b@38-39 2:b@39-40 2:b@40-41 2:b@41-42 "
           "2:b@42-43 2:b@43-44 2:b@44-45 2:b@45-46 2:b@46-47 2:b@47-48 2:b@48-49 2:b@49-50 "
           "2:b@50-51 2:b@51-52 2:b@52-53 2:b@53-54 2:b@54-55 2:b@55-56 2:b@56-57 2:b@57-58 "
           "2:b@58-59 2:b@59-60 2:b@60-61 2:b@61-62 2:b@62-63"},
      });
}

// Expected: python3 / tokenizers 0.23.3, m = models.Unigram(vocab, None, False);
// m.tokenize(s) for each input, the model JSON being Tokenizer(m).to_str()["model"].
TEST_CASE("Unigram: without unk_id an unknown char is an error", "[models]") {
  const auto model = load(
      R"json({"type":"Unigram","unk_id":null,"vocab":[["<unk>",0.0],["a",-1.0],["b",-1.0],["ab",-2.0],["c",-2.5],["abc",-3.0],["bc",-1.5],["é",-2.0],["xy",-30.0],["<0x71>",-5.0],["<0xE2>",-5.0],["<0x82>",-5.0],["<0xAC>",-5.0],["▁",-0.5],["▁ab",-1.0]],"byte_fallback":false})json");
  check_cases(*model, {
                          {"ab", "3:ab@0-2"},
                          {"q", "ERROR Encountered an unknown token but `unk_id` is missing"},
                          {"aqb", "ERROR Encountered an unknown token but `unk_id` is missing"},
                          {"", ""},
                      });
}

// Expected: python3 / tokenizers 0.23.3, m = models.Unigram(vocab, 0, False);
// m.tokenize(s) for each input, the model JSON being Tokenizer(m).to_str()["model"].
TEST_CASE("Unigram: duplicate pieces use the last id", "[models]") {
  const auto model = load(
      R"json({"type":"Unigram","unk_id":0,"vocab":[["<unk>",0.0],["a",-1.0],["b",-1.0],["ab",-2.0],["a",-0.5],["ba",-2.0],["bab",-3.0]],"byte_fallback":false})json");
  check_cases(*model, {
                          {"ab", "4:a@0-1 2:b@1-2"},
                          {"aba", "4:a@0-1 2:b@1-2 4:a@2-3"},
                          {"bab", "2:b@0-1 4:a@1-2 2:b@2-3"},
                          {"abab", "4:a@0-1 2:b@1-2 4:a@2-3 2:b@3-4"},
                          {"aab", "4:a@0-1 4:a@1-2 2:b@2-3"},
                      });
}

// Expected: python3 / tokenizers 0.23.3, m = models.WordPiece(vocab, unk_token="[UNK]",
// max_input_chars_per_word=12); m.tokenize(s) for each input, the model JSON being
// Tokenizer(m).to_str()["model"].
TEST_CASE("WordPiece: greedy longest match", "[models]") {
  const auto model = load(
      R"json({"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":12,"vocab":{"[UNK]":0,"un":1,"##aff":2,"##able":3,"a":4,"##b":5,"##c":6,"é":7,"##é":8,"abc":9,"##bc":10,"b":11}})json");
  check_cases(*model, {
                          {"", ""},
                          {"a", "4:a@0-1"},
                          {"unaffable", "1:un@0-2 2:##aff@2-5 3:##able@5-9"},
                          {"abc", "9:abc@0-3"},
                          {"abcb", "9:abc@0-3 5:##b@3-4"},
                          {"ab", "4:a@0-1 5:##b@1-2"},
                          {"aé", "4:a@0-1 8:##é@1-3"},
                          {"éé", "7:é@0-2 8:##é@2-4"},
                          {"aq", "0:[UNK]@0-2"},
                          {"q", "0:[UNK]@0-1"},
                          {"unaffableunaffable", "0:[UNK]@0-18"},
                      });
}

// Expected: python3 / tokenizers 0.23.3, m = models.WordPiece(vocab, unk_token="[UNK]",
// max_input_chars_per_word=2); m.tokenize(s) for each input, the model JSON being
// Tokenizer(m).to_str()["model"].
TEST_CASE("WordPiece: max_input_chars_per_word counts chars", "[models]") {
  const auto model = load(
      R"json({"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":2,"vocab":{"[UNK]":0,"un":1,"##aff":2,"##able":3,"a":4,"##b":5,"##c":6,"é":7,"##é":8,"abc":9,"##bc":10,"b":11}})json");
  check_cases(*model, {
                          {"éé", "7:é@0-2 8:##é@2-4"},
                          {"ééé", "0:[UNK]@0-6"},
                          {"ab", "4:a@0-1 5:##b@1-2"},
                          {"abc", "0:[UNK]@0-3"},
                      });
}

// Expected: python3 / tokenizers 0.23.3, m = models.WordPiece(vocab={"a": 0, "##b": 1},
// unk_token="[UNK]"); m.tokenize(s) for each input, the model JSON being
// Tokenizer(m).to_str()["model"].
TEST_CASE("WordPiece: vocabulary without the unk token", "[models]") {
  const auto model = load(
      R"json({"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##","max_input_chars_per_word":100,"vocab":{"a":0,"##b":1}})json");
  check_cases(*model, {
                          {"ab", "0:a@0-1 1:##b@1-2"},
                          {"a", "0:a@0-1"},
                      });
}

// Expected: python3 / tokenizers 0.23.3, m = models.WordLevel(vocab, unk_token="<unk>");
// m.tokenize(s) for each input, the model JSON being Tokenizer(m).to_str()["model"].
TEST_CASE("WordLevel: whole words or unk", "[models]") {
  const auto model = load(
      R"json({"type":"WordLevel","vocab":{"<unk>":0,"hello":1,"world":2},"unk_token":"<unk>"})json");
  check_cases(*model, {
                          {"hello", "1:hello@0-5"},
                          {"world", "2:world@0-5"},
                          {"hellO", "0:<unk>@0-5"},
                          {"", "0:<unk>@0-0"},
                          {"x", "0:<unk>@0-1"},
                      });
}

// Expected: python3 / tokenizers 0.23.3, m = models.WordLevel(vocab, unk_token="<unk>");
// m.tokenize(s) for each input, the model JSON being Tokenizer(m).to_str()["model"].
TEST_CASE("WordLevel: vocabulary without the unk token", "[models]") {
  const auto model =
      load(R"json({"type":"WordLevel","vocab":{"hello":1,"world":2},"unk_token":"<unk>"})json");
  check_cases(*model, {
                          {"hello", "1:hello@0-5"},
                          {"x", "ERROR WordLevel error: Missing [UNK] token from the vocabulary"},
                      });
}

// Expected: python3 / tokenizers 0.23.3, m = trainers.BpeTrainer(vocab_size=120,
// special_tokens=["[UNK]"]) on a small corpus; m.tokenize(s) for each input, the model JSON being
// Tokenizer(m).to_str()["model"].
TEST_CASE("BPE: a trained model on long words", "[models]") {
  const auto model = load(
      R"json({"type":"BPE","dropout":null,"unk_token":"[UNK]","continuing_subword_prefix":null,"end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{"[UNK]":0,"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17,"r":18,"s":19,"t":20,"u":21,"v":22,"w":23,"x":24,"y":25,"z":26,"on":27,"at":28,"ion":29,"ation":30,"er":31,"he":32,"ck":33,"iz":34,"ization":35,"el":36,"ick":37,"pe":38,"ter":39,"the":40,"al":41,"ea":42,"ed":43,"en":44,"in":45,"ip":46,"ken":47,"ls":48,"nation":49,"of":50,"oken":51,"pick":52,"re":53,"sh":54,"she":55,"sea":56,"token":57,"ternation":58,"alization":59,"internation":60,"tokenization":61,"internationalization":62,"ab":63,"az":64,"bi":65,"br":66,"by":67,"bel":68,"do":69,"ev":70,"fo":71,"it":72,"ibi":73,"iev":74,"ju":75,"le":76,"led":77,"lls":78,"laz":79,"lit":80,"mp":81,"nbel":82,"ov":83,"ow":84,"ore":85,"pp":86,"pon":87,"pip":88,"qu":89,"rel":90,"sel":91,"sibi":92,"spon":93,"unbel":94,"ationsh":95,"ers":96,"peck":97,"peter":98,"pepp":99,"picked":100,"pickled":101,"respon":102,"shore":103,"shells":104,"able":105,"brow":106,"dog":107,"fox":108,"ievable":109,"jump":110,"lazy":111,"lity":112,"over":113,"piper":114,"quick":115,"relationsh":116,"sells":117,"sibility":118,"unbelievable":119},"merges":[["o","n"],["a","t"],["i","on"],["at","ion"],["e","r"],["h","e"],["c","k"],["i","z"],["iz","ation"],["e","l"],["i","ck"],["p","e"],["t","er"],["t","he"],["a","l"],["e","a"],["e","d"],["e","n"],["i","n"],["i","p"],["k","en"],["l","s"],["n","ation"],["o","f"],["o","ken"],["p","ick"],["r","e"],["s","h"],["s","he"],["s","ea"],["t","oken"],["ter","nation"],["al","ization"],["in","ternation"],["token","ization"],["internation","alization"],["a","b"],["a","z"],["b","i"],["b","r"],["b","y"],["b","el"],["d","o"],["e","v"],["f","o"],["i","t"],["i","bi"],["i","ev"],["j","u"],["l","e"],["l","ed"],["l","ls"],["l","az"],["l","it"],["m","p"],["n","bel"],["o","v"],["o","w"],["o","re"],["p","p"],["p","on"],["p","ip"],["q","u"],["r","el"],["s","el"],["s","ibi"],["s","pon"],["u","nbel"],["ation","sh"],["er","s"],["pe","ck"],["pe","ter"],["pe","pp"],["pick","ed"],["pick","led"],["re","spon"],["sh","ore"],["she","lls"],["ab","le"],["br","ow"],["do","g"],["fo","x"],["iev","able"],["ju","mp"],["laz","y"],["lit","y"],["ov","er"],["pip","er"],["qu","ick"],["rel","ationsh"],["sel","ls"],["sibi","lity"],["unbel","ievable"]]})json");
  check_cases(
      *model,
      {
          {"internationalization", "62:internationalization@0-20"},
          {"unbelievableresponsibilitiesXYZ",
           "94:unbel@0-5 74:iev@5-8 63:ab@8-10 12:l@10-11 31:er@11-13 5:e@13-14 93:spon@14-18 "
           "92:sibi@18-22 80:lit@22-25 9:i@25-26 5:e@26-27 19:s@27-28 0:[UNK]@28-29 0:[UNK]@29-30 "
           "0:[UNK]@30-31"},
          {"pickled", "101:pickled@0-7"},
          {"zzzq", "26:z@0-1 26:z@1-2 26:z@2-3 17:q@3-4"},
          {"the", "40:the@0-3"},
          {"t", "20:t@0-1"},
          {"antidisestablishmentarianism",
           "1:a@0-1 14:n@1-2 20:t@2-3 9:i@3-4 4:d@4-5 9:i@5-6 19:s@6-7 5:e@7-8 19:s@8-9 20:t@9-10 "
           "63:ab@10-12 12:l@12-13 9:i@13-14 54:sh@14-16 13:m@16-17 44:en@17-19 20:t@19-20 "
           "1:a@20-21 18:r@21-22 9:i@22-23 1:a@23-24 14:n@24-25 9:i@25-26 19:s@26-27 13:m@27-28"},
      });
}

// Expected: python3 / tokenizers 0.23.3, m = trainers.UnigramTrainer(vocab_size=60,
// special_tokens=["<unk>"], unk_token="<unk>") on a small corpus; m.tokenize(s) for each input, the
// model JSON being Tokenizer(m).to_str()["model"].
TEST_CASE("Unigram: a trained model on long words", "[models]") {
  const auto model = load(
      R"json({"type":"Unigram","unk_id":0,"vocab":[["<unk>",0.0],["▁",-2.205886005405514],["l",-2.846967463020748],["i",-2.8615283508006195],["o",-2.875706957553785],["n",-2.93776727721373],["ation",-3.076733158397408],["e",-3.1147365206409896],["a",-3.1222545453178148],["s",-3.3453113823920395],["z",-3.4125647165353383],["t",-3.5489343837008027],["b",-3.6039577407022243],["p",-3.6713487123618282],["y",-3.926738487889888],["f",-3.9267384878898888],["d",-3.9267384878898888],["u",-3.926738487889894],["ter",-3.9431671775611195],["▁pe",-3.9929776379130733],["▁se",-4.006083825454141],["he",-4.155005397116486],["li",-4.25519338587438],["v",-4.336399195238586],["▁pick",-4.353366470660879],["per",-4.361946678813269],["r",-4.379881472975896],["▁re",-4.415862743231211],["▁she",-4.419178138273876],["▁t",-4.511458601740402],["ke",-4.604111520033511],["ck",-4.984951882289595],["▁sh",-5.015011095862777],["q",-5.042202577031279],["j",-5.042202577031279],["m",-5.042202577031279],["w",-5.042202577031279],["x",-5.042202577031279],["g",-5.042202577031279],["ons",-5.069730060347624],["ick",-5.094764195561146],["sh",-5.1156842810379795],["▁pi",-5.13826499767156],["▁b",-5.189281775231162],["h",-5.289412265526005],["er",-5.360052811282948],["re",-5.5722149908411485],["▁o",-5.784630947233797],["k",-5.834608094236539],["le",-5.839339235430545],["la",-6.175433801777421],["ip",-6.240682200197677],["el",-6.521760873953173],["pe",-7.904801700376545],["▁p",-8.077384794739274],["▁s",-8.312012400588497],["c",-9.884959951888113],["se",-9.884959951888113]],"byte_fallback":false})json");
  check_cases(
      *model,
      {
          {"▁internationalization",
           "1:▁@0-3 3:i@3-4 5:n@4-5 18:ter@5-8 5:n@8-9 6:ation@9-14 8:a@14-15 22:li@15-17 "
           "10:z@17-18 6:ation@18-23"},
          {"▁unbelievableresponsibilitiesXYZ",
           "1:▁@0-3 17:u@3-4 5:n@4-5 12:b@5-6 7:e@6-7 22:li@7-9 7:e@9-10 23:v@10-11 8:a@11-12 "
           "12:b@12-13 2:l@13-14 45:er@14-16 7:e@16-17 9:s@17-18 13:p@18-19 39:ons@19-22 3:i@22-23 "
           "12:b@23-24 3:i@24-25 22:li@25-27 11:t@27-28 3:i@28-29 7:e@29-30 9:s@30-31 0:XYZ@31-34"},
          {"▁pickled", "24:▁pick@0-7 49:le@7-9 16:d@9-10"},
          {"▁zzzq", "1:▁@0-3 10:z@3-4 10:z@4-5 10:z@5-6 33:q@6-7"},
          {"▁the", "29:▁t@0-4 21:he@4-6"},
          {"t", "11:t@0-1"},
          {"▁antidisestablishmentarianism",
           "1:▁@0-3 8:a@3-4 5:n@4-5 11:t@5-6 3:i@6-7 16:d@7-8 3:i@8-9 9:s@9-10 7:e@10-11 9:s@11-12 "
           "11:t@12-13 8:a@13-14 12:b@14-15 22:li@15-17 41:sh@17-19 35:m@19-20 7:e@20-21 5:n@21-22 "
           "11:t@22-23 8:a@23-24 26:r@24-25 3:i@25-26 8:a@26-27 5:n@27-28 3:i@28-29 9:s@29-30 "
           "35:m@30-31"},
      });
}

// ---------------------------------------------------------------------------------------
// Serialization variants, dispatch and errors
// ---------------------------------------------------------------------------------------

TEST_CASE("BPE: legacy \"a b\" merges load like pairs", "[models]") {
  // Same model as "BPE: merges by rank..." with merges.txt-style strings and a version line.
  const auto legacy = load(R"json({"type":"BPE","unk_token":"<unk>",
    "vocab":{"<unk>":0,"a":1,"e":2,"h":3,"l":4,"o":5,"lo":6,"he":7,"ll":8,"aa":9,"aaaa":10},
    "merges":["#version: 0.2","l o","h e","l l","a a","aa aa"]})json");
  const auto pairs = load(R"json({"type":"BPE","unk_token":"<unk>",
    "vocab":{"<unk>":0,"a":1,"e":2,"h":3,"l":4,"o":5,"lo":6,"he":7,"ll":8,"aa":9,"aaaa":10},
    "merges":[["l","o"],["h","e"],["l","l"],["a","a"],["aa","aa"]]})json");
  for (const char* word : {"hello", "aaaaaaa", "hallo", "x"}) {
    INFO(word);
    CHECK(describe(legacy->tokenize(word)) == describe(pairs->tokenize(word)));
  }
  CHECK(describe(legacy->tokenize("hello")) == "7:he@0-2 4:l@2-3 6:lo@3-5");
}

TEST_CASE("BPE: dropout", "[models]") {
  const char* base =
      R"json("vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]],"ignore_merges":true)json";
  // null and 0 mean no dropout.
  CHECK(describe(load(std::string("{\"dropout\":0.0,") + base + "}")->tokenize("abab")) ==
        "2:ab@0-2 2:ab@2-4");
  // 1.0 drops every merge, and (like the library's dropout path) skips ignore_merges:
  // models.BPE(vocab, merges, dropout=1.0, ignore_merges=True).tokenize("ab")
  //   -> [(0, 'a', (0, 1)), (1, 'b', (1, 2))]
  const auto all_dropped = load(std::string("{\"dropout\":1,") + base + "}");
  CHECK(describe(all_dropped->tokenize("ab")) == "0:a@0-1 1:b@1-2");
  CHECK(describe(all_dropped->tokenize("abab")) == "0:a@0-1 1:b@1-2 0:a@2-3 1:b@3-4");
  // Anything in between is random: refused.
  CHECK_THAT(config_error(std::string("{\"dropout\":0.5,") + base + "}"),
             Catch::Contains("dropout") && Catch::Contains("random"));
  CHECK_THAT(config_error(std::string("{\"dropout\":1.5,") + base + "}"),
             Catch::Contains("between 0 and 1"));
}

TEST_CASE("BPE: unk token missing from the vocabulary fails at encode time", "[models]") {
  // models.BPE(vocab={"a":0,"b":1,"ab":2}, merges=[("a","b")], unk_token="<unk>")
  //   .tokenize("abx") -> Exception: Unk token `<unk>` not found in the vocabulary
  const auto model = load(R"json({"type":"BPE","unk_token":"<unk>",
    "vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]]})json");
  CHECK(describe(model->tokenize("ab")) == "2:ab@0-2");
  CHECK_THROWS_AS(model->tokenize("abx"), EncodeError);
}

TEST_CASE("Models without \"type\" are detected like the library does", "[models]") {
  // BPE first (needs merges), then WordPiece (its four fields), then WordLevel, then Unigram.
  const auto bpe = load(R"json({"vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]})json");
  CHECK(dynamic_cast<const sparkd::tokenizer::BpeModel*>(bpe.get()) != nullptr);
  CHECK(describe(bpe->tokenize("ab")) == "2:ab@0-2");

  const auto wordpiece = load(R"json({"vocab":{"a":0,"##b":1},"unk_token":"a",
    "continuing_subword_prefix":"##","max_input_chars_per_word":5})json");
  CHECK(dynamic_cast<const sparkd::tokenizer::WordPieceModel*>(wordpiece.get()) != nullptr);

  const auto wordlevel = load(R"json({"vocab":{"a":0},"unk_token":"a",
    "continuing_subword_prefix":"##"})json");
  CHECK(dynamic_cast<const sparkd::tokenizer::WordLevelModel*>(wordlevel.get()) != nullptr);

  const auto unigram = load(R"json({"vocab":[["a",0.0]],"unk_id":0})json");
  CHECK(dynamic_cast<const sparkd::tokenizer::UnigramModel*>(unigram.get()) != nullptr);

  CHECK_THAT(config_error(R"json({"vocab":{"a":0}})json"), Catch::Contains("matches none"));
}

TEST_CASE("Model config errors name the problem", "[models]") {
  CHECK_THAT(config_error(R"json({"type":"Foo","vocab":{}})json"),
             Catch::Contains("\"Foo\"") && Catch::Contains("BPE, WordPiece, WordLevel, Unigram"));
  CHECK_THAT(config_error(R"json({"type":3})json"), Catch::Contains("\"type\""));
  CHECK_THAT(config_error("[]"), Catch::Contains("object"));
  // BPE
  CHECK_THAT(config_error(R"json({"type":"BPE","vocab":{"a":0}})json"), Catch::Contains("merges"));
  CHECK_THAT(config_error(R"json({"type":"BPE","vocab":{"a":0,"b":1},"merges":[["a","b"]]})json"),
             Catch::Contains("`ab`"));
  CHECK_THAT(config_error(R"json({"type":"BPE","vocab":{"a":0,"b":1},"merges":[["a","c"]]})json"),
             Catch::Contains("`c`"));
  CHECK_THAT(
      config_error(R"json({"type":"BPE","vocab":{"a":0},"merges":["#version: 0.2","a b c"]})json"),
      Catch::Contains("merge 1"));
  CHECK_THAT(config_error(R"json({"type":"BPE","vocab":{"a":0},"merges":[["a","b"],"a b"]})json"),
             Catch::Contains("merges"));
  CHECK_THAT(config_error(R"json({"type":"BPE","vocab":{"a":-1},"merges":[]})json"),
             Catch::Contains("\"a\""));
  CHECK_THAT(config_error(R"json({"type":"BPE","vocab":{"a":0},"merges":[],"fuse_unk":1})json"),
             Catch::Contains("fuse_unk"));
  // WordPiece: every field is mandatory.
  CHECK_THAT(config_error(R"json({"type":"WordPiece","vocab":{"a":0},"unk_token":"a",
    "continuing_subword_prefix":"##"})json"),
             Catch::Contains("max_input_chars_per_word"));
  // WordLevel
  CHECK_THAT(config_error(R"json({"type":"WordLevel","vocab":{}})json"),
             Catch::Contains("unk_token"));
  // Unigram
  CHECK_THAT(config_error(R"json({"type":"Unigram","unk_id":0})json"), Catch::Contains("vocab"));
  CHECK_THAT(config_error(R"json({"type":"Unigram","vocab":[["a",0.0]],"unk_id":1})json"),
             Catch::Contains("unk_id"));
  CHECK_THAT(config_error(R"json({"type":"Unigram","vocab":[],"unk_id":0})json"),
             Catch::Contains("empty"));
  CHECK_THAT(config_error(R"json({"type":"Unigram","vocab":[["a",0.0]],"byte_fallback":null})json"),
             Catch::Contains("byte_fallback"));
  CHECK_THAT(config_error(R"json({"type":"Unigram","vocab":[["a"]]})json"),
             Catch::Contains("[piece, score]"));
}

TEST_CASE("Vocabulary queries", "[models]") {
  const auto bpe = load(R"json({"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[]})json");
  CHECK(bpe->vocab_size() == 3);
  CHECK(bpe->token_to_id("ab") == 2u);
  CHECK_FALSE(bpe->token_to_id("c").has_value());
  REQUIRE(bpe->id_to_token(1) != nullptr);
  CHECK(*bpe->id_to_token(1) == "b");
  CHECK(bpe->id_to_token(3) == nullptr);

  // Sparse ids stay addressable without a dense table.
  const auto sparse = load(R"json({"type":"WordLevel","vocab":{"x":4000000000,"y":7},
    "unk_token":"x"})json");
  CHECK(sparse->vocab_size() == 2);
  REQUIRE(sparse->id_to_token(4000000000u) != nullptr);
  CHECK(*sparse->id_to_token(4000000000u) == "x");
  CHECK(sparse->id_to_token(8) == nullptr);

  // Unigram counts duplicate pieces; a duplicated piece maps to its last id:
  // t = Tokenizer(models.Unigram([("<unk>",0), ("a",-1), ("b",-1), ("ab",-2), ("a",-0.5),
  //     ("ba",-2), ("bab",-3)], 0, False)) -> get_vocab_size() 7, id_to_token(1) 'a',
  //     token_to_id('a') 4, id_to_token(7) None
  const auto unigram = load(R"json({"type":"Unigram","unk_id":0,"vocab":[["<unk>",0.0],
    ["a",-1.0],["b",-1.0],["ab",-2.0],["a",-0.5],["ba",-2.0],["bab",-3.0]]})json");
  CHECK(unigram->vocab_size() == 7);
  REQUIRE(unigram->id_to_token(1) != nullptr);
  CHECK(*unigram->id_to_token(1) == "a");
  CHECK(unigram->token_to_id("a") == 4u);
  CHECK(unigram->id_to_token(7) == nullptr);
}

TEST_CASE("WordPiece: empty word with max_input_chars_per_word 0", "[models]") {
  // models.WordPiece(vocab={"a":0}, unk_token="[UNK]", max_input_chars_per_word=0)
  //   .tokenize("") -> []
  const auto model = load(R"json({"type":"WordPiece","vocab":{"a":0},"unk_token":"[UNK]",
    "continuing_subword_prefix":"##","max_input_chars_per_word":0})json");
  CHECK(model->tokenize("").empty());
  CHECK_THROWS_AS(model->tokenize("a"), EncodeError);
}

TEST_CASE("BPE: concurrent tokenize calls agree with a single thread", "[models]") {
  // The model and its word cache are shared by all threads.
  const auto model = load(R"json({"type":"BPE","unk_token":"<unk>",
    "vocab":{"<unk>":0,"a":1,"b":2,"c":3,"ab":4,"bc":5,"abc":6,"abcabc":7},
    "merges":[["a","b"],["b","c"],["ab","c"],["abc","abc"]]})json");
  std::vector<std::string> words;
  for (int i = 1; i < 200; ++i) {
    std::string w;
    for (int j = 0; j < i % 37 + 1; ++j) w += "abcx"[(i * 7 + j * 3) % 4];
    words.push_back(w);
  }
  std::vector<std::string> expected;
  for (const auto& w : words) expected.push_back(describe(model->tokenize(w)));

  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        for (size_t i = 0; i < words.size(); ++i) {
          const size_t k = (i + static_cast<size_t>(t) * 31) % words.size();
          if (describe(model->tokenize(words[k])) != expected[k]) ++mismatches;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(mismatches.load() == 0);
}
