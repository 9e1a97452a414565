// Block-diagonal batches of matrices with distinct patterns: dense factors for small blocks, a sparse
// backend for large ones, blocks in parallel (see sla/blocks.hpp).
#include "sla/blocks.hpp"

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <exception>
#include <limits>
#include <type_traits>
#include <vector>

#include "batch.hpp"
#include "sla/errors.hpp"
#include "sla/interrupt.hpp"

namespace sla {
namespace {

template <class T>
double abs2(const T& v) {
  if constexpr (std::is_same_v<T, double>) {
    return v * v;
  } else {
    return std::norm(v);
  }
}

template <class T>
T conj_of(const T& v) {
  if constexpr (std::is_same_v<T, double>) {
    return v;
  } else {
    return std::conj(v);
  }
}

// Value p of a values array of scalar type s, in the working precision W (double or complex<double>).
template <class W>
W load(const void* values, ScalarType s, index_t p) {
  switch (s) {
    case ScalarType::Float32: return W(static_cast<const float*>(values)[p]);
    case ScalarType::Float64: return W(static_cast<const double*>(values)[p]);
    case ScalarType::Complex64:
      if constexpr (std::is_same_v<W, double>) {
        return static_cast<double>(static_cast<const std::complex<float>*>(values)[p].real());
      } else {
        return W(static_cast<const std::complex<float>*>(values)[p]);
      }
    case ScalarType::Complex128:
      if constexpr (std::is_same_v<W, double>) {
        return static_cast<const std::complex<double>*>(values)[p].real();
      } else {
        return static_cast<const std::complex<double>*>(values)[p];
      }
  }
  return W(0);
}

template <class W>
void store(void* values, ScalarType s, index_t p, const W& v) {
  switch (s) {
    case ScalarType::Float32: static_cast<float*>(values)[p] = static_cast<float>(std::real(v)); return;
    case ScalarType::Float64: static_cast<double*>(values)[p] = std::real(v); return;
    case ScalarType::Complex64:
      static_cast<std::complex<float>*>(values)[p] = std::complex<float>(std::complex<double>(v));
      return;
    case ScalarType::Complex128: static_cast<std::complex<double>*>(values)[p] = std::complex<double>(v); return;
  }
}

// A dense factorization of one block, column-major, in the working precision W.
template <class W>
struct DenseFactor {
  index_t n = 0;
  bool cholesky = false;
  std::vector<W> a;             // LU: L (unit, below the diagonal) and U; Cholesky: L in the lower triangle
  std::vector<index_t> pivots;  // LU: row interchanges (row k was swapped with pivots[k])

  W& at(index_t i, index_t j) { return a[static_cast<std::size_t>(i + j * n)]; }
  const W& at(index_t i, index_t j) const { return a[static_cast<std::size_t>(i + j * n)]; }

  // Cholesky A = L L^H from the lower triangle. Throws NotPositiveDefinite / SingularMatrix.
  void factor_cholesky() {
    // Right-looking: after pivot k, column k is scaled and the trailing lower triangle updated column by
    // column, so every inner loop runs down a contiguous column (the storage is column-major).
    cholesky = true;
    double dmax = 0.0, dmin = std::numeric_limits<double>::infinity();
    W* a0 = a.data();
    for (index_t k = 0; k < n; ++k) {
      W* ck = a0 + k * n;  // column k
      const double d = std::real(ck[k]);
      if (!std::isfinite(d)) fail(ErrorKind::SingularMatrix, "a NaN or infinite pivot at row ", k);
      if (!(d > 0.0))
        fail(ErrorKind::NotPositiveDefinite, "not positive definite: pivot ", k, " is ", d, " (Cholesky)");
      const double l = std::sqrt(d);
      ck[k] = W(l);
      dmax = std::max(dmax, d);
      dmin = std::min(dmin, d);
      const double inv = 1.0 / l;
      for (index_t i = k + 1; i < n; ++i) ck[i] *= inv;
      for (index_t j = k + 1; j < n; ++j) {
        const W ljk = conj_of(ck[j]);
        if (ljk == W(0.0)) continue;
        W* cj = a0 + j * n;
        for (index_t i = j; i < n; ++i) cj[i] -= ck[i] * ljk;
      }
    }
    if (n > 0 && dmin / dmax < std::numeric_limits<double>::epsilon())
      fail(ErrorKind::SingularMatrix, "singular to working precision: pivot ratio ", dmin / dmax, " (Cholesky)");
  }

