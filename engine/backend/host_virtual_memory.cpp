// Host virtual memory for the paged KV pool: one PROT_NONE reservation, committed and
// decommitted in granules.
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "engine/backend/backend.h"

namespace sparkd {
namespace {

// Faults a committed range in (MADV_POPULATE_WRITE, Linux 5.14+; else one write per page).
void populate(char* begin, size_t bytes) {
#ifdef MADV_POPULATE_WRITE
  if (madvise(begin, bytes, MADV_POPULATE_WRITE) == 0) return;
#endif
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  for (size_t offset = 0; offset < bytes; offset += page) {
    reinterpret_cast<volatile char*>(begin)[offset] = 0;
  }
}

bool granule_multiple(size_t value) {
  return value % kVirtualGranuleBytes == 0;
}

class HostVirtualRange final : public VirtualRange {
 public:
  HostVirtualRange(char* base, size_t size_bytes) {
    base_ = base;
    size_bytes_ = size_bytes;
  }
  ~HostVirtualRange() override { munmap(base_, size_bytes_); }
  HostVirtualRange(const HostVirtualRange&) = delete;
  HostVirtualRange& operator=(const HostVirtualRange&) = delete;

  Status commit(size_t offset, size_t bytes) override {
    if (Status status = check("commit", offset, bytes); !status.is_ok()) return status;
    if (mprotect(base_ + offset, bytes, PROT_READ | PROT_WRITE) != 0) {
      // ENOMEM here means the process ran out of mappings (vm.max_map_count): a refusal the
      // caller handles (preempt or wait), not a crash.
      return Status(StatusCode::kResourceExhausted,
                    "cannot commit " + std::to_string(bytes >> 20) +
                        " MiB of host memory: " + std::strerror(errno));
    }
    populate(base_ + offset, bytes);
    return Status::ok();
  }

  Status decommit(size_t offset, size_t bytes) override {
    if (Status status = check("decommit", offset, bytes); !status.is_ok()) return status;
    // MADV_DONTNEED frees the pages now (mprotect alone would keep them resident); PROT_NONE
    // again makes a stale block table fault instead of reading zeros.
    const bool dropped = madvise(base_ + offset, bytes, MADV_DONTNEED) == 0;
    const bool protected_again = mprotect(base_ + offset, bytes, PROT_NONE) == 0;
    if (!dropped || !protected_again) {
      return Status(StatusCode::kInternal,
                    std::string("decommitting host memory: ") + std::strerror(errno));
    }
    return Status::ok();
  }

 private:
  Status check(const char* what, size_t offset, size_t bytes) const {
    if (granule_multiple(offset) && granule_multiple(bytes) && offset <= size_bytes_ &&
        bytes <= size_bytes_ - offset) {
      return Status::ok();
    }
    return Status(StatusCode::kInvalidArgument,
                  std::string(what) + " of [" + std::to_string(offset) + ", +" +
                      std::to_string(bytes) + ") in a reservation of " +
                      std::to_string(size_bytes_) + " bytes: not whole granules inside it");
  }
};

}  // namespace

Expected<std::unique_ptr<VirtualRange>> reserve_host_virtual(size_t size_bytes) {
  if (size_bytes == 0 || !granule_multiple(size_bytes)) {
    return Status(StatusCode::kInvalidArgument,
                  "reserving " + std::to_string(size_bytes) +
                      " bytes of address space: not a positive number of 2 MiB granules");
  }
  // Over-reserve by a granule and trim, so the range starts granule-aligned in absolute terms
  // (transparent huge pages can then back whole granules).
  const size_t map_bytes = size_bytes + kVirtualGranuleBytes;
  void* mapped =
      mmap(nullptr, map_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mapped == MAP_FAILED) {
    return Status(StatusCode::kResourceExhausted,
                  "cannot reserve " + std::to_string(size_bytes >> 20) +
                      " MiB of address space: " + std::strerror(errno));
  }
  const auto mapped_at = reinterpret_cast<uintptr_t>(mapped);
  const uintptr_t aligned_at =
      (mapped_at + kVirtualGranuleBytes - 1) / kVirtualGranuleBytes * kVirtualGranuleBytes;
  const size_t head_bytes = aligned_at - mapped_at;
  const size_t tail_bytes = map_bytes - head_bytes - size_bytes;
  if (head_bytes > 0) munmap(mapped, head_bytes);
  if (tail_bytes > 0) munmap(reinterpret_cast<void*>(aligned_at + size_bytes), tail_bytes);
  return std::unique_ptr<VirtualRange>(
      new HostVirtualRange(reinterpret_cast<char*>(aligned_at), size_bytes));
}

}  // namespace sparkd
