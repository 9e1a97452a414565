// UMFPACK (SuiteSparse): sparse LU with partial pivoting, unsymmetric-pattern multifrontal.
// Works in double or packed complex<double>; float32 / complex64 callers are converted in and out.
#include <umfpack.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstddef>
#include <limits>
#include <memory>
#include <vector>

#include "backends.hpp"
#include "convert.hpp"
#include "selinv.hpp"
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
template <class W>
struct Umf;

template <>
struct Umf<double> {
  static SuiteSparse_long symbolic(const CscPlan& p, void** sym, const double* ctl, double* info) {
    return umfpack_dl_symbolic(p.n, p.n, p.colptr.data(), row_indices(p), nullptr, sym, ctl, info);
  }
  static SuiteSparse_long numeric(const CscPlan& p, const double* x, void* sym, void** num, const double* ctl,
                                  double* info) {
    return umfpack_dl_numeric(p.colptr.data(), p.rowind.data(), x, sym, num, ctl, info);
  }
  static SuiteSparse_long solve(SuiteSparse_long sys, const CscPlan& p, const double* ax, double* x, const double* b,
                                void* num, const double* ctl, double* info) {
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
  static SuiteSparse_long determinant(void* num, double* mantissa, double* exponent) {
    return umfpack_dl_get_determinant(mantissa, exponent, num, nullptr);
  }
  // L (row form), U (column form), P, Q, the diagonal of U and the row scaling.
  static SuiteSparse_long factors(void* num, SuiteSparse_long* lp, SuiteSparse_long* lj, double* lx,
                                  SuiteSparse_long* up, SuiteSparse_long* ui, double* ux, SuiteSparse_long* p,
                                  SuiteSparse_long* q, double* dx, SuiteSparse_long* do_recip, double* rs) {
    return umfpack_dl_get_numeric(lp, lj, lx, up, ui, ux, p, q, dx, do_recip, rs, num);
  }
};

template <>
struct Umf<std::complex<double>> {
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
    return umfpack_zl_solve(sys, p.colptr.data(), p.rowind.data(), d(ax), nullptr, d(x), nullptr, d(b), nullptr, num,
                            ctl, info);
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
  // The determinant as mantissa (packed complex: 2 doubles) * 10^exponent.
  static SuiteSparse_long determinant(void* num, double* mantissa, double* exponent) {
    return umfpack_zl_get_determinant(mantissa, nullptr, exponent, num, nullptr);
  }
  static SuiteSparse_long factors(void* num, SuiteSparse_long* lp, SuiteSparse_long* lj, C* lx, SuiteSparse_long* up,
                                  SuiteSparse_long* ui, C* ux, SuiteSparse_long* p, SuiteSparse_long* q, C* dx,
                                  SuiteSparse_long* do_recip, double* rs) {
    return umfpack_zl_get_numeric(lp, lj, d(lx), nullptr, up, ui, d(ux), nullptr, p, q, d(dx), nullptr, do_recip, rs,
                                  num);
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
                 std::vector<double> control, double rcond, bool zero_pivot)
      : Numeric(std::move(sym)),
        values_(std::move(values)),
        numeric_(std::move(numeric)),
        control_(std::move(control)),
        rcond_(rcond),
        zero_pivot_(zero_pivot) {}

