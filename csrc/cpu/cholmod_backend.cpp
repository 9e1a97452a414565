// CHOLMOD (SuiteSparse): supernodal / simplicial LL^T and simplicial LDL^T.
// Works in double or complex<double>; float32 / complex64 callers are converted on the way in and out.
#include <cholmod.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <complex>
#include <cstddef>
#include <limits>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#include "backends.hpp"
#include "blas.hpp"
#include "convert.hpp"
#include "selinv.hpp"
#include "sla/errors.hpp"
#include "sla/interrupt.hpp"

static_assert(std::is_same_v<SuiteSparse_long, sla::index_t>, "SuiteSparse_long must be 64-bit");

namespace sla::detail {
namespace {

// cholmod_common with RAII, set up for one method. CHOLMOD is not re-entrant on one common, so each is
// guarded by its mutex, and each object that calls CHOLMOD has its own: the analysis one (for the
// analysis and its memory report), and every numeric factorization another, made for it. Factorizations
// of one analysis, and solves with different factorizations, then run in parallel without waiting for
// each other (the symbolic factor they copy is only read).
struct CholmodCommon {
  cholmod_common c;
  std::mutex mutex;
  explicit CholmodCommon(Method method) {
    cholmod_l_start(&c);
    c.print = 0;  // errors are reported through status codes and turned into exceptions
    if (method == Method::LDL) {
      c.supernodal = CHOLMOD_SIMPLICIAL;  // LDL^T is simplicial in CHOLMOD
      c.final_ll = 0;
    } else {
      c.supernodal = CHOLMOD_AUTO;  // supernodal when the flop count justifies it
      c.final_ll = 1;               // LL^T in both modes, so a non-SPD matrix is reported
    }
  }
  ~CholmodCommon() { cholmod_l_finish(&c); }
  CholmodCommon(const CholmodCommon&) = delete;
  CholmodCommon& operator=(const CholmodCommon&) = delete;
};

struct FactorDeleter {
  std::shared_ptr<CholmodCommon> common;
  void operator()(cholmod_factor* f) const {
    if (f != nullptr) cholmod_l_free_factor(&f, &common->c);
  }
};
using FactorPtr = std::unique_ptr<cholmod_factor, FactorDeleter>;

// A cholmod_sparse header over the plan's arrays (lower triangle, symmetric), no copy.
cholmod_sparse sparse_view(const CscPlan& plan, void* values, bool complex) {
  cholmod_sparse a{};
  a.nrow = a.ncol = static_cast<size_t>(plan.n);
  a.nzmax = plan.rowind.size();
  a.p = const_cast<index_t*>(plan.colptr.data());
  a.i = const_cast<index_t*>(plan.rowind.data());
  a.x = values;
  a.stype = -1;  // use the lower triangle, the matrix is symmetric / Hermitian
  a.itype = CHOLMOD_LONG;
  a.xtype = values == nullptr ? CHOLMOD_PATTERN : (complex ? CHOLMOD_COMPLEX : CHOLMOD_REAL);
  a.dtype = CHOLMOD_DOUBLE;
  a.sorted = 1;
  a.packed = 1;
  return a;
}

// Call f(j, re, im) for every pivot j of a numeric factor: the diagonal of L for LL^T, D for LDL^T
// (interleaved complex: the real part first; im is 0 for a real factor).
template <class F>
void for_each_pivot(const cholmod_factor* L, F&& f) {
  const double* x = static_cast<const double*>(L->x);
  const bool cx = L->xtype == CHOLMOD_COMPLEX;
  auto at = [&](index_t j, size_t k) { f(j, cx ? x[2 * k] : x[k], cx ? x[2 * k + 1] : 0.0); };
  if (L->is_super) {
    const index_t* super = static_cast<const index_t*>(L->super);
    const index_t* pi = static_cast<const index_t*>(L->pi);
    const index_t* px = static_cast<const index_t*>(L->px);
    for (size_t s = 0; s < L->nsuper; ++s) {
      const index_t nsrow = pi[s + 1] - pi[s];  // each supernode is a dense nsrow x ncols column-major block
      for (index_t j = 0; j < super[s + 1] - super[s]; ++j)
        at(super[s] + j, static_cast<size_t>(px[s] + j + j * nsrow));
    }
    return;
  }
  const index_t* p = static_cast<const index_t*>(L->p);
  for (size_t j = 0; j < L->n; ++j) at(static_cast<index_t>(j), static_cast<size_t>(p[j]));  // diagonal first
}

// Whether every pivot of a numeric factor is finite. cholmod_rcond returns 0 for a NaN pivot, which would
// read as an exactly singular matrix.
bool pivots_finite(const cholmod_factor* L) {
  bool finite = true;
  for_each_pivot(L, [&](index_t, double re, double im) { finite = finite && std::isfinite(re) && std::isfinite(im); });
  return finite;
}

// Bytes held by a factor, from the sizes of the arrays it has (a symbolic factor has only some of them).
std::size_t factor_bytes(const cholmod_factor* L) {
  const size_t I = sizeof(index_t);
  const size_t X = L->xtype == CHOLMOD_PATTERN ? 0 : L->xtype == CHOLMOD_REAL ? sizeof(double) : 2 * sizeof(double);
  size_t bytes = sizeof(cholmod_factor);
  auto add = [&](const void* array, size_t count, size_t each) {
    if (array != nullptr) bytes += count * each;
  };
  add(L->Perm, L->n, I);
  add(L->ColCount, L->n, I);
  add(L->IPerm, L->n, I);
  if (L->is_super) {
    add(L->super, L->nsuper + 1, I);
    add(L->pi, L->nsuper + 1, I);
    add(L->px, L->nsuper + 1, I);
    add(L->s, L->ssize, I);
    add(L->x, L->xsize, X);
  } else {
    add(L->p, L->n + 1, I);
    add(L->i, L->nzmax, I);
    add(L->x, L->nzmax, X);
    add(L->nz, L->n, I);
    add(L->next, L->n + 2, I);
    add(L->prev, L->n + 2, I);
  }
  return bytes;
}

class CholmodSymbolic;

template <class W>
class CholmodNumeric final : public Numeric {
 public:
  CholmodNumeric(std::shared_ptr<const Symbolic> sym, std::shared_ptr<CholmodCommon> common, FactorPtr L)
      : Numeric(std::move(sym)), common_(std::move(common)), L_(std::move(L)) {
    for_each_pivot(L_.get(),
                   [&](index_t, double re, double im) { zero_pivot_ = zero_pivot_ || (re == 0.0 && im == 0.0); });
  }

