// KV address ranges in CUDA virtual memory: cuMemAddressReserve once, then per granule
// cuMemCreate + cuMemMap + cuMemSetAccess when the governor grants it and cuMemUnmap +
// cuMemRelease when it reclaims it, so the device's committed bytes follow the grants.
//
// The driver API is reached through the runtime's entry points (cudaGetDriverEntryPoint-
// ByVersion): the binary does not link libcuda, so it starts on machines without a driver.
// Where VMM is unsupported (or its granularity does not divide 2 MiB) the range is one plain
// cudaMalloc, committed whole at reservation: correct, but grants no longer move memory.
#include <cuda.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/backend/cuda/cuda_common.cuh"
#include "engine/backend/cuda/cuda_virtual_memory.h"

namespace sparkd::cuda {
namespace {

struct DriverVmm {
  decltype(&cuMemAddressReserve) address_reserve = nullptr;
  decltype(&cuMemAddressFree) address_free = nullptr;
  decltype(&cuMemCreate) create = nullptr;
  decltype(&cuMemRelease) release = nullptr;
  decltype(&cuMemMap) map = nullptr;
  decltype(&cuMemUnmap) unmap = nullptr;
  decltype(&cuMemSetAccess) set_access = nullptr;
  decltype(&cuMemGetAllocationGranularity) granularity = nullptr;
  decltype(&cuGetErrorString) error_string = nullptr;
  decltype(&cuDeviceGet) device_get = nullptr;
  decltype(&cuDeviceGetAttribute) device_attribute = nullptr;

  // All of them, or an empty string and false.
  bool load(std::string& error) {
    const auto get = [&](const char* name, auto& fn) {
      void* address = nullptr;
      cudaDriverEntryPointQueryResult found{};
      if (cudaGetDriverEntryPointByVersion(name, &address, 12000, cudaEnableDefault, &found) !=
              cudaSuccess ||
          found != cudaDriverEntryPointSuccess || address == nullptr) {
        error = std::string("driver entry point ") + name + " not found";
        return false;
      }
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(address);
      return true;
    };
    return get("cuMemAddressReserve", address_reserve) && get("cuMemAddressFree", address_free) &&
           get("cuMemCreate", create) && get("cuMemRelease", release) && get("cuMemMap", map) &&
           get("cuMemUnmap", unmap) && get("cuMemSetAccess", set_access) &&
           get("cuMemGetAllocationGranularity", granularity) &&
           get("cuGetErrorString", error_string) && get("cuDeviceGet", device_get) &&
           get("cuDeviceGetAttribute", device_attribute);
  }

  std::string describe(CUresult result) const {
    const char* text = nullptr;
    if (error_string != nullptr) error_string(result, &text);
    return text != nullptr ? text : "CUDA driver error " + std::to_string(static_cast<int>(result));
  }
};

class VmmRange final : public VirtualRange {
 public:
  VmmRange(const DriverVmm& driver, int device, cudaStream_t stream, CUdeviceptr base,
           size_t size_bytes)
      : driver_(driver),
        device_(device),
        stream_(stream),
        handles_(size_bytes / kVirtualGranuleBytes, 0) {
    base_ = reinterpret_cast<char*>(base);
    size_bytes_ = size_bytes;
  }
  ~VmmRange() override {
    // Nothing may still read the range when it goes. (The whole device: the owner's stream
    // may already be gone when a model unloads, and this is no hot path.)
    cudaSetDevice(device_);
    cudaDeviceSynchronize();
    for (size_t g = 0; g < handles_.size(); ++g) {
      if (handles_[g] != 0) unmap_granule(g);
    }
    driver_.address_free(reinterpret_cast<CUdeviceptr>(base_), size_bytes_);
  }
  VmmRange(const VmmRange&) = delete;
  VmmRange& operator=(const VmmRange&) = delete;

  Status commit(size_t offset, size_t bytes) override {
    SPARKD_RETURN_IF_ERROR(check("commit", offset, bytes));
    SPARKD_CUDA_CHECK(cudaSetDevice(device_));
    const size_t first = offset / kVirtualGranuleBytes, end = first + bytes / kVirtualGranuleBytes;
    std::vector<size_t> mapped_now;  // undone on failure; granules mapped before stay
    for (size_t g = first; g < end; ++g) {
      if (handles_[g] != 0) continue;
      Status mapped = map_granule(g);
      if (!mapped.is_ok()) {
        for (size_t undo : mapped_now) unmap_granule(undo);
        return mapped;
      }
      mapped_now.push_back(g);
    }
    return Status::ok();
  }

  Status decommit(size_t offset, size_t bytes) override {
    SPARKD_RETURN_IF_ERROR(check("decommit", offset, bytes));
    // Kernels queued before this may still read the granules: wait for them first. Only the
    // owner's stream reads the range, so other models' work on the device goes on. (Between
    // two steps, where the pool decommits, the stream is already idle.)
    SPARKD_CUDA_CHECK(cudaSetDevice(device_));
    SPARKD_CUDA_CHECK(cudaStreamSynchronize(stream_));
    const size_t first = offset / kVirtualGranuleBytes, end = first + bytes / kVirtualGranuleBytes;
    for (size_t g = first; g < end; ++g) {
      if (handles_[g] != 0) unmap_granule(g);
    }
    return Status::ok();
  }

