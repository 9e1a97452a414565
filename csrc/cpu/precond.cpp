// Preconditioners for the Krylov solvers: Jacobi, SSOR (symmetric Gauss-Seidel for omega = 1), IC(0),
// ILU(0). Each keeps its own copy of what it needs; apply() works on row-major n x k blocks, op N or H.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "krylov_kernels.hpp"
#include "sla/errors.hpp"
#include "sla/interrupt.hpp"

namespace sla::detail {
namespace {

// Owned CSR copy with the position of each row's diagonal entry (-1 when absent).
template <class T, class I>
struct OwnedCsr {
  index_t n = 0;
  std::vector<I> p, j;
  std::vector<T> v;
  std::vector<index_t> diag;

  OwnedCsr() = default;
  explicit OwnedCsr(const CsrArrays& a) : n(a.n_rows) {
    const Csr<T, I> A = typed<T, I>(a);
    if (n == 0) {  // indptr need not be read
      p.assign(1, I(0));
      return;
    }
    p.assign(A.p, A.p + n + 1);
    j.assign(A.j, A.j + p[n]);
    v.assign(A.v, A.v + p[n]);
    diag.assign(n, -1);
    for (index_t i = 0; i < n; ++i)
      for (I q = p[i]; q < p[i + 1]; ++q)
        if (static_cast<index_t>(j[q]) == i) diag[i] = q;
  }
  void require_diagonal(const char* who) const {
    for (index_t i = 0; i < n; ++i)
      if (diag[i] < 0)
        fail(ErrorKind::InvalidArgument, "preconditioner: ", who, " needs every diagonal entry stored; row ", i,
             " has none");
  }
};

// A triangular factor stored for fast sequential sweeps: the strictly off-diagonal entries of each row,
// pre-multiplied by the row's inverse pivot, so that a row is  y_i = r_i * dinv_i - sum_j v_ij y_j  and
// the row-to-row dependency is one fused multiply-add (entries are sorted, so the nearest neighbour,
// usually the dependency, comes last in a forward sweep and first in a backward one).
template <class T, class I>
struct Tri {
  index_t n = 0;
  std::vector<I> p, j;
  std::vector<T> v;
  std::vector<T> dinv;  // empty: unit diagonal
  bool forward = true;  // lower triangular (forward sweep) or upper (backward sweep)