  void solve(const void* b, void* x, index_t nrhs, Op /*op*/) const override {
    // A is symmetric (real) or Hermitian (complex): A^H = A, so op does not change the solve.
    const index_t n = sym_->n();
    const ScalarType s = sym_->scalar();
    if (zero_pivot_) fail_zero_pivot("the solve");
    if (n == 0 || nrhs == 0) return;
    std::vector<W> bw(static_cast<size_t>(n * nrhs));
    load_dense<W>(s, b, n * nrhs, bw.data());
    cholmod_dense B{};
    B.nrow = static_cast<size_t>(n);
    B.ncol = static_cast<size_t>(nrhs);
    B.d = static_cast<size_t>(n);
    B.nzmax = static_cast<size_t>(n * nrhs);
    B.x = bw.data();
    B.xtype = is_complex_t<W>::value ? CHOLMOD_COMPLEX : CHOLMOD_REAL;
    B.dtype = CHOLMOD_DOUBLE;
    std::lock_guard<std::mutex> lock(common_->mutex);
    cholmod_dense* X = cholmod_l_solve(CHOLMOD_A, L_.get(), &B, &common_->c);
    if (X == nullptr) fail(ErrorKind::Internal, "CHOLMOD solve failed (status ", common_->c.status, ")");
    store_dense<W>(s, static_cast<const W*>(X->x), n * nrhs, x);
    cholmod_l_free_dense(&X, &common_->c);
  }

  double rcond() const override {
    if (!pivots_finite(L_.get())) return std::numeric_limits<double>::quiet_NaN();
    std::lock_guard<std::mutex> lock(common_->mutex);
    return cholmod_l_rcond(L_.get(), &common_->c);
  }
  double eps() const override { return std::numeric_limits<double>::epsilon(); }