  // LU with partial pivoting. Throws SingularMatrix (a zero or tiny pivot, or a NaN).
  void factor_lu() {
    cholesky = false;
    pivots.assign(static_cast<std::size_t>(n), 0);
    double pmax = 0.0, pmin = std::numeric_limits<double>::infinity();
    for (index_t k = 0; k < n; ++k) {
      index_t p = k;
      double best = std::abs(at(k, k));
      for (index_t i = k + 1; i < n; ++i) {
        const double v = std::abs(at(i, k));
        if (v > best || std::isnan(v)) {
          best = v;
          p = i;
          if (std::isnan(v)) break;
        }
      }
      if (!std::isfinite(best)) fail(ErrorKind::SingularMatrix, "a NaN or infinite pivot at column ", k);
      if (best == 0.0) fail(ErrorKind::SingularMatrix, "singular: column ", k, " has no nonzero pivot");
      pivots[static_cast<std::size_t>(k)] = p;
      if (p != k)
        for (index_t j = 0; j < n; ++j) std::swap(at(k, j), at(p, j));
      pmax = std::max(pmax, best);
      pmin = std::min(pmin, best);
      const W inv = W(1.0) / at(k, k);
      for (index_t i = k + 1; i < n; ++i) at(i, k) *= inv;
      for (index_t j = k + 1; j < n; ++j) {
        const W u = at(k, j);
        if (u == W(0.0)) continue;
        for (index_t i = k + 1; i < n; ++i) at(i, j) -= at(i, k) * u;
      }
    }
    if (n > 0 && pmin / pmax < std::numeric_limits<double>::epsilon())
      fail(ErrorKind::SingularMatrix, "singular to working precision: pivot ratio ", pmin / pmax, " (LU)");
  }

  // Solve op(A) x = b in place (x holds b on entry).
  void solve(W* x, Op op) const {
    if (cholesky) {  // A = L L^H is Hermitian: op does not matter
      for (index_t i = 0; i < n; ++i) {
        W s = x[i];
        for (index_t k = 0; k < i; ++k) s -= at(i, k) * x[k];
        x[i] = s / at(i, i);
      }
      for (index_t i = n; i-- > 0;) {
        W s = x[i];
        for (index_t k = i + 1; k < n; ++k) s -= conj_of(at(k, i)) * x[k];
        x[i] = s / conj_of(at(i, i));
      }
      return;
    }
    if (op == Op::N) {  // P A = L U: x = U^{-1} L^{-1} P b
      for (index_t k = 0; k < n; ++k) std::swap(x[k], x[pivots[static_cast<std::size_t>(k)]]);
      for (index_t j = 0; j < n; ++j)
        for (index_t i = j + 1; i < n; ++i) x[i] -= at(i, j) * x[j];
      for (index_t j = n; j-- > 0;) {
        x[j] /= at(j, j);
        for (index_t i = 0; i < j; ++i) x[i] -= at(i, j) * x[j];
      }
      return;
    }
    // A^H = U^H L^H P: x = P^T L^{-H} U^{-H} b
    for (index_t i = 0; i < n; ++i) {
      W s = x[i];
      for (index_t k = 0; k < i; ++k) s -= conj_of(at(k, i)) * x[k];
      x[i] = s / conj_of(at(i, i));
    }
    for (index_t i = n; i-- > 0;) {
      W s = x[i];
      for (index_t k = i + 1; k < n; ++k) s -= conj_of(at(k, i)) * x[k];
      x[i] = s;
    }
    for (index_t k = n; k-- > 0;) std::swap(x[k], x[pivots[static_cast<std::size_t>(k)]]);
  }
};

template <class W>
class BlockFactorsImpl final : public BlockFactors {
 public:
  BlockFactorsImpl(ScalarType scalar, index_t n, std::vector<index_t> offsets)
      : scalar_(scalar), n_(n), offsets_(std::move(offsets)) {
    const auto nb = static_cast<std::size_t>(offsets_.size() - 1);
    dense_.resize(nb);
    sparse_.resize(nb);
    failed_.assign(nb, 0);
    chosen_cholesky_.assign(nb, 0);
  }
  index_t blocks() const override { return static_cast<index_t>(offsets_.size()) - 1; }
  index_t n() const override { return n_; }
  const std::vector<BlockError>& errors() const override { return errors_; }
  index_t dense_blocks() const override { return dense_count_; }
  index_t sparse_blocks() const override { return sparse_count_; }
  index_t lu_fallbacks() const override { return fallbacks_; }
  index_t cholesky_blocks() const override {
    index_t c = 0;
    for (char v : chosen_cholesky_) c += v;
    return c;
  }