  // y = op^{-1} x for row-major n x k blocks; x may alias y.
  void solve(const T* x, T* y, index_t k) const {
    const bool unit = dinv.empty();
    if (k == 1) {
      // The previous row's result stays in a register: the usual dependency (the nearest neighbour,
      // the last entry of a forward row and the first of a backward row) skips a store-to-load round trip.
      T prev{};
      if (forward) {
        for (index_t i = 0; i < n; ++i) {
          T s = unit ? x[i] : x[i] * dinv[i];
          I q = p[i];
          const I end = p[i + 1];
          const bool near = end > q && static_cast<index_t>(j[end - 1]) == i - 1;
          for (; q < end - (near ? 1 : 0); ++q) s -= v[q] * y[j[q]];
          if (near) s -= v[end - 1] * prev;
          y[i] = s;
          prev = s;
        }
      } else {
        for (index_t i = n - 1; i >= 0; --i) {
          T s = unit ? x[i] : x[i] * dinv[i];
          const I beg = p[i];
          I q = p[i + 1] - 1;
          const bool near = q >= beg && static_cast<index_t>(j[beg]) == i + 1;
          for (; q >= beg + (near ? 1 : 0); --q) s -= v[q] * y[j[q]];
          if (near) s -= v[beg] * prev;
          y[i] = s;
          prev = s;
        }
      }
      return;
    }
    if (x != y) std::copy(x, x + n * k, y);
    for (index_t step = 0; step < n; ++step) {
      const index_t i = forward ? step : n - 1 - step;
      T* yi = y + i * k;
      if (!unit)
        for (index_t c = 0; c < k; ++c) yi[c] *= dinv[i];
      for (I q = p[i]; q < p[i + 1]; ++q) {
        const T a = v[q];
        const T* yj = y + static_cast<index_t>(j[q]) * k;
        for (index_t c = 0; c < k; ++c) yi[c] -= a * yj[c];
      }
    }
  }
};

// From the CSR m, the triangle  (diag + w * part)  with part = strict lower (lower=true) or strict upper,
// optionally conjugate-transposed (then the strict lower part becomes an upper triangle and vice versa).
// diag: the diagonal values (nullptr: unit).
template <class T, class I>
Tri<T, I> make_tri(const OwnedCsr<T, I>& m, bool lower, bool conj_transpose, const T* diag, T w) {
  Tri<T, I> t;
  t.n = m.n;
  t.forward = lower != conj_transpose;
  if (diag != nullptr) {
    t.dinv.resize(m.n);
    for (index_t i = 0; i < m.n; ++i) t.dinv[i] = T(1) / (conj_transpose ? conj_(diag[i]) : diag[i]);
  }
  auto keep = [&](index_t i, index_t c) { return lower ? c < i : c > i; };
  t.p.assign(m.n + 1, 0);
  for (index_t i = 0; i < m.n; ++i)
    for (I q = m.p[i]; q < m.p[i + 1]; ++q)
      if (keep(i, m.j[q])) ++t.p[(conj_transpose ? static_cast<index_t>(m.j[q]) : i) + 1];
  for (index_t i = 0; i < m.n; ++i) t.p[i + 1] += t.p[i];
  t.j.resize(t.p[m.n]);
  t.v.resize(t.p[m.n]);
  std::vector<index_t> next(t.p.begin(), t.p.end() - 1);
  for (index_t i = 0; i < m.n; ++i)  // rows in order: columns come out sorted in the transposed case too
    for (I q = m.p[i]; q < m.p[i + 1]; ++q) {
      const index_t c = m.j[q];
      if (!keep(i, c)) continue;
      const index_t row = conj_transpose ? c : i, col = conj_transpose ? i : c;
      const index_t dst = next[row]++;
      t.j[dst] = static_cast<I>(col);
      const T a = conj_transpose ? conj_(w * m.v[q]) : w * m.v[q];
      t.v[dst] = t.dinv.empty() ? a : a * t.dinv[row];
    }
  return t;
}

template <class T>
class JacobiPrecond final : public Preconditioner {
 public:
  JacobiPrecond(std::vector<T> inv_diag, int threads)
      : Preconditioner(scalar_tag<T>::value, static_cast<index_t>(inv_diag.size())), inv_(std::move(inv_diag)),
        threads_(threads) {}
  void apply(const void* r, void* z, index_t k, Op op) const override {
    const T* rr = static_cast<const T*>(r);
    T* zz = static_cast<T*>(z);
    const bool h = op == Op::H;
#pragma omp parallel for schedule(static) num_threads(clamp_threads(threads_)) if (n_ * k > 20000)
    for (index_t i = 0; i < n_; ++i) {
      const T s = h ? conj_(inv_[i]) : inv_[i];
      for (index_t c = 0; c < k; ++c) zz[i * k + c] = s * rr[i * k + c];
    }
  }
  std::string name() const override { return "jacobi"; }
  const std::vector<T>& inv_diag() const { return inv_; }

 private:
  std::vector<T> inv_;
  int threads_;
};

template <class T, class I>
class SsorPrecond final : public Preconditioner {
 public:
  SsorPrecond(const CsrArrays& a, double omega) : Preconditioner(scalar_tag<T>::value, a.n_rows), m_(a), w_(omega) {
    m_.require_diagonal("SSOR");
    d_.resize(n_);
    dinv_.resize(n_);
    for (index_t i = 0; i < n_; ++i) {
      d_[i] = m_.v[m_.diag[i]];
      if (d_[i] == T(0))
        fail(ErrorKind::SingularMatrix, "preconditioner: SSOR needs a nonzero diagonal; A[", i, ", ", i, "] is 0");
      dinv_[i] = T(1) / d_[i];
    }
    const T w = static_cast<real_t<T>>(w_);
    lo_ = make_tri(m_, true, false, d_.data(), w);
    up_ = make_tri(m_, false, false, d_.data(), w);
    uh_ = make_tri(m_, false, true, d_.data(), w);
    lh_ = make_tri(m_, true, true, d_.data(), w);
  }
  // M = (D + wL) D^{-1} (D + wU) / (w (2 - w));  M^{-1} r = w(2-w) (D+wU)^{-1} D (D+wL)^{-1} r.
  // M^{-H} r = w(2-w) (D+wL)^{-H} D^H (D+wU)^{-H} r.
  void apply(const void* r, void* z, index_t k, Op op) const override {
    T* zz = static_cast<T*>(z);
    const T scale = static_cast<real_t<T>>(w_ * (2.0 - w_));
    const bool h = op == Op::H;
    (h ? uh_ : lo_).solve(static_cast<const T*>(r), zz, k);
    for (index_t i = 0; i < n_; ++i)
      for (index_t c = 0; c < k; ++c) zz[i * k + c] *= (h ? conj_(d_[i]) : d_[i]) * scale;
    (h ? lh_ : up_).solve(zz, zz, k);
  }
  std::string name() const override { return "ssor"; }

