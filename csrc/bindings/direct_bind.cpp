// Bindings of the direct solvers: Symbolic / Numeric as opaque classes, arrays as DLPack views.
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>

#include <memory>
#include <string>

#include "common.hpp"
#include "sla/direct.hpp"

namespace sla::bind {
namespace {

Backend parse_backend(const std::string& s) {
  if (s == "suitesparse") return Backend::SuiteSparse;
  if (s == "eigen") return Backend::Eigen;
  fail(ErrorKind::InvalidArgument, "backend: unknown C++ backend '", s, "' (expected 'suitesparse' or 'eigen')");
}

Method parse_method(const std::string& s) {
  if (s == "cholesky") return Method::Cholesky;
  if (s == "ldl") return Method::LDL;
  if (s == "lu") return Method::LU;
  fail(ErrorKind::InvalidArgument, "method: unknown method '", s, "' (expected 'cholesky', 'ldl' or 'lu')");
}

template <class I>
std::shared_ptr<Symbolic> analyze_typed(Backend b, Method m, ScalarType s, index_t n_rows, index_t n_cols,
                                              const Array& indptr, const Array& indices) {
  CsrView<I> view{n_rows, n_cols, static_cast<const I*>(indptr.data()), static_cast<const I*>(indices.data())};
  if (indptr.shape(0) < 1) fail(ErrorKind::InvalidArgument, "crow_indices: empty, expected n_rows + 1 entries");
  validate_csr(view, static_cast<index_t>(indptr.shape(0)), static_cast<index_t>(indices.shape(0)), "A");
  nb::gil_scoped_release release;
  return std::const_pointer_cast<Symbolic>(analyze(b, m, s, view));
}

std::shared_ptr<Symbolic> analyze_py(const std::string& backend, const std::string& method,
                                           const std::string& dtype, index_t n_rows, index_t n_cols,
                                           const Array& indptr, const Array& indices) {
  check_array(indptr, "crow_indices", 1);
  check_array(indices, "col_indices", 1);
  const Backend b = parse_backend(backend);
  const Method m = parse_method(method);
  const ScalarType s = parse_scalar(dtype);
  if (is_int64(indptr) && is_int64(indices)) return analyze_typed<std::int64_t>(b, m, s, n_rows, n_cols, indptr, indices);
  if (is_int32(indptr) && is_int32(indices)) return analyze_typed<std::int32_t>(b, m, s, n_rows, n_cols, indptr, indices);
  fail(ErrorKind::InvalidArgument, "crow_indices, col_indices: must both be int32 or both int64");
}

std::shared_ptr<Symbolic> analyze_pattern_py(const std::string& backend, const std::string& method,
                                             const std::string& dtype, const CsrPattern& pattern) {
  const Backend b = parse_backend(backend);
  const Method m = parse_method(method);
  const ScalarType s = parse_scalar(dtype);
  nb::gil_scoped_release release;
  return std::const_pointer_cast<Symbolic>(analyze(b, m, s, pattern));
}

std::shared_ptr<Numeric> factorize_py(const std::shared_ptr<Symbolic>& sym, const Array& values) {
  check_array(values, "values", 1);
  if (scalar_of(values, "values") != sym->scalar())
    fail(ErrorKind::InvalidArgument, "values: dtype does not match the analysis (", scalar_name(sym->scalar()), ")");
  if (static_cast<index_t>(values.shape(0)) != sym->csr_nnz())
    fail(ErrorKind::InvalidArgument, "values: expected ", sym->csr_nnz(), " entries, got ", values.shape(0));
  const void* ptr = values.data();
  nb::gil_scoped_release release;
  return std::shared_ptr<Numeric>(factorize(sym, ptr));
}

// b and x are (nrhs, n) C-contiguous arrays: each right-hand side contiguous (column-major n x nrhs).
void solve_py(const Numeric& num, const Array& b, OutArray& x, const std::string& op) {
  check_array(b, "b", 2);
  check_output(x, "x", 2);
  const index_t n = num.symbolic()->n();
  const ScalarType s = num.symbolic()->scalar();
  if (static_cast<index_t>(b.shape(1)) != n)
    fail(ErrorKind::InvalidArgument, "b: expected ", n, " rows, got ", b.shape(1));
  if (b.shape(0) != x.shape(0) || b.shape(1) != x.shape(1))
    fail(ErrorKind::InvalidArgument, "x: output shape does not match b");
  if (scalar_of(b, "b") != s || scalar_of(x, "x") != s)
    fail(ErrorKind::InvalidArgument, "b: dtype must be ", scalar_name(s), " like the factorized matrix");
  if (op != "N" && op != "H") fail(ErrorKind::InvalidArgument, "op: expected 'N' or 'H', got '", op, "'");
  const Op o = op == "N" ? Op::N : Op::H;
  const void* bp = b.data();
  void* xp = x.data();
  const index_t nrhs = static_cast<index_t>(b.shape(0));
  nb::gil_scoped_release release;
  num.solve(bp, xp, nrhs, o);
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
      .def_prop_ro("memory_bytes", &Symbolic::memory_bytes,
                   "Bytes this analysis holds (plan and backend symbolic data; factors not included).")
      .def_prop_ro("nnz", &Symbolic::csr_nnz);
  nb::class_<Numeric>(m, "Numeric", "Numeric factorization; solves reuse it.")
      .def("solve", &solve_py, nb::arg("b"), nb::arg("x"), nb::arg("op") = "N")
      .def_prop_ro("factor_nnz", &Numeric::factor_nnz)
      .def_prop_ro(
          "device", [](const Numeric& n) { return n.device().str(); },
          "Where the factors live: 'cpu' or 'cuda:<ordinal>'.")
      .def_prop_ro("symbolic", [](const Numeric& n) { return std::const_pointer_cast<Symbolic>(n.symbolic()); });
  m.def("analyze", &analyze_py, nb::arg("backend"), nb::arg("method"), nb::arg("dtype"), nb::arg("n_rows"),
        nb::arg("n_cols"), nb::arg("crow_indices"), nb::arg("col_indices"));
  m.def("analyze", &analyze_pattern_py, nb::arg("backend"), nb::arg("method"), nb::arg("dtype"), nb::arg("pattern"),
        "Symbolic analysis of a CsrPattern, validated when it was made.");
  m.def("factorize", &factorize_py, nb::arg("symbolic"), nb::arg("values"));
  m.def("backend_available", [](const std::string& b) { return backend_available(parse_backend(b)); });
}

}  // namespace sla::bind
