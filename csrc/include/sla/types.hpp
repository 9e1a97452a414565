// Scalar tags, devices, operators and the borrowed CSR pattern view shared by every backend.
#pragma once

#include <complex>
#include <cstddef>
#include <cstdint>
#include <string>

#include "sla/errors.hpp"

namespace sla {

using index_t = std::int64_t;

enum class ScalarType { Float32, Float64, Complex64, Complex128 };

inline const char* scalar_name(ScalarType s) {
  switch (s) {
    case ScalarType::Float32: return "float32";
    case ScalarType::Float64: return "float64";
    case ScalarType::Complex64: return "complex64";
    case ScalarType::Complex128: return "complex128";
  }
  return "?";
}

// Bytes of one value of scalar type s.
inline std::size_t scalar_size(ScalarType s) {
  switch (s) {
    case ScalarType::Float32: return 4;
    case ScalarType::Float64: return 8;
    case ScalarType::Complex64: return 8;
    case ScalarType::Complex128: return 16;
  }
  return 0;
}

inline bool is_complex(ScalarType s) {
  return s == ScalarType::Complex64 || s == ScalarType::Complex128;
}

template <class T> struct scalar_tag;
template <> struct scalar_tag<float> { static constexpr ScalarType value = ScalarType::Float32; };
template <> struct scalar_tag<double> { static constexpr ScalarType value = ScalarType::Float64; };
template <> struct scalar_tag<std::complex<float>> {
  static constexpr ScalarType value = ScalarType::Complex64;
};
template <> struct scalar_tag<std::complex<double>> {
  static constexpr ScalarType value = ScalarType::Complex128;
};

// Where arrays live and where a backend runs. The CPU backends run on Device::cpu(); a CUDA backend runs on
// Device::cuda(ordinal) and takes arrays on that device only. Every array argument is checked against the
// device of the code that reads it (check_device), so memory of one device is never read by another.
enum class DeviceType { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;  // the CUDA ordinal; 0 for the CPU

  static Device cpu() { return {}; }
  static Device cuda(int ordinal) { return {DeviceType::CUDA, ordinal}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  // "cpu" or "cuda:<ordinal>", as torch.device prints them.
  std::string str() const { return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index); }
};

// The queue a CUDA backend enqueues its work on: an opaque cudaStream_t (nullptr: the legacy default
// stream). The core holds no stream of its own: a CUDA entry point will take the caller's stream (the
// Python layer passes torch.cuda.current_stream()) next to its arrays and order its work after what is
// already queued there, synchronising no more than the algorithm needs. CPU entry points take none.
using Stream = void*;

// Throw InvalidArgument when an array on `actual` is given to code that runs on `runs_on`, naming the
// argument `what`, where it is and where it must be.
inline void check_device(const Device& actual, const Device& runs_on, const std::string& what) {
  if (actual == runs_on) return;
  if (runs_on.is_cpu())
    fail(ErrorKind::InvalidArgument, what, ": on ", actual.str(),
         ", this backend runs on the CPU; move it to the CPU first (tensor.cpu()) or use a backend that runs on ",
         actual.str());
  fail(ErrorKind::InvalidArgument, what, ": on ", actual.str(), ", this backend runs on ", runs_on.str(),
       "; move it there first (tensor.to('", runs_on.str(), "'))");
}

// The operator applied in a solve: A (N) or its conjugate transpose A^H (H; the transpose for real A).
enum class Op { N, H };

// A borrowed view of a CSR sparsity pattern. indptr has n_rows + 1 entries, indices has indptr[n_rows].
// Column indices are sorted and unique inside each row (validate_csr checks this).
template <class I>
struct CsrView {
  index_t n_rows = 0;
  index_t n_cols = 0;
  const I* indptr = nullptr;
  const I* indices = nullptr;
  index_t nnz() const { return n_rows == 0 ? 0 : static_cast<index_t>(indptr[n_rows]); }
};

// Check a CSR pattern: sizes, monotone indptr, indices in range, sorted and unique per row.
// Throws sla::Error(InvalidArgument) naming `what` (the argument) and the first offending entry.
template <class I>
void validate_csr(const CsrView<I>& a, index_t indptr_len, index_t indices_len, const std::string& what);

// A borrowed CSR matrix of any supported scalar and index type.
struct CsrArrays {
  index_t n_rows = 0, n_cols = 0;
  const void* indptr = nullptr;
  const void* indices = nullptr;
  const void* values = nullptr;
  bool index32 = false;  // int32 indices (else int64)
  ScalarType scalar = ScalarType::Float64;
  index_t nnz() const;
};

// Check sizes, monotone indptr, index ranges (throws InvalidArgument naming `what`).
void validate_csr_arrays(const CsrArrays& a, index_t indptr_len, index_t indices_len, const std::string& what);

}  // namespace sla
