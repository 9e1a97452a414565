// Eigen backend: SimplicialLLT, SimplicialLDLT and SparseLU in the caller's own precision.
// The fill-reducing ordering (AMD for LL^T/LDL^T, COLAMD for LU) is computed once in the symbolic
// analysis and applied by hand, so a batch of numeric factorizations shares it.
#include <Eigen/OrderingMethods>
#include <Eigen/SparseCholesky>
#include <Eigen/SparseCore>
#include <Eigen/SparseLU>
#include <algorithm>
#include <climits>
#include <cmath>
#include <complex>
#include <limits>
#include <memory>
#include <vector>

#include "backends.hpp"
#include "convert.hpp"
#include "selinv.hpp"
#include "sla/errors.hpp"

namespace sla::detail {
namespace {

using EIndex = int;  // Eigen's sparse solvers are best exercised with int indices
template <class T> using SpMat = Eigen::SparseMatrix<T, Eigen::ColMajor, EIndex>;
using Perm = Eigen::PermutationMatrix<Eigen::Dynamic, Eigen::Dynamic, EIndex>;
template <class T> using DenseMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;

// A compressed column matrix with the plan's pattern and the given CSC values.
template <class T>
SpMat<T> build_matrix(const CscPlan& plan, const std::vector<T>& csc_values) {
  const EIndex n = static_cast<EIndex>(plan.n);
  SpMat<T> a(n, n);
  a.resizeNonZeros(static_cast<Eigen::Index>(plan.rowind.size()));
  for (index_t c = 0; c <= plan.n; ++c) a.outerIndexPtr()[c] = static_cast<EIndex>(plan.colptr[c]);
  for (size_t k = 0; k < plan.rowind.size(); ++k) {
    a.innerIndexPtr()[k] = static_cast<EIndex>(plan.rowind[k]);
    a.valuePtr()[k] = csc_values[k];
  }
  return a;
}

template <class T, class Solver>
class EigenNumeric final : public Numeric {
 public:
  EigenNumeric(std::shared_ptr<const Symbolic> sym, const Perm& perm, bool lu) : Numeric(std::move(sym)), perm_(perm), lu_(lu) {}
  mutable Solver solver;  // SparseLU::adjoint() is not const

  void solve(const void* b, void* x, index_t nrhs, Op op) const override {
    const index_t n = sym_->n();
    if (n == 0 || nrhs == 0) return;
    DenseMat<T> rhs(n, nrhs);
    load_dense<T>(sym_->scalar(), b, n * nrhs, rhs.data());
    DenseMat<T> out;
    if (!lu_) {
      // P A P^T = L D L^T (or L L^T): x = P^T solve(P b). A is Hermitian, so op changes nothing.
      DenseMat<T> y = perm_ * rhs;
      DenseMat<T> z = solver.solve(y);
      out = perm_.transpose() * z;
    } else if constexpr (std::is_same_v<Solver, Eigen::SparseLU<SpMat<T>, Eigen::NaturalOrdering<EIndex>>>) {
      // B = A Q is factored. A x = b: x = Q B^{-1} b.  A^H x = b: B^H = Q^T A^H, so x = B^{-H} Q^T b.
      if (op == Op::N) {
        DenseMat<T> y = solver.solve(rhs);
        out = perm_ * y;
      } else {
        DenseMat<T> y = perm_.transpose() * rhs;
        out = solver.adjoint().solve(y);
      }
    }
    store_dense<T>(sym_->scalar(), out.data(), n * nrhs, x);
  }

  double eps() const override { return static_cast<double>(Eigen::NumTraits<T>::epsilon()); }

