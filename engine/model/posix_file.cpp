#include "engine/model/posix_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace sparkd::model {

namespace {

Status open_error(const std::string& path, int error) {
  const std::string message = path + ": cannot open: " + std::strerror(error);
  if (error == ENOENT || error == ENOTDIR) return Status(StatusCode::kNotFound, message);
  if (error == EACCES || error == EPERM) return Status(StatusCode::kPermissionDenied, message);
  return Status(StatusCode::kUnavailable, message);
}

}  // namespace

FileDescriptor& FileDescriptor::operator=(FileDescriptor&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

void FileDescriptor::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Expected<OpenFile> open_regular_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return open_error(path, errno);
  OpenFile file;
  file.fd = FileDescriptor(fd);
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    const int error = errno;
    return Status(StatusCode::kDataLoss, path + ": fstat: " + std::strerror(error));
  }
  if (!S_ISREG(info.st_mode)) {
    return Status(StatusCode::kFailedPrecondition, path + ": not a regular file");
  }
  file.size_bytes = static_cast<uint64_t>(info.st_size);
  return file;
}

}  // namespace sparkd::model