  void solve(const void* b, void* x, index_t nrhs, Op op) const override {
    const index_t n = sym_->n();
    if (zero_pivot_) fail_zero_pivot("the solve");
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

  // UMFPACK's own determinant, mantissa * 10^exponent, which accounts for the row scaling and the parity of
  // both permutations.
  SignLogDet slogdet() const override {
    if (zero_pivot_) return {{0.0, 0.0}, -std::numeric_limits<double>::infinity()};
    double mantissa[2] = {0.0, 0.0}, exponent = 0.0;
    const SuiteSparse_long status = Umf<W>::determinant(numeric_.get(), mantissa, &exponent);
    if (status != UMFPACK_OK && status != UMFPACK_WARNING_singular_matrix)
      fail(ErrorKind::Internal, "UMFPACK could not compute the determinant (status ", status, ")");
    LogDet det;
    if constexpr (is_complex_t<W>::value)
      det.add(std::complex<double>(mantissa[0], mantissa[1]));
    else
      det.add(mantissa[0]);
    SignLogDet r = det.result(is_complex_t<W>::value);
    if (std::isfinite(r.logabs)) r.logabs += exponent * std::log(10.0);
    return r;
  }

  // Erisman and Tinney's recurrences. UMFPACK factors P R A Q = L U (R the row scaling, L unit lower), so
  // A^{-1} = Q (L U)^{-1} P R and A^{-1}(r, c) = Z(Qinv[r], Pinv[c]) * R(c, c) with Z = (L U)^{-1}.
  // UMFPACK drops the entries of L and U that are exactly zero, so their stored pattern need not be
  // closed under elimination: the recurrences run on the Cholesky fill of the symmetrized pattern of
  // P A Q + L + U (a closed superset of the LU fill of P A Q), with zeros where UMFPACK stored nothing.
  void inverse_entries(const index_t* rows, const index_t* cols, index_t m, void* out) const override {
    const index_t n = sym_->n();
    check_entry_indices(n, rows, cols, m);
    if (zero_pivot_) fail_zero_pivot("the inverse");
    SuiteSparse_long lnz = 0, unz = 0;
    Umf<W>::get_lunz(numeric_.get(), &lnz, &unz);
    std::vector<SuiteSparse_long> lp(static_cast<size_t>(n) + 1), lj(static_cast<size_t>(lnz)),
        up(static_cast<size_t>(n) + 1), ui(static_cast<size_t>(unz)), P(static_cast<size_t>(n)),
        Q(static_cast<size_t>(n));
    std::vector<W> lx(static_cast<size_t>(lnz)), ux(static_cast<size_t>(unz)), dx(static_cast<size_t>(n));
    std::vector<double> rs(static_cast<size_t>(n));
    SuiteSparse_long do_recip = 0;
    const SuiteSparse_long status =
        Umf<W>::factors(numeric_.get(), lp.data(), lj.data(), lx.data(), up.data(), ui.data(), ux.data(), P.data(),
                        Q.data(), dx.data(), &do_recip, rs.data());
    if (status != UMFPACK_OK) fail(ErrorKind::Internal, "UMFPACK could not return its factors (status ", status, ")");
    std::vector<index_t> pinv(static_cast<size_t>(n)), qinv(static_cast<size_t>(n));
    for (index_t k = 0; k < n; ++k) pinv[P[k]] = k, qinv[Q[k]] = k;

    // The strictly lower entries of the symmetrized pattern, column by column (a counting sort).
    const CscPlan& a = plan();
    std::vector<index_t> cnt(static_cast<size_t>(n) + 1, 0), lower;
    auto for_each_pair = [&](auto&& f) {
      for (index_t c = 0; c < n; ++c)
        for (index_t q = a.colptr[c]; q < a.colptr[c + 1]; ++q) f(pinv[a.rowind[q]], qinv[c]);
      for (index_t i = 0; i < n; ++i)
        for (SuiteSparse_long q = lp[i]; q < lp[i + 1]; ++q) f(i, static_cast<index_t>(lj[q]));
      for (index_t j = 0; j < n; ++j)
        for (SuiteSparse_long q = up[j]; q < up[j + 1]; ++q) f(static_cast<index_t>(ui[q]), j);
    };
    for_each_pair([&](index_t i, index_t j) {
      if (i != j) ++cnt[std::min(i, j) + 1];
    });
    for (index_t j = 0; j < n; ++j) cnt[j + 1] += cnt[j];
    std::vector<index_t> colptr = cnt;
    lower.resize(static_cast<size_t>(cnt[n]));
    for_each_pair([&](index_t i, index_t j) {
      if (i != j) lower[cnt[std::min(i, j)]++] = std::max(i, j);
    });
    const FilledPattern pattern = symbolic_fill(n, colptr, lower);

    // L and U scattered into the pattern; U's rows divided by the pivots to make it unit upper.
    std::vector<W> l(pattern.rowind.size(), W(0)), u(pattern.rowind.size(), W(0));
    auto place = [&](index_t i, index_t j) {
      const index_t q = pattern.find(i, j);
      if (q < 0)
        fail(ErrorKind::Internal, "selected inversion: UMFPACK's entry (", i, ", ", j, ") is outside the fill");
      return q;
    };
    for (index_t i = 0; i < n; ++i)
      for (SuiteSparse_long q = lp[i]; q < lp[i + 1]; ++q)
        if (lj[q] != i) l[place(i, lj[q])] = lx[q];
    for (index_t j = 0; j < n; ++j)
      for (SuiteSparse_long q = up[j]; q < up[j + 1]; ++q)
        if (ui[q] != j) u[place(j, ui[q])] = ux[q] / dx[ui[q]];
    const SelectedInverse<W> z = selected_inverse<W>(pattern, l, u, dx, false);

    std::vector<W> result(static_cast<size_t>(m));
    for (index_t k = 0; k < m; ++k) {
      const index_t r = rows[k], c = cols[k];
      W v;
      if (!z.at(pattern, qinv[r], pinv[c], v)) fail_unsupported_entry(k, r, c, "UMFPACK LU");
      result[k] = do_recip ? v * rs[c] : v / rs[c];
    }
    store_dense<W>(sym_->scalar(), result.data(), m, out);
  }

 private:
  // The analysis is a UmfpackSymbolic, so a CpuSymbolic.
  const CscPlan& plan() const { return static_cast<const CpuSymbolic&>(*sym_).plan(); }

  std::vector<W> values_;  // CSC values, kept for UMFPACK's iterative refinement
  NumericHandle<W> numeric_;
  std::vector<double> control_;
  double rcond_;
  bool zero_pivot_;  // a zero pivot, accepted by allow_singular
};

class UmfpackSymbolic final : public CpuSymbolic {
 public:
  UmfpackSymbolic(ScalarType scalar, CscPlan plan) : CpuSymbolic(scalar, std::move(plan)), control_(UMFPACK_CONTROL) {
    if (is_complex(scalar_))
      init<std::complex<double>>();
    else
      init<double>();
  }
  ~UmfpackSymbolic() override {
    if (symbolic_ == nullptr) return;
    if (is_complex(scalar_))
      Umf<std::complex<double>>::free_symbolic(&symbolic_);
    else
      Umf<double>::free_symbolic(&symbolic_);
  }
  UmfpackSymbolic(const UmfpackSymbolic&) = delete;
  UmfpackSymbolic& operator=(const UmfpackSymbolic&) = delete;

