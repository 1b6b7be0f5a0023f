// safetensors headers: good files (single and sharded) parse to the right table, and every
// way a file can be damaged gives its own error naming the file and the tensor.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/model/safetensors.h"
#include "tests/support/safetensors_writer.h"

namespace {

using nlohmann::json;
using sparkd::DType;
using sparkd::StatusCode;
using sparkd::model::kMaxSafetensorsHeaderBytes;
using sparkd::model::parse_safetensors_header;
using sparkd::model::read_model_safetensors;
using sparkd::model::read_safetensors_header;
using sparkd::model::SafetensorsHeader;
using sparkd::testing::safetensors_bytes;
using sparkd::testing::safetensors_file;

// A scratch directory removed at the end of the test.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("sparkd-safetensors-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string write(const std::string& name, const std::string& content) const {
    std::ofstream(path / name, std::ios::binary) << content;
    return (path / name).string();
  }
};

sparkd::Expected<SafetensorsHeader> parse(const std::string& bytes) {
  return parse_safetensors_header(
      std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), bytes.size(),
      "test.safetensors");
}

// A one-tensor file whose entry is `entry` and whose data area is `data_size` bytes.
std::string one_entry(const json& entry, size_t data_size = 64) {
  return safetensors_bytes(json{{"w", entry}}.dump(), std::string(data_size, '\0'));
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The call must have failed with `code` and a message holding every one of `needles`.
template <typename T>
void check_failure(const sparkd::Expected<T>& result, StatusCode code,
                   const std::vector<std::string>& needles) {
  REQUIRE_FALSE(result.has_value());
  INFO(result.status().to_string());
  CHECK(result.status().code() == code);
  for (const std::string& needle : needles) CHECK(contains(result.status().message(), needle));
}

// The parse error must have `code` and name the file and every one of `needles`.
void check_error(const sparkd::Expected<SafetensorsHeader>& result, StatusCode code,
                 std::vector<std::string> needles) {
  needles.push_back("test.safetensors");
  check_failure(result, code, needles);
}

}  // namespace

TEST_CASE("a valid header lists its tensors in file order with absolute offsets",
          "[model][safetensors]") {
  // Written in name order "b", "a", "c" but laid out a, c, b in the data area.
  json header = {
      {"b", {{"dtype", "BF16"}, {"shape", {2, 2}}, {"data_offsets", {24, 32}}}},
      {"a", {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {0, 16}}}},
      {"c", {{"dtype", "F16"}, {"shape", {4}}, {"data_offsets", {16, 24}}}},
      {"empty", {{"dtype", "F32"}, {"shape", {0, 3}}, {"data_offsets", {32, 32}}}},
      {"__metadata__", {{"format", "pt"}}},
  };
  const std::string text = header.dump();
  const std::string bytes = safetensors_bytes(text, std::string(32, '\x01'));
  auto parsed = parse(bytes);
  REQUIRE(parsed.has_value());
  CHECK(parsed->path == "test.safetensors");
  CHECK(parsed->file_size_bytes == bytes.size());
  CHECK(parsed->data_offset == 8 + text.size());
  CHECK(parsed->metadata.at("format") == "pt");
  REQUIRE(parsed->tensors.size() == 4);
  CHECK(parsed->tensors[0].name == "a");
  CHECK(parsed->tensors[0].dtype == DType::kF32);
  CHECK(parsed->tensors[0].file_offset == parsed->data_offset);
  CHECK(parsed->tensors[0].size_bytes == 16);
  CHECK(parsed->tensors[1].name == "c");
  CHECK(parsed->tensors[1].dtype == DType::kF16);
  CHECK(parsed->tensors[1].shape == std::vector<int64_t>{4});
  CHECK(parsed->tensors[1].file_offset == parsed->data_offset + 16);
  CHECK(parsed->tensors[2].name == "b");
  CHECK(parsed->tensors[2].dtype == DType::kBF16);
  CHECK(parsed->tensors[3].name == "empty");
  CHECK(parsed->tensors[3].size_bytes == 0);
}

TEST_CASE("headers padded with spaces and gaps between tensors are accepted",
          "[model][safetensors]") {
  json header = {{"a", {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {8, 12}}}}};
  auto parsed = parse(safetensors_bytes(header.dump() + "      ", std::string(16, '\0')));
  REQUIRE(parsed.has_value());
  CHECK(parsed->tensors.at(0).file_offset == parsed->data_offset + 8);
}

