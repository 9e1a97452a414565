// Scalar tags, operators and the borrowed CSR pattern view shared by every backend.
#pragma once

#include <complex>
#include <cstdint>
#include <string>

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

}  // namespace sla
