// Shared helpers for the binding files: array checks that name the argument.
//
// Arrays cross as DLPack views from any framework (NumPy, torch, JAX) and any device: the signatures
// accept every device, and check_array() tells a tensor on the wrong device apart from a malformed one
// (a signature restricted to the CPU would turn a CUDA tensor into an unhelpful TypeError).
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <complex>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "sla/direct.hpp"
#include "sla/errors.hpp"
#include "sla/pattern.hpp"
#include "sla/types.hpp"

namespace sla::bind {

namespace nb = nanobind;
// An array the core reads: a non-contiguous one is copied to a contiguous one on the way in.
using Array = nb::ndarray<nb::c_contig>;
// An array the core writes into. No implicit conversion here: the core would write into a converted copy
// and the caller's array would never see the result. check_output() insists on a C-contiguous one.
using OutArray = nb::ndarray<>;

// Where an array lives, as the core names devices. DLPack device types: kDLCPU = 1, kDLCUDA = 2,
// kDLCUDAHost = 3 (pinned host memory, which the CPU reads), kDLCUDAManaged = 13 (counted as the GPU's).
template <class... C>
Device device_of(const nb::ndarray<C...>& a, const char* what) {
  switch (a.device_type()) {
    case nb::device::cpu::value: return Device::cpu();
    case nb::device::cuda_host::value: return Device::cpu();
    case nb::device::cuda::value: return Device::cuda(a.device_id());
    case nb::device::cuda_managed::value: return Device::cuda(a.device_id());
  }
  fail(ErrorKind::InvalidArgument, what, ": on a device torch_sla does not support (DLPack device type ",
       a.device_type(), "); move it to the CPU first");
}

// The one check every array argument passes first: on the device of the code that reads it (`runs_on`,
// the CPU for every entry point so far), with `ndim` dimensions. Nothing reads the array before it.
template <class... C>
void check_array(const nb::ndarray<C...>& a, const char* what, size_t ndim, const Device& runs_on = Device::cpu()) {
  check_device(device_of(a, what), runs_on, what);
  if (a.ndim() != ndim) fail(ErrorKind::InvalidArgument, what, ": expected ", ndim, " dimensions, got ", a.ndim());
}

// check_array() for an output, which must also be C-contiguous (strides in elements, as DLPack gives them).
inline void check_output(const OutArray& a, const char* what, size_t ndim, const Device& runs_on = Device::cpu()) {
  check_array(a, what, ndim, runs_on);
  int64_t expected = 1;
  for (size_t d = ndim; d-- > 0;) {
    if (a.shape(d) != 1 && a.stride(d) != expected)
      fail(ErrorKind::InvalidArgument, what,
           ": must be C-contiguous, as the result is written into it in place (pass a tensor from torch.empty "
           "or .contiguous())");
    expected *= static_cast<int64_t>(a.shape(d));
  }
}

template <class... C>
ScalarType scalar_of(const nb::ndarray<C...>& a, const char* what) {
  const nb::dlpack::dtype t = a.dtype();
  if (t == nb::dtype<float>()) return ScalarType::Float32;
  if (t == nb::dtype<double>()) return ScalarType::Float64;
  if (t == nb::dtype<std::complex<float>>()) return ScalarType::Complex64;
  if (t == nb::dtype<std::complex<double>>()) return ScalarType::Complex128;
  fail(ErrorKind::InvalidArgument, what, ": dtype must be float32, float64, complex64 or complex128");
}

inline bool is_int32(const Array& a) { return a.dtype() == nb::dtype<std::int32_t>(); }
inline bool is_int64(const Array& a) { return a.dtype() == nb::dtype<std::int64_t>(); }

// The operator of a solve: "N" (A) or "H" (A^H).
inline Op parse_op(const std::string& s) {
  if (s == "N") return Op::N;
  if (s == "H") return Op::H;
  fail(ErrorKind::InvalidArgument, "op: expected 'N' or 'H', got '", s, "'");
}

inline ScalarType parse_scalar(const std::string& s) {
  if (s == "float32") return ScalarType::Float32;
  if (s == "float64") return ScalarType::Float64;
  if (s == "complex64") return ScalarType::Complex64;
  if (s == "complex128") return ScalarType::Complex128;
  fail(ErrorKind::InvalidArgument, "dtype: unknown scalar type '", s, "'");
}

inline Backend parse_backend(const std::string& s) {
  if (s == "suitesparse") return Backend::SuiteSparse;
  if (s == "eigen") return Backend::Eigen;
  if (s == "pardiso") return Backend::Pardiso;
  if (s == "cudss") return Backend::Cudss;
  fail(ErrorKind::InvalidArgument, "backend: unknown C++ backend '", s,
       "' (expected 'suitesparse', 'eigen', 'pardiso' or 'cudss')");
}

inline Ordering parse_ordering(const std::string& s) {
  if (s == "default") return Ordering::Default;
  if (s == "amd") return Ordering::AMD;
  if (s == "metis") return Ordering::NestedDissection;
  fail(ErrorKind::InvalidArgument, "ordering: expected 'default', 'amd' or 'metis', got '", s, "'");
}

inline Method parse_method(const std::string& s) {
  if (s == "cholesky") return Method::Cholesky;
  if (s == "ldl") return Method::LDL;
  if (s == "lu") return Method::LU;
  fail(ErrorKind::InvalidArgument, "method: unknown method '", s, "' (expected 'cholesky', 'ldl' or 'lu')");
}

// A CsrPattern from the arguments of its constructor (checked, validated, copied).
CsrPattern make_pattern(index_t n_rows, index_t n_cols, const Array& crow, const Array& col);
// Check `values` for a pattern: on the CPU, 1-D, nnz entries, a supported dtype. O(1).
void check_values(const CsrPattern& p, const Array& values, const char* what);

// The result of an iterative solve (a KrylovResult, or the CUDA CG's) as the dict the Python layer reads.
template <class Result>
nb::dict result_dict(const Result& r) {
  nb::dict out;
  out["iterations"] = r.iterations;
  out["residual"] = r.residual;
  out["converged"] = r.converged;
  out["reason"] = r.reason;
  out["residual_history"] = r.history;
  return out;
}

// A run-time library loader (load_pardiso, load_cudss) for Python: the search with the GIL released, then
// (loaded, description).
template <class Load>
nb::tuple load_library_py(Load load, const std::vector<std::string>& candidates) {
  bool loaded = false;
  std::string description;
  {
    nb::gil_scoped_release release;
    auto lib = load(candidates);
    loaded = lib.loaded;
    description = lib.description;
  }
  return nb::make_tuple(loaded, description);
}

void bind_pattern(nb::module_& m);
void bind_direct(nb::module_& m);
void bind_mtx(nb::module_& m);
void bind_krylov(nb::module_& m);
void bind_blocks(nb::module_& m);
void bind_partition(nb::module_& m);
void bind_cuda(nb::module_& m);

}  // namespace sla::bind