TEST_CASE("scalars (shape []) are one element", "[model][safetensors]") {
  auto parsed =
      parse(one_entry({{"dtype", "F32"}, {"shape", json::array()}, {"data_offsets", {0, 4}}}, 4));
  REQUIRE(parsed.has_value());
  CHECK(parsed->tensors.at(0).size_bytes == 4);
}

TEST_CASE("safetensors: files too short for the header length", "[model][safetensors]") {
  check_error(parse("\x01\x02\x03"), StatusCode::kDataLoss, {"3 bytes", "8-byte header length"});
  check_error(parse(""), StatusCode::kDataLoss, {"0 bytes", "shorter"});
}

TEST_CASE("safetensors: header length past the end of the file", "[model][safetensors]") {
  std::string bytes = safetensors_bytes("{}", "");
  bytes[0] = 100;  // claims 100 bytes of header; the file has 2
  check_error(parse(bytes), StatusCode::kDataLoss,
              {"header length 100 bytes", "past the end of the file (10 bytes)"});
  // A pickle or text file mistaken for safetensors: its first 8 bytes are a huge "length".
  check_error(parse("PK\x03\x04 this is a zip file, not safetensors"), StatusCode::kDataLoss,
              {"header length", "past the end", "not a safetensors file"});
}

TEST_CASE("safetensors: header length above the limit", "[model][safetensors]") {
  const uint64_t length = kMaxSafetensorsHeaderBytes + 1;
  std::string prefix(8, '\0');
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  // Only the 8-byte prefix is passed: the file size is claimed, never read.
  auto parsed = parse_safetensors_header(
      std::span(reinterpret_cast<const uint8_t*>(prefix.data()), prefix.size()), 1ull << 30,
      "test.safetensors");
  check_error(parsed, StatusCode::kDataLoss,
              {"header length " + std::to_string(length), "exceeds the limit of 104857600"});
}

TEST_CASE("safetensors: a header that is not a JSON object", "[model][safetensors]") {
  check_error(parse(safetensors_bytes("{\"a\": ", "")), StatusCode::kDataLoss,
              {"header is not valid JSON", "parse error"});
  check_error(parse(safetensors_bytes("[1, 2]", "")), StatusCode::kDataLoss,
              {"must be a JSON object", "array"});
  check_error(parse(safetensors_bytes(R"({"w": [1, 2]})", "")), StatusCode::kDataLoss,
              {"tensor 'w'", "entry must be an object"});
  check_error(parse(safetensors_bytes(R"({"__metadata__": {"format": 3}})", "")),
              StatusCode::kDataLoss, {"__metadata__", "'format'", "must be a string"});
  check_error(parse(safetensors_bytes(R"({"__metadata__": []})", "")), StatusCode::kDataLoss,
              {"__metadata__", "must be an object of strings"});
  // Invalid UTF-8 inside a string is rejected by the JSON parser, not passed on.
  check_error(parse(safetensors_bytes("{\"\xff\": {}}", "")), StatusCode::kDataLoss,
              {"not valid JSON"});
}