  void solve(const void* b, void* x, index_t nrhs, Op op, int threads) const override {
    const index_t nb = blocks();
    const int t = detail::batch_threads(threads);
    detail::BlasThreadsScope blas(t > 1 ? 1 : detail::kKeepBlasThreads);
    std::exception_ptr other;
#pragma omp parallel for schedule(dynamic, 16) num_threads(t) if (t > 1 && nb > 1)
    for (index_t k = 0; k < nb; ++k) {
      try {
        solve_block(k, b, x, nrhs, op);
      } catch (...) {
#pragma omp critical(sla_blocks_solve)
        if (!other) other = std::current_exception();
      }
    }
    if (other) std::rethrow_exception(other);
  }

  void factorize(Backend backend, Method method, const CsrPattern& pattern, const void* values,
                 const BlockOptions& options) {
    const index_t nb = blocks();
    const int t = detail::batch_threads(options.threads);
    detail::BlasThreadsScope blas(t > 1 ? 1 : detail::kKeepBlasThreads);
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(nb));
    std::vector<char> fell_back(static_cast<std::size_t>(nb), 0);
    std::exception_ptr other;
    const bool i32 = pattern.index32();
#pragma omp parallel for schedule(dynamic, 4) num_threads(t) if (t > 1 && nb > 1)
    for (index_t k = 0; k < nb; ++k) {
      try {
        if (i32)
          factor_block(k, backend, method, pattern.view<std::int32_t>(), values, options, fell_back);
        else
          factor_block(k, backend, method, pattern.view<std::int64_t>(), values, options, fell_back);
      } catch (const Error&) {
        errors[static_cast<std::size_t>(k)] = std::current_exception();
      } catch (...) {
#pragma omp critical(sla_blocks_factor)
        if (!other) other = std::current_exception();
      }
    }
    if (other) std::rethrow_exception(other);
    for (index_t k = 0; k < nb; ++k) {
      const auto ks = static_cast<std::size_t>(k);
      if (fell_back[ks]) ++fallbacks_;
      if (errors[ks]) {
        failed_[ks] = 1;
        try {
          std::rethrow_exception(errors[ks]);
        } catch (const Error& e) {
          errors_.push_back({k, e.kind(), e.what()});
        }
      } else if (sparse_[ks]) {
        ++sparse_count_;
      } else {
        ++dense_count_;
      }
    }
  }

