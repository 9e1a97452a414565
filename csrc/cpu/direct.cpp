// Backend-independent part of the direct solvers: validation, dispatch, and what no backend needs to
// see: the 0 x 0 matrix, structurally singular patterns, and the verdict on a finished factorization.
#include <dlfcn.h>

#include <cmath>
#include <complex>
#include <cstdint>
#include <limits>

#include "backends.hpp"
#include "convert.hpp"
#include "sla/direct.hpp"
#include "sla/errors.hpp"

namespace sla {

std::size_t Symbolic::memory_bytes() const {
  // The CSC plan: colptr, rowind and perm.
  return sizeof(*this) + (plan_.colptr.capacity() + plan_.rowind.capacity() + plan_.perm.capacity()) * sizeof(index_t);
}

namespace {

// Unit roundoff of the precision a backend factors scalar type s in: SuiteSparse works in double.
double working_eps(Backend b, ScalarType s) {
  const bool single = b == Backend::Eigen && (s == ScalarType::Float32 || s == ScalarType::Complex64);
  return single ? static_cast<double>(std::numeric_limits<float>::epsilon()) : std::numeric_limits<double>::epsilon();
}

// The factorization of a 0 x 0 matrix: nothing to store, solves do nothing.
class EmptyNumeric final : public Numeric {
 public:
  explicit EmptyNumeric(std::shared_ptr<const Symbolic> sym) : Numeric(std::move(sym)) {}
  void solve(const void*, void*, index_t, Op) const override {}
  double rcond() const override { return 1.0; }  // as LAPACK's condition estimators for n = 0
  double eps() const override { return working_eps(sym_->backend(), sym_->scalar()); }
  index_t factor_nnz() const override { return 0; }
};

// The analysis of a 0 x 0 pattern, for any backend and method (the libraries reject n = 0 or divide by it).
class EmptySymbolic final : public Symbolic {
 public:
  EmptySymbolic(Backend backend, Method method, ScalarType scalar, CscPlan plan)
      : Symbolic(scalar, std::move(plan)), backend_(backend), method_(method) {}
  Backend backend() const override { return backend_; }
  Method method() const override { return method_; }
  double predicted_factor_bytes() const override { return 0.0; }
  std::unique_ptr<Numeric> factorize(const std::shared_ptr<const Symbolic>& self, const void*) const override {
    return std::make_unique<EmptyNumeric>(self);
  }

 private:
  Backend backend_;
  Method method_;
};

// The first of the CSR values that the plan uses that is NaN or infinite (-1: none).
index_t first_non_finite(ScalarType s, const void* values, const std::vector<index_t>& perm) {
  return detail::visit_scalar(s, [&](auto tag) -> index_t {
    using T = decltype(tag);
    const T* v = static_cast<const T*>(values);
    for (index_t k : perm) {
      bool finite;
      if constexpr (detail::is_complex_t<T>::value)
        finite = std::isfinite(v[k].real()) && std::isfinite(v[k].imag());
      else
        finite = std::isfinite(v[k]);
      if (!finite) return k;
    }
    return -1;
  });
}

[[noreturn]] void fail_non_finite(const Symbolic& sym, index_t position) {
  if (position >= 0)
    fail(ErrorKind::SingularMatrix, "the ", method_name(sym.method()),
         " factorization produced a non-finite pivot: A contains NaN or Inf (the first at position ", position,
         " of its CSR values); check A for non-finite values");
  fail(ErrorKind::SingularMatrix, "the ", method_name(sym.method()),
       " factorization produced a non-finite pivot: A contains NaN or Inf, or the factorization overflowed; "
       "check A for non-finite or huge values (rescale A)");
}

[[noreturn]] void fail_structurally_singular(const Symbolic& sym) {
  const CscPlan& p = sym.plan();
  if (sym.method() != Method::LU)
    fail(ErrorKind::SingularMatrix, "A is structurally singular: row and column ", p.empty_row,
         " have no stored entry in the lower triangle of A (row >= col), which is all that the ",
         method_name(sym.method()),
         " factorization reads (the upper triangle is taken as its mirror). Pass A with its lower triangle (or both)");
  if (p.empty_row >= 0)
    fail(ErrorKind::SingularMatrix, "A is structurally singular: row ", p.empty_row, " of the ", p.n, " x ", p.n,
         " matrix has no stored entry");
  fail(ErrorKind::SingularMatrix, "A is structurally singular: column ", p.empty_col, " of the ", p.n, " x ", p.n,
       " matrix has no stored entry");
}

}  // namespace

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::SuiteSparse: return "suitesparse";
    case Backend::Eigen: return "eigen";
  }
  return "?";
}

