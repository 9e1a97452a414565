// UMFPACK (SuiteSparse): sparse LU with partial pivoting, unsymmetric-pattern multifrontal.
// Works in double or packed complex<double>; float32 / complex64 callers are converted in and out.
#include <umfpack.h>

#include <cmath>
#include <complex>
#include <cstddef>
#include <limits>
#include <memory>
#include <vector>

#include "backends.hpp"
#include "convert.hpp"
#include "sla/errors.hpp"
#include "sla/interrupt.hpp"

namespace sla::detail {
namespace {

// UMFPACK takes a null array for a missing argument, even when it would hold no entries (no stored
// entry at all): give it a valid pointer then.
const SuiteSparse_long* row_indices(const CscPlan& p) {
  static const SuiteSparse_long none = 0;
  return p.rowind.empty() ? &none : p.rowind.data();
}

// The real (dl) and packed-complex (zl) UMFPACK entry points behind one set of names.
template <class W> struct Umf;

template <> struct Umf<double> {
  static SuiteSparse_long symbolic(const CscPlan& p, void** sym, const double* ctl, double* info) {
    return umfpack_dl_symbolic(p.n, p.n, p.colptr.data(), row_indices(p), nullptr, sym, ctl, info);
  }
  static SuiteSparse_long numeric(const CscPlan& p, const double* x, void* sym, void** num, const double* ctl,
                                  double* info) {
    return umfpack_dl_numeric(p.colptr.data(), p.rowind.data(), x, sym, num, ctl, info);
  }
  static SuiteSparse_long solve(SuiteSparse_long sys, const CscPlan& p, const double* ax, double* x,
                                const double* b, void* num, const double* ctl, double* info) {
    return umfpack_dl_solve(sys, p.colptr.data(), p.rowind.data(), ax, x, b, num, ctl, info);
  }
  static void free_symbolic(void** s) { umfpack_dl_free_symbolic(s); }
  static void free_numeric(void** s) { umfpack_dl_free_numeric(s); }
  static void defaults(double* ctl) { umfpack_dl_defaults(ctl); }
  static SuiteSparse_long get_lunz(void* num, SuiteSparse_long* lnz, SuiteSparse_long* unz) {
    SuiteSparse_long nr, nc, nzud;
    return umfpack_dl_get_lunz(lnz, unz, &nr, &nc, &nzud, num);
  }
  // The diagonal of U (n values) into d.
  static SuiteSparse_long udiag(void* num, double* d) {
    return umfpack_dl_get_numeric(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, d, nullptr,
                                  nullptr, num);
  }
};

template <> struct Umf<std::complex<double>> {
  using C = std::complex<double>;
  static const double* d(const C* p) { return reinterpret_cast<const double*>(p); }
  static double* d(C* p) { return reinterpret_cast<double*>(p); }
  static SuiteSparse_long symbolic(const CscPlan& p, void** sym, const double* ctl, double* info) {
    return umfpack_zl_symbolic(p.n, p.n, p.colptr.data(), row_indices(p), nullptr, nullptr, sym, ctl, info);
  }
  static SuiteSparse_long numeric(const CscPlan& p, const C* x, void* sym, void** num, const double* ctl,
                                  double* info) {
    return umfpack_zl_numeric(p.colptr.data(), p.rowind.data(), d(x), nullptr, sym, num, ctl, info);
  }
  static SuiteSparse_long solve(SuiteSparse_long sys, const CscPlan& p, const C* ax, C* x, const C* b, void* num,
                                const double* ctl, double* info) {
    return umfpack_zl_solve(sys, p.colptr.data(), p.rowind.data(), d(ax), nullptr, d(x), nullptr, d(b), nullptr,
                            num, ctl, info);
  }
  static void free_symbolic(void** s) { umfpack_zl_free_symbolic(s); }
  static void free_numeric(void** s) { umfpack_zl_free_numeric(s); }
  static void defaults(double* ctl) { umfpack_zl_defaults(ctl); }
  static SuiteSparse_long get_lunz(void* num, SuiteSparse_long* lnz, SuiteSparse_long* unz) {
    SuiteSparse_long nr, nc, nzud;
    return umfpack_zl_get_lunz(lnz, unz, &nr, &nc, &nzud, num);
  }
  // The diagonal of U (n values, packed complex: 2 n doubles) into d.
  static SuiteSparse_long udiag(void* num, double* d) {
    return umfpack_zl_get_numeric(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                  nullptr, d, nullptr, nullptr, nullptr, num);
  }
};

// Owns an UMFPACK Numeric object.
template <class W>
class NumericHandle {
 public:
  NumericHandle() = default;
  ~NumericHandle() {
    if (p_ != nullptr) Umf<W>::free_numeric(&p_);
  }
  NumericHandle(NumericHandle&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  NumericHandle(const NumericHandle&) = delete;
  NumericHandle& operator=(const NumericHandle&) = delete;
  NumericHandle& operator=(NumericHandle&&) = delete;
  void** out() { return &p_; }
  void* get() const { return p_; }

 private:
  void* p_ = nullptr;
};

template <class W>
class UmfpackNumeric final : public Numeric {
 public:
  UmfpackNumeric(std::shared_ptr<const Symbolic> sym, std::vector<W> values, NumericHandle<W> numeric,
                 std::vector<double> control, double rcond)
      : Numeric(std::move(sym)),
        values_(std::move(values)),
        numeric_(std::move(numeric)),
        control_(std::move(control)),
        rcond_(rcond) {}