TEST_CASE("safetensors: missing or malformed dtype, shape and data_offsets",
          "[model][safetensors]") {
  check_error(parse(one_entry({{"shape", {1}}, {"data_offsets", {0, 4}}})), StatusCode::kDataLoss,
              {"tensor 'w'", "missing \"dtype\""});
  check_error(parse(one_entry({{"dtype", 7}, {"shape", {1}}, {"data_offsets", {0, 4}}})),
              StatusCode::kDataLoss, {"tensor 'w'", "\"dtype\" must be a string, got 7"});
  check_error(parse(one_entry({{"dtype", "F32"}, {"data_offsets", {0, 4}}})), StatusCode::kDataLoss,
              {"tensor 'w'", "missing \"shape\""});
  check_error(parse(one_entry({{"dtype", "F32"}, {"shape", "4"}, {"data_offsets", {0, 4}}})),
              StatusCode::kDataLoss, {"tensor 'w'", "\"shape\" must be an array"});
  check_error(parse(one_entry({{"dtype", "F32"}, {"shape", {1.5}}, {"data_offsets", {0, 4}}})),
              StatusCode::kDataLoss, {"tensor 'w'", "1.5", "not an integer"});
  check_error(parse(one_entry({{"dtype", "F32"}, {"shape", {1}}})), StatusCode::kDataLoss,
              {"tensor 'w'", "missing \"data_offsets\""});
  check_error(parse(one_entry({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0}}})),
              StatusCode::kDataLoss, {"tensor 'w'", "\"data_offsets\" must be [begin, end]"});
  check_error(parse(one_entry({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {-4, 0}}})),
              StatusCode::kDataLoss, {"tensor 'w'", "non-negative integers, got [-4, 0]"});
  check_error(parse(one_entry({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", "0-4"}})),
              StatusCode::kDataLoss, {"tensor 'w'", "data_offsets"});
}

TEST_CASE("safetensors: unknown dtypes list the supported ones", "[model][safetensors]") {
  check_error(parse(one_entry({{"dtype", "Q4_K"}, {"shape", {1}}, {"data_offsets", {0, 4}}})),
              StatusCode::kDataLoss,
              {"tensor 'w'", "unknown dtype \"Q4_K\"", "supported: F32, F16, BF16"});
}

TEST_CASE("safetensors: known dtypes sparkd does not run are UNIMPLEMENTED",
          "[model][safetensors]") {
  struct Case {
    const char* dtype;
    int bytes;
  };
  for (const Case c : {Case{"I64", 8}, Case{"F8_E4M3", 1}, Case{"BOOL", 1}, Case{"F64", 8},
                       Case{"I8", 1}, Case{"U8", 1}}) {
    INFO(c.dtype);
    check_error(
        parse(one_entry({{"dtype", c.dtype}, {"shape", {2}}, {"data_offsets", {0, 2 * c.bytes}}})),
        StatusCode::kUnimplemented,
        {"tensor 'w'", std::string("unsupported dtype ") + c.dtype, "F32, F16 and BF16"});
  }
}

TEST_CASE("safetensors: integer position_ids buffers are validated and set aside",
          "[model][safetensors]") {
  // Older transformers saved BERT's position_ids (I64) with the weights.
  json header = {
      {"embeddings.position_ids", {{"dtype", "I64"}, {"shape", {1, 4}}, {"data_offsets", {0, 32}}}},
      {"embeddings.word_embeddings.weight",
       {{"dtype", "F32"}, {"shape", {2, 2}}, {"data_offsets", {32, 48}}}},
  };
  auto parsed = parse(safetensors_bytes(header.dump(), std::string(48, '\0')));
  REQUIRE(parsed.has_value());
  REQUIRE(parsed->tensors.size() == 1);
  CHECK(parsed->tensors[0].name == "embeddings.word_embeddings.weight");
  CHECK(parsed->ignored_tensors == std::vector<std::string>{"embeddings.position_ids"});
  // Set aside only once they pass the same checks as every tensor.
  header["embeddings.position_ids"]["data_offsets"] = {0, 40};
  check_error(parse(safetensors_bytes(header.dump(), std::string(48, '\0'))), StatusCode::kDataLoss,
              {"embeddings.position_ids", "needs 32 bytes"});
}

TEST_CASE("safetensors: bad shapes", "[model][safetensors]") {
  check_error(parse(one_entry({{"dtype", "F32"}, {"shape", {2, -3}}, {"data_offsets", {0, 4}}})),
              StatusCode::kDataLoss, {"tensor 'w'", "negative dimension -3"});
  // 2^32 * 2^32 elements overflow 64 bits.
  check_error(
      parse(one_entry(
          {{"dtype", "F32"}, {"shape", {4294967296ull, 4294967296ull}}, {"data_offsets", {0, 4}}})),
      StatusCode::kDataLoss, {"tensor 'w'", "[4294967296, 4294967296]", "64-bit"});
  // 2^62 elements fit; their 2^64 bytes do not.
  check_error(
      parse(one_entry(
          {{"dtype", "F32"}, {"shape", {4611686018427387904ull}}, {"data_offsets", {0, 4}}})),
      StatusCode::kDataLoss, {"tensor 'w'", "64-bit"});
  check_error(
      parse(one_entry(
          {{"dtype", "F32"}, {"shape", {18446744073709551615ull}}, {"data_offsets", {0, 4}}})),
      StatusCode::kDataLoss, {"tensor 'w'", "signed 64-bit"});
  check_error(
      parse(one_entry(
          {{"dtype", "F32"}, {"shape", {1, 1, 1, 1, 1, 1, 1, 1, 1}}, {"data_offsets", {0, 4}}})),
      StatusCode::kDataLoss, {"tensor 'w'", "9 dimensions", "at most 8"});
}

TEST_CASE("safetensors: data_offsets that disagree with the shape", "[model][safetensors]") {
  check_error(parse(one_entry({{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {8, 4}}})),
              StatusCode::kDataLoss, {"tensor 'w'", "data_offsets [8, 4] begin after they end"});
  check_error(parse(one_entry({{"dtype", "BF16"}, {"shape", {2, 3}}, {"data_offsets", {0, 10}}})),
              StatusCode::kDataLoss,
              {"tensor 'w': shape [2, 3] of BF16 needs 12 bytes but data_offsets [0, 10] span 10"});
}

TEST_CASE("safetensors: a truncated data area", "[model][safetensors]") {
  check_error(
      parse(one_entry({{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}, 16)),
      StatusCode::kDataLoss,
      {"truncated file: tensor 'w' ends at byte 24 of the data area but the file holds "
       "only 16 bytes of data"});
  // Offsets near 2^64 must not wrap around when added to the data area's start.
  check_error(
      parse(one_entry({{"dtype", "F32"},
                       {"shape", {1}},
                       {"data_offsets", {18446744073709551612ull, 18446744073709551615ull}}})),
      StatusCode::kDataLoss, {"tensor 'w'", "needs 4 bytes"});
  check_error(
      parse(one_entry({{"dtype", "F32"},
                       {"shape", {1}},
                       {"data_offsets", {18446744073709551611ull, 18446744073709551615ull}}})),
      StatusCode::kDataLoss, {"truncated file", "tensor 'w'"});
}

TEST_CASE("safetensors: overlapping tensors name both", "[model][safetensors]") {
  json header = {
      {"first", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 16}}}},
      {"second", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {8, 24}}}},
  };
  check_error(parse(safetensors_bytes(header.dump(), std::string(24, '\0'))), StatusCode::kDataLoss,
              {"tensors 'first' and 'second' overlap", "[0, 16)", "[8, 24)"});
  // A tensor nested inside an earlier, longer one.
  header = {
      {"big", {{"dtype", "F32"}, {"shape", {16}}, {"data_offsets", {0, 64}}}},
      {"mid", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {8, 16}}}},
      {"tail", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {32, 40}}}},
  };
  check_error(parse(safetensors_bytes(header.dump(), std::string(64, '\0'))), StatusCode::kDataLoss,
              {"'big' and 'mid' overlap"});
  // Empty tensors own no bytes, so sharing an offset is fine.
  header = {
      {"a", {{"dtype", "F32"}, {"shape", {4}}, {"data_offsets", {0, 16}}}},
      {"empty", {{"dtype", "F32"}, {"shape", {0}}, {"data_offsets", {8, 8}}}},
  };
  CHECK(parse(safetensors_bytes(header.dump(), std::string(16, '\0'))).has_value());
}