  // LL^T: det = prod L_jj^2, L_jj real and positive. LDL^T: det = prod D_jj, real for a Hermitian matrix.
  // P A P^T is factored and det(P)^2 = 1.
  SignLogDet slogdet() const override {
    LogDet det;
    const bool ll = L_->is_ll != 0;
    for_each_pivot(L_.get(), [&](index_t, double re, double) { det.add(re, ll ? 2 : 1); });
    return det.result(is_complex(sym_->scalar()));
  }

  // Takahashi's recurrences on a simplicial, packed copy of the factor (the supernodal storage converted
  // column by column, explicit zeros kept): P A P^T = L D L^H, Z = (L D L^H)^{-1}, A^{-1}(r, c) =
  // Z(Perm^{-1}(r), Perm^{-1}(c)).
  void inverse_entries(const index_t* rows, const index_t* cols, index_t m, void* out) const override {
    const index_t n = sym_->n();
    check_entry_indices(n, rows, cols, m);
    if (zero_pivot_) fail_zero_pivot("the inverse");
    if (L_->is_super) {
      supernodal_inverse_entries(rows, cols, m, out);
      return;
    }
    FilledPattern pattern;
    std::vector<W> l, d;
    std::vector<index_t> pinv(static_cast<size_t>(n));
    {
      std::lock_guard<std::mutex> lock(common_->mutex);
      cholmod_common& c = common_->c;
      FactorPtr F(cholmod_l_copy_factor(L_.get(), &c), FactorDeleter{common_});
      if (!F || !cholmod_l_change_factor(F->xtype, F->is_ll, 0, 1, 1, F.get(), &c))
        fail(ErrorKind::Internal, "CHOLMOD could not convert the factor to simplicial form (status ", c.status, ")");
      const index_t* fp = static_cast<const index_t*>(F->p);
      const index_t* fi = static_cast<const index_t*>(F->i);
      const W* fx = static_cast<const W*>(F->x);
      const index_t* perm = static_cast<const index_t*>(F->Perm);
      const bool ll = F->is_ll != 0;
      pattern.n = n;
      pattern.colptr.assign(static_cast<size_t>(n) + 1, 0);
      pattern.rowind.reserve(static_cast<size_t>(fp[n] - n));
      l.reserve(static_cast<size_t>(fp[n] - n));
      d.resize(static_cast<size_t>(n));
      for (index_t j = 0; j < n; ++j) {
        const W diag = fx[fp[j]];  // the diagonal comes first in each column
        d[j] = ll ? diag * diag : diag;
        for (index_t q = fp[j] + 1; q < fp[j + 1]; ++q) {
          pattern.rowind.push_back(fi[q]);
          l.push_back(ll ? fx[q] / diag : fx[q]);
        }
        pattern.colptr[j + 1] = static_cast<index_t>(pattern.rowind.size());
      }
      for (index_t k = 0; k < n; ++k) pinv[perm == nullptr ? k : perm[k]] = k;
    }
    const SelectedInverse<W> z = selected_inverse<W>(pattern, l, {}, d, true);
    std::vector<W> result(static_cast<size_t>(m));
    for (index_t k = 0; k < m; ++k)
      if (!z.at(pattern, pinv[rows[k]], pinv[cols[k]], result[k]))
        fail_unsupported_entry(k, rows[k], cols[k], ll_name());
    store_dense<W>(sym_->scalar(), result.data(), m, out);
  }

  index_t factor_nnz() const override {
    const cholmod_factor* L = L_.get();
    if (L->is_super) return static_cast<index_t>(L->xsize);
    const index_t* colcount = static_cast<const index_t*>(L->nz);
    index_t total = 0;
    for (size_t j = 0; j < L->n; ++j) total += colcount[j];
    return total;
  }

 private:
  const char* ll_name() const { return L_->is_ll ? "CHOLMOD LL^T" : "CHOLMOD LDL^T"; }

