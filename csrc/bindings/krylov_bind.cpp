// Bindings of the Krylov solvers, preconditioners and SpMV. Arrays are row-major (n, k) blocks.
#include <nanobind/stl/function.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include "common.hpp"
#include "sla/amg.hpp"
#include "sla/krylov.hpp"

namespace sla::bind {
namespace {

CsrArrays csr_from(index_t n_rows, index_t n_cols, const Array& crow, const Array& col, const Array& values) {
  check_array(crow, "crow_indices", 1);
  check_array(col, "col_indices", 1);
  check_array(values, "values", 1);
  CsrArrays a;
  a.n_rows = n_rows;
  a.n_cols = n_cols;
  if (is_int32(crow) && is_int32(col))
    a.index32 = true;
  else if (!(is_int64(crow) && is_int64(col)))
    fail(ErrorKind::InvalidArgument, "crow_indices, col_indices: must both be int32 or both int64");
  a.indptr = crow.data();
  a.indices = col.data();
  a.values = values.data();
  a.scalar = scalar_of(values, "values");
  if (crow.shape(0) < 1) fail(ErrorKind::InvalidArgument, "crow_indices: empty, expected n_rows + 1 entries");
  if (values.shape(0) != col.shape(0))
    fail(ErrorKind::InvalidArgument, "values: ", values.shape(0), " entries but ", col.shape(0), " column indices");
  validate_csr_arrays(a, static_cast<index_t>(crow.shape(0)), static_cast<index_t>(col.shape(0)), "A");
  return a;
}

// A row-major (rows, k) block of A's dtype: read (Array) or written in place (OutArray).
template <class A>
void check_block(const A& v, const CsrArrays& a, index_t rows, const char* what) {
  if constexpr (std::is_same_v<A, OutArray>)
    check_output(v, what, 2);
  else
    check_array(v, what, 2);
  if (static_cast<index_t>(v.shape(0)) != rows)
    fail(ErrorKind::InvalidArgument, what, ": expected ", rows, " rows, got ", v.shape(0));
  if (scalar_of(v, what) != a.scalar)
    fail(ErrorKind::InvalidArgument, what, ": dtype must be ", scalar_name(a.scalar), " like A's values");
}

// A preconditioner implemented by a Python callable z = f(r) on torch tensors (n, k).
class PyPreconditioner final : public Preconditioner {
 public:
  PyPreconditioner(nb::callable fn, ScalarType s, index_t n) : Preconditioner(s, n), fn_(std::move(fn)) {}
  void apply(const void* r, void* z, index_t k, Op) const override {
    nb::gil_scoped_acquire gil;
    size_t shape[2] = {static_cast<size_t>(n_), static_cast<size_t>(k)};
    nb::dlpack::dtype dt;
    switch (scalar_) {
      case ScalarType::Float32: dt = nb::dtype<float>(); break;
      case ScalarType::Float64: dt = nb::dtype<double>(); break;
      case ScalarType::Complex64: dt = nb::dtype<std::complex<float>>(); break;
      case ScalarType::Complex128: dt = nb::dtype<std::complex<double>>(); break;
    }
    nb::ndarray<nb::numpy> view(const_cast<void*>(r), 2, shape, nb::handle(), nullptr, dt);
    nb::object torch = nb::module_::import_("torch");
    nb::object rt = torch.attr("from_numpy")(view.cast());
    nb::object zt = fn_(rt);
    nb::object znp = zt.attr("detach")().attr("cpu")().attr("contiguous")().attr("numpy")();
    Array za = nb::cast<Array>(znp);
    if (za.ndim() != 2 || static_cast<index_t>(za.shape(0)) != n_ || static_cast<index_t>(za.shape(1)) != k ||
        scalar_of(za, "preconditioner") != scalar_)
      fail(ErrorKind::InvalidArgument, "preconditioner: the callable must return a tensor of shape (", n_, ", ", k,
           ") and dtype ", scalar_name(scalar_));
    const size_t bytes = static_cast<size_t>(n_ * k) * za.itemsize();
    std::memcpy(z, za.data(), bytes);
  }
  std::string name() const override { return "callable"; }