TEST_CASE("read_safetensors_header reads a file and names it in errors", "[model][safetensors]") {
  TempDir dir;
  const std::string good =
      dir.write("good.safetensors", safetensors_file({{"x", "F32", {2}, std::string(8, '\0')}}));
  auto header = read_safetensors_header(good);
  REQUIRE(header.has_value());
  CHECK(header->path == good);
  CHECK(header->tensors.at(0).name == "x");

  const std::string tiny = dir.write("tiny.safetensors", "abc");
  check_failure(read_safetensors_header(tiny), StatusCode::kDataLoss, {tiny, "3 bytes"});

  // The file ends inside its header.
  std::string cut = safetensors_file({{"x", "F32", {2}, std::string(8, '\0')}});
  const std::string truncated = dir.write("cut.safetensors", cut.substr(0, 20));
  auto cut_header = read_safetensors_header(truncated);
  REQUIRE_FALSE(cut_header.has_value());
  CHECK(contains(cut_header.status().message(), "past the end of the file (20 bytes)"));

  check_failure(read_safetensors_header((dir.path / "nope.safetensors").string()),
                StatusCode::kNotFound, {"nope.safetensors"});
}

TEST_CASE("read_model_safetensors: one model.safetensors", "[model][safetensors]") {
  TempDir dir;
  dir.write("model.safetensors", safetensors_file({{"a", "F32", {1}, std::string(4, '\0')},
                                                   {"b", "BF16", {2}, std::string(4, '\0')}}));
  auto headers = read_model_safetensors(dir.path.string());
  REQUIRE(headers.has_value());
  REQUIRE(headers->size() == 1);
  CHECK(headers->at(0).tensors.size() == 2);
}

