// Bindings of the CUDA part: the cuDSS loader and analysis, the CUDA SpMV and CG. Device arrays cross as
// DLPack views of CUDA tensors; every array is checked to live on the device the call runs on. `stream` is
// the cudaStream_t to queue the work on, as an integer (torch.cuda.current_stream().cuda_stream).
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common.hpp"
#include "sla/cuda.hpp"
#include "sla/direct.hpp"

namespace sla::bind {
namespace {

// A CSR matrix of device arrays (crow, col: int32 or int64 alike; values: one of the four scalar types), all
// on one CUDA device, with n_rows + 1 row pointers and as many column indices as values.
CudaCsr cuda_csr(const Array& crow, const Array& col, const Array& values, index_t n_rows, index_t n_cols) {
  const Device device = device_of(values, "values");
  if (device.is_cpu())
    fail(ErrorKind::InvalidArgument, "values: on the CPU; the CUDA kernels take CUDA tensors (A.to('cuda'))");
  check_array(crow, "crow_indices", 1, device);
  check_array(col, "col_indices", 1, device);
  check_array(values, "values", 1, device);
  if (n_rows < 0 || n_cols < 0) fail(ErrorKind::InvalidArgument, "shape: negative size");
  if (static_cast<index_t>(crow.shape(0)) != n_rows + 1)
    fail(ErrorKind::InvalidArgument, "crow_indices: expected ", n_rows + 1, " entries, got ", crow.shape(0));
  if (col.shape(0) != values.shape(0))
    fail(ErrorKind::InvalidArgument, "col_indices: ", col.shape(0), " entries but values has ", values.shape(0));
  const bool i32 = is_int32(crow) && is_int32(col);
  if (!i32 && !(is_int64(crow) && is_int64(col)))
    fail(ErrorKind::InvalidArgument, "crow_indices, col_indices: must both be int32 or both int64");
  CudaCsr a;
  a.n_rows = n_rows;
  a.n_cols = n_cols;
  a.nnz = static_cast<index_t>(values.shape(0));
  a.indptr = crow.data();
  a.indices = col.data();
  a.values = values.data();
  a.index32 = i32;
  a.scalar = scalar_of(values, "values");
  a.device = device;
  return a;
}

// x, y: (nrhs, n) C-contiguous blocks on A's device (each right-hand side contiguous).
void spmv_py(const Array& crow, const Array& col, const Array& values, index_t n_rows, index_t n_cols, const Array& x,
             OutArray& y, std::uintptr_t stream) {
  const CudaCsr a = cuda_csr(crow, col, values, n_rows, n_cols);
  check_array(x, "x", 2, a.device);
  check_output(y, "y", 2, a.device);
  if (static_cast<index_t>(x.shape(1)) != n_cols)
    fail(ErrorKind::InvalidArgument, "x: expected shape (nrhs, ", n_cols, "), got (", x.shape(0), ", ", x.shape(1),
         ")");
  if (y.shape(0) != x.shape(0) || static_cast<index_t>(y.shape(1)) != n_rows)
    fail(ErrorKind::InvalidArgument, "y: expected shape (", x.shape(0), ", ", n_rows, "), got (", y.shape(0), ", ",
         y.shape(1), ")");
  if (scalar_of(x, "x") != a.scalar || scalar_of(y, "y") != a.scalar)
    fail(ErrorKind::InvalidArgument, "x, y: dtype must be ", scalar_name(a.scalar), " like the values");
  const void* xp = x.data();
  void* yp = y.data();
  const auto nrhs = static_cast<index_t>(x.shape(0));
  nb::gil_scoped_release release;
  StreamScope scope(reinterpret_cast<Stream>(stream));
  cuda_spmv(a, xp, yp, nrhs);
}

nb::dict cg_py(const Array& crow, const Array& col, const Array& values, index_t n, const Array& b, OutArray& x,
               double rtol, double atol, index_t maxiter, bool jacobi, index_t check_every, bool record_history,
               std::uintptr_t stream) {
  const CudaCsr a = cuda_csr(crow, col, values, n, n);
  check_array(b, "b", 1, a.device);
  check_output(x, "x", 1, a.device);
  if (static_cast<index_t>(b.shape(0)) != n || static_cast<index_t>(x.shape(0)) != n)
    fail(ErrorKind::InvalidArgument, "b, x: expected ", n, " entries, got ", b.shape(0), " and ", x.shape(0));
  if (scalar_of(b, "b") != a.scalar || scalar_of(x, "x") != a.scalar)
    fail(ErrorKind::InvalidArgument, "b, x: dtype must be ", scalar_name(a.scalar), " like the values");
  if (check_every < 1) fail(ErrorKind::InvalidArgument, "check_every: must be at least 1, got ", check_every);
  const void* bp = b.data();
  void* xp = x.data();
  CudaCgResult r;
  {
    nb::gil_scoped_release release;
    StreamScope scope(reinterpret_cast<Stream>(stream));
    r = cuda_cg(a, bp, xp, rtol, atol, maxiter, jacobi, check_every, record_history);
  }
  return result_dict(r);
}

std::shared_ptr<Symbolic> analyze_cudss_py(const std::string& method, const std::string& dtype,
                                           const CsrPattern& pattern, int device, const std::string& ordering,
                                           std::uintptr_t stream) {
  const Method m = parse_method(method);
  const ScalarType s = parse_scalar(dtype);
  const Ordering o = parse_ordering(ordering);
  nb::gil_scoped_release release;
  StreamScope scope(reinterpret_cast<Stream>(stream));
  return std::const_pointer_cast<Symbolic>(analyze_cudss(m, s, pattern, Device::cuda(device), o));
}

}  // namespace

void bind_cuda(nb::module_& m) {
  m.def(
      "load_cudss", [](const std::vector<std::string>& candidates) { return load_library_py(load_cudss, candidates); },
      nb::arg("candidates"),
      "Load NVIDIA cuDSS's libcudss (1.0 or newer) for the 'cudss' backend: TORCH_SLA_CUDSS when set (a path; "
      "'none' disables it), else the candidate paths in turn, then the dynamic loader's search. Returns (loaded, "
      "description): the library and version, or every place tried and why it failed.");
  m.def("analyze_cudss", &analyze_cudss_py, nb::arg("method"), nb::arg("dtype"), nb::arg("pattern"), nb::arg("device"),
        nb::arg("ordering") = "default", nb::arg("stream") = 0,
        "cuDSS analysis of a CsrPattern on CUDA device `device` (an ordinal): its factorizations (factorize, "
        "factorize_batch with values on that device) keep their factors on the GPU and solve there.");
  m.def("cuda_spmv", &spmv_py, nb::arg("crow_indices"), nb::arg("col_indices"), nb::arg("values"), nb::arg("n_rows"),
        nb::arg("n_cols"), nb::arg("x"), nb::arg("y"), nb::arg("stream") = 0,
        "y = A x on the GPU for the rows of x (nrhs, n_cols) into y (nrhs, n_rows), in one pass over A.");
  m.def("cuda_cg", &cg_py, nb::arg("crow_indices"), nb::arg("col_indices"), nb::arg("values"), nb::arg("n"),
        nb::arg("b"), nb::arg("x"), nb::arg("rtol"), nb::arg("atol"), nb::arg("maxiter"), nb::arg("jacobi"),
        nb::arg("check_every") = 10, nb::arg("record_history") = false, nb::arg("stream") = 0,
        "Conjugate gradients on the GPU for a Hermitian positive definite A, x holding the initial guess and "
        "receiving the solution; the residual is read every check_every iterations. Returns iterations, "
        "residual (relative), converged, reason, residual_history.");
}

}  // namespace sla::bind