 private:
  Status check(const char* what, size_t offset, size_t bytes) const {
    if (offset % kVirtualGranuleBytes == 0 && bytes % kVirtualGranuleBytes == 0 &&
        offset <= size_bytes_ && bytes <= size_bytes_ - offset) {
      return Status::ok();
    }
    return Status(StatusCode::kInvalidArgument,
                  std::string(what) + " of [" + std::to_string(offset) + ", +" +
                      std::to_string(bytes) + "): not whole granules inside the range");
  }

  Status map_granule(size_t g) {
    CUmemAllocationProp prop{};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = device_;
    CUmemGenericAllocationHandle handle = 0;
    CUresult result = driver_.create(&handle, kVirtualGranuleBytes, &prop, 0);
    if (result != CUDA_SUCCESS) {
      return Status(StatusCode::kResourceExhausted,
                    "cuMemCreate of a 2 MiB granule: " + driver_.describe(result));
    }
    const CUdeviceptr at = reinterpret_cast<CUdeviceptr>(base_) + g * kVirtualGranuleBytes;
    result = driver_.map(at, kVirtualGranuleBytes, 0, handle, 0);
    if (result == CUDA_SUCCESS) {
      CUmemAccessDesc access{};
      access.location = prop.location;
      access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
      result = driver_.set_access(at, kVirtualGranuleBytes, &access, 1);
      if (result != CUDA_SUCCESS) driver_.unmap(at, kVirtualGranuleBytes);
    }
    if (result != CUDA_SUCCESS) {
      driver_.release(handle);
      return Status(StatusCode::kResourceExhausted,
                    "mapping a 2 MiB granule: " + driver_.describe(result));
    }
    handles_[g] = handle;
    return Status::ok();
  }

  void unmap_granule(size_t g) {
    const CUdeviceptr at = reinterpret_cast<CUdeviceptr>(base_) + g * kVirtualGranuleBytes;
    driver_.unmap(at, kVirtualGranuleBytes);
    driver_.release(handles_[g]);
    handles_[g] = 0;
  }

  const DriverVmm driver_;  // a copy: the range may outlive the VirtualMemory
  int device_;
  cudaStream_t stream_;  // the owner's: the only one that reads the range
  std::vector<CUmemGenericAllocationHandle> handles_;  // per granule; 0: not mapped
};

// The fallback: the whole range allocated at once.
class PlainRange final : public VirtualRange {
 public:
  PlainRange(void* data, size_t size_bytes) {
    base_ = static_cast<char*>(data);
    size_bytes_ = size_bytes;
  }
  ~PlainRange() override { cudaFree(base_); }
  PlainRange(const PlainRange&) = delete;
  PlainRange& operator=(const PlainRange&) = delete;
  Status commit(size_t, size_t) override { return Status::ok(); }
  Status decommit(size_t, size_t) override { return Status::ok(); }
};

}  // namespace

struct VirtualMemory::Driver {
  DriverVmm vmm;
};

VirtualMemory::VirtualMemory(int device) : device_(device), driver_(std::make_unique<Driver>()) {
  if (!driver_->vmm.load(unsupported_reason_)) return;
  CUdevice handle = 0;
  int supported = 0;
  if (driver_->vmm.device_get(&handle, device) != CUDA_SUCCESS ||
      driver_->vmm.device_attribute(&supported,
                                    CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
                                    handle) != CUDA_SUCCESS ||
      supported == 0) {
    unsupported_reason_ = "the device does not support virtual memory management";
    return;
  }
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  size_t granularity = 0;
  const CUresult result =
      driver_->vmm.granularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
  if (result != CUDA_SUCCESS || granularity == 0 || kVirtualGranuleBytes % granularity != 0) {
    unsupported_reason_ =
        "allocation granularity " + std::to_string(granularity) + " bytes does not divide 2 MiB";
    return;
  }
  granularity_bytes_ = granularity;
  supported_ = true;
}

VirtualMemory::~VirtualMemory() = default;

Expected<std::unique_ptr<VirtualRange>> VirtualMemory::reserve(size_t size_bytes,
                                                               cudaStream_t stream) {
  if (size_bytes == 0 || size_bytes % kVirtualGranuleBytes != 0) {
    return Status(StatusCode::kInvalidArgument,
                  "reserving " + std::to_string(size_bytes) +
                      " bytes of device address space: not a positive number of 2 MiB granules");
  }
  if (!supported_) {
    void* data = nullptr;
    const cudaError_t error = cudaMalloc(&data, size_bytes);
    if (error != cudaSuccess) {
      return Status(StatusCode::kResourceExhausted,
                    "cannot allocate " + std::to_string(size_bytes >> 20) +
                        " MiB of device memory (no VMM: " + unsupported_reason_ +
                        "): " + cudaGetErrorString(error));
    }
    return std::unique_ptr<VirtualRange>(new PlainRange(data, size_bytes));
  }
  CUdeviceptr base = 0;
  const CUresult result =
      driver_->vmm.address_reserve(&base, size_bytes, kVirtualGranuleBytes, 0, 0);
  if (result != CUDA_SUCCESS) {
    return Status(StatusCode::kResourceExhausted,
                  "cannot reserve " + std::to_string(size_bytes >> 20) +
                      " MiB of device address space: " + driver_->vmm.describe(result));
  }
  return std::unique_ptr<VirtualRange>(
      new VmmRange(driver_->vmm, device_, stream, base, size_bytes));
}

}  // namespace sparkd::cuda
