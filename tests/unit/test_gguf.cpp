// The GGUF reader: metadata of every value type, tensor infos, split sets, the checks a
// damaged file fails, and model references through the Ollama and Hugging Face stores.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/model/gguf.h"
#include "engine/model/gguf_model.h"
#include "engine/model/model_location.h"
#include "tests/support/gguf_writer.h"

namespace {

namespace fs = std::filesystem;
using sparkd::DType;
using sparkd::StatusCode;
using sparkd::model::GgufFile;
using sparkd::testing::GgufBytes;

const std::string kQuantTypes =
    std::string(SPARKD_SOURCE_DIR) + "/tests/fixtures/gguf/quant_types.gguf";

constexpr uint32_t kGgmlF32 = 0, kGgmlQ8_0 = 8, kGgmlIq2Xxs = 16;

// A valid file: two keys, an F32 [4] at data offset 0 and a Q8_0 [2, 32] at 32.
GgufBytes valid_file() {
  GgufBytes file;
  file.header(3, 2, 2)
      .key_string("general.architecture", "llama")
      .key_strings("tokenizer.ggml.tokens", {"a", "b"})
      .tensor("norm.weight", {4}, kGgmlF32, 0)
      .tensor("proj.weight", {32, 2}, kGgmlQ8_0, 32)
      .data(32, 32 + 2 * 34);
  return file;
}

sparkd::Expected<GgufFile> parse(const GgufBytes& file) {
  return sparkd::model::parse_gguf_bytes(file.bytes, "test.gguf");
}

// The error of parsing `file`, which must fail with `code`.
std::string error_of(const GgufBytes& file, StatusCode code = StatusCode::kDataLoss) {
  auto parsed = parse(file);
  REQUIRE_FALSE(parsed.has_value());
  INFO(parsed.status().to_string());
  CHECK(parsed.status().code() == code);
  return parsed.status().message();
}

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("sparkd-gguf-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }
  void write(const fs::path& relative, const std::vector<uint8_t>& bytes) const {
    fs::create_directories((path_ / relative).parent_path());
    std::ofstream(path_ / relative, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
  }
  void write(const fs::path& relative, const std::string& text) const {
    write(relative, std::vector<uint8_t>(text.begin(), text.end()));
  }

 private:
  fs::path path_;
};

}  // namespace

TEST_CASE("gguf: the fixture's metadata, every value type", "[gguf]") {
  auto model = sparkd::model::read_gguf_model(kQuantTypes);
  REQUIRE(model.has_value());
  const GgufFile& file = model->parts.at(0);
  CHECK(file.version == 3);
  CHECK(file.alignment == 64);
  CHECK(file.data_offset % 64 == 0);
  const auto& m = file.metadata;
  CHECK(*m.integer("test.uint8") == 200);
  CHECK(*m.integer("test.int8") == -100);
  CHECK(*m.integer("test.uint16") == 60000);
  CHECK(*m.integer("test.int16") == -30000);
  CHECK(*m.integer("test.uint32") == 4000000000);
  CHECK(*m.integer("test.int32") == -2000000000);
  CHECK(**m.optional_number("test.float32") == 0.25);
  CHECK(**m.optional_bool("test.bool") == true);
  CHECK(*m.string("test.string") == "h\xc3\xa9llo, GGUF");
  CHECK(*m.integer("test.uint64") == (int64_t{1} << 40));
  CHECK(*m.integer("test.int64") == -(int64_t{1} << 40));
  CHECK(**m.optional_number("test.float64") == 1e-300);
  CHECK(**m.string_array("test.strings") == std::vector<std::string>{"a", "", "\xc3\xbc"});
  CHECK(**m.integer_array("test.integers") == std::vector<int64_t>{1, -2, 3});
  CHECK(**m.number_array("test.floats") == std::vector<double>{0.5, -1.5});
  CHECK(*m.string("general.architecture") == "sparkd-test");
  CHECK_FALSE(m.optional_integer("test.absent")->has_value());

  // A key of the wrong type names the key, both types and the file.
  auto wrong = m.optional_integer("test.string");
  REQUIRE_FALSE(wrong.has_value());
  CHECK_THAT(wrong.status().message(), Catch::Contains("'test.string' is string, not an integer") &&
                                           Catch::Contains("quant_types.gguf"));
  auto missing = m.integer("test.absent");
  REQUIRE_FALSE(missing.has_value());
  CHECK_THAT(missing.status().message(), Catch::Contains("'test.absent' is missing"));
}

TEST_CASE("gguf: a valid file's tensors: shapes outermost first, offsets absolute", "[gguf]") {
  auto parsed = parse(valid_file());
  REQUIRE(parsed.has_value());
  REQUIRE(parsed->tensors.size() == 2);
  const auto& proj = parsed->tensors[1];
  CHECK(proj.name == "proj.weight");
  CHECK(proj.dtype == DType::kQ8_0);
  CHECK(proj.shape == std::vector<int64_t>{2, 32});
  CHECK(proj.size_bytes == 68);
  CHECK(proj.file_offset == parsed->data_offset + 32);
  CHECK(parsed->data_offset % 32 == 0);
}

TEST_CASE("gguf: damaged headers fail with the file, the field and the numbers", "[gguf]") {
  SECTION("not GGUF") {
    GgufBytes file = valid_file();
    std::memcpy(file.bytes.data(), "PK\x03\x04", 4);
    CHECK_THAT(error_of(file),
               Catch::Contains("test.gguf: not a GGUF file") && Catch::Contains("\"PK??\""));
  }
  SECTION("versions 1 and 4") {
    for (uint32_t version : {1u, 4u}) {
      GgufBytes file;
      file.header(version, 0, 0);
      CHECK_THAT(error_of(file, StatusCode::kUnimplemented),
                 Catch::Contains("GGUF version " + std::to_string(version)) &&
                     Catch::Contains("versions 2 and 3"));
    }
  }
  SECTION("truncated anywhere") {
    const GgufBytes whole = valid_file();
    // Every cut inside the header is an error, never a crash or a partial success.
    const size_t header_end = whole.bytes.size() - 100;
    for (size_t cut = 0; cut < header_end; ++cut) {
      GgufBytes file;
      file.bytes.assign(whole.bytes.begin(), whole.bytes.begin() + static_cast<long>(cut));
      auto parsed = parse(file);
      INFO("cut at " << cut);
      REQUIRE_FALSE(parsed.has_value());
      CHECK(parsed.status().code() == StatusCode::kDataLoss);
    }
    GgufBytes file = whole;
    file.bytes.resize(file.bytes.size() - 1);  // the last tensor's last byte
    CHECK_THAT(error_of(file), Catch::Contains("tensor 'proj.weight' needs bytes [") &&
                                   Catch::Contains("but the file ends at"));
  }
  SECTION("counts the file cannot hold") {
    GgufBytes file;
    file.header(3, 0, uint64_t{1} << 60);
    CHECK_THAT(error_of(file), Catch::Contains("1152921504606846976 metadata keys"));
    GgufBytes array;
    array.header(3, 0, 1)
        .string("big")
        .scalar<uint32_t>(GgufBytes::kArray)
        .scalar<uint32_t>(GgufBytes::kString)
        .scalar<uint64_t>(uint64_t{1} << 40);
    CHECK_THAT(error_of(array), Catch::Contains("array 'big' says it has 1099511627776 elements"));
    GgufBytes text;
    text.header(3, 0, 1)
        .string("s")
        .scalar<uint32_t>(GgufBytes::kString)
        .scalar<uint64_t>(1000)
        .string("short");
    CHECK_THAT(error_of(text), Catch::Contains("the value of key 's' says it is 1000 bytes"));
  }
  SECTION("bad value types") {
    GgufBytes file;
    file.header(3, 0, 1).string("k").scalar<uint32_t>(13).scalar<uint32_t>(0);
    CHECK_THAT(error_of(file), Catch::Contains("key 'k' has unknown value type 13"));
    GgufBytes nested;
    nested.header(3, 0, 1)
        .string("n")
        .scalar<uint32_t>(GgufBytes::kArray)
        .scalar<uint32_t>(GgufBytes::kArray)
        .scalar<uint64_t>(0);
    CHECK_THAT(error_of(nested, StatusCode::kUnimplemented), Catch::Contains("array of arrays"));
    GgufBytes twice;
    twice.header(3, 0, 2).key_u32("k", 1).key_u32("k", 2);
    CHECK_THAT(error_of(twice), Catch::Contains("metadata key 'k' appears twice"));
    GgufBytes alignment;
    alignment.header(3, 0, 1).key_u32("general.alignment", 24);
    CHECK_THAT(error_of(alignment), Catch::Contains("general.alignment is 24, not a power of two"));
  }
  SECTION("tensor infos") {
    auto one_tensor = [](std::vector<uint64_t> dims, uint32_t type, uint64_t offset,
                         size_t data_bytes) {
      GgufBytes file;
      file.header(3, 1, 0).tensor("t", std::move(dims), type, offset).data(32, data_bytes);
      return file;
    };
    CHECK_THAT(error_of(one_tensor({32, 2}, kGgmlIq2Xxs, 0, 256), StatusCode::kUnimplemented),
               Catch::Contains("tensor 't' has type IQ2_XXS (16), which sparkd does not run") &&
                   Catch::Contains("supported: F32, F16, BF16, Q4_0") && Catch::Contains("MXFP4"));
    CHECK_THAT(error_of(one_tensor({32, 2}, 99, 0, 256), StatusCode::kUnimplemented),
               Catch::Contains("type unknown (99)"));
    CHECK_THAT(error_of(one_tensor({48}, kGgmlQ8_0, 0, 64)),
               Catch::Contains("rows of 48 values, not a multiple of Q8_0's block of 32"));
    CHECK_THAT(error_of(one_tensor({4}, kGgmlF32, 8, 64)),
               Catch::Contains("starts at data offset 8, not a multiple of the alignment 32"));
    CHECK_THAT(error_of(one_tensor({4, 0}, kGgmlF32, 0, 64)),
               Catch::Contains("has dimension 1 of 0"));
    CHECK_THAT(error_of(one_tensor({1, 1, 1, 1, 1}, kGgmlF32, 0, 64)),
               Catch::Contains("has rank 5 (1 to 4 allowed)"));
    CHECK_THAT(error_of(one_tensor({uint64_t{1} << 40, uint64_t{1} << 40}, kGgmlF32, 0, 64)),
               Catch::Contains("is too large"));
    CHECK_THAT(
        error_of(one_tensor({64}, kGgmlF32, 0, 255)),
        Catch::Contains("tensor 't' needs bytes [") && Catch::Contains("but the file ends at"));

    GgufBytes overlap;
    overlap.header(3, 2, 0)
        .tensor("a", {16}, kGgmlF32, 0)
        .tensor("b", {16}, kGgmlF32, 32)
        .data(32, 128);
    CHECK_THAT(error_of(overlap),
               Catch::Contains("tensor 'a' (bytes [") && Catch::Contains("overlaps tensor 'b'"));
    GgufBytes twice;
    twice.header(3, 2, 0).tensor("a", {4}, kGgmlF32, 0).tensor("a", {4}, kGgmlF32, 32).data(32, 64);
    CHECK_THAT(error_of(twice), Catch::Contains("tensor 'a' appears twice"));
  }
}

TEST_CASE("gguf: split sets are read whole from any part, and a missing part is named", "[gguf]") {
  TempDir dir;
  auto part = [](uint16_t number, const std::string& tensor) {
    GgufBytes file;
    file.header(3, 1, number == 0 ? 4 : 2);
    if (number == 0) {
      file.key_string("general.architecture", "llama").key_u32("split.tensors.count", 2);
    }
    file.string("split.no").scalar<uint32_t>(GgufBytes::kUint16).scalar<uint16_t>(number);
    file.string("split.count").scalar<uint32_t>(GgufBytes::kUint16).scalar<uint16_t>(2);
    file.tensor(tensor, {8}, kGgmlF32, 0).data(32, 32);
    return file.bytes;
  };
  dir.write("m-00001-of-00002.gguf", part(0, "first"));
  dir.write("m-00002-of-00002.gguf", part(1, "second"));

  auto model = sparkd::model::read_gguf_model((dir.path() / "m-00002-of-00002.gguf").string());
  REQUIRE(model.has_value());
  REQUIRE(model->parts.size() == 2);
  CHECK(*model->metadata().string("general.architecture") == "llama");
  const auto tensors = model->tensors();
  REQUIRE(tensors.size() == 2);
  CHECK(tensors.at("second")->part == 1);
  CHECK(tensors.at("second")->file_offset == model->parts[1].data_offset);

  auto location = sparkd::model::locate_model(dir.path().string());
  REQUIRE(location.has_value());
  CHECK(location->path == (dir.path() / "m-00001-of-00002.gguf").string());

  fs::remove(dir.path() / "m-00002-of-00002.gguf");
  auto missing = sparkd::model::read_gguf_model((dir.path() / "m-00001-of-00002.gguf").string());
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.status().code() == StatusCode::kNotFound);
  CHECK_THAT(missing.status().message(),
             Catch::Contains("part 2 of 2 is missing") && Catch::Contains("m-00002-of-00002.gguf"));

