// Bindings of the direct solvers: Symbolic / Numeric as opaque classes, arrays as DLPack views.
#include <nanobind/stl/complex.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <string>

#include "common.hpp"
#include "sla/cuda.hpp"
#include "sla/direct.hpp"

namespace sla::bind {
namespace {

template <class I>
std::shared_ptr<Symbolic> analyze_typed(Backend b, Method m, ScalarType s, index_t n_rows, index_t n_cols,
                                        const Array& indptr, const Array& indices) {
  CsrView<I> view{n_rows, n_cols, static_cast<const I*>(indptr.data()), static_cast<const I*>(indices.data())};
  if (indptr.shape(0) < 1) fail(ErrorKind::InvalidArgument, "crow_indices: empty, expected n_rows + 1 entries");
  validate_csr(view, static_cast<index_t>(indptr.shape(0)), static_cast<index_t>(indices.shape(0)), "A");
  nb::gil_scoped_release release;
  return std::const_pointer_cast<Symbolic>(analyze(b, m, s, view));
}

std::shared_ptr<Symbolic> analyze_py(const std::string& backend, const std::string& method, const std::string& dtype,
                                     index_t n_rows, index_t n_cols, const Array& indptr, const Array& indices) {
  check_array(indptr, "crow_indices", 1);
  check_array(indices, "col_indices", 1);
  const Backend b = parse_backend(backend);
  const Method m = parse_method(method);
  const ScalarType s = parse_scalar(dtype);
  if (is_int64(indptr) && is_int64(indices))
    return analyze_typed<std::int64_t>(b, m, s, n_rows, n_cols, indptr, indices);
  if (is_int32(indptr) && is_int32(indices))
    return analyze_typed<std::int32_t>(b, m, s, n_rows, n_cols, indptr, indices);
  fail(ErrorKind::InvalidArgument, "crow_indices, col_indices: must both be int32 or both int64");
}

std::shared_ptr<Symbolic> analyze_pattern_py(const std::string& backend, const std::string& method,
                                             const std::string& dtype, const CsrPattern& pattern,
                                             const std::string& ordering) {
  const Backend b = parse_backend(backend);
  const Method m = parse_method(method);
  const ScalarType s = parse_scalar(dtype);
  const Ordering o = parse_ordering(ordering);
  nb::gil_scoped_release release;
  return std::const_pointer_cast<Symbolic>(analyze(b, m, s, pattern, o));
}

// `stream`: the cudaStream_t (an integer, 0 for the legacy default stream) that a CUDA backend queues its
// work on (torch.cuda.current_stream().cuda_stream); the CPU backends ignore it.
std::shared_ptr<Numeric> factorize_py(const std::shared_ptr<Symbolic>& sym, const Array& values, bool allow_singular,
                                      std::uintptr_t stream) {
  check_array(values, "values", 1, sym->device());
  if (scalar_of(values, "values") != sym->scalar())
    fail(ErrorKind::InvalidArgument, "values: dtype does not match the analysis (", scalar_name(sym->scalar()), ")");
  if (static_cast<index_t>(values.shape(0)) != sym->csr_nnz())
    fail(ErrorKind::InvalidArgument, "values: expected ", sym->csr_nnz(), " entries, got ", values.shape(0));
  const void* ptr = values.data();
  FactorizeOptions options;
  options.allow_singular = allow_singular;
  nb::gil_scoped_release release;
  StreamScope scope(reinterpret_cast<Stream>(stream));
  return std::shared_ptr<Numeric>(factorize(sym, ptr, options));
}

// (sign, logabsdet) as torch.linalg.slogdet gives them: a float sign for a real matrix, a complex one of
// unit modulus for a complex matrix; (0, -inf) for a zero pivot.
nb::tuple slogdet_py(const Numeric& num) {
  SignLogDet d;
  {
    nb::gil_scoped_release release;
    d = num.slogdet();
  }
  if (is_complex(num.symbolic()->scalar())) return nb::make_tuple(d.sign, d.logabs);
  return nb::make_tuple(d.sign.real(), d.logabs);
}

// rows, cols: int64 1-D of one length m; out: 1-D, m entries of the factorization's dtype, C-contiguous.
void inverse_entries_py(const Numeric& num, const Array& rows, const Array& cols, OutArray& out) {
  check_array(rows, "rows", 1);
  check_array(cols, "cols", 1);
  check_output(out, "out", 1);
  if (!is_int64(rows) || !is_int64(cols)) fail(ErrorKind::InvalidArgument, "rows, cols: dtype must be int64");
  if (rows.shape(0) != cols.shape(0))
    fail(ErrorKind::InvalidArgument, "rows, cols: lengths differ (", rows.shape(0), " and ", cols.shape(0), ")");
  if (out.shape(0) != rows.shape(0))
    fail(ErrorKind::InvalidArgument, "out: expected ", rows.shape(0), " entries like rows, got ", out.shape(0));
  const ScalarType s = num.symbolic()->scalar();
  if (scalar_of(out, "out") != s)
    fail(ErrorKind::InvalidArgument, "out: dtype must be ", scalar_name(s), " like the factorized matrix");
  const auto* r = static_cast<const index_t*>(rows.data());
  const auto* c = static_cast<const index_t*>(cols.data());
  void* o = out.data();
  const auto m = static_cast<index_t>(rows.shape(0));
  nb::gil_scoped_release release;
  num.inverse_entries(r, c, m, o);
}

// b and x are (nrhs, n) C-contiguous arrays: each right-hand side contiguous (column-major n x nrhs).
void solve_py(const Numeric& num, const Array& b, OutArray& x, const std::string& op, std::uintptr_t stream) {
  check_array(b, "b", 2, num.device());
  check_output(x, "x", 2, num.device());
  const index_t n = num.symbolic()->n();
  const ScalarType s = num.symbolic()->scalar();
  if (static_cast<index_t>(b.shape(1)) != n)
    fail(ErrorKind::InvalidArgument, "b: expected ", n, " rows, got ", b.shape(1));
  if (b.shape(0) != x.shape(0) || b.shape(1) != x.shape(1))
    fail(ErrorKind::InvalidArgument, "x: output shape does not match b");
  if (scalar_of(b, "b") != s || scalar_of(x, "x") != s)
    fail(ErrorKind::InvalidArgument, "b: dtype must be ", scalar_name(s), " like the factorized matrix");
  const Op o = parse_op(op);
  const void* bp = b.data();
  void* xp = x.data();
  const index_t nrhs = static_cast<index_t>(b.shape(0));
  nb::gil_scoped_release release;
  StreamScope scope(reinterpret_cast<Stream>(stream));
  num.solve(bp, xp, nrhs, o);
}

// values: (B, nnz) C-contiguous, one row per member.
NumericBatch factorize_batch_py(const std::shared_ptr<Symbolic>& sym, const Array& values, int threads,
                                bool allow_singular, std::uintptr_t stream) {
  check_array(values, "values", 2, sym->device());
  if (scalar_of(values, "values") != sym->scalar())
    fail(ErrorKind::InvalidArgument, "values: dtype does not match the analysis (", scalar_name(sym->scalar()), ")");
  if (static_cast<index_t>(values.shape(1)) != sym->csr_nnz())
    fail(ErrorKind::InvalidArgument, "values: expected shape (batch, ", sym->csr_nnz(), "), got (", values.shape(0),
         ", ", values.shape(1), ")");
  const void* ptr = values.data();
  const auto batch = static_cast<index_t>(values.shape(0));
  FactorizeOptions options;
  options.allow_singular = allow_singular;
  nb::gil_scoped_release release;  // once, for the whole batch
  StreamScope scope(reinterpret_cast<Stream>(stream));
  return factorize_batch(sym, ptr, batch, threads, options);
}

// b and x: (B, nrhs, n) C-contiguous, each member's right-hand sides column-major as Numeric.solve takes them.
void solve_batch_py(const NumericBatch& batch, const Array& b, OutArray& x, const std::string& op, int threads,
                    std::uintptr_t stream) {
  const Device device = batch.device();
  check_array(b, "b", 3, device);
  check_output(x, "x", 3, device);
  const index_t n = batch.symbolic()->n();
  const ScalarType s = batch.symbolic()->scalar();
  if (static_cast<index_t>(b.shape(0)) != batch.size() || static_cast<index_t>(b.shape(2)) != n)
    fail(ErrorKind::InvalidArgument, "b: expected shape (", batch.size(), ", nrhs, ", n, "), got (", b.shape(0), ", ",
         b.shape(1), ", ", b.shape(2), ")");
  if (b.shape(0) != x.shape(0) || b.shape(1) != x.shape(1) || b.shape(2) != x.shape(2))
    fail(ErrorKind::InvalidArgument, "x: output shape does not match b");
  if (scalar_of(b, "b") != s || scalar_of(x, "x") != s)
    fail(ErrorKind::InvalidArgument, "b: dtype must be ", scalar_name(s), " like the factorized matrices");
  const Op o = parse_op(op);
  const void* bp = b.data();
  void* xp = x.data();
  const auto nrhs = static_cast<index_t>(b.shape(1));
  nb::gil_scoped_release release;
  StreamScope scope(reinterpret_cast<Stream>(stream));
  batch.solve(bp, xp, nrhs, o, threads);
}

}  // namespace

void bind_direct(nb::module_& m) {
  nb::class_<Symbolic>(m, "Symbolic", "Symbolic analysis of a sparsity pattern (shareable by a batch).")
      .def_prop_ro("backend", [](const Symbolic& s) { return std::string(backend_name(s.backend())); })
      .def_prop_ro("method", [](const Symbolic& s) { return std::string(method_name(s.method())); })
      .def_prop_ro("dtype", [](const Symbolic& s) { return std::string(scalar_name(s.scalar())); })
      .def_prop_ro(
          "device", [](const Symbolic& s) { return s.device().str(); },
          "Where the analysis and its factorizations live and run: 'cpu' or 'cuda:<ordinal>'.")
      .def_prop_ro("n", &Symbolic::n)
      .def_prop_ro("predicted_factor_bytes", &Symbolic::predicted_factor_bytes)
      .def_prop_ro("predicted_flops", &Symbolic::predicted_flops,
                   "Flops of the numeric factorization predicted by the analysis (-1: none yet).")
      .def_prop_ro("predicted_factor_nnz", &Symbolic::predicted_factor_nnz,
                   "Stored entries of the factors predicted by the analysis (-1: none yet).")
      .def_prop_ro(
          "ordering", [](const Symbolic& s) { return std::string(ordering_name(s.ordering())); },
          "The fill-reducing ordering asked for: 'default' (the backend's own), 'amd' or 'metis'.")
      .def_prop_ro("memory_bytes", &Symbolic::memory_bytes,
                   "Bytes this analysis holds (plan and backend symbolic data; factors not included).")
      .def_prop_ro("analysis_count", &Symbolic::analysis_count,
                   "How many times the backend ran its analysis for this pattern (cuDSS: once per set of factors "
                   "it keeps; 1 for the CPU backends).")
      .def_prop_ro("nnz", &Symbolic::csr_nnz);
  nb::class_<Numeric>(m, "Numeric", "Numeric factorization; solves reuse it.")
      .def("solve", &solve_py, nb::arg("b"), nb::arg("x"), nb::arg("op") = "N", nb::arg("stream") = 0,
           "Solve op(A) X = B: b and x (nrhs, n) C-contiguous on the factorization's device; stream: the "
           "cudaStream_t (as an integer) a CUDA backend queues the solve on.")
      .def_prop_ro("factor_nnz", &Numeric::factor_nnz)
      .def("slogdet", &slogdet_py,
           "(sign, logabsdet) of det(A) from the factors, in double precision: sign a float (+1.0 / -1.0) for a "
           "real matrix, a complex of unit modulus for a complex one; (0, -inf) when a pivot is exactly zero.")
      .def("inverse_entries", &inverse_entries_py, nb::arg("rows"), nb::arg("cols"), nb::arg("out"),
           "Selected inversion: out[k] = inv(A)[rows[k], cols[k]] (rows, cols: int64 1-D of length m; out: 1-D, "
           "m entries of the factorization's dtype). Supported positions: those of the factor's filled pattern, "
           "which include every stored entry of A and its transpose (ValueError names the first other one). "
           "SingularMatrixError for a factor with a zero pivot; BackendUnavailableError for Eigen's LU.")
      .def_prop_ro(
          "device", [](const Numeric& n) { return n.device().str(); },
          "Where the factors live: 'cpu' or 'cuda:<ordinal>'.")
      .def_prop_ro("symbolic", [](const Numeric& n) { return std::const_pointer_cast<Symbolic>(n.symbolic()); });
  m.def("analyze", &analyze_py, nb::arg("backend"), nb::arg("method"), nb::arg("dtype"), nb::arg("n_rows"),
        nb::arg("n_cols"), nb::arg("crow_indices"), nb::arg("col_indices"));
  m.def("analyze", &analyze_pattern_py, nb::arg("backend"), nb::arg("method"), nb::arg("dtype"), nb::arg("pattern"),
        nb::arg("ordering") = "default",
        "Symbolic analysis of a CsrPattern, validated when it was made, with the fill-reducing ordering "
        "'default' (the backend's own), 'amd' (minimum degree) or 'metis' (nested dissection; not Eigen).");
  m.def("factorize", &factorize_py, nb::arg("symbolic"), nb::arg("values"), nb::arg("allow_singular") = false,
        nb::arg("stream") = 0,
        "Numeric factorization. allow_singular=True accepts a matrix singular to working precision when the "
        "library produced a complete factor (UMFPACK; CHOLMOD LDL^T when only its last pivot is zero): slogdet() "
        "then gives (0, -inf) for a zero pivot, and solve() / inverse_entries() raise SingularMatrixError.");

  nb::class_<NumericBatch>(m, "NumericBatch",
                           "Numeric factorizations of a batch of matrices sharing one analysis: a sequence of "
                           "Numeric (len(), batch[i]).")
      .def("__len__", &NumericBatch::size)
      .def(
          "__getitem__",
          [](const NumericBatch& batch, index_t i) {
            const index_t size = batch.size();
            if (i < 0) i += size;
            if (i < 0 || i >= size) throw nb::index_error("NumericBatch index out of range");
            return batch[i];
          },
          nb::arg("i"))
      .def_prop_ro("factor_nnz", &NumericBatch::factor_nnz, "Stored entries in the factors of all members.")
      .def_prop_ro("symbolic", [](const NumericBatch& b) { return std::const_pointer_cast<Symbolic>(b.symbolic()); })
      .def_prop_ro(
          "device", [](const NumericBatch& b) { return b.device().str(); }, "Where the factors live.")
      .def("solve", &solve_batch_py, nb::arg("b"), nb::arg("x"), nb::arg("op") = "N", nb::arg("threads") = 0,
           nb::arg("stream") = 0,
           "Solve op(A_i) X_i = B_i for every member i, members in parallel on `threads` threads (0: OpenMP's "
           "default). b and x are (B, nrhs, n) C-contiguous, each member's right-hand sides as Numeric.solve "
           "takes them.");
  m.def("factorize_batch", &factorize_batch_py, nb::arg("symbolic"), nb::arg("values"), nb::arg("threads") = 0,
        nb::arg("allow_singular") = false, nb::arg("stream") = 0,
        "Factorize the B matrices whose values are the rows of `values` (B, nnz), sharing `symbolic`, members in "
        "parallel on `threads` threads (0: OpenMP's default), the GIL released once. Errors name the first "
        "member that failed: 'batch member i: ...'.");
  m.def("backend_available", [](const std::string& b) { return backend_available(parse_backend(b)); });
  m.def(
      "load_pardiso",
      [](const std::vector<std::string>& candidates) { return load_library_py(load_pardiso, candidates); },
      nb::arg("candidates"),
      "Load Intel MKL's libmkl_rt for the 'pardiso' backend: TORCH_SLA_MKL_RT when set (a path; 'none' "
      "disables it), else the candidate paths in turn, then the dynamic loader's search. Returns (loaded, "
      "description): the library and version, or every place tried and why it failed.");
  m.def("set_pardiso_threads", &set_pardiso_threads, nb::arg("n"),
        "Threads for PARDISO (0: MKL's default); calls inside a parallel batch run on one thread each.");
}

}  // namespace sla::bind
