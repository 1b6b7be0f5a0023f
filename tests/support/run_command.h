// Runs a program as a real process with a given stdin, and collects its stdout lines and
// exit status: how the command-line tests drive sparkd-run.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace sparkd::testing {

struct RunResult {
  int exit_code = -1;
  std::vector<std::string> lines;
  // The lines back as one text, each ending in a newline.
  std::string text() const {
    std::string all;
    for (const std::string& line : lines) all += line + "\n";
    return all;
  }
};

// `command` is run by /bin/sh with `stdin_text` on its standard input; stderr is inherited.
inline RunResult run_command(const std::string& command, const std::string& stdin_text) {
  static int counter = 0;
  auto input =
      std::filesystem::temp_directory_path() /
      ("sparkd-test-stdin-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::ofstream(input, std::ios::binary) << stdin_text;
  const std::string shell = command + " < " + input.string();
  RunResult result;
  FILE* pipe = ::popen(shell.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string current;
  int ch;
  while ((ch = std::fgetc(pipe)) != EOF) {
    if (ch == '\n') {
      result.lines.push_back(current);
      current.clear();
    } else {
      current.push_back(static_cast<char>(ch));
    }
  }
  if (!current.empty()) result.lines.push_back(current);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::filesystem::remove(input);
  return result;
}

}  // namespace sparkd::testing
