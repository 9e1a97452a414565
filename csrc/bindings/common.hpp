// Shared helpers for the binding files: array checks that name the argument.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <complex>
#include <cstring>
#include <cstdint>
#include <string>

#include "sla/errors.hpp"
#include "sla/types.hpp"

namespace sla::bind {

namespace nb = nanobind;
using Array = nb::ndarray<nb::device::cpu, nb::c_contig>;

inline ScalarType scalar_of(const Array& a, const char* what) {
  const nb::dlpack::dtype t = a.dtype();
  if (t == nb::dtype<float>()) return ScalarType::Float32;
  if (t == nb::dtype<double>()) return ScalarType::Float64;
  if (t == nb::dtype<std::complex<float>>()) return ScalarType::Complex64;
  if (t == nb::dtype<std::complex<double>>()) return ScalarType::Complex128;
  fail(ErrorKind::InvalidArgument, what, ": dtype must be float32, float64, complex64 or complex128");
}

inline bool is_int32(const Array& a) { return a.dtype() == nb::dtype<std::int32_t>(); }
inline bool is_int64(const Array& a) { return a.dtype() == nb::dtype<std::int64_t>(); }

inline void expect_ndim(const Array& a, size_t ndim, const char* what) {
  if (a.ndim() != ndim) fail(ErrorKind::InvalidArgument, what, ": expected ", ndim, " dimensions, got ", a.ndim());
}

inline ScalarType parse_scalar(const std::string& s) {
  if (s == "float32") return ScalarType::Float32;
  if (s == "float64") return ScalarType::Float64;
  if (s == "complex64") return ScalarType::Complex64;
  if (s == "complex128") return ScalarType::Complex128;
  fail(ErrorKind::InvalidArgument, "dtype: unknown scalar type '", s, "'");
}

void bind_direct(nb::module_& m);
void bind_mtx(nb::module_& m);
void bind_krylov(nb::module_& m);

}  // namespace sla::bind