  // Takahashi's recurrences by supernodes, with the BLAS: the selected inverse Z = (P A P^T)^{-1} is kept
  // in the layout of the supernodal factor (supernode s: its rows x its columns, column-major), the
  // supernodes taken from the last to the first. For a supernode with diagonal block L_D and the block L_B
  // below it on rows R, from Z L = L^{-H} read on the supernode's columns:
  //   Y    = L_B L_D^{-1}
  //   Z_BD = - Z_RR Y                        (Z_RR: Z on R x R, gathered from the ancestors, Hermitian)
  //   Z_DD = (L_D L_D^H)^{-1} - Z_BD^H Y     (LAPACK's potri for the first term)
  // Only the lower triangle of each Z_DD is computed and read. The rows R of a supernode that lie at or
  // below a column c of R are rows of c's supernode (the supernodal pattern is closed under elimination),
  // which the gather checks.
  void supernodal_inverse_entries(const index_t* rows, const index_t* cols, index_t m, void* out) const {
    const cholmod_factor* L = L_.get();
    const index_t n = static_cast<index_t>(L->n);
    const index_t nsuper = static_cast<index_t>(L->nsuper);
    const index_t* super = static_cast<const index_t*>(L->super);
    const index_t* pi = static_cast<const index_t*>(L->pi);
    const index_t* px = static_cast<const index_t*>(L->px);
    const index_t* ls = static_cast<const index_t*>(L->s);
    const index_t* perm = static_cast<const index_t*>(L->Perm);
    const W* lx = static_cast<const W*>(L->x);
    const char adj = blas::adjoint(W{});
    std::vector<index_t> col_super(static_cast<size_t>(n)), rel;
    std::vector<W> z(L->xsize), t, y, zrr;
    for (index_t s = nsuper; s-- > 0;) {
      if ((s & 63) == 0) poll_interrupt();
      const index_t k1 = super[s], nscol = super[s + 1] - k1, nsrow = pi[s + 1] - pi[s], nb = nsrow - nscol;
      if (nsrow >= INT_MAX / 2)
        fail(ErrorKind::InvalidArgument, "inverse_entries: a supernode of ", nsrow, " rows is too large for the BLAS");
      const index_t* rs = ls + pi[s];
      const W* ld = lx + px[s];
      W* zs = z.data() + px[s];
      const int ic = static_cast<int>(nscol), ir = static_cast<int>(nsrow), ib = static_cast<int>(nb);
      t.assign(static_cast<size_t>(nscol * nscol), W(0));
      for (index_t b = 0; b < nscol; ++b)
        for (index_t a = b; a < nscol; ++a) t[a + b * nscol] = ld[a + b * nsrow];
      if (const int info = blas::potri(ic, t.data(), ic); info != 0)  // (L_D L_D^H)^{-1}, lower triangle
        fail(ErrorKind::Internal, "selected inversion: LAPACK potri failed (info ", info, ") at supernode ", s);
      if (nb > 0) {
        y.resize(static_cast<size_t>(nb * nscol));
        for (index_t b = 0; b < nscol; ++b)
          for (index_t a = 0; a < nb; ++a) y[a + b * nb] = ld[nscol + a + b * nsrow];
        blas::trsm('R', 'L', 'N', 'N', ib, ic, W(1), ld, ir, y.data(), ib);  // Y = L_B L_D^{-1}
        // Z_RR, lower triangle, column by column: columns of R that share a supernode share one walk
        // through its rows.
        const index_t* R = rs + nscol;
        zrr.resize(static_cast<size_t>(nb * nb));
        rel.resize(static_cast<size_t>(nb));
        for (index_t b = 0; b < nb;) {
          const index_t s2 = col_super[R[b]], k1b = super[s2], k2b = super[s2 + 1];
          const index_t nsrow2 = pi[s2 + 1] - pi[s2];
          const index_t* rows2 = ls + pi[s2];
          index_t q = R[b] - k1b;
          for (index_t a = b; a < nb; ++a) {
            while (q < nsrow2 && rows2[q] < R[a]) ++q;
            if (q == nsrow2 || rows2[q] != R[a])
              fail(ErrorKind::Internal, "selected inversion: CHOLMOD's supernodal pattern is not closed (row ", R[a],
                   " of supernode ", s, " missing from supernode ", s2, ")");
            rel[a] = q;
          }
          for (; b < nb && R[b] < k2b; ++b) {
            const W* zc = z.data() + px[s2] + (R[b] - k1b) * nsrow2;
            for (index_t a = b; a < nb; ++a) zrr[a + b * nb] = zc[rel[a]];
          }
        }
        blas::hemm('L', 'L', ib, ic, W(-1), zrr.data(), ib, y.data(), ib, W(0), zs + nscol, ir);    // Z_BD
        blas::gemm(adj, 'N', ic, ic, ib, W(-1), zs + nscol, ir, y.data(), ib, W(1), t.data(), ic);  // Z_DD
      }
      for (index_t b = 0; b < nscol; ++b) {
        for (index_t a = b; a < nscol; ++a) zs[a + b * nsrow] = t[a + b * nscol];
        col_super[k1 + b] = s;
      }
    }
    std::vector<index_t> pinv(static_cast<size_t>(n));
    for (index_t k = 0; k < n; ++k) pinv[perm == nullptr ? k : perm[k]] = k;
    std::vector<W> result(static_cast<size_t>(m));
    for (index_t k = 0; k < m; ++k) {
      index_t i = pinv[rows[k]], j = pinv[cols[k]];
      const bool upper = i < j;  // Z(i, j) = conj(Z(j, i)): read the lower triangle
      if (upper) std::swap(i, j);
      const index_t s2 = col_super[j], k1b = super[s2], nsrow2 = pi[s2 + 1] - pi[s2];
      const index_t* first = ls + pi[s2] + (j - k1b);
      const index_t* last = ls + pi[s2 + 1];
      const index_t* it = std::lower_bound(first, last, i);
      if (it == last || *it != i) fail_unsupported_entry(k, rows[k], cols[k], ll_name());
      W v = z[static_cast<size_t>(px[s2] + (j - k1b) * nsrow2 + (it - (ls + pi[s2])))];
      if constexpr (is_complex_t<W>::value) {
        if (upper) v = std::conj(v);
        if (i == j) v = W(v.real(), 0.0);  // a Hermitian matrix's diagonal is real
      }
      result[k] = v;
    }
    store_dense<W>(sym_->scalar(), result.data(), m, out);
  }

