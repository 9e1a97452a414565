// Device queries through the CUDA runtime (linked statically: no libcudart.so needed at run time).
#include <cuda_runtime_api.h>

#include <string>

#include "sla/cuda.hpp"
#include "sla/errors.hpp"

namespace sla {

bool cuda_compiled() noexcept { return true; }

int cuda_device_count() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaSuccess) return count;
  // The runtime also records the failure as this thread's last error; clear it so that no later CUDA call
  // reports it as its own.
  (void)cudaGetLastError();
  // No GPU to run on: no driver (or one older than the runtime), or a driver without devices.
  if (status == cudaErrorNoDevice || status == cudaErrorInsufficientDriver || status == cudaErrorSystemDriverMismatch)
    return 0;
  fail(ErrorKind::Internal, "cudaGetDeviceCount failed: ", cudaGetErrorName(status), " (", cudaGetErrorString(status),
       ")");
}

std::string cuda_runtime_version() {
  int version = 0;  // 1000 * major + 10 * minor
  const cudaError_t status = cudaRuntimeGetVersion(&version);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    fail(ErrorKind::Internal, "cudaRuntimeGetVersion failed: ", cudaGetErrorName(status));
  }
  return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

}  // namespace sla
