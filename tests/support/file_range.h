// Bytes [offset, offset + size) of a file, for tests that check tensors of a fixture file.
#pragma once

#include <catch2/catch.hpp>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace sparkd::testing {

inline std::vector<uint8_t> read_file_range(const std::string& path, uint64_t offset,
                                            uint64_t size) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
  REQUIRE(in.gcount() == static_cast<std::streamsize>(size));
  return bytes;
}

}  // namespace sparkd::testing
