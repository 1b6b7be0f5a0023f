// Checks that an operation aborts with a message: for programming errors (shape mismatches,
// double frees, over-releases) that the code turns into abort() with a diagnostic.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <functional>
#include <string>

namespace sparkd::testing {

// Runs `op` in a child process and checks that it aborts with `message_part` on stderr. The
// parent's state is untouched whatever `op` does.
inline void check_aborts(const std::function<void()>& op, const std::string& message_part) {
  int pipe_fds[2];
  REQUIRE(pipe(pipe_fds) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Catch2's own SIGABRT handler would report a failed test from the child.
    std::signal(SIGABRT, SIG_DFL);
    dup2(pipe_fds[1], STDERR_FILENO);
    close(pipe_fds[0]);
    op();
    _exit(0);  // not reached when the op aborts
  }
  close(pipe_fds[1]);
  std::string stderr_text;
  char chunk[256];
  for (ssize_t got; (got = read(pipe_fds[0], chunk, sizeof chunk)) > 0;) {
    stderr_text.append(chunk, static_cast<size_t>(got));
  }
  close(pipe_fds[0]);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  INFO("stderr: " << stderr_text);
  CHECK(WIFSIGNALED(status));
  CHECK(stderr_text.find(message_part) != std::string::npos);
}

}  // namespace sparkd::testing