  Backend backend() const override { return Backend::SuiteSparse; }
  Method method() const override { return Method::LU; }
  double predicted_factor_bytes() const override { return predicted_bytes_; }
  double predicted_flops() const override { return predicted_flops_; }
  double predicted_factor_nnz() const override { return predicted_nnz_; }
  // The plan, the control array and UMFPACK's Symbolic object, whose size UMFPACK reports exactly
  // (Info[UMFPACK_SYMBOLIC_SIZE] units of Info[UMFPACK_SIZE_OF_UNIT] bytes).
  std::size_t memory_bytes() const override {
    return CpuSymbolic::memory_bytes() + sizeof(*this) - sizeof(CpuSymbolic) + control_.capacity() * sizeof(double) +
           symbolic_bytes_;
  }

  std::unique_ptr<Numeric> factorize(const std::shared_ptr<const Symbolic>& self, const void* values,
                                     const FactorizeOptions& options) const override {
    if (is_complex(scalar_)) return factorize_as<std::complex<double>>(self, values, options);
    return factorize_as<double>(self, values, options);
  }

 private:
  template <class W>
  void init() {
    Umf<W>::defaults(control_.data());
    if (plan_.ordering != Ordering::Default)
      control_[UMFPACK_ORDERING] = plan_.ordering == Ordering::AMD ? UMFPACK_ORDERING_AMD : UMFPACK_ORDERING_METIS;
    double info[UMFPACK_INFO];
    const SuiteSparse_long status = Umf<W>::symbolic(plan_, &symbolic_, control_.data(), info);
    if (status == UMFPACK_ERROR_out_of_memory) fail(ErrorKind::Internal, "UMFPACK analysis: out of memory");
    if (status != UMFPACK_OK) fail(ErrorKind::Internal, "UMFPACK analysis failed (status ", status, ")");
    predicted_bytes_ = info[UMFPACK_NUMERIC_SIZE_ESTIMATE] * info[UMFPACK_SIZE_OF_UNIT];
    symbolic_bytes_ = static_cast<std::size_t>(info[UMFPACK_SYMBOLIC_SIZE] * info[UMFPACK_SIZE_OF_UNIT]);
    // Upper bounds from the symbolic analysis (the pivoting of the numeric factorization may do better).
    predicted_flops_ = info[UMFPACK_FLOPS_ESTIMATE];
    predicted_nnz_ = info[UMFPACK_LNZ_ESTIMATE] + info[UMFPACK_UNZ_ESTIMATE];
  }

