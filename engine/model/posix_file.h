// POSIX file access shared by the model file readers: a descriptor that closes itself, and
// opening a regular file read-only with errors that name the file.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "common/status.h"

namespace sparkd::model {

// Owns a file descriptor (or none, -1) and closes it on every path out.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(FileDescriptor&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&& other) noexcept;
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() { close(); }

  int get() const { return fd_; }
  bool is_open() const { return fd_ >= 0; }

 private:
  void close();

  int fd_ = -1;
};

struct OpenFile {
  FileDescriptor fd;
  uint64_t size_bytes = 0;  // at the time it was opened
};

// Opens `path` read-only (close-on-exec). Errors name the file: NOT_FOUND, PERMISSION_DENIED
// or UNAVAILABLE ("cannot open: <strerror>"), DATA_LOSS when fstat fails, FAILED_PRECONDITION
// for anything but a regular file.
Expected<OpenFile> open_regular_file(const std::string& path);

}  // namespace sparkd::model