  // A part that says it is another part.
  dir.write("m-00002-of-00002.gguf", part(0, "second"));
  auto wrong = sparkd::model::read_gguf_model((dir.path() / "m-00001-of-00002.gguf").string());
  REQUIRE_FALSE(wrong.has_value());
  CHECK_THAT(wrong.status().message(), Catch::Contains("do not say part 1 of 2"));
}

TEST_CASE("gguf: ollama: and hf: references resolve through their stores", "[gguf]") {
  TempDir store;
  const std::vector<uint8_t> gguf = valid_file().bytes;
  const std::string digest(64, 'a');
  store.write("ollama/blobs/sha256-" + digest, gguf);
  store.write("ollama/manifests/registry.ollama.ai/library/tiny/q4",
              R"({"schemaVersion":2,"layers":[)"
              R"({"mediaType":"application/vnd.ollama.image.template","digest":"sha256:)" +
                  std::string(64, 'b') +
                  R"("},)"
                  R"({"mediaType":"application/vnd.ollama.image.model","digest":"sha256:)" +
                  digest + R"(","size":184}]})");
  ::setenv("OLLAMA_MODELS", (store.path() / "ollama").c_str(), 1);

  auto found = sparkd::model::locate_model("ollama:tiny:q4");
  REQUIRE(found.has_value());
  CHECK(found->format == sparkd::model::ModelFormat::kGguf);
  CHECK(found->path == (store.path() / ("ollama/blobs/sha256-" + digest)).string());

  auto no_tag = sparkd::model::locate_model("ollama:tiny");
  REQUIRE_FALSE(no_tag.has_value());
  CHECK(no_tag.status().code() == StatusCode::kNotFound);
  CHECK_THAT(no_tag.status().message(),
             Catch::Contains("Ollama model library/tiny:latest") &&
                 Catch::Contains("manifests/registry.ollama.ai/library/tiny/latest"));
  auto bad = sparkd::model::locate_model("ollama:../etc:x");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.status().code() == StatusCode::kInvalidArgument);
  ::unsetenv("OLLAMA_MODELS");

  const std::string commit(40, 'c');
  store.write("hub/models--org--tiny/refs/main", commit + "\n");
  store.write("hub/models--org--tiny/snapshots/" + commit + "/tiny-q8_0.gguf", gguf);
  ::setenv("HF_HUB_CACHE", (store.path() / "hub").c_str(), 1);
  auto hf = sparkd::model::locate_model("hf:org/tiny");
  REQUIRE(hf.has_value());
  CHECK(hf->path ==
        (store.path() / "hub/models--org--tiny/snapshots" / commit / "tiny-q8_0.gguf").string());
  auto other = sparkd::model::locate_model("hf:org/tiny@v2");
  REQUIRE_FALSE(other.has_value());
  CHECK_THAT(other.status().message(), Catch::Contains("org/tiny@v2"));
  ::unsetenv("HF_HUB_CACHE");
}