const char* method_name(Method m) {
  switch (m) {
    case Method::Cholesky: return "cholesky";
    case Method::LDL: return "ldl";
    case Method::LU: return "lu";
  }
  return "?";
}

bool backend_available(Backend b) {
  return b == Backend::Eigen || (b == Backend::SuiteSparse && detail::suitesparse_compiled());
}

template <class I>
std::shared_ptr<const Symbolic> analyze(Backend backend, Method method, ScalarType scalar,
                                        const CsrView<I>& pattern) {
  if (pattern.n_rows != pattern.n_cols)
    fail(ErrorKind::InvalidArgument, "A: a direct solve needs a square matrix, got shape (", pattern.n_rows,
         ", ", pattern.n_cols, ")");
  if (!backend_available(backend))
    fail(ErrorKind::Unavailable, "backend '", backend_name(backend),
         "' was not compiled into this build (SuiteSparse was not found when torch_sla was built)");
  const bool lower_only = method != Method::LU;
  CscPlan plan = make_csc_plan(pattern, lower_only);
  if (plan.n == 0) return std::make_shared<EmptySymbolic>(backend, method, scalar, std::move(plan));
  if (backend == Backend::Eigen) return detail::analyze_eigen(method, scalar, std::move(plan));
  if (method == Method::LU) return detail::analyze_umfpack(scalar, std::move(plan));
  return detail::analyze_cholmod(method, scalar, std::move(plan));
}

template std::shared_ptr<const Symbolic> analyze<std::int32_t>(Backend, Method, ScalarType,
                                                               const CsrView<std::int32_t>&);
template std::shared_ptr<const Symbolic> analyze<std::int64_t>(Backend, Method, ScalarType,
                                                               const CsrView<std::int64_t>&);

std::unique_ptr<Numeric> factorize(const std::shared_ptr<const Symbolic>& sym, const void* values) {
  if (!sym) fail(ErrorKind::InvalidArgument, "factorize: the symbolic analysis is empty");
  const CscPlan& plan = sym->plan();
  if (plan.csr_nnz > 0 && values == nullptr)
    fail(ErrorKind::InvalidArgument, "values: null pointer for ", plan.csr_nnz, " values");
  if (plan.empty_row >= 0 || plan.empty_col >= 0) fail_structurally_singular(*sym);
  std::unique_ptr<Numeric> num;
  try {
    num = sym->factorize(sym, values);
  } catch (const Error& e) {
    // A breakdown caused by NaN or Inf in A (a NaN pivot may look like a zero or negative one to a
    // library): say so rather than blame the matrix's definiteness or rank.
    if (e.kind() == ErrorKind::SingularMatrix || e.kind() == ErrorKind::NotPositiveDefinite) {
      const index_t bad = first_non_finite(sym->scalar(), values, plan.perm);
      if (bad >= 0) fail_non_finite(*sym, bad);
    }
    throw;
  }
  const double rc = num->rcond();
  if (std::isnan(rc)) fail_non_finite(*sym, first_non_finite(sym->scalar(), values, plan.perm));
  if (!(rc >= num->eps()))
    fail(ErrorKind::SingularMatrix, "A is singular to working precision: the ", method_name(sym->method()),
         " factorization's pivot ratio (reciprocal condition estimate) is ", rc, ", below machine epsilon ",
         num->eps());
  return num;
}

bool set_blas_threads(int n) {
  // OpenBLAS exports openblas_set_num_threads; the reference BLAS has no threads. The BLAS is a
  // dependency of CHOLMOD/UMFPACK loaded with local scope, so look it up by library name.
  using setter_t = void (*)(int);
  static const setter_t setter = [] {
    for (const char* lib : {"libopenblas.so.0", "libblas.so.3", "libopenblas.so"}) {
      if (void* h = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD)) {
        void* sym = dlsym(h, "openblas_set_num_threads");
        dlclose(h);
        if (sym != nullptr) return reinterpret_cast<setter_t>(sym);
      }
    }
    return reinterpret_cast<setter_t>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  }();
  if (setter == nullptr || n < 1) return false;
  setter(n);
  return true;
}

}  // namespace sla