 private:
  OwnedCsr<T, I> m_;
  std::vector<T> d_, dinv_;
  double w_;
  Tri<T, I> lo_, up_, uh_, lh_;  // (D + wL), (D + wU), (D + wU)^H, (D + wL)^H
};

// IC(0): L with the pattern of tril(A), A ~ L L^H. Row-oriented (left-looking by rows):
//   L_ik = (A_ik - sum_{j<k} L_ij conj(L_kj)) / L_kk  for k < i in the pattern,
//   L_ii = sqrt(A_ii - sum_{j<i} |L_ij|^2), which must be real and > 0.
template <class T, class I>
class Ic0Precond final : public Preconditioner {
 public:
  Ic0Precond(const CsrArrays& a) : Preconditioner(scalar_tag<T>::value, a.n_rows), m_(a) {
    m_.require_diagonal("IC(0)");
    d_.resize(n_);
    std::vector<index_t> pos(n_, -1);  // column -> position in the current row i (lower part)
    for (index_t i = 0; i < n_; ++i) {
      if ((i & 1023) == 0) poll_interrupt();
      for (I q = m_.p[i]; q <= m_.diag[i]; ++q) pos[m_.j[q]] = q;
      for (I q = m_.p[i]; q < m_.diag[i]; ++q) {
        const index_t kk = m_.j[q];
        T s = m_.v[q];
        for (I t = m_.p[kk]; t < m_.diag[kk]; ++t) {  // sum over j < k in row k's lower pattern ...
          const index_t jj = m_.j[t];
          if (pos[jj] >= 0 && jj < kk) s -= m_.v[pos[jj]] * conj_(m_.v[t]);  // ... that is also in row i
        }
        m_.v[q] = s / d_[kk];
      }
      double s = re_part(m_.v[m_.diag[i]]);
      for (I q = m_.p[i]; q < m_.diag[i]; ++q) s -= abs2(m_.v[q]);
      if (!(s > 0.0))
        fail(ErrorKind::NotPositiveDefinite, "preconditioner: IC(0) broke down at row ", i, " (pivot ", s,
             " <= 0): the matrix is not positive definite or IC(0) is unstable for it; use preconditioner='ilu0' "
             "or 'jacobi'");
      d_[i] = static_cast<real_t<T>>(std::sqrt(s));
      m_.v[m_.diag[i]] = d_[i];
      for (I q = m_.p[i]; q <= m_.diag[i]; ++q) pos[m_.j[q]] = -1;
    }
    std::vector<T> diag(d_.begin(), d_.end());
    l_ = make_tri(m_, true, false, diag.data(), T(1));
    lh_ = make_tri(m_, true, true, diag.data(), T(1));
  }
  // M = L L^H is Hermitian: op does not matter. z = L^{-H} L^{-1} r.
  void apply(const void* r, void* z, index_t k, Op) const override {
    T* zz = static_cast<T*>(z);
    l_.solve(static_cast<const T*>(r), zz, k);
    lh_.solve(zz, zz, k);
  }
  std::string name() const override { return "ic0"; }