  // Reentrant: umfpack_*_numeric only reads the Symbolic object and the control array ("Input argument,
  // not modified", umfpack_numeric.h) and writes a Numeric object of its own, so factorizations of one
  // analysis may run at once (factorize_batch), as may solves with different Numeric objects.
  template <class W>
  std::unique_ptr<Numeric> factorize_as(const std::shared_ptr<const Symbolic>& self, const void* values,
                                        const FactorizeOptions& options) const {
    std::vector<W> vals(plan_.perm.size());
    gather_values<W>(scalar_, values, plan_.perm, vals.data());
    NumericHandle<W> numeric;
    double info[UMFPACK_INFO];
    const SuiteSparse_long status =
        Umf<W>::numeric(plan_, vals.data(), symbolic_, numeric.out(), control_.data(), info);
    // A singular matrix still gets a complete factor (UMFPACK skips the division by a zero pivot).
    const bool singular = status == UMFPACK_WARNING_singular_matrix;
    if (singular && !options.allow_singular)
      fail(ErrorKind::SingularMatrix, "A is singular: the LU factorization found a zero pivot (",
           "structurally or numerically rank-deficient matrix)");
    if (status != UMFPACK_OK && !singular)
      fail(ErrorKind::Internal, "UMFPACK factorization failed (status ", status, ")");
    // UMFPACK's pivot ratio may skip a NaN pivot as a comparison would; look at U's diagonal.
    double rcond = info[UMFPACK_RCOND];
    std::vector<double> d(static_cast<size_t>(plan_.n) * (is_complex_t<W>::value ? 2 : 1));
    const SuiteSparse_long got = Umf<W>::udiag(numeric.get(), d.data());
    if (got != UMFPACK_OK) fail(ErrorKind::Internal, "UMFPACK could not return the diagonal of U (status ", got, ")");
    for (double v : d)
      if (!std::isfinite(v)) rcond = std::numeric_limits<double>::quiet_NaN();
    if (singular) rcond = std::isnan(rcond) ? rcond : 0.0;
    return std::make_unique<UmfpackNumeric<W>>(self, std::move(vals), std::move(numeric), control_, rcond, singular);
  }

  std::vector<double> control_;
  double predicted_bytes_ = -1.0;
  double predicted_flops_ = -1.0;
  double predicted_nnz_ = -1.0;
  std::size_t symbolic_bytes_ = 0;
  void* symbolic_ = nullptr;
};

}  // namespace

std::shared_ptr<const Symbolic> analyze_umfpack(ScalarType scalar, CscPlan plan) {
  return std::make_shared<UmfpackSymbolic>(scalar, std::move(plan));
}

}  // namespace sla::detail