// A `bert` GGUF (as llama.cpp's converter writes an embedder) becomes a BertModel spec with
// its pooling; pooling types sparkd does not serve are refused by name.
TEST_CASE("gguf: bert embedders, and the bert pooling types sparkd refuses", "[gguf]") {
  const auto bert = [](uint32_t pooling) {
    GgufBytes file;
    file.header(3, 3, 7)
        .key_string("general.architecture", "bert")
        .key_u32("bert.embedding_length", 64)
        .key_u32("bert.block_count", 2)
        .key_u32("bert.feed_forward_length", 128)
        .key_u32("bert.attention.head_count", 4)
        .key_u32("bert.pooling_type", pooling)
        .key_strings("tokenizer.ggml.tokens", {"a", "b"})
        .tensor("token_embd.weight", {64, 30}, kGgmlF32, 0)
        .tensor("position_embd.weight", {64, 16}, kGgmlF32, 64 * 30 * 4)
        .tensor("token_types.weight", {64, 2}, kGgmlF32, 64 * 46 * 4)
        .data(32, 64 * 48 * 4);
    auto parsed = parse(file);
    REQUIRE(parsed.has_value());
    return sparkd::model::gguf_model_spec(sparkd::model::GgufModel{{*parsed}});
  };
  auto mean = bert(1);
  REQUIRE(mean.has_value());
  CHECK(mean->architecture == "BertModel");
  CHECK(mean->task == sparkd::model::ModelTask::kEmbed);
  CHECK_FALSE(mean->is_decoder);
  CHECK(mean->pooling == sparkd::model::Pooling::kMean);
  CHECK(mean->normalize_embeddings);
  CHECK(mean->head_dim == 16);
  CHECK(mean->vocab_size == 30);
  CHECK(mean->max_position_embeddings == 16);
  CHECK(mean->type_vocab_size == 2);
  CHECK(bert(2)->pooling == sparkd::model::Pooling::kCls);
  for (uint32_t refused : {0u, 4u}) {
    auto spec = bert(refused);
    REQUIRE_FALSE(spec.has_value());
    CHECK(spec.status().code() == StatusCode::kUnimplemented);
    CHECK_THAT(spec.status().message(),
               Catch::Contains("bert.pooling_type " + std::to_string(refused)));
  }
  CHECK_THAT(bert(4).status().message(), Catch::Contains("reranker"));
}