 private:
  static double re_part(const T& v) {
    if constexpr (is_complex_t<T>::value) return static_cast<double>(v.real());
    else return static_cast<double>(v);
  }
  OwnedCsr<T, I> m_;  // L in the lower part
  std::vector<T> d_;
  Tri<T, I> l_, lh_;
};

// ILU(0): L (unit lower) and U on the pattern of A, in place (IKJ variant).
template <class T, class I>
class Ilu0Precond final : public Preconditioner {
 public:
  Ilu0Precond(const CsrArrays& a) : Preconditioner(scalar_tag<T>::value, a.n_rows), m_(a) {
    m_.require_diagonal("ILU(0)");
    std::vector<index_t> pos(n_, -1);
    for (index_t i = 0; i < n_; ++i) {
      if ((i & 1023) == 0) poll_interrupt();
      for (I q = m_.p[i]; q < m_.p[i + 1]; ++q) pos[m_.j[q]] = q;
      for (I q = m_.p[i]; q < m_.p[i + 1] && static_cast<index_t>(m_.j[q]) < i; ++q) {
        const index_t kk = m_.j[q];
        const T ukk = m_.v[m_.diag[kk]];
        m_.v[q] /= ukk;
        const T lik = m_.v[q];
        for (I t = m_.diag[kk] + 1; t < m_.p[kk + 1]; ++t)
          if (pos[m_.j[t]] >= 0) m_.v[pos[m_.j[t]]] -= lik * m_.v[t];
      }
      if (m_.v[m_.diag[i]] == T(0) || !std::isfinite(std::abs(m_.v[m_.diag[i]])))
        fail(ErrorKind::SingularMatrix, "preconditioner: ILU(0) found a zero pivot at row ", i,
             "; use preconditioner='jacobi' or a direct solve");
      for (I q = m_.p[i]; q < m_.p[i + 1]; ++q) pos[m_.j[q]] = -1;
    }
    std::vector<T> u_diag(n_);
    for (index_t i = 0; i < n_; ++i) u_diag[i] = m_.v[m_.diag[i]];
    l_ = make_tri(m_, true, false, static_cast<const T*>(nullptr), T(1));
    u_ = make_tri(m_, false, false, u_diag.data(), T(1));
    uh_ = make_tri(m_, false, true, u_diag.data(), T(1));
    lh_ = make_tri(m_, true, true, static_cast<const T*>(nullptr), T(1));
  }
  // M = L U: z = U^{-1} L^{-1} r;  M^H = U^H L^H: z = L^{-H} U^{-H} r.
  void apply(const void* r, void* z, index_t k, Op op) const override {
    T* zz = static_cast<T*>(z);
    const T* rr = static_cast<const T*>(r);
    if (op == Op::N) {
      l_.solve(rr, zz, k);
      u_.solve(zz, zz, k);
    } else {
      uh_.solve(rr, zz, k);
      lh_.solve(zz, zz, k);
    }
  }
  std::string name() const override { return "ilu0"; }

 private:
  OwnedCsr<T, I> m_;
  Tri<T, I> l_, u_, uh_, lh_;  // L (unit), U, U^H, L^H (unit)
};

}  // namespace

template <class T>
const std::vector<T>* jacobi_inv_diag(const Preconditioner* m) {
  const auto* j = dynamic_cast<const JacobiPrecond<T>*>(m);
  return j == nullptr ? nullptr : &j->inv_diag();
}
template const std::vector<float>* jacobi_inv_diag<float>(const Preconditioner*);
template const std::vector<double>* jacobi_inv_diag<double>(const Preconditioner*);
template const std::vector<std::complex<float>>* jacobi_inv_diag<std::complex<float>>(const Preconditioner*);
template const std::vector<std::complex<double>>* jacobi_inv_diag<std::complex<double>>(const Preconditioner*);

}  // namespace sla::detail

namespace sla {

std::unique_ptr<Preconditioner> make_preconditioner(PrecondKind kind, const CsrArrays& a, double omega, int threads) {
  if (a.n_rows != a.n_cols)
    fail(ErrorKind::InvalidArgument, "preconditioner: needs a square matrix, got (", a.n_rows, ", ", a.n_cols, ")");
  if (kind == PrecondKind::SSOR && !(omega > 0.0 && omega < 2.0))
    fail(ErrorKind::InvalidArgument, "omega: SSOR needs 0 < omega < 2, got ", omega);
  return detail::visit_csr(a, [&](auto t, auto ix) -> std::unique_ptr<Preconditioner> {
    using T = decltype(t);
    using I = decltype(ix);
    const detail::Csr<T, I> A = detail::typed<T, I>(a);
    for (index_t i = 0; i < a.n_rows; ++i)
      if (A.p[i + 1] == A.p[i])
        fail(ErrorKind::SingularMatrix, "preconditioner: A is structurally singular: row ", i, " of the ", a.n_rows,
             " x ", a.n_cols, " matrix has no stored entry");
    switch (kind) {
      case PrecondKind::Jacobi: {
        std::vector<T> inv(a.n_rows);
        for (index_t i = 0; i < a.n_rows; ++i) {
          T d{};
          for (I q = A.p[i]; q < A.p[i + 1]; ++q)
            if (static_cast<index_t>(A.j[q]) == i) d = A.v[q];
          if (d == T(0))
            fail(ErrorKind::SingularMatrix, "preconditioner: Jacobi needs a nonzero diagonal; A[", i, ", ", i,
                 "] is 0 or not stored");
          inv[i] = T(1) / d;
        }
        return std::make_unique<detail::JacobiPrecond<T>>(std::move(inv), threads);
      }
      case PrecondKind::SSOR: return std::make_unique<detail::SsorPrecond<T, I>>(a, omega);
      case PrecondKind::IC0: return std::make_unique<detail::Ic0Precond<T, I>>(a);
      case PrecondKind::ILU0: return std::make_unique<detail::Ilu0Precond<T, I>>(a);
    }
    fail(ErrorKind::InvalidArgument, "preconditioner: unknown kind");
  });
}

}  // namespace sla