  double rcond() const override {
    using std::abs;
    // std::min / std::max would skip a NaN pivot (every comparison with NaN is false): track it apart.
    double lo = std::numeric_limits<double>::infinity(), hi = 0.0;
    bool finite = true, squared = false;
    auto take = [&](double v) {
      if (!std::isfinite(v)) finite = false;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    };
    const Eigen::Index n = static_cast<Eigen::Index>(sym_->n());
    if constexpr (std::is_same_v<Solver, Eigen::SparseLU<SpMat<T>, Eigen::NaturalOrdering<EIndex>>>) {
      // U's diagonal blocks live in the supernodal L storage.
      const auto& lstore = solver.matrixL().m_mapL;
      for (Eigen::Index j = 0; j < n; ++j)
        for (typename std::decay_t<decltype(lstore)>::InnerIterator it(lstore, j); it; ++it)
          if (it.index() == j) {
            take(static_cast<double>(abs(it.value())));
            break;
          }
    } else if constexpr (std::is_same_v<Solver, Eigen::SimplicialLDLT<SpMat<T>, Eigen::Lower, Eigen::NaturalOrdering<EIndex>>>) {
      const auto d = solver.vectorD();
      for (Eigen::Index i = 0; i < d.size(); ++i) take(static_cast<double>(abs(d[i])));
    } else {
      const auto& l = solver.matrixL().nestedExpression();
      for (Eigen::Index j = 0; j < l.outerSize(); ++j)
        take(static_cast<double>(abs(l.valuePtr()[l.outerIndexPtr()[j]])));  // diagonal comes first
      squared = true;  // the pivots of LL^T are the square roots of those of LDL^T
    }
    if (!finite) return std::numeric_limits<double>::quiet_NaN();
    if (n == 0) return 1.0;
    const double ratio = hi > 0.0 ? lo / hi : 0.0;
    return squared ? ratio * ratio : ratio;
  }

  // LL^T: det = prod L_jj^2 (real, positive). LDL^T: det = prod D_jj (real for a Hermitian matrix); P A P^T
  // is factored and det(P)^2 = 1. LU: B = A Q with Q our fill-reducing column permutation, and SparseLU
  // factors Pr B Pc = L U with its own row pivoting Pr and its column post-ordering Pc, L unit lower, so
  // det(A) = prod U_jj * sign(Pr) sign(Pc) sign(Q). (SparseLU's own signDeterminant() takes the sign of each
  // pivot, which a complex matrix has not, and leaves Q out: it is not used.)
  SignLogDet slogdet() const override {
    LogDet det;
    const Eigen::Index n = static_cast<Eigen::Index>(sym_->n());
    if constexpr (is_lu) {
      const auto& lstore = solver.matrixL().m_mapL;  // U's diagonal blocks live in the supernodal L storage
      for (Eigen::Index j = 0; j < n; ++j) {
        bool seen = false;
        for (typename std::decay_t<decltype(lstore)>::InnerIterator it(lstore, j); it; ++it)
          if (it.index() == j) {
            det.add(it.value());
            seen = true;
            break;
          }
        if (!seen) det.add(T(0));
      }
      det.flip(odd(solver.rowsPermutation()));
      det.flip(odd(solver.colsPermutation()));
      det.flip(odd(perm_));
    } else if constexpr (is_ldlt) {
      const auto d = solver.vectorD();
      for (Eigen::Index i = 0; i < d.size(); ++i) det.add(real_part(d[i]));
    } else {
      const auto& l = solver.matrixL().nestedExpression();
      for (Eigen::Index j = 0; j < l.outerSize(); ++j) det.add(real_part(l.valuePtr()[l.outerIndexPtr()[j]]), 2);
    }
    return det.result(is_complex_t<T>::value);
  }