 private:
  // Whether block [r0, r1) is Hermitian (up to 100 units of roundoff of its largest entry; a missing mirrored
  // entry counts as zero) with a positive real diagonal: the rule of method "auto" for Cholesky.
  template <class I>
  bool hermitian_positive_diagonal(const CsrView<I>& p, const void* values, index_t r0, index_t r1) const {
    double scale = 0.0;
    for (index_t e = static_cast<index_t>(p.indptr[r0]); e < static_cast<index_t>(p.indptr[r1]); ++e)
      scale = std::max(scale, std::abs(load<W>(values, scalar_, e)));
    const double tol = 100.0 * std::numeric_limits<double>::epsilon() * scale;
    for (index_t r = r0; r < r1; ++r) {
      bool diag = false;
      for (index_t e = static_cast<index_t>(p.indptr[r]); e < static_cast<index_t>(p.indptr[r + 1]); ++e) {
        const index_t c = static_cast<index_t>(p.indices[e]);
        const W v = load<W>(values, scalar_, e);
        if (c == r) {
          diag = true;
          if (!(std::real(v) > 0.0) || std::abs(std::imag(std::complex<double>(v))) > tol) return false;
          continue;
        }
        // The mirrored entry (c, r): binary search in row c (columns sorted).
        const I* lo = p.indices + p.indptr[c];
        const I* hi = p.indices + p.indptr[c + 1];
        const I* it = std::lower_bound(lo, hi, static_cast<I>(r));
        const W mirror = (it != hi && static_cast<index_t>(*it) == r)
                             ? load<W>(values, scalar_, static_cast<index_t>(it - p.indices))
                             : W(0.0);
        if (std::abs(v - conj_of(mirror)) > tol) return false;
      }
      if (!diag) return false;
    }
    return true;
  }

  static bool dense_hermitian_positive_diagonal(const DenseFactor<W>& f) {
    const index_t m = f.n;
    double scale = 0.0;
    for (const W& v : f.a) scale = std::max(scale, std::abs(v));
    const double tol = 100.0 * std::numeric_limits<double>::epsilon() * scale;
    for (index_t j = 0; j < m; ++j) {
      const W d = f.at(j, j);
      if (!(std::real(d) > 0.0) || std::abs(std::imag(std::complex<double>(d))) > tol) return false;
      for (index_t i = j + 1; i < m; ++i)
        if (std::abs(f.at(i, j) - conj_of(f.at(j, i))) > tol) return false;
    }
    return true;
  }

