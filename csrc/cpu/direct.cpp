// Backend-independent part of the direct solvers: validation, dispatch, and what no backend needs to
// see: the 0 x 0 matrix, structurally singular patterns, and the verdict on a finished factorization.
#include "sla/direct.hpp"

#include <dlfcn.h>

#include <cmath>
#include <complex>
#include <cstdint>
#include <limits>

#include "backends.hpp"
#include "batch.hpp"
#include "convert.hpp"
#include "cpu_symbolic.hpp"
#include "selinv.hpp"
#include "sla/cuda.hpp"
#include "sla/errors.hpp"

namespace sla {

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
  SignLogDet slogdet() const override { return {}; }  // det of a 0 x 0 matrix: 1
  void inverse_entries(const index_t* rows, const index_t* cols, index_t m, void*) const override {
    detail::check_entry_indices(0, rows, cols, m);  // any index is out of range
  }
};

// The analysis of a 0 x 0 pattern, for any backend and method (the libraries reject n = 0 or divide by it).
class EmptySymbolic final : public detail::CpuSymbolic {
 public:
  EmptySymbolic(Backend backend, Method method, ScalarType scalar, detail::CscPlan plan)
      : CpuSymbolic(scalar, std::move(plan)), backend_(backend), method_(method) {}
  Backend backend() const override { return backend_; }
  Method method() const override { return method_; }
  double predicted_factor_bytes() const override { return 0.0; }
  std::unique_ptr<Numeric> factorize(const std::shared_ptr<const Symbolic>& self, const void*,
                                     const FactorizeOptions&) const override {
    return std::make_unique<EmptyNumeric>(self);
  }

 private:
  Backend backend_;
  Method method_;
};

[[noreturn]] void fail_non_finite(const Symbolic& sym, index_t position) {
  if (position >= 0)
    fail(ErrorKind::SingularMatrix, "the ", method_name(sym.method()),
         " factorization produced a non-finite pivot: A contains NaN or Inf (the first at position ", position,
         " of its CSR values); check A for non-finite values");
  fail(ErrorKind::SingularMatrix, "the ", method_name(sym.method()),
       " factorization produced a non-finite pivot: A contains NaN or Inf, or the factorization overflowed; "
       "check A for non-finite or huge values (rescale A)");
}

}  // namespace

SignLogDet Numeric::slogdet() const {
  fail(ErrorKind::Unavailable, "slogdet: backend '", backend_name(sym_->backend()), "' (", method_name(sym_->method()),
       ") does not give the determinant");
}

std::unique_ptr<NumericBatch> Symbolic::factorize_uniform_batch(const std::shared_ptr<const Symbolic>&, const void*,
                                                                index_t, const FactorizeOptions&) const {
  return nullptr;
}

void Numeric::inverse_entries(const index_t*, const index_t*, index_t, void*) const {
  fail(ErrorKind::Unavailable, "inverse_entries: backend '", backend_name(sym_->backend()), "' (",
       method_name(sym_->method()), ") has no selected inversion");
}

const char* backend_name(Backend b) {
  switch (b) {
    case Backend::SuiteSparse: return "suitesparse";
    case Backend::Eigen: return "eigen";
    case Backend::Pardiso: return "pardiso";
    case Backend::Cudss: return "cudss";
  }
  return "?";
}