  // Takahashi's recurrences on Eigen's simplicial factor of P A P^T = L D L^H (LL^T: L = L1 diag(L)):
  // A^{-1}(r, c) = Z(perm[r], perm[c]) with Z = (P A P^T)^{-1}. SparseLU keeps L and U in supernodal
  // storage: no selected inversion there (the base class throws Unavailable).
  void inverse_entries(const index_t* rows, const index_t* cols, index_t m, void* out) const override {
    if constexpr (is_lu) {
      Numeric::inverse_entries(rows, cols, m, out);
    } else {
      using W = std::conditional_t<is_complex_t<T>::value, std::complex<double>, double>;
      const index_t n = sym_->n();
      check_entry_indices(n, rows, cols, m);
      const auto& L = solver.matrixL().nestedExpression();
      const EIndex* lp = L.outerIndexPtr();
      const EIndex* li = L.innerIndexPtr();
      const T* lx = L.valuePtr();
      FilledPattern pattern;
      pattern.n = n;
      pattern.colptr.assign(static_cast<size_t>(n) + 1, 0);
      std::vector<W> l, d(static_cast<size_t>(n));
      for (index_t j = 0; j < n; ++j) {
        // LL^T stores the diagonal first in each column; LDL^T stores only the strictly lower part.
        index_t q = lp[j];
        W diag;
        if constexpr (is_ldlt) {
          diag = W(solver.vectorD()[j]);
        } else {
          diag = W(lx[q]);
          ++q;
        }
        if (diag == W(0)) fail_zero_pivot("the inverse");
        d[j] = is_ldlt ? diag : diag * diag;
        const index_t end = lp[j] + (L.isCompressed() ? lp[j + 1] - lp[j] : L.innerNonZeroPtr()[j]);
        for (; q < end; ++q) {
          pattern.rowind.push_back(li[q]);
          l.push_back(is_ldlt ? W(lx[q]) : W(lx[q]) / diag);
        }
        pattern.colptr[j + 1] = static_cast<index_t>(pattern.rowind.size());
      }
      const SelectedInverse<W> z = selected_inverse<W>(pattern, l, {}, d, true);
      const EIndex* perm = perm_.indices().data();
      std::vector<W> result(static_cast<size_t>(m));
      for (index_t k = 0; k < m; ++k)
        if (!z.at(pattern, perm[rows[k]], perm[cols[k]], result[k]))
          fail_unsupported_entry(k, rows[k], cols[k], is_ldlt ? "Eigen SimplicialLDLT" : "Eigen SimplicialLLT");
      store_dense<W>(sym_->scalar(), result.data(), m, out);
    }
  }

  index_t factor_nnz() const override {
    if constexpr (std::is_same_v<Solver, Eigen::SparseLU<SpMat<T>, Eigen::NaturalOrdering<EIndex>>>) {
      return static_cast<index_t>(solver.nnzL() + solver.nnzU());
    } else {
      return static_cast<index_t>(solver.matrixL().nestedExpression().nonZeros());
    }
  }

 private:
  static constexpr bool is_lu = std::is_same_v<Solver, Eigen::SparseLU<SpMat<T>, Eigen::NaturalOrdering<EIndex>>>;
  static constexpr bool is_ldlt =
      std::is_same_v<Solver, Eigen::SimplicialLDLT<SpMat<T>, Eigen::Lower, Eigen::NaturalOrdering<EIndex>>>;
  template <class V>
  static auto real_part(const V& v) {
    if constexpr (is_complex_t<V>::value) return v.real();
    else return v;
  }
  template <class P>
  static bool odd(const P& p) {
    std::vector<index_t> idx(static_cast<size_t>(p.size()));
    for (Eigen::Index i = 0; i < p.size(); ++i) idx[i] = p.indices()[i];
    return permutation_is_odd(idx.data(), static_cast<index_t>(idx.size()));
  }

  Perm perm_;
  bool lu_;
};

template <class T>
class EigenSymbolic final : public CpuSymbolic {
 public:
  EigenSymbolic(Method method, ScalarType scalar, CscPlan plan)
      : CpuSymbolic(scalar, std::move(plan)), method_(method) {
    if (plan_.n >= INT_MAX || static_cast<index_t>(plan_.rowind.size()) >= INT_MAX)
      fail(ErrorKind::InvalidArgument, "A: backend 'eigen' handles at most 2^31 - 1 rows and nonzeros, got n = ",
           plan_.n, ", nnz = ", plan_.rowind.size(), "; use backend='suitesparse'");
    SpMat<T> a = build_matrix<T>(plan_, std::vector<T>(plan_.rowind.size(), T(1)));
    if (method_ == Method::LU) {
      Eigen::COLAMDOrdering<EIndex> colamd;
      Perm pc;
      colamd(a, pc);
      perm_ = pc.inverse();  // factor B = A Q with Q = Pc^{-1}, as SparseLU itself does
    } else {
      SpMat<T> full;
      full = a.template selfadjointView<Eigen::Lower>();
      Eigen::AMDOrdering<EIndex> amd;
      Perm pinv;
      amd(full, pinv);
      perm_ = pinv.inverse();  // P, with P A P^T factored
    }
  }