  template <class I>
  void factor_block(index_t k, Backend backend, Method method, const CsrView<I>& p, const void* values,
                    const BlockOptions& options, std::vector<char>& fell_back) {
    if (k % 64 == 0) poll_interrupt();
    const auto ks = static_cast<std::size_t>(k);
    const index_t r0 = offsets_[ks], r1 = offsets_[ks + 1], m = r1 - r0;
    if (m == 0) return;
    const index_t e0 = static_cast<index_t>(p.indptr[r0]);
    if (options.check_finite)
      for (index_t r = r0; r < r1; ++r)
        for (index_t e = static_cast<index_t>(p.indptr[r]); e < static_cast<index_t>(p.indptr[r + 1]); ++e)
          if (!std::isfinite(std::abs(load<W>(values, scalar_, e))))
            fail(ErrorKind::InvalidArgument, "A: a NaN or infinite value at (", r, ", ", p.indices[e],
                 ") (pass check_finite=False to skip this check)");
    bool fallback = options.fallback_lu;
    if (m <= options.dense_max) {
      DenseFactor<W> f;
      f.n = m;
      auto fill = [&] {
        f.a.assign(static_cast<std::size_t>(m * m), W(0.0));
        for (index_t r = r0; r < r1; ++r)
          for (index_t e = static_cast<index_t>(p.indptr[r]); e < static_cast<index_t>(p.indptr[r + 1]); ++e)
            f.at(r - r0, static_cast<index_t>(p.indices[e]) - r0) = load<W>(values, scalar_, e);
      };
      fill();  // Cholesky reads the lower triangle only, as the sparse backends do
      if (options.auto_method) {  // the rule of hermitian_positive_diagonal, on the dense block
        method = dense_hermitian_positive_diagonal(f) ? Method::Cholesky : Method::LU;
        fallback = true;
      }
      if (method == Method::Cholesky) chosen_cholesky_[ks] = 1;
      if (method == Method::Cholesky) {
        try {
          f.factor_cholesky();
        } catch (const Error& e) {
          if (e.kind() != ErrorKind::NotPositiveDefinite || !fallback) throw;
          fell_back[ks] = 1;
          fill();
          f.factor_lu();
        }
      } else {
        f.factor_lu();
      }
      dense_[ks] = std::move(f);
      return;
    }
    if (options.auto_method) {  // per block: Cholesky (LU if it breaks down) for Hermitian matrices with a
                                // positive real diagonal, else LU
      method = hermitian_positive_diagonal(p, values, r0, r1) ? Method::Cholesky : Method::LU;
      fallback = true;
    }
    if (method == Method::Cholesky) chosen_cholesky_[ks] = 1;
    // A large block: its own sparse analysis and factorization.
    std::vector<std::int64_t> indptr(static_cast<std::size_t>(m + 1)), indices;
    indices.reserve(static_cast<std::size_t>(static_cast<index_t>(p.indptr[r1]) - e0));
    for (index_t r = r0; r < r1; ++r) {
      indptr[static_cast<std::size_t>(r - r0)] = static_cast<std::int64_t>(p.indptr[r]) - e0;
      for (index_t e = static_cast<index_t>(p.indptr[r]); e < static_cast<index_t>(p.indptr[r + 1]); ++e)
        indices.push_back(static_cast<std::int64_t>(p.indices[e]) - r0);
    }
    indptr[static_cast<std::size_t>(m)] = static_cast<std::int64_t>(indices.size());
    CsrView<std::int64_t> view{m, m, indptr.data(), indices.data()};
    const char* block_values = static_cast<const char*>(values) + e0 * static_cast<index_t>(scalar_size(scalar_));
    try {
      auto sym = sla::analyze(backend, method, scalar_, view);
      sparse_[ks] = sla::factorize(sym, block_values);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::NotPositiveDefinite || !fallback) throw;
      fell_back[ks] = 1;
      auto sym = sla::analyze(backend, Method::LU, scalar_, view);
      sparse_[ks] = sla::factorize(sym, block_values);
    }
  }

  void solve_block(index_t k, const void* b, void* x, index_t nrhs, Op op) const {
    const auto ks = static_cast<std::size_t>(k);
    const index_t r0 = offsets_[ks], m = offsets_[ks + 1] - r0;
    if (m == 0) return;
    if (failed_[ks]) {
      for (index_t j = 0; j < nrhs; ++j)
        for (index_t i = 0; i < m; ++i)
          store<W>(x, scalar_, r0 + i + j * n_, W(std::numeric_limits<double>::quiet_NaN()));
      return;
    }
    if (sparse_[ks]) {  // gather the block's rows of every right-hand side, solve, scatter
      const std::size_t sz = scalar_size(scalar_);
      std::vector<char> bb(static_cast<std::size_t>(m * nrhs) * sz), xx(bb.size());
      for (index_t j = 0; j < nrhs; ++j)
        std::copy_n(static_cast<const char*>(b) + (r0 + j * n_) * static_cast<index_t>(sz), m * static_cast<index_t>(sz),
                    bb.data() + j * m * static_cast<index_t>(sz));
      sparse_[ks]->solve(bb.data(), xx.data(), nrhs, op);
      for (index_t j = 0; j < nrhs; ++j)
        std::copy_n(xx.data() + j * m * static_cast<index_t>(sz), m * static_cast<index_t>(sz),
                    static_cast<char*>(x) + (r0 + j * n_) * static_cast<index_t>(sz));
      return;
    }
    thread_local std::vector<W> col;  // one buffer per thread, reused by every block it solves
    col.resize(static_cast<std::size_t>(m));
    for (index_t j = 0; j < nrhs; ++j) {
      if (scalar_ == scalar_tag<W>::value) {  // the working precision: solve in place in x
        W* xj = static_cast<W*>(x) + r0 + j * n_;
        std::copy_n(static_cast<const W*>(b) + r0 + j * n_, m, xj);
        dense_[ks].solve(xj, op);
        continue;
      }
      for (index_t i = 0; i < m; ++i) col[static_cast<std::size_t>(i)] = load<W>(b, scalar_, r0 + i + j * n_);
      dense_[ks].solve(col.data(), op);
      for (index_t i = 0; i < m; ++i) store<W>(x, scalar_, r0 + i + j * n_, col[static_cast<std::size_t>(i)]);
    }
  }