  void solve(const void* b, void* x, index_t nrhs, Op op) const override {
    const index_t n = sym_->n();
    if (n == 0 || nrhs == 0) return;
    const ScalarType s = sym_->scalar();
    std::vector<W> bw(static_cast<size_t>(n * nrhs)), xw(static_cast<size_t>(n * nrhs));
    load_dense<W>(s, b, n * nrhs, bw.data());
    // The plan is the CSC of A itself: UMFPACK_A solves A x = b, UMFPACK_At solves A^H x = b.
    const SuiteSparse_long sys = op == Op::N ? UMFPACK_A : UMFPACK_At;
    double info[UMFPACK_INFO];
    for (index_t j = 0; j < nrhs; ++j) {
      poll_interrupt();
      const SuiteSparse_long status = Umf<W>::solve(sys, plan(), values_.data(), xw.data() + j * n, bw.data() + j * n,
                                                    numeric_.get(), control_.data(), info);
      if (status == UMFPACK_WARNING_singular_matrix)
        fail(ErrorKind::SingularMatrix, "A is singular (UMFPACK found a zero pivot)");
      if (status != UMFPACK_OK) fail(ErrorKind::Internal, "UMFPACK solve failed (status ", status, ")");
    }
    store_dense<W>(s, xw.data(), n * nrhs, x);
  }

  double rcond() const override { return rcond_; }
  double eps() const override { return std::numeric_limits<double>::epsilon(); }

  index_t factor_nnz() const override {
    SuiteSparse_long lnz = 0, unz = 0;
    Umf<W>::get_lunz(numeric_.get(), &lnz, &unz);
    return static_cast<index_t>(lnz + unz);
  }

 private:
  // The analysis is a UmfpackSymbolic, so a CpuSymbolic.
  const CscPlan& plan() const { return static_cast<const CpuSymbolic&>(*sym_).plan(); }

  std::vector<W> values_;  // CSC values, kept for UMFPACK's iterative refinement
  NumericHandle<W> numeric_;
  std::vector<double> control_;
  double rcond_;
};

class UmfpackSymbolic final : public CpuSymbolic {
 public:
  UmfpackSymbolic(ScalarType scalar, CscPlan plan) : CpuSymbolic(scalar, std::move(plan)), control_(UMFPACK_CONTROL) {
    if (is_complex(scalar_)) init<std::complex<double>>();
    else init<double>();
  }
  ~UmfpackSymbolic() override {
    if (symbolic_ == nullptr) return;
    if (is_complex(scalar_)) Umf<std::complex<double>>::free_symbolic(&symbolic_);
    else Umf<double>::free_symbolic(&symbolic_);
  }
  UmfpackSymbolic(const UmfpackSymbolic&) = delete;
  UmfpackSymbolic& operator=(const UmfpackSymbolic&) = delete;