  Backend backend() const override { return Backend::Eigen; }
  Method method() const override { return method_; }
  // The plan and the fill-reducing permutation; Eigen keeps nothing else between factorizations.
  std::size_t memory_bytes() const override {
    return CpuSymbolic::memory_bytes() + sizeof(*this) - sizeof(CpuSymbolic) +
           static_cast<std::size_t>(perm_.size()) * sizeof(EIndex);
  }

  // Reentrant: each factorization builds its own matrix and solver and only reads the analysis's
  // permutation, so factorizations of one analysis may run at once (factorize_batch), as may solves with
  // different Numeric objects.
  // allow_singular changes nothing here: Eigen stops at a zero pivot, leaving no complete factor, and
  // sla::factorize accepts a complete one whatever its pivot ratio.
  std::unique_ptr<Numeric> factorize(const std::shared_ptr<const Symbolic>& self, const void* values,
                                     const FactorizeOptions&) const override {
    std::vector<T> vals(plan_.perm.size());
    gather_values<T>(scalar_, values, plan_.perm, vals.data());
    SpMat<T> a = build_matrix<T>(plan_, vals);
    switch (method_) {
      case Method::Cholesky: {
        auto num = make<Eigen::SimplicialLLT<SpMat<T>, Eigen::Lower, Eigen::NaturalOrdering<EIndex>>>(self, a);
        if (num->solver.info() != Eigen::Success)
          fail(ErrorKind::NotPositiveDefinite, "A is not positive definite: the Cholesky factorization ",
               "broke down. Use method='ldl' for symmetric indefinite or method='lu' for general matrices");
        return num;
      }
      case Method::LDL: {
        auto num = make<Eigen::SimplicialLDLT<SpMat<T>, Eigen::Lower, Eigen::NaturalOrdering<EIndex>>>(self, a);
        if (num->solver.info() != Eigen::Success)
          fail(ErrorKind::SingularMatrix, "A is singular: LDL^T found a zero pivot");
        return num;
      }
      case Method::LU: {
        using LU = Eigen::SparseLU<SpMat<T>, Eigen::NaturalOrdering<EIndex>>;
        auto num = std::make_unique<EigenNumeric<T, LU>>(self, perm_, true);
        SpMat<T> b = a * perm_;
        num->solver.compute(b);
        if (num->solver.info() != Eigen::Success)
          fail(ErrorKind::SingularMatrix, "A is singular: the LU factorization found a zero pivot (",
               num->solver.lastErrorMessage(), ")");
        return num;
      }
    }
    fail(ErrorKind::InvalidArgument, "unknown method");
  }

 private:
  template <class Solver>
  std::unique_ptr<EigenNumeric<T, Solver>> make(const std::shared_ptr<const Symbolic>& self, const SpMat<T>& a) const {
    auto num = std::make_unique<EigenNumeric<T, Solver>>(self, perm_, false);
    SpMat<T> pap;
    pap.template selfadjointView<Eigen::Lower>() = a.template selfadjointView<Eigen::Lower>().twistedBy(perm_);
    num->solver.compute(pap);
    return num;
  }

  Method method_;
  Perm perm_;
};

}  // namespace

std::shared_ptr<const Symbolic> analyze_eigen(Method method, ScalarType scalar, CscPlan plan) {
  return visit_scalar(scalar, [&](auto tag) -> std::shared_ptr<const Symbolic> {
    using T = decltype(tag);
    return std::make_shared<EigenSymbolic<T>>(method, scalar, std::move(plan));
  });
}

}  // namespace sla::detail