  ScalarType scalar_;
  index_t n_;
  std::vector<index_t> offsets_;
  std::vector<DenseFactor<W>> dense_;
  std::vector<std::unique_ptr<Numeric>> sparse_;
  std::vector<char> failed_;
  std::vector<char> chosen_cholesky_;  // the block was factorized (or first tried) by Cholesky
  std::vector<BlockError> errors_;
  index_t dense_count_ = 0, sparse_count_ = 0, fallbacks_ = 0;
};

template <class I>
void check_blocks(const CsrView<I>& p, const index_t* offsets, index_t nblocks) {
  if (nblocks < 0) fail(ErrorKind::InvalidArgument, "offsets: need at least one entry");
  if (offsets[0] != 0)
    fail(ErrorKind::InvalidArgument, "offsets: must start at 0, got ", offsets[0]);
  if (offsets[nblocks] != p.n_rows)
    fail(ErrorKind::InvalidArgument, "offsets: must end at the number of rows ", p.n_rows, ", got ", offsets[nblocks]);
  for (index_t k = 0; k < nblocks; ++k) {
    if (offsets[k + 1] < offsets[k])
      fail(ErrorKind::InvalidArgument, "offsets: must be non-decreasing, but offsets[", k + 1, "] = ", offsets[k + 1],
           " < offsets[", k, "] = ", offsets[k]);
    for (index_t r = offsets[k]; r < offsets[k + 1]; ++r)
      for (index_t e = static_cast<index_t>(p.indptr[r]); e < static_cast<index_t>(p.indptr[r + 1]); ++e) {
        const index_t c = static_cast<index_t>(p.indices[e]);
        if (c < offsets[k] || c >= offsets[k + 1])
          fail(ErrorKind::InvalidArgument, "A: entry (", r, ", ", c, ") couples block ", k,
               " (rows and columns ", offsets[k], " to ", offsets[k + 1] - 1,
               ") to another block; the matrix is not block diagonal");
      }
  }
}

}  // namespace

std::unique_ptr<BlockFactors> factorize_blocks(Backend backend, Method method, ScalarType scalar,
                                               const CsrPattern& pattern, const index_t* offsets, index_t nblocks,
                                               const void* values, const BlockOptions& options) {
  if (pattern.n_rows() != pattern.n_cols())
    fail(ErrorKind::InvalidArgument, "A: expected a square matrix, got ", pattern.n_rows(), " x ", pattern.n_cols());
  if (pattern.index32())
    check_blocks(pattern.view<std::int32_t>(), offsets, nblocks);
  else
    check_blocks(pattern.view<std::int64_t>(), offsets, nblocks);
  if (options.dense_max < 0) fail(ErrorKind::InvalidArgument, "dense_max: must be >= 0, got ", options.dense_max);
  std::vector<index_t> offs(offsets, offsets + nblocks + 1);
  if (is_complex(scalar)) {
    auto f = std::make_unique<BlockFactorsImpl<std::complex<double>>>(scalar, pattern.n_rows(), std::move(offs));
    f->factorize(backend, method, pattern, values, options);
    return f;
  }
  auto f = std::make_unique<BlockFactorsImpl<double>>(scalar, pattern.n_rows(), std::move(offs));
  f->factorize(backend, method, pattern, values, options);
  return f;
}

}  // namespace sla
