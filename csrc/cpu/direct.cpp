// Backend-independent part of the direct solvers: validation and dispatch.
#include <dlfcn.h>

#include <cstdint>

#include "backends.hpp"
#include "sla/direct.hpp"
#include "sla/errors.hpp"

namespace sla {

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
  if (sym->plan().csr_nnz > 0 && values == nullptr)
    fail(ErrorKind::InvalidArgument, "values: null pointer for ", sym->plan().csr_nnz, " values");
  std::unique_ptr<Numeric> num = sym->factorize(sym, values);
  const double rc = num->rcond();
  if (!(rc >= num->eps()))  // also catches NaN
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