 private:
  nb::callable fn_;
};

PrecondKind parse_kind(const std::string& s) {
  if (s == "jacobi") return PrecondKind::Jacobi;
  if (s == "ssor") return PrecondKind::SSOR;
  if (s == "ic0") return PrecondKind::IC0;
  if (s == "ilu0") return PrecondKind::ILU0;
  fail(ErrorKind::InvalidArgument, "preconditioner: unknown kind '", s, "' (expected jacobi, ssor, ic0, ilu0)");
}

KrylovMethod parse_krylov(const std::string& s) {
  if (s == "cg") return KrylovMethod::CG;
  if (s == "bicgstab") return KrylovMethod::BiCGStab;
  if (s == "gmres") return KrylovMethod::GMRES;
  if (s == "minres") return KrylovMethod::MINRES;
  fail(ErrorKind::InvalidArgument, "method: unknown Krylov method '", s, "' (expected cg, bicgstab, gmres, minres)");
}

// The arrays of A from a validated pattern and this call's values (checked in O(1)).
CsrArrays csr_from(const CsrPattern& p, const Array& values) {
  check_values(p, values, "values");
  return p.with_values(values.data(), scalar_of(values, "values"));
}

KrylovOptions options(double rtol, double atol, index_t maxiter, int restart, int threads, bool record_history) {
  KrylovOptions o;
  o.rtol = rtol;
  o.atol = atol;
  o.maxiter = maxiter;
  o.restart = restart;
  o.threads = threads;
  o.record_history = record_history;
  return o;
}

std::shared_ptr<Preconditioner> make_preconditioner_py(const std::string& kind, const CsrArrays& a, double omega,
                                                       int threads) {
  const PrecondKind pk = parse_kind(kind);
  nb::gil_scoped_release release;
  return std::shared_ptr<Preconditioner>(make_preconditioner(pk, a, omega, threads));
}

void spmv_py(const CsrArrays& a, const Array& x, OutArray& y, int threads) {
  check_block(x, a, a.n_cols, "x");
  check_block(y, a, a.n_rows, "y");
  if (x.shape(1) != y.shape(1)) fail(ErrorKind::InvalidArgument, "y: column count does not match x");
  const void* xp = x.data();
  void* yp = y.data();
  const index_t k = static_cast<index_t>(x.shape(1));
  nb::gil_scoped_release release;
  spmv(a, xp, yp, k, threads);
}

nb::dict krylov_solve_py(const std::string& method, const CsrArrays& a, const Array& b, OutArray& x,
                         const std::shared_ptr<Preconditioner>& precond, const std::string& precond_op,
                         const KrylovOptions& o, const nb::object& callback) {
  const index_t n = a.n_rows;
  check_block(b, a, n, "b");
  check_block(x, a, n, "x0");
  if (b.shape(1) != x.shape(1)) fail(ErrorKind::InvalidArgument, "x0: column count does not match b");
  Progress progress;
  if (!callback.is_none()) {
    progress = [callback](index_t it, double rel) {
      nb::gil_scoped_acquire gil;
      callback(it, rel);  // a Python exception propagates as nb::python_error and aborts the solve
    };
  }
  const KrylovMethod meth = parse_krylov(method);
  const void* bp = b.data();
  void* xp = x.data();
  const index_t k = static_cast<index_t>(b.shape(1));
  KrylovResult r;
  {
    nb::gil_scoped_release release;
    r = krylov_solve(meth, a, bp, xp, k, precond.get(), precond_op == "H" ? Op::H : Op::N, o, progress);
  }
  return result_dict(r);
}

// values (B, nnz), b and x (B, n, k), all C-contiguous; preconds None or a sequence of B entries, each a
// Preconditioner or None.
nb::list krylov_solve_batch_py(const std::string& method, const CsrPattern& pattern, const Array& values,
                               const Array& b, OutArray& x, const nb::object& preconds, const std::string& precond_op,
                               const KrylovOptions& o) {
  check_array(values, "values", 2);
  check_array(b, "b", 3);
  check_output(x, "x", 3);
  const auto batch = static_cast<index_t>(values.shape(0));
  const index_t n = pattern.n_rows();
  const ScalarType s = scalar_of(values, "values");
  if (static_cast<index_t>(values.shape(1)) != pattern.nnz())
    fail(ErrorKind::InvalidArgument, "values: expected shape (batch, ", pattern.nnz(), ") for the pattern's nnz, got (",
         values.shape(0), ", ", values.shape(1), ")");
  if (static_cast<index_t>(b.shape(0)) != batch || static_cast<index_t>(b.shape(1)) != n)
    fail(ErrorKind::InvalidArgument, "b: expected shape (", batch, ", ", n, ", k), got (", b.shape(0), ", ", b.shape(1),
         ", ", b.shape(2), ")");
  if (b.shape(0) != x.shape(0) || b.shape(1) != x.shape(1) || b.shape(2) != x.shape(2))
    fail(ErrorKind::InvalidArgument, "x: shape (", x.shape(0), ", ", x.shape(1), ", ", x.shape(2),
         ") does not match b's");
  if (scalar_of(b, "b") != s || scalar_of(x, "x") != s)
    fail(ErrorKind::InvalidArgument, "b, x: dtype must be ", scalar_name(s), " like the values");
  std::vector<std::shared_ptr<Preconditioner>> owned;  // alive for the call
  std::vector<const Preconditioner*> M;
  if (!preconds.is_none()) {
    const auto count = static_cast<index_t>(nb::len(preconds));
    if (count != batch)
      fail(ErrorKind::InvalidArgument, "preconds: ", count, " entries for ", batch, " members (one each, or None)");
    for (nb::handle item : preconds) {
      if (item.is_none()) {
        M.push_back(nullptr);
        continue;
      }
      std::shared_ptr<Preconditioner> p;
      if (!nb::try_cast(item, p))
        fail(ErrorKind::InvalidArgument, "preconds[", M.size(), "]: expected a Preconditioner or None");
      M.push_back(p.get());
      owned.push_back(std::move(p));
    }
  }
  const KrylovMethod meth = parse_krylov(method);
  const Op mop = parse_op(precond_op);
  const void* vp = values.data();
  const void* bp = b.data();
  void* xp = x.data();
  const auto k = static_cast<index_t>(b.shape(2));
  std::vector<KrylovResult> results;
  {
    nb::gil_scoped_release release;  // once, for the whole batch
    results = krylov_solve_batch(meth, pattern, vp, s, batch, bp, xp, k, M, mop, o);
  }
  nb::list out;
  for (const KrylovResult& r : results) out.append(result_dict(r));
  return out;
}

AmgCycle parse_cycle(const std::string& s) {
  if (s == "V") return AmgCycle::V;
  if (s == "W") return AmgCycle::W;
  fail(ErrorKind::InvalidArgument, "amg_cycle: expected 'V' or 'W', got '", s, "'");
}

AmgSmoother parse_smoother(const std::string& s) {
  if (s == "jacobi") return AmgSmoother::Jacobi;
  if (s == "chebyshev") return AmgSmoother::Chebyshev;
  if (s == "sgs") return AmgSmoother::SGS;
  fail(ErrorKind::InvalidArgument, "amg_smoother: expected 'jacobi', 'chebyshev' or 'sgs', got '", s, "'");
}

// Copy a matrix of the hierarchy into caller-allocated arrays (int64 indptr, int32 indices, values).
void export_matrix(const AmgPreconditioner& M, int level, const std::string& which, OutArray& indptr, OutArray& indices,
                   OutArray& values) {
  if (which.size() != 1) fail(ErrorKind::InvalidArgument, "which: expected 'A', 'T', 'P' or 'R'");
  const AmgCsr a = M.matrix(level, which[0]);
  check_output(indptr, "indptr", 1);
  check_output(indices, "indices", 1);
  check_output(values, "values", 1);
  if (static_cast<index_t>(indptr.shape(0)) != a.n_rows + 1 || static_cast<index_t>(indices.shape(0)) != a.nnz() ||
      static_cast<index_t>(values.shape(0)) != a.nnz())
    fail(ErrorKind::InvalidArgument, "indptr: sizes do not match the matrix (", a.n_rows + 1, ", ", a.nnz(), ")");
  if (indptr.dtype() != nb::dtype<std::int64_t>() || indices.dtype() != nb::dtype<std::int32_t>() ||
      scalar_of(values, "values") != M.scalar())
    fail(ErrorKind::InvalidArgument, "indptr: expected int64 indptr, int32 indices and values of dtype ",
         scalar_name(M.scalar()));
  std::memcpy(indptr.data(), a.indptr, sizeof(std::int64_t) * (a.n_rows + 1));
  std::memcpy(indices.data(), a.indices, sizeof(std::int32_t) * a.nnz());
  std::memcpy(values.data(), a.values, (M.scalar() == ScalarType::Float32 ? 4 : 8) * a.nnz());
}

void bind_amg(nb::module_& m) {
  nb::class_<AmgPreconditioner, Preconditioner>(m, "AmgPreconditioner",
                                                "A smoothed-aggregation AMG hierarchy (a Preconditioner).")
      .def_prop_ro("num_levels", &AmgPreconditioner::num_levels)
      .def_prop_ro("operator_complexity", &AmgPreconditioner::operator_complexity)
      .def_prop_ro("grid_complexity", &AmgPreconditioner::grid_complexity)
      .def_prop_ro("setup_seconds", &AmgPreconditioner::setup_seconds)
      .def_prop_ro("values_only", &AmgPreconditioner::values_only)
      .def_prop_ro("setup_level_seconds", &AmgPreconditioner::setup_level_seconds)
      .def_prop_ro("cycle_level_seconds", &AmgPreconditioner::cycle_level_seconds)
      .def_prop_ro("symmetric", &AmgPreconditioner::symmetric)
      .def("describe", &AmgPreconditioner::describe)
      .def("spectral_radius", &AmgPreconditioner::spectral_radius, nb::arg("level"))
      .def(
          "level_shape",
          [](const AmgPreconditioner& M, int level, const std::string& which) {
            if (which.size() != 1) fail(ErrorKind::InvalidArgument, "which: expected 'A', 'T', 'P' or 'R'");
            const AmgCsr a = M.matrix(level, which[0]);
            return nb::make_tuple(a.n_rows, a.n_cols, a.nnz());
          },
          nb::arg("level"), nb::arg("which"))
      .def("export_matrix", &export_matrix, nb::arg("level"), nb::arg("which"), nb::arg("indptr"), nb::arg("indices"),
           nb::arg("values"))
      .def(
          "export_inv_diag",
          [](const AmgPreconditioner& M, int level, OutArray& out) {
            check_output(out, "out", 1);
            const index_t n = M.matrix(level, 'A').n_rows;
            if (static_cast<index_t>(out.shape(0)) != n || scalar_of(out, "out") != M.scalar())
              fail(ErrorKind::InvalidArgument, "out: expected ", n, " values of dtype ", scalar_name(M.scalar()));
            std::memcpy(out.data(), M.inv_diag(level), (M.scalar() == ScalarType::Float32 ? 4 : 8) * n);
          },
          nb::arg("level"), nb::arg("out"))
      .def_prop_ro("near_nullspace_columns", &AmgPreconditioner::near_nullspace_columns)
      .def(
          "export_near_nullspace",
          [](const AmgPreconditioner& M, int level, OutArray& out) {
            check_output(out, "out", 2);
            const index_t n = M.matrix(level, 'A').n_rows, k = M.near_nullspace_columns();
            if (static_cast<index_t>(out.shape(0)) != n || static_cast<index_t>(out.shape(1)) != k ||
                scalar_of(out, "out") != M.scalar())
              fail(ErrorKind::InvalidArgument, "out: expected (", n, ", ", k, ") values of dtype ",
                   scalar_name(M.scalar()));
            std::memcpy(out.data(), M.near_nullspace(level), (M.scalar() == ScalarType::Float32 ? 4 : 8) * n * k);
          },
          nb::arg("level"), nb::arg("out"), "Level l's near-null space (n, k) into out.");

  m.def(
      "make_amg",
      [](const CsrPattern& pattern, const Array& values, double strength, const std::string& cycle,
         const std::string& smoother, int sweeps, int degree, index_t max_coarse, int max_levels,
         const std::optional<Array>& near_nullspace, int threads, const std::shared_ptr<AmgPreconditioner>& reuse,
         bool same_strength_only, double truncation, double coarse_drop,
         index_t block_size) -> std::shared_ptr<AmgPreconditioner> {
        const CsrArrays a = csr_from(pattern, values);
        AmgOptions o;
        o.strength = strength;
        o.truncation = truncation;
        o.coarse_drop = coarse_drop;
        o.block_size = block_size;
        o.cycle = parse_cycle(cycle);
        o.smoother = parse_smoother(smoother);
        o.sweeps = sweeps;
        o.degree = degree;
        o.max_coarse = max_coarse;
        o.max_levels = max_levels;
        o.threads = threads;
        if (near_nullspace) {
          check_array(*near_nullspace, "near_nullspace", 2);
          if (static_cast<index_t>(near_nullspace->shape(0)) != a.n_rows ||
              scalar_of(*near_nullspace, "near_nullspace") != a.scalar || near_nullspace->stride(1) != 1 ||
              near_nullspace->stride(0) != near_nullspace->shape(1))
            fail(ErrorKind::InvalidArgument, "near_nullspace: expected a C-contiguous (", a.n_rows,
                 ", k) array of dtype ", scalar_name(a.scalar));
          o.near_nullspace = near_nullspace->data();
          o.near_nullspace_columns = static_cast<int>(near_nullspace->shape(1));
        }
        nb::gil_scoped_release release;
        return std::shared_ptr<AmgPreconditioner>(make_amg(a, o, reuse.get(), same_strength_only));
      },
      nb::arg("pattern"), nb::arg("values"), nb::arg("strength") = 0.02, nb::arg("cycle") = "V",
      nb::arg("smoother") = "sgs", nb::arg("sweeps") = 1, nb::arg("degree") = 2, nb::arg("max_coarse") = 500,
      nb::arg("max_levels") = 25, nb::arg("near_nullspace").none() = nb::none(), nb::arg("threads") = 1,
      nb::arg("reuse").none() = nb::none(), nb::arg("same_strength_only") = false, nb::arg("truncation") = 0.01,
      nb::arg("coarse_drop") = 0.02, nb::arg("block_size") = 1,
      "Smoothed-aggregation AMG hierarchy of a square real matrix; with reuse (a hierarchy of the same pattern) "
      "a values-only setup that keeps its aggregates and patterns.");
}

}  // namespace

void bind_krylov(nb::module_& m) {
  nb::class_<Preconditioner>(m, "Preconditioner", "A preconditioner built by the C++ core.")
      .def_prop_ro("name", &Preconditioner::name)
      .def_prop_ro("n", &Preconditioner::n)
      .def(
          "apply",
          [](const Preconditioner& p, const Array& r, OutArray& z, const std::string& op) {
            check_array(r, "r", 2);
            check_output(z, "z", 2);
            if (static_cast<index_t>(r.shape(0)) != p.n() || r.shape(0) != z.shape(0) || r.shape(1) != z.shape(1))
              fail(ErrorKind::InvalidArgument, "r: expected shape (", p.n(), ", k) matching z");
            if (scalar_of(r, "r") != p.scalar() || scalar_of(z, "z") != p.scalar())
              fail(ErrorKind::InvalidArgument, "r: dtype must be ", scalar_name(p.scalar()));
            const void* rp = r.data();
            void* zp = z.data();
            const index_t k = static_cast<index_t>(r.shape(1));
            const Op o = op == "H" ? Op::H : Op::N;
            nb::gil_scoped_release release;
            p.apply(rp, zp, k, o);
          },
          nb::arg("r"), nb::arg("z"), nb::arg("op") = "N");

  // Each entry point comes in two forms: with the pattern as (n, crow_indices, col_indices), validated on
  // every call, or as a CsrPattern, validated when it was made (only the values are checked: O(1)).
  m.def(
      "make_preconditioner",
      [](const std::string& kind, index_t n, const Array& crow, const Array& col, const Array& values, double omega,
         int threads) { return make_preconditioner_py(kind, csr_from(n, n, crow, col, values), omega, threads); },
      nb::arg("kind"), nb::arg("n"), nb::arg("crow_indices"), nb::arg("col_indices"), nb::arg("values"),
      nb::arg("omega") = 1.0, nb::arg("threads") = 1);
  m.def(
      "make_preconditioner",
      [](const std::string& kind, const CsrPattern& pattern, const Array& values, double omega, int threads) {
        return make_preconditioner_py(kind, csr_from(pattern, values), omega, threads);
      },
      nb::arg("kind"), nb::arg("pattern"), nb::arg("values"), nb::arg("omega") = 1.0, nb::arg("threads") = 1);

  m.def(
      "callable_preconditioner",
      [](nb::callable fn, const std::string& dtype, index_t n) -> std::shared_ptr<Preconditioner> {
        return std::make_shared<PyPreconditioner>(std::move(fn), parse_scalar(dtype), n);
      },
      nb::arg("fn"), nb::arg("dtype"), nb::arg("n"));

  m.def(
      "spmv",
      [](index_t n_rows, index_t n_cols, const Array& crow, const Array& col, const Array& values, const Array& x,
         OutArray& y, int threads) { spmv_py(csr_from(n_rows, n_cols, crow, col, values), x, y, threads); },
      nb::arg("n_rows"), nb::arg("n_cols"), nb::arg("crow_indices"), nb::arg("col_indices"), nb::arg("values"),
      nb::arg("x"), nb::arg("y"), nb::arg("threads") = 1);
  m.def(
      "spmv",
      [](const CsrPattern& pattern, const Array& values, const Array& x, OutArray& y, int threads) {
        spmv_py(csr_from(pattern, values), x, y, threads);
      },
      nb::arg("pattern"), nb::arg("values"), nb::arg("x"), nb::arg("y"), nb::arg("threads") = 1);

  m.def(
      "krylov_solve",
      [](const std::string& method, index_t n, const Array& crow, const Array& col, const Array& values, const Array& b,
         OutArray& x, std::shared_ptr<Preconditioner> precond, const std::string& precond_op, double rtol, double atol,
         index_t maxiter, int restart, int threads, bool record_history, nb::object callback) {
        return krylov_solve_py(method, csr_from(n, n, crow, col, values), b, x, precond, precond_op,
                               options(rtol, atol, maxiter, restart, threads, record_history), callback);
      },
      nb::arg("method"), nb::arg("n"), nb::arg("crow_indices"), nb::arg("col_indices"), nb::arg("values"), nb::arg("b"),
      nb::arg("x"), nb::arg("precond").none(), nb::arg("precond_op") = "N", nb::arg("rtol") = 1e-8,
      nb::arg("atol") = 0.0, nb::arg("maxiter") = 1000, nb::arg("restart") = 30, nb::arg("threads") = 1,
      nb::arg("record_history") = false, nb::arg("callback").none() = nb::none());
  m.def(
      "krylov_solve",
      [](const std::string& method, const CsrPattern& pattern, const Array& values, const Array& b, OutArray& x,
         std::shared_ptr<Preconditioner> precond, const std::string& precond_op, double rtol, double atol,
         index_t maxiter, int restart, int threads, bool record_history, nb::object callback) {
        return krylov_solve_py(method, csr_from(pattern, values), b, x, precond, precond_op,
                               options(rtol, atol, maxiter, restart, threads, record_history), callback);
      },
      nb::arg("method"), nb::arg("pattern"), nb::arg("values"), nb::arg("b"), nb::arg("x"),
      nb::arg("precond").none() = nb::none(), nb::arg("precond_op") = "N", nb::arg("rtol") = 1e-8,
      nb::arg("atol") = 0.0, nb::arg("maxiter") = 1000, nb::arg("restart") = 30, nb::arg("threads") = 1,
      nb::arg("record_history") = false, nb::arg("callback").none() = nb::none());

  m.def(
      "krylov_solve_batch",
      [](const std::string& method, const CsrPattern& pattern, const Array& values, const Array& b, OutArray& x,
         const nb::object& preconds, const std::string& precond_op, double rtol, double atol, index_t maxiter,
         int restart, int threads, bool record_history) {
        return krylov_solve_batch_py(method, pattern, values, b, x, preconds, precond_op,
                                     options(rtol, atol, maxiter, restart, threads, record_history));
      },
      nb::arg("method"), nb::arg("pattern"), nb::arg("values"), nb::arg("b"), nb::arg("x"),
      nb::arg("preconds").none() = nb::none(), nb::arg("precond_op") = "N", nb::arg("rtol") = 1e-8,
      nb::arg("atol") = 0.0, nb::arg("maxiter") = 1000, nb::arg("restart") = 30, nb::arg("threads") = 1,
      nb::arg("record_history") = false,
      "Solve A_i X_i = B_i for B matrices sharing `pattern` (values (B, nnz); b and x (B, n, k), x the initial "
      "guesses, overwritten), the GIL released once. With B >= threads the members run in parallel, each on one "
      "thread; otherwise one after the other on `threads` threads. preconds: None, or one Preconditioner (or "
      "None) per member. No progress callback: members report at the end, as a list of B dicts like "
      "krylov_solve's. Errors name the first member that failed: 'batch member i: ...'.");
  bind_amg(m);
}

}  // namespace sla::bind
