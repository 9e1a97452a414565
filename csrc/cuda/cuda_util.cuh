// Internal helpers of the CUDA part: status checks that throw sla::Error, RAII for device memory, events and
// the current device, and the arithmetic of the four scalar types in device code.
#pragma once

#include <cuComplex.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstddef>
#include <utility>

#include "sla/errors.hpp"
#include "sla/types.hpp"

namespace sla::cuda {

// Throw Internal (Unavailable for "no device") naming the call when a CUDA runtime call failed. The runtime
// also keeps the error as the thread's last error; it is cleared so that no later call reports it.
inline void check(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  (void)cudaGetLastError();
  const ErrorKind kind =
      status == cudaErrorNoDevice || status == cudaErrorInsufficientDriver || status == cudaErrorInvalidDevice
          ? ErrorKind::Unavailable
          : ErrorKind::Internal;
  if (status == cudaErrorMemoryAllocation)
    fail(ErrorKind::Internal, what, " failed: out of GPU memory (", cudaGetErrorString(status),
         "); free memory (torch.cuda.empty_cache()) or solve a smaller problem");
  fail(kind, what, " failed: ", cudaGetErrorName(status), " (", cudaGetErrorString(status), ")");
}

// Check a kernel launch (the configuration; errors of the kernel itself surface at the next synchronisation).
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

// Make `ordinal` the current device for a scope (and restore the previous one).
class DeviceGuard {
 public:
  explicit DeviceGuard(int ordinal) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != ordinal) check(cudaSetDevice(ordinal), "cudaSetDevice");
    changed_ = previous_ != ordinal;
  }
  ~DeviceGuard() {
    if (changed_) (void)cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

// Device memory allocated with cudaMalloc, freed when the owner goes (cudaFree waits for the work that
// uses it). For buffers that live as long as an analysis or a set of factors.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
    if (bytes > 0) check(cudaMalloc(&ptr_, bytes), "cudaMalloc");
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) (void)cudaFree(ptr_);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(o.bytes_) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  void* get() const { return ptr_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// Device memory ordered on a stream (cudaMallocAsync / cudaFreeAsync): for the workspace of one call, freed
// after the work queued on that stream without waiting for it.
class StreamBuffer {
 public:
  StreamBuffer(std::size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes > 0) check(cudaMallocAsync(&ptr_, bytes, stream), "cudaMallocAsync");
  }
  ~StreamBuffer() {
    if (ptr_ != nullptr) (void)cudaFreeAsync(ptr_, stream_);
  }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

// A CUDA event without timing (for ordering work between streams).
class Event {
 public:
  Event() { check(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreate"); }
  ~Event() {
    if (event_ != nullptr) (void)cudaEventDestroy(event_);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

inline cudaStream_t as_stream(Stream s) { return static_cast<cudaStream_t>(s); }

// --- scalars in device code: float, double, and the complex types as cuFloatComplex / cuDoubleComplex ---
template <ScalarType S>
struct device_scalar;
template <>
struct device_scalar<ScalarType::Float32> {
  using type = float;
  using real = float;
};
template <>
struct device_scalar<ScalarType::Float64> {
  using type = double;
  using real = double;
};
template <>
struct device_scalar<ScalarType::Complex64> {
  using type = cuFloatComplex;
  using real = float;
};
template <>
struct device_scalar<ScalarType::Complex128> {
  using type = cuDoubleComplex;
  using real = double;
};

// Call f(tag) with tag carrying the device scalar type of s (f is a generic lambda: decltype(tag)::type).
template <class F>
decltype(auto) visit_device_scalar(ScalarType s, F&& f) {
  switch (s) {
    case ScalarType::Float32: return f(device_scalar<ScalarType::Float32>{});
    case ScalarType::Float64: return f(device_scalar<ScalarType::Float64>{});
    case ScalarType::Complex64: return f(device_scalar<ScalarType::Complex64>{});
    case ScalarType::Complex128: break;
  }
  return f(device_scalar<ScalarType::Complex128>{});
}

__host__ __device__ inline double magnitude(float v) { return fabs(static_cast<double>(v)); }
__host__ __device__ inline double magnitude(double v) { return fabs(v); }
__host__ __device__ inline double magnitude(cuFloatComplex v) { return hypot(double(v.x), double(v.y)); }
__host__ __device__ inline double magnitude(cuDoubleComplex v) { return hypot(v.x, v.y); }
__host__ __device__ inline double real_part(float v) { return v; }
__host__ __device__ inline double real_part(double v) { return v; }
__host__ __device__ inline double real_part(cuFloatComplex v) { return v.x; }
__host__ __device__ inline double real_part(cuDoubleComplex v) { return v.x; }
__host__ __device__ inline bool is_finite(float v) { return isfinite(v); }
__host__ __device__ inline bool is_finite(double v) { return isfinite(v); }
__host__ __device__ inline bool is_finite(cuFloatComplex v) { return isfinite(v.x) && isfinite(v.y); }
__host__ __device__ inline bool is_finite(cuDoubleComplex v) { return isfinite(v.x) && isfinite(v.y); }

// a + b * c, conj(a) * b, a * s (s real), and zero, for every scalar type.
__device__ inline float fma_s(float a, float b, float c) { return fmaf(b, c, a); }
__device__ inline double fma_s(double a, double b, double c) { return fma(b, c, a); }
__device__ inline cuFloatComplex fma_s(cuFloatComplex a, cuFloatComplex b, cuFloatComplex c) {
  return cuCaddf(a, cuCmulf(b, c));
}
__device__ inline cuDoubleComplex fma_s(cuDoubleComplex a, cuDoubleComplex b, cuDoubleComplex c) {
  return cuCadd(a, cuCmul(b, c));
}
// Re(conj(a) * b): the real part of an inner product term.
__device__ inline double re_dot(float a, float b) { return double(a) * double(b); }
__device__ inline double re_dot(double a, double b) { return a * b; }
__device__ inline double re_dot(cuFloatComplex a, cuFloatComplex b) {
  return double(a.x) * double(b.x) + double(a.y) * double(b.y);
}
__device__ inline double re_dot(cuDoubleComplex a, cuDoubleComplex b) { return a.x * b.x + a.y * b.y; }
__device__ inline float scale(float a, double s) { return static_cast<float>(a * s); }
__device__ inline double scale(double a, double s) { return a * s; }
__device__ inline cuFloatComplex scale(cuFloatComplex a, double s) {
  return make_cuFloatComplex(static_cast<float>(a.x * s), static_cast<float>(a.y * s));
}
__device__ inline cuDoubleComplex scale(cuDoubleComplex a, double s) { return make_cuDoubleComplex(a.x * s, a.y * s); }
__device__ inline float add_s(float a, float b) { return a + b; }
__device__ inline double add_s(double a, double b) { return a + b; }
__device__ inline cuFloatComplex add_s(cuFloatComplex a, cuFloatComplex b) { return cuCaddf(a, b); }
__device__ inline cuDoubleComplex add_s(cuDoubleComplex a, cuDoubleComplex b) { return cuCadd(a, b); }
template <class T>
__device__ inline T zero_s() {
  return T{};
}

// The number of blocks of `threads` threads that cover `n` items, capped (grid-stride loops do the rest).
inline unsigned int blocks_for(long long n, int threads, unsigned int cap = 65535u * 16u) {
  const long long b = (n + threads - 1) / threads;
  return static_cast<unsigned int>(b < 1 ? 1 : (b > cap ? cap : b));
}

}  // namespace sla::cuda