TEST_CASE("read_model_safetensors: shards listed by model.safetensors.index.json",
          "[model][safetensors]") {
  TempDir dir;
  dir.write("model-00001-of-00002.safetensors",
            safetensors_file({{"a", "F32", {1}, std::string(4, '\0')},
                              {"b", "F32", {1}, std::string(4, '\0')}}));
  dir.write("model-00002-of-00002.safetensors",
            safetensors_file({{"c", "F16", {2}, std::string(4, '\0')}}));
  json index = {{"metadata", {{"total_size", 12}}},
                {"weight_map",
                 {{"a", "model-00001-of-00002.safetensors"},
                  {"b", "model-00001-of-00002.safetensors"},
                  {"c", "model-00002-of-00002.safetensors"}}}};
  dir.write("model.safetensors.index.json", index.dump());
  auto headers = read_model_safetensors(dir.path.string());
  REQUIRE(headers.has_value());
  REQUIRE(headers->size() == 2);
  CHECK(contains(headers->at(0).path, "model-00001-of-00002.safetensors"));
  CHECK(headers->at(0).tensors.size() == 2);
  CHECK(headers->at(1).tensors.at(0).name == "c");
}

TEST_CASE("read_model_safetensors: index errors name the index, tensor and shards",
          "[model][safetensors]") {
  TempDir dir;
  dir.write("s1.safetensors", safetensors_file({{"a", "F32", {1}, std::string(4, '\0')},
                                                {"shared", "F32", {1}, std::string(4, '\0')}}));
  dir.write("s2.safetensors", safetensors_file({{"b", "F32", {1}, std::string(4, '\0')},
                                                {"shared", "F32", {1}, std::string(4, '\0')}}));
  auto load_with = [&](const json& weight_map) {
    dir.write("model.safetensors.index.json", json{{"weight_map", weight_map}}.dump());
    return read_model_safetensors(dir.path.string());
  };

  check_failure(load_with({{"a", "s1.safetensors"}, {"b", "s2.safetensors"}}),
                StatusCode::kDataLoss,
                {"model.safetensors.index.json", "tensor 'shared' is in two shards",
                 "'s1.safetensors'", "'s2.safetensors'"});

  dir.write("s2.safetensors", safetensors_file({{"b", "F32", {1}, std::string(4, '\0')}}));
  check_failure(
      load_with({{"a", "s1.safetensors"}, {"b", "s2.safetensors"}, {"ghost", "s2.safetensors"}}),
      StatusCode::kDataLoss,
      {"model.safetensors.index.json", "tensor 'ghost' is listed in shard 's2.safetensors'",
       "no shard contains it"});
  check_failure(
      load_with({{"a", "s2.safetensors"}, {"b", "s2.safetensors"}, {"shared", "s1.safetensors"}}),
      StatusCode::kDataLoss,
      {"tensor 'a' is listed in shard 's2.safetensors' but it is in 's1.safetensors'"});
  check_failure(load_with({{"a", "s1.safetensors"}, {"b", "s3.safetensors"}}),
                StatusCode::kNotFound,
                {"s3.safetensors", "a shard named by", "model.safetensors.index.json"});
  check_failure(load_with({{"a", "../s1.safetensors"}}), StatusCode::kDataLoss,
                {"tensor 'a'", "must name a shard file"});
  check_failure(load_with(json::object()), StatusCode::kDataLoss, {"lists no tensors"});
  check_failure(load_with(json::array()), StatusCode::kDataLoss, {"missing \"weight_map\""});

  dir.write("model.safetensors.index.json", "{\"weight_map\": ");
  check_failure(read_model_safetensors(dir.path.string()), StatusCode::kDataLoss,
                {"model.safetensors.index.json", "not valid JSON"});

  // A damaged shard's error names the shard.
  dir.write("s2.safetensors", "xyz");
  check_failure(load_with({{"a", "s1.safetensors"}, {"b", "s2.safetensors"}}),
                StatusCode::kDataLoss, {"s2.safetensors", "3 bytes"});
}

TEST_CASE("read_model_safetensors: directories without safetensors", "[model][safetensors]") {
  TempDir dir;
  check_failure(read_model_safetensors(dir.path.string()), StatusCode::kNotFound,
                {"no model.safetensors or model.safetensors.index.json"});

  dir.write("pytorch_model.bin", "pickle");
  auto pickle = read_model_safetensors(dir.path.string());
  REQUIRE_FALSE(pickle.has_value());
  CHECK(contains(pickle.status().message(), "found pytorch_model.bin"));

  check_failure(read_model_safetensors((dir.path / "absent").string()), StatusCode::kNotFound,
                {"does not exist"});
}