  std::shared_ptr<CholmodCommon> common_;
  FactorPtr L_;
  bool zero_pivot_ = false;
};

class CholmodSymbolic final : public CpuSymbolic {
 public:
  CholmodSymbolic(Method method, ScalarType scalar, CscPlan plan, const AnalyzeOptions& options)
      : CpuSymbolic(scalar, std::move(plan)),
        method_(method),
        common_(std::make_shared<CholmodCommon>(method)),
        L_(nullptr, FactorDeleter{common_}) {
    cholmod_common& c = common_->c;
    if (plan_.ordering != Ordering::Default) {  // one ordering only, instead of CHOLMOD's own tries
      c.nmethods = 1;
      c.method[0].ordering = plan_.ordering == Ordering::AMD ? CHOLMOD_AMD : CHOLMOD_METIS;
      c.postorder = 1;
    }
    if (options.threads == 1) c.supernodal_switch = 80.0;  // see AnalyzeOptions (the default is 40)
    cholmod_sparse a = sparse_view(plan_, nullptr, false);
    L_.reset(cholmod_l_analyze(&a, &c));
    if (!L_) fail(ErrorKind::Internal, "CHOLMOD analysis failed (status ", c.status, ")");
    const double scalar_bytes = is_complex(scalar_) ? 16.0 : 8.0;
    predicted_bytes_ = c.lnz * (scalar_bytes + 8.0);
    // CHOLMOD's counts are for a real LL^T; a complex factorization takes about four times the flops.
    predicted_flops_ = c.fl * (is_complex(scalar_) ? 4.0 : 1.0);
    predicted_nnz_ = c.lnz;
  }