const char* ordering_name(Ordering o) {
  switch (o) {
    case Ordering::Default: return "default";
    case Ordering::AMD: return "amd";
    case Ordering::NestedDissection: return "metis";
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
  switch (b) {
    case Backend::Eigen: return true;
    case Backend::SuiteSparse: return detail::suitesparse_compiled();
    case Backend::Pardiso: return pardiso_library().loaded;
    case Backend::Cudss: return cuda_compiled() && cudss_library().loaded;
  }
  return false;
}

template <class I>
std::shared_ptr<const Symbolic> analyze(Backend backend, Method method, ScalarType scalar, const CsrView<I>& pattern,
                                        Ordering ordering, const AnalyzeOptions& options) {
  if (pattern.n_rows != pattern.n_cols)
    fail(ErrorKind::InvalidArgument, "A: a direct solve needs a square matrix, got shape (", pattern.n_rows, ", ",
         pattern.n_cols, ")");
  if (backend == Backend::Cudss)
    fail(ErrorKind::InvalidArgument, "backend 'cudss' runs on a CUDA device: analyse with analyze_cudss(), which ",
         "takes the device (from Python: torch_sla._C.analyze_cudss)");
  if (backend == Backend::Pardiso && !backend_available(backend))
    fail(ErrorKind::Unavailable, "backend 'pardiso' is not available: ", pardiso_library().description);
  if (!backend_available(backend))
    fail(ErrorKind::Unavailable, "backend '", backend_name(backend),
         "' was not compiled into this build (SuiteSparse was not found when torch_sla was built)");
  const bool lower_only = method != Method::LU;
  if (backend == Backend::Eigen && ordering == Ordering::NestedDissection)
    fail(ErrorKind::InvalidArgument, "ordering: 'metis' (nested dissection) is not available with backend 'eigen' ",
         "(it has 'default' and 'amd')");
  if (backend == Backend::Eigen && method == Method::LU && ordering == Ordering::AMD)
    fail(ErrorKind::InvalidArgument, "ordering: Eigen's LU orders columns with COLAMD ('default'); 'amd' is for ",
         "its Cholesky and LDL^T");
  detail::CscPlan plan = detail::make_csc_plan(pattern, lower_only);
  plan.ordering = ordering;
  if (plan.n == 0) return std::make_shared<EmptySymbolic>(backend, method, scalar, std::move(plan));
  if (backend == Backend::Eigen) return detail::analyze_eigen(method, scalar, std::move(plan));
  if (backend == Backend::Pardiso) return detail::analyze_pardiso(method, scalar, std::move(plan));
  if (method == Method::LU) return detail::analyze_umfpack(scalar, std::move(plan));
  return detail::analyze_cholmod(method, scalar, std::move(plan), options);
}

template std::shared_ptr<const Symbolic> analyze<std::int32_t>(Backend, Method, ScalarType,
                                                               const CsrView<std::int32_t>&, Ordering,
                                                               const AnalyzeOptions&);
template std::shared_ptr<const Symbolic> analyze<std::int64_t>(Backend, Method, ScalarType,
                                                               const CsrView<std::int64_t>&, Ordering,
                                                               const AnalyzeOptions&);

std::shared_ptr<const Symbolic> analyze(Backend backend, Method method, ScalarType scalar, const CsrPattern& pattern,
                                        Ordering ordering) {
  if (pattern.index32()) return analyze(backend, method, scalar, pattern.view<std::int32_t>(), ordering);
  return analyze(backend, method, scalar, pattern.view<std::int64_t>(), ordering);
}

std::unique_ptr<Numeric> factorize(const std::shared_ptr<const Symbolic>& sym, const void* values,
                                   const FactorizeOptions& options) {
  if (!sym) fail(ErrorKind::InvalidArgument, "factorize: the symbolic analysis is empty");
  if (sym->csr_nnz() > 0 && values == nullptr)
    fail(ErrorKind::InvalidArgument, "values: null pointer for ", sym->csr_nnz(), " values");
  sym->check_structure();
  std::unique_ptr<Numeric> num;
  try {
    num = sym->factorize(sym, values, options);
  } catch (const Error& e) {
    // A breakdown caused by NaN or Inf in A (a NaN pivot may look like a zero or negative one to a
    // library): say so rather than blame the matrix's definiteness or rank.
    if (e.kind() == ErrorKind::SingularMatrix || e.kind() == ErrorKind::NotPositiveDefinite) {
      const index_t bad = sym->first_non_finite(values);
      if (bad >= 0) fail_non_finite(*sym, bad);
    }
    throw;
  }
  const double rc = num->rcond();
  if (std::isnan(rc)) {
    const index_t bad = sym->first_non_finite(values);
    // A zero pivot accepted by allow_singular is followed by divisions by zero: no complete factor.
    if (options.allow_singular && bad < 0)
      fail(ErrorKind::SingularMatrix, "A is singular: the ", method_name(sym->method()),
           " factorization met a zero pivot and could not complete (non-finite entries followed it; ",
           "or it overflowed: rescale A)");
    fail_non_finite(*sym, bad);
  }
  if (options.allow_singular) return num;
  if (!(rc >= num->eps()))
    fail(ErrorKind::SingularMatrix, "A is singular to working precision: the ", method_name(sym->method()),
         " factorization's pivot ratio (reciprocal condition estimate) is ", rc, ", below machine epsilon ",
         num->eps());
  return num;
}

index_t NumericBatch::factor_nnz() const {
  index_t total = 0;
  for (const auto& m : members_) total += m->factor_nnz();
  return total;
}

void NumericBatch::solve(const void* b, void* x, index_t nrhs, Op op, int threads) const {
  if (nrhs < 0) fail(ErrorKind::InvalidArgument, "b: negative number of right-hand sides ", nrhs);
  if (joint_) {
    joint_->solve(b, x, nrhs, op);
    return;
  }
  const std::size_t stride = static_cast<std::size_t>(nrhs * sym_->n()) * scalar_size(sym_->scalar());
  const int t = detail::batch_threads(threads);
  detail::BlasThreadsScope blas(t > 1 && size() > 1 ? 1 : detail::kKeepBlasThreads);
  const auto* bb = static_cast<const char*>(b);
  auto* xx = static_cast<char*>(x);
  detail::for_each_member(size(), t,
                          [&](index_t i) { members_[i]->solve(bb + i * stride, xx + i * stride, nrhs, op); });
}

NumericBatch factorize_batch(const std::shared_ptr<const Symbolic>& sym, const void* values, index_t batch, int threads,
                             const FactorizeOptions& options) {
  if (!sym) fail(ErrorKind::InvalidArgument, "factorize_batch: the symbolic analysis is empty");
  if (batch < 0) fail(ErrorKind::InvalidArgument, "values: negative batch size ", batch);
  if (batch > 0 && sym->csr_nnz() > 0 && values == nullptr)
    fail(ErrorKind::InvalidArgument, "values: null pointer for ", batch, " x ", sym->csr_nnz(), " values");
  if (batch > 0) {
    sym->check_structure();
    if (std::unique_ptr<NumericBatch> joint = sym->factorize_uniform_batch(sym, values, batch, options))
      return std::move(*joint);
  }
  const std::size_t stride = static_cast<std::size_t>(sym->csr_nnz()) * scalar_size(sym->scalar());
  std::vector<std::shared_ptr<Numeric>> members(static_cast<std::size_t>(batch));
  const int t = detail::batch_threads(threads);
  detail::BlasThreadsScope blas(t > 1 && batch > 1 ? 1 : detail::kKeepBlasThreads);
  const auto* v = static_cast<const char*>(values);
  detail::for_each_member(batch, t, [&](index_t i) { members[i] = factorize(sym, v + i * stride, options); });
  return NumericBatch(sym, std::move(members));
}

namespace {

// An OpenBLAS entry point, looked up by name. The BLAS is a dependency of CHOLMOD/UMFPACK loaded with local
// scope, so look in the libraries it may be loaded as first; the reference BLAS has no threads.
void* openblas_symbol(const char* name) {
  for (const char* lib : {"libopenblas.so.0", "libblas.so.3", "libopenblas.so"}) {
    if (void* h = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD)) {
      void* sym = dlsym(h, name);
      dlclose(h);
      if (sym != nullptr) return sym;
    }
  }
  return dlsym(RTLD_DEFAULT, name);
}

}  // namespace

bool set_blas_threads(int n) {
  using setter_t = void (*)(int);
  static const auto setter = reinterpret_cast<setter_t>(openblas_symbol("openblas_set_num_threads"));
  if (setter == nullptr || n < 1) return false;
  setter(n);
  return true;
}

int blas_threads() {
  using getter_t = int (*)();
  static const auto getter = reinterpret_cast<getter_t>(openblas_symbol("openblas_get_num_threads"));
  return getter == nullptr ? -1 : getter();
}

}  // namespace sla