  Backend backend() const override { return Backend::SuiteSparse; }
  Method method() const override { return Method::LU; }
  double predicted_factor_bytes() const override { return predicted_bytes_; }
  // The plan, the control array and UMFPACK's Symbolic object, whose size UMFPACK reports exactly
  // (Info[UMFPACK_SYMBOLIC_SIZE] units of Info[UMFPACK_SIZE_OF_UNIT] bytes).
  std::size_t memory_bytes() const override {
    return CpuSymbolic::memory_bytes() + sizeof(*this) - sizeof(CpuSymbolic) + control_.capacity() * sizeof(double) +
           symbolic_bytes_;
  }

  std::unique_ptr<Numeric> factorize(const std::shared_ptr<const Symbolic>& self,
                                     const void* values) const override {
    if (is_complex(scalar_)) return factorize_as<std::complex<double>>(self, values);
    return factorize_as<double>(self, values);
  }

 private:
  template <class W>
  void init() {
    Umf<W>::defaults(control_.data());
    double info[UMFPACK_INFO];
    const SuiteSparse_long status = Umf<W>::symbolic(plan_, &symbolic_, control_.data(), info);
    if (status == UMFPACK_ERROR_out_of_memory) fail(ErrorKind::Internal, "UMFPACK analysis: out of memory");
    if (status != UMFPACK_OK) fail(ErrorKind::Internal, "UMFPACK analysis failed (status ", status, ")");
    predicted_bytes_ = info[UMFPACK_NUMERIC_SIZE_ESTIMATE] * info[UMFPACK_SIZE_OF_UNIT];
    symbolic_bytes_ = static_cast<std::size_t>(info[UMFPACK_SYMBOLIC_SIZE] * info[UMFPACK_SIZE_OF_UNIT]);
  }

  // Reentrant: umfpack_*_numeric only reads the Symbolic object and the control array ("Input argument,
  // not modified", umfpack_numeric.h) and writes a Numeric object of its own, so factorizations of one
  // analysis may run at once (factorize_batch), as may solves with different Numeric objects.
  template <class W>
  std::unique_ptr<Numeric> factorize_as(const std::shared_ptr<const Symbolic>& self, const void* values) const {
    std::vector<W> vals(plan_.perm.size());
    gather_values<W>(scalar_, values, plan_.perm, vals.data());
    NumericHandle<W> numeric;
    double info[UMFPACK_INFO];
    const SuiteSparse_long status =
        Umf<W>::numeric(plan_, vals.data(), symbolic_, numeric.out(), control_.data(), info);
    if (status == UMFPACK_WARNING_singular_matrix)
      fail(ErrorKind::SingularMatrix, "A is singular: the LU factorization found a zero pivot (",
           "structurally or numerically rank-deficient matrix)");
    if (status != UMFPACK_OK) fail(ErrorKind::Internal, "UMFPACK factorization failed (status ", status, ")");
    // UMFPACK's pivot ratio may skip a NaN pivot as a comparison would; look at U's diagonal.
    double rcond = info[UMFPACK_RCOND];
    std::vector<double> d(static_cast<size_t>(plan_.n) * (is_complex_t<W>::value ? 2 : 1));
    const SuiteSparse_long got = Umf<W>::udiag(numeric.get(), d.data());
    if (got != UMFPACK_OK) fail(ErrorKind::Internal, "UMFPACK could not return the diagonal of U (status ", got, ")");
    for (double v : d)
      if (!std::isfinite(v)) rcond = std::numeric_limits<double>::quiet_NaN();
    return std::make_unique<UmfpackNumeric<W>>(self, std::move(vals), std::move(numeric), control_, rcond);
  }

  std::vector<double> control_;
  double predicted_bytes_ = -1.0;
  std::size_t symbolic_bytes_ = 0;
  void* symbolic_ = nullptr;
};

}  // namespace

std::shared_ptr<const Symbolic> analyze_umfpack(ScalarType scalar, CscPlan plan) {
  return std::make_shared<UmfpackSymbolic>(scalar, std::move(plan));
}

}  // namespace sla::detail