  Backend backend() const override { return Backend::SuiteSparse; }
  Method method() const override { return method_; }
  double predicted_factor_bytes() const override { return predicted_bytes_; }
  double predicted_flops() const override { return predicted_flops_; }
  double predicted_factor_nnz() const override { return predicted_nnz_; }
  // The plan, the symbolic factor (ordering, column counts, supernode structure: counted from its array
  // sizes) and the analysis's cholmod_common with its workspace (Flag, Head, Iwork and Xwork, counted from
  // their sizes). Each numeric factorization has a common of its own, whose workspace it frees when done.
  std::size_t memory_bytes() const override {
    std::lock_guard<std::mutex> lock(common_->mutex);
    const cholmod_common& c = common_->c;
    const size_t work = (2 * c.nrow + 1 + c.iworksize) * sizeof(index_t) + c.xworksize;
    return CpuSymbolic::memory_bytes() + sizeof(*this) - sizeof(CpuSymbolic) + factor_bytes(L_.get()) +
           sizeof(CholmodCommon) + work;
  }

  std::unique_ptr<Numeric> factorize(const std::shared_ptr<const Symbolic>& self, const void* values,
                                     const FactorizeOptions& options) const override {
    if (is_complex(scalar_)) return factorize_as<std::complex<double>>(self, values, options);
    return factorize_as<double>(self, values, options);
  }

 private:
  template <class W>
  std::unique_ptr<Numeric> factorize_as(const std::shared_ptr<const Symbolic>& self, const void* values,
                                        const FactorizeOptions& options) const {
    std::vector<W> vals(plan_.perm.size());
    gather_values<W>(scalar_, values, plan_.perm, vals.data());
    cholmod_sparse a = sparse_view(plan_, vals.data(), is_complex_t<W>::value);
    // A common of this factorization's own: no lock shared with other factorizations of this analysis.
    auto common = std::make_shared<CholmodCommon>(method_);
    cholmod_common& c = common->c;
    FactorPtr L(cholmod_l_copy_factor(L_.get(), &c), FactorDeleter{common});
    if (!L) fail(ErrorKind::Internal, "CHOLMOD could not copy the symbolic factor (status ", c.status, ")");
    cholmod_l_factorize(&a, L.get(), &c);
    // CHOLMOD stops at the first zero pivot (column L->minor), leaving the later columns uncomputed. LDL^T
    // does not pivot, so a zero pivot before the last column says nothing of A's rank ([[0, 1], [1, 0]]
    // is regular): only a zero last pivot leaves a complete factor of a singular matrix.
    const bool accept = options.allow_singular && method_ == Method::LDL && L->minor + 1 == L->n;
    if (!accept && (c.status == CHOLMOD_NOT_POSDEF || L->minor < L->n)) {
      if (method_ == Method::LDL && L->minor + 1 < L->n)
        fail(ErrorKind::SingularMatrix, "A is singular or needs pivoting: LDL^T found a zero pivot at column ",
             L->minor, " of ", L->n, " and could not go on (it does not pivot). Use method='lu'");
      if (method_ == Method::Cholesky)
        fail(ErrorKind::NotPositiveDefinite, "A is not positive definite: the Cholesky factorization broke down ",
             "at column ", L->minor, " of ", L->n,
             ". Use method='ldl' for symmetric indefinite or method='lu' for general matrices");
      fail(ErrorKind::SingularMatrix, "A is singular: LDL^T found a zero pivot at column ", L->minor, " of ", L->n);
    }
    if (c.status < CHOLMOD_OK) fail(ErrorKind::Internal, "CHOLMOD factorization failed (status ", c.status, ")");
    // The O(n) workspace is needed again only by a factorization; solves allocate what they use.
    cholmod_l_free_work(&c);
    return std::make_unique<CholmodNumeric<W>>(self, std::move(common), std::move(L));
  }

  Method method_;
  double predicted_bytes_ = -1.0;
  double predicted_flops_ = -1.0;
  double predicted_nnz_ = -1.0;
  std::shared_ptr<CholmodCommon> common_;
  FactorPtr L_;  // symbolic factor, copied for each numeric factorization
};

}  // namespace

bool suitesparse_compiled() { return true; }

std::shared_ptr<const Symbolic> analyze_cholmod(Method method, ScalarType scalar, CscPlan plan,
                                                const AnalyzeOptions& options) {
  return std::make_shared<CholmodSymbolic>(method, scalar, std::move(plan), options);
}

}  // namespace sla::detail
