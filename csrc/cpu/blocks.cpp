// Block-diagonal batches of matrices with distinct patterns: dense factors for small blocks, a sparse
// backend for large ones, blocks in parallel (see sla/blocks.hpp).
#include "sla/blocks.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <list>
#include <mutex>
#include <type_traits>
#include <unordered_map>
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

// Bits set in a word (without the popcnt instruction, which the baseline x86-64 target lacks).
inline index_t bit_count(std::uint64_t x) {
  x = x - ((x >> 1) & 0x5555555555555555ULL);
  x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
  x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
  return static_cast<index_t>((x * 0x0101010101010101ULL) >> 56);
}

// The ordering and the structure of the factor of a small block, from a minimum-degree elimination.
struct SmallSymbolic {
  std::vector<index_t> perm;   // perm[new] = old
  std::vector<index_t> lptr;   // dense_from + 1: column k of L holds rows lrows[lptr[k] .. lptr[k+1])
  std::vector<index_t> lrows;  // (new numbering, increasing, below the diagonal)
  index_t dense_from = 0;      // columns from here on hold every row below the diagonal
};

// Minimum degree on the graph of A + A^T, its rows as bitsets: the vertex of least degree in the
// elimination graph (exact degrees, kept in buckets) is eliminated first, and its remaining neighbours,
// joined into a clique, are the rows of its column of the factor. Once the least degree is that of a
// clique of all remaining vertices, the rest is dense and taken in order. The numeric factorization and
// the solves then touch only the entries of the factor: on graph Laplacians of 20 to 60 nodes these are
// about a third of the dense triangle, and the update work a tenth. O(m^2 / 64 + nnz(L)) word operations.
template <class I>
void min_degree_symbolic(const CsrView<I>& p, index_t r0, index_t m, SmallSymbolic& out) {
  const auto words = static_cast<std::size_t>((m + 63) / 64);
  const auto um = static_cast<std::size_t>(m);
  thread_local std::vector<std::uint64_t> adj_buffer, alive_buffer, reach_buffer, bucket_buffer;
  thread_local std::vector<index_t> degree_buffer, pinv_buffer;
  // (references, so that the loops below do not look up the thread-local storage at every access)
  std::vector<std::uint64_t>&adj = adj_buffer, &alive = alive_buffer, &reach = reach_buffer, &bucket = bucket_buffer;
  std::vector<index_t>&degree = degree_buffer, &pinv = pinv_buffer;
  adj.assign(um * words, 0);
  alive.assign(words, 0);
  bucket.assign(um * words, 0);  // bucket[d]: the remaining vertices of degree d
  reach.resize(words);
  degree.resize(um);
  pinv.resize(um);
  auto row = [&](std::size_t v) { return adj.data() + v * words; };
  auto set = [](std::uint64_t* bits, std::size_t i) { bits[i >> 6] |= std::uint64_t{1} << (i & 63); };
  auto clear = [](std::uint64_t* bits, std::size_t i) { bits[i >> 6] &= ~(std::uint64_t{1} << (i & 63)); };
  for (std::size_t v = 0; v < um; ++v) set(alive.data(), v);
  for (index_t r = 0; r < m; ++r)
    for (index_t e = static_cast<index_t>(p.indptr[r0 + r]); e < static_cast<index_t>(p.indptr[r0 + r + 1]); ++e) {
      const auto c = static_cast<std::size_t>(static_cast<index_t>(p.indices[e]) - r0);
      const auto ur = static_cast<std::size_t>(r);
      if (c == ur) continue;
      set(row(ur), c);
      set(row(c), ur);
    }
  index_t least = m;
  for (std::size_t v = 0; v < um; ++v) {
    index_t d = 0;
    for (std::size_t w = 0; w < words; ++w) d += bit_count(row(v)[w]);
    degree[v] = d;
    set(bucket.data() + static_cast<std::size_t>(d) * words, v);
    least = std::min(least, d);
  }
  out.perm.resize(um);
  out.lptr.assign(1, 0);
  out.lrows.clear();
  index_t step = 0;
  for (; step < m; ++step) {
    std::size_t best = um;
    for (index_t d = least; d < m && best == um; ++d) {
      const std::uint64_t* bd = bucket.data() + static_cast<std::size_t>(d) * words;
      for (std::size_t w = 0; w < words; ++w)
        if (bd[w] != 0) {
          best = w * 64 + static_cast<std::size_t>(__builtin_ctzll(bd[w]));
          least = d;
          break;
        }
    }
    if (least == m - 1 - step) break;  // the remaining vertices form a clique: dense from here on
    out.perm[static_cast<std::size_t>(step)] = static_cast<index_t>(best);
    pinv[best] = step;
    clear(alive.data(), best);
    clear(bucket.data() + static_cast<std::size_t>(least) * words, best);
    // Eliminating `best` joins its remaining neighbours into a clique; they are its column of the factor.
    for (std::size_t w = 0; w < words; ++w) reach[w] = row(best)[w] & alive[w];
    for (std::size_t w = 0; w < words; ++w)
      for (std::uint64_t bits = reach[w]; bits != 0; bits &= bits - 1) {
        const std::size_t u = w * 64 + static_cast<std::size_t>(__builtin_ctzll(bits));
        out.lrows.push_back(static_cast<index_t>(u));
        std::uint64_t* ru = row(u);
        index_t d = -1;  // u itself is in reach
        for (std::size_t x = 0; x < words; ++x) {
          ru[x] |= reach[x];
          d += bit_count(ru[x] & alive[x]);
        }
        clear(bucket.data() + static_cast<std::size_t>(degree[u]) * words, u);
        set(bucket.data() + static_cast<std::size_t>(d) * words, u);
        degree[u] = d;
        least = std::min(least, d);
      }
    out.lptr.push_back(static_cast<index_t>(out.lrows.size()));
  }
  out.dense_from = step;
  for (std::size_t w = 0; w < words; ++w)  // the clique, in order
    for (std::uint64_t bits = alive[w]; bits != 0; bits &= bits - 1) {
      const std::size_t u = w * 64 + static_cast<std::size_t>(__builtin_ctzll(bits));
      out.perm[static_cast<std::size_t>(step)] = static_cast<index_t>(u);
      pinv[u] = step++;
    }
  for (index_t k = 0; k < out.dense_from; ++k) {  // to the new numbering, sorted (short lists)
    index_t* rows = out.lrows.data() + out.lptr[static_cast<std::size_t>(k)];
    const index_t cnt = out.lptr[static_cast<std::size_t>(k + 1)] - out.lptr[static_cast<std::size_t>(k)];
    for (index_t q = 0; q < cnt; ++q) {
      const index_t v = pinv[static_cast<std::size_t>(rows[q])];
      index_t r = q;
      for (; r > 0 && rows[r - 1] > v; --r) rows[r] = rows[r - 1];
      rows[r] = v;
    }
  }
}

// The factorization of one small block (at most dense_max rows), in the working precision W, of the block
// with its rows and columns permuted symmetrically by perm (perm[new] = old). It is computed in a dense
// scratch matrix (one per thread, reused, so it stays in cache) and kept compactly:
// - Cholesky: the diagonal of L, the entries of its columns [0, dense_from) at the rows of their structure
//   (from min_degree_symbolic), and the dense trailing block of L from dense_from on;
// - LU with partial pivoting: the whole n x n matrix of L (unit, below the diagonal) and U.
template <class W>
struct SmallFactor {
  index_t n = 0;
  bool cholesky = false;
  index_t dense_from = 0;
  // Cholesky: diagonal (n), structured entries (lptr[dense_from]), trailing block ((n - dense_from)^2,
  // column-major); LU: n x n column-major.
  std::vector<W> vals;
  // perm (n); Cholesky: lptr (dense_from + 1) and lrows; LU: the row interchanges (n: row k was swapped with
  // pivots[k]).
  std::vector<index_t> ints;

  const index_t* perm() const { return ints.data(); }
  const index_t* pivots() const { return ints.data() + n; }
  const index_t* lptr() const { return ints.data() + n; }
  const index_t* lrows() const { return ints.data() + n + dense_from + 1; }

  // Cholesky A = L L^H of the permuted block in a (n x n, column-major, its lower triangle filled; the
  // upper triangle is not read), with the structure of s. Throws NotPositiveDefinite / SingularMatrix.
  void factor_cholesky(W* a, const SmallSymbolic& s) {
    cholesky = true;
    dense_from = s.dense_from;
    const auto un = static_cast<std::size_t>(n);
    ints.resize(un + s.lptr.size() + s.lrows.size());
    std::copy(s.perm.begin(), s.perm.end(), ints.begin());
    std::copy(s.lptr.begin(), s.lptr.end(), ints.begin() + n);
    std::copy(s.lrows.begin(), s.lrows.end(), ints.begin() + n + dense_from + 1);
    // Right-looking: after pivot k, column k is scaled and the trailing lower triangle updated. A column
    // with a structure updates only the entries (i, j) with i and j both in it; the columns of the dense
    // trailing part run down contiguous columns.
    double dmax = 0.0, dmin = std::numeric_limits<double>::infinity();
    const index_t* ptr = lptr();
    const index_t* rows_all = lrows();
    for (index_t k = 0; k < n; ++k) {
      W* ck = a + k * n;  // column k
      const double d = std::real(ck[k]);
      if (!std::isfinite(d)) fail(ErrorKind::SingularMatrix, "a NaN or infinite pivot at row ", k);
      if (!(d > 0.0))
        fail(ErrorKind::NotPositiveDefinite, "not positive definite: pivot ", k, " is ", d, " (Cholesky)");
      const double l = std::sqrt(d);
      ck[k] = W(l);
      dmax = std::max(dmax, d);
      dmin = std::min(dmin, d);
      const double inv = 1.0 / l;
      if (k < dense_from) {
        const index_t* rows = rows_all + ptr[k];
        const index_t cnt = ptr[k + 1] - ptr[k];
        for (index_t q = 0; q < cnt; ++q) ck[rows[q]] *= inv;
        for (index_t q = 0; q < cnt; ++q) {
          const index_t j = rows[q];
          const W ljk = conj_of(ck[j]);
          W* cj = a + j * n;
          for (index_t r = q; r < cnt; ++r) cj[rows[r]] -= ck[rows[r]] * ljk;
        }
        continue;
      }
      for (index_t i = k + 1; i < n; ++i) ck[i] *= inv;
      for (index_t j = k + 1; j < n; ++j) {
        const W ljk = conj_of(ck[j]);
        if (ljk == W(0.0)) continue;
        W* cj = a + j * n;
        for (index_t i = j; i < n; ++i) cj[i] -= ck[i] * ljk;
      }
    }
    if (n > 0 && dmin / dmax < std::numeric_limits<double>::epsilon())
      fail(ErrorKind::SingularMatrix, "singular to working precision: pivot ratio ", dmin / dmax, " (Cholesky)");
    // Keep L compactly.
    const index_t t = n - dense_from, nnz = ptr[dense_from];
    vals.resize(static_cast<std::size_t>(n + nnz + t * t));
    W* diag = vals.data();
    W* lx = diag + n;
    W* tail = lx + nnz;
    for (index_t k = 0; k < n; ++k) diag[k] = a[k + k * n];
    for (index_t k = 0; k < dense_from; ++k)
      for (index_t q = ptr[k]; q < ptr[k + 1]; ++q) lx[q] = a[rows_all[q] + k * n];
    for (index_t j = 0; j < t; ++j)
      for (index_t i = j; i < t; ++i) tail[i + j * t] = a[(dense_from + i) + (dense_from + j) * n];
  }

  // LU with partial pivoting of the permuted block in a (n x n, column-major, all filled). Throws
  // SingularMatrix (a zero or tiny pivot, or a NaN).
  void factor_lu(W* a, const SmallSymbolic& s) {
    cholesky = false;
    dense_from = 0;
    ints.resize(2 * static_cast<std::size_t>(n));
    std::copy(s.perm.begin(), s.perm.end(), ints.begin());
    index_t* piv = ints.data() + n;
    auto at = [&](index_t i, index_t j) -> W& { return a[i + j * n]; };
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
      piv[k] = p;
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
    vals.assign(a, a + static_cast<std::size_t>(n) * static_cast<std::size_t>(n));
  }

  // Solve op(A) x = b in place (x holds b on entry); work: n entries of scratch.
  void solve(W* x, Op op, W* work) const {
    const index_t* p = perm();
    for (index_t i = 0; i < n; ++i) work[i] = x[p[i]];
    if (cholesky)  // A = L L^H is Hermitian: op does not matter
      solve_cholesky(work);
    else
      solve_lu(work, op);
    for (index_t i = 0; i < n; ++i) x[p[i]] = work[i];
  }

 private:
  void solve_cholesky(W* x) const {
    const W* diag = vals.data();
    const W* lx = diag + n;
    const index_t* ptr = lptr();
    const index_t* rows = lrows();
    const index_t t = n - dense_from;
    const W* tail = lx + ptr[dense_from];
    W* xt = x + dense_from;
    for (index_t k = 0; k < dense_from; ++k) {  // L y = b, column by column
      const W yk = x[k] / diag[k];
      x[k] = yk;
      for (index_t q = ptr[k]; q < ptr[k + 1]; ++q) x[rows[q]] -= lx[q] * yk;
    }
    for (index_t k = 0; k < t; ++k) {
      const W* ck = tail + k * t;
      const W yk = xt[k] / ck[k];
      xt[k] = yk;
      for (index_t i = k + 1; i < t; ++i) xt[i] -= ck[i] * yk;
    }
    for (index_t i = t; i-- > 0;) {  // L^H x = y: row i of L^H is column i of L
      const W* ci = tail + i * t;
      W s = xt[i];
      for (index_t k = i + 1; k < t; ++k) s -= conj_of(ci[k]) * xt[k];
      xt[i] = s / conj_of(ci[i]);
    }
    for (index_t i = dense_from; i-- > 0;) {
      W s = x[i];
      for (index_t q = ptr[i]; q < ptr[i + 1]; ++q) s -= conj_of(lx[q]) * x[rows[q]];
      x[i] = s / conj_of(diag[i]);
    }
  }

  void solve_lu(W* x, Op op) const {
    const index_t* piv = pivots();
    auto at = [&](index_t i, index_t j) { return vals[static_cast<std::size_t>(i + j * n)]; };
    if (op == Op::N) {  // P A = L U: x = U^{-1} L^{-1} P b
      for (index_t k = 0; k < n; ++k) std::swap(x[k], x[piv[k]]);
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
    for (index_t k = n; k-- > 0;) std::swap(x[k], x[piv[k]]);
  }
};

// -- analyses per distinct block pattern ------------------------------------------------------------------
// A hash of a block's key, for bucketing only: equal keys are confirmed entry by entry (same_arrays), so
// the hash reads the sizes and a fixed sample of the indices (at most 2 x 128 entries), whatever the size.
std::uint64_t key_hash(Backend backend, Method method, ScalarType scalar, const CsrView<std::int64_t>& p) {
  std::uint64_t h = 0x9e3779b97f4a7c15ULL;
  auto mix = [&h](std::uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdULL;
  };
  mix(static_cast<std::uint64_t>(backend));
  mix(static_cast<std::uint64_t>(method));
  mix(static_cast<std::uint64_t>(scalar));
  mix(static_cast<std::uint64_t>(p.n_rows));
  const index_t nnz = static_cast<index_t>(p.indptr[p.n_rows]);
  mix(static_cast<std::uint64_t>(nnz));
  constexpr index_t kSamples = 128;
  const index_t row_step = std::max<index_t>(1, p.n_rows / kSamples), entry_step = std::max<index_t>(1, nnz / kSamples);
  for (index_t r = 1; r <= p.n_rows; r += row_step) mix(static_cast<std::uint64_t>(p.indptr[r]));
  for (index_t e = 0; e < nnz; e += entry_step) mix(static_cast<std::uint64_t>(p.indices[e]));
  return h;
}

template <class I>
bool same_arrays(const CsrView<I>& a, const CsrView<std::int64_t>& b) {
  const index_t nnz = static_cast<index_t>(b.indptr[b.n_rows]);
  for (index_t r = 0; r <= b.n_rows; ++r)
    if (static_cast<std::int64_t>(a.indptr[r]) != b.indptr[r]) return false;
  for (index_t e = 0; e < nnz; ++e)
    if (static_cast<std::int64_t>(a.indices[e]) != b.indices[e]) return false;
  return true;
}

// The key of one analysis: what it was made for, and its own copy of the block's pattern.
struct BlockKey {
  Backend backend;
  Method method;
  ScalarType scalar;
  std::uint64_t hash;
  CsrPattern pattern;

  bool matches(Backend b, Method m, ScalarType s, std::uint64_t h, const CsrView<std::int64_t>& p) const {
    if (h != hash || b != backend || m != method || s != scalar) return false;
    if (pattern.n_rows() != p.n_rows || pattern.nnz() != static_cast<index_t>(p.indptr[p.n_rows])) return false;
    return pattern.index32() ? same_arrays(pattern.view<std::int32_t>(), p)
                             : same_arrays(pattern.view<std::int64_t>(), p);
  }
};

std::shared_ptr<const BlockKey> make_key(Backend b, Method m, ScalarType s, std::uint64_t h,
                                         const CsrView<std::int64_t>& p) {
  const index_t nnz = static_cast<index_t>(p.indptr[p.n_rows]);
  return std::make_shared<const BlockKey>(BlockKey{b, m, s, h, CsrPattern::copy_of(p, p.n_rows + 1, nnz, "A block")});
}

}  // namespace

struct BlockAnalysisCache::Impl {
  struct Entry {
    std::shared_ptr<const BlockKey> key;
    std::shared_ptr<const Symbolic> sym;
    std::size_t bytes;
  };
  using Iter = std::list<Entry>::iterator;
  mutable std::mutex mutex;
  mutable std::list<Entry> lru;  // most recently used first
  std::unordered_multimap<std::uint64_t, Iter> index;
  std::size_t bytes = 0, limit = 0;
  mutable std::size_t hits = 0, misses = 0;

  // The entry for the key, or lru.end(); the caller holds the mutex.
  Iter locate(Backend b, Method m, ScalarType s, std::uint64_t h, const CsrView<std::int64_t>& p) const {
    auto [lo, hi] = index.equal_range(h);
    for (auto it = lo; it != hi; ++it)
      if (it->second->key->matches(b, m, s, h, p)) return it->second;
    return lru.end();
  }
  void erase(Iter it) {
    auto [lo, hi] = index.equal_range(it->key->hash);
    for (auto j = lo; j != hi; ++j)
      if (j->second == it) {
        index.erase(j);
        break;
      }
    bytes -= it->bytes;
    lru.erase(it);
  }
  void evict() {
    while (bytes > limit && !lru.empty()) erase(std::prev(lru.end()));
  }
};

BlockAnalysisCache::BlockAnalysisCache(std::size_t limit_bytes) : impl_(std::make_unique<Impl>()) {
  impl_->limit = limit_bytes;
}
BlockAnalysisCache::~BlockAnalysisCache() = default;

void BlockAnalysisCache::set_limit(std::size_t limit_bytes) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->limit = limit_bytes;
  impl_->evict();
}

void BlockAnalysisCache::clear() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->lru.clear();
  impl_->index.clear();
  impl_->bytes = 0;
}

BlockAnalysisCache::Stats BlockAnalysisCache::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return {impl_->lru.size(), impl_->bytes, impl_->limit, impl_->hits, impl_->misses};
}

std::shared_ptr<const Symbolic> BlockAnalysisCache::find(Backend backend, Method method, ScalarType scalar,
                                                         const CsrView<std::int64_t>& pattern) const {
  const std::uint64_t h = key_hash(backend, method, scalar, pattern);
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const auto it = impl_->locate(backend, method, scalar, h, pattern);
  if (it == impl_->lru.end()) {
    ++impl_->misses;
    return nullptr;
  }
  ++impl_->hits;
  impl_->lru.splice(impl_->lru.begin(), impl_->lru, it);  // iterators stay valid
  return it->sym;
}

std::shared_ptr<const Symbolic> BlockAnalysisCache::put(Backend backend, Method method, ScalarType scalar,
                                                        const CsrView<std::int64_t>& pattern,
                                                        std::shared_ptr<const Symbolic> sym) {
  if (!sym) fail(ErrorKind::InvalidArgument, "BlockAnalysisCache::put: empty analysis");
  const std::uint64_t h = key_hash(backend, method, scalar, pattern);
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    const auto it = impl_->locate(backend, method, scalar, h, pattern);
    if (it != impl_->lru.end()) return it->sym;
    if (impl_->limit == 0) return sym;
  }
  auto key = make_key(backend, method, scalar, h, pattern);  // the copy outside the lock
  const std::size_t bytes = sym->memory_bytes() + key->pattern.memory_bytes();
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const auto it = impl_->locate(backend, method, scalar, h, pattern);
  if (it != impl_->lru.end()) return it->sym;
  if (bytes > impl_->limit) return sym;
  impl_->lru.push_front({std::move(key), sym, bytes});
  impl_->index.emplace(h, impl_->lru.begin());
  impl_->bytes += bytes;
  impl_->evict();
  return sym;
}

namespace {

// The analyses of one factorize_blocks call: looked up in the cache when there is one; otherwise one per
// distinct (pattern, backend, method, scalar), made by the first block that needs it while the others with
// that pattern wait for it, and added to the cache.
class CallAnalyses {
 public:
  explicit CallAnalyses(BlockAnalysisCache* cache) : cache_(cache) {}

  std::shared_ptr<const Symbolic> get(Backend b, Method m, ScalarType s, const CsrView<std::int64_t>& p) {
    // A cached analysis first: no key to copy for this call.
    if (cache_ != nullptr) {
      if (auto sym = cache_->find(b, m, s, p)) {
        ++reused_;
        return sym;
      }
    }
    const std::uint64_t h = key_hash(b, m, s, p);
    std::shared_ptr<Slot> slot;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto [lo, hi] = slots_.equal_range(h);
      for (auto it = lo; it != hi && !slot; ++it)
        if (it->second->key->matches(b, m, s, h, p)) slot = it->second;
      if (!slot) {
        slot = std::make_shared<Slot>();
        slot->key = make_key(b, m, s, h, p);
        slots_.emplace(h, slot);
      }
    }
    std::lock_guard<std::mutex> lock(slot->mutex);  // the blocks of this pattern wait for its analysis
    if (slot->sym) {
      ++reused_;
      return slot->sym;
    }
    // Each block is factorized on one thread (the BLAS single-threaded while blocks run in parallel).
    AnalyzeOptions one_thread;
    one_thread.threads = 1;
    auto sym = sla::analyze(b, m, s, p, Ordering::Default, one_thread);
    ++analysed_;
    slot->sym = cache_ != nullptr ? cache_->put(b, m, s, p, std::move(sym)) : std::move(sym);
    return slot->sym;
  }
  index_t analysed() const { return analysed_.load(); }
  index_t reused() const { return reused_.load(); }

 private:
  struct Slot {
    std::shared_ptr<const BlockKey> key;
    std::mutex mutex;
    std::shared_ptr<const Symbolic> sym;
  };
  BlockAnalysisCache* cache_;
  std::mutex mutex_;
  std::unordered_multimap<std::uint64_t, std::shared_ptr<Slot>> slots_;
  std::atomic<index_t> analysed_{0}, reused_{0};
};

// Below this many stored entries (factorization) or unknowns times right-hand sides (solve) a batch runs
// on the calling thread: waking a team costs more than the work, and much more on a busy machine.
constexpr index_t kSerialWork = 4096;

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
  index_t analyses() const override { return analyses_; }
  index_t analyses_reused() const override { return analyses_reused_; }
  index_t cholesky_blocks() const override {
    index_t c = 0;
    for (char v : chosen_cholesky_) c += v;
    return c;
  }

  void solve(const void* b, void* x, index_t nrhs, Op op, int threads) const override {
    const index_t nb = blocks();
    // A few thousand unknowns take microseconds: not worth waking threads for.
    const int t = n_ * nrhs < kSerialWork ? 1 : detail::batch_threads(threads);
    detail::BlasThreadsScope blas(t > 1 ? 1 : detail::kKeepBlasThreads);
    std::exception_ptr other;
    auto run = [&](index_t k) {
      try {
        solve_block(k, b, x, nrhs, op);
      } catch (...) {
#pragma omp critical(sla_blocks_solve)
        if (!other) other = std::current_exception();
      }
    };
    if (t > 1 && nb > 1) {
      detail::SerialNestedRegions nested;
#pragma omp parallel for schedule(dynamic, 16) num_threads(t)
      for (index_t k = 0; k < nb; ++k) run(k);
    } else {
      for (index_t k = 0; k < nb; ++k) run(k);
    }
    if (other) std::rethrow_exception(other);
  }

  void factorize(Backend backend, Method method, const CsrPattern& pattern, const void* values,
                 const BlockOptions& options) {
    const index_t nb = blocks();
    const int t = pattern.nnz() < kSerialWork ? 1 : detail::batch_threads(options.threads);
    detail::BlasThreadsScope blas(t > 1 ? 1 : detail::kKeepBlasThreads);
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(nb));
    std::vector<char> fell_back(static_cast<std::size_t>(nb), 0);
    std::exception_ptr other;
    const bool i32 = pattern.index32();
    CallAnalyses analyses(options.cache);
    auto run = [&](index_t k) {
      try {
        if (i32)
          factor_block(k, backend, method, pattern.view<std::int32_t>(), values, options, fell_back, analyses);
        else
          factor_block(k, backend, method, pattern.view<std::int64_t>(), values, options, fell_back, analyses);
      } catch (const Error&) {
        errors[static_cast<std::size_t>(k)] = std::current_exception();
      } catch (...) {
#pragma omp critical(sla_blocks_factor)
        if (!other) other = std::current_exception();
      }
    };
    if (t > 1 && nb > 1) {
      detail::SerialNestedRegions nested;
#pragma omp parallel for schedule(dynamic, 4) num_threads(t)
      for (index_t k = 0; k < nb; ++k) run(k);
    } else {  // no parallel region: the backends' own OpenMP regions stay top-level
      for (index_t k = 0; k < nb; ++k) run(k);
    }
    if (other) std::rethrow_exception(other);
    analyses_ = analyses.analysed();
    analyses_reused_ = analyses.reused();
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
  // out = values[e0 .. e0 + count) in the working precision.
  void load_values(const void* values, index_t e0, index_t count, std::vector<W>& out) const {
    out.resize(static_cast<std::size_t>(count));
    auto copy = [&](const auto* src) {
      for (index_t i = 0; i < count; ++i) out[static_cast<std::size_t>(i)] = W(src[e0 + i]);
    };
    switch (scalar_) {
      case ScalarType::Float32: copy(static_cast<const float*>(values)); return;
      case ScalarType::Float64: copy(static_cast<const double*>(values)); return;
      case ScalarType::Complex64:
      case ScalarType::Complex128:
        for (index_t i = 0; i < count; ++i) out[static_cast<std::size_t>(i)] = load<W>(values, scalar_, e0 + i);
        return;
    }
  }

  // Whether block [r0, r1) is Hermitian (up to 100 units of roundoff of its largest entry; a missing mirrored
  // entry counts as zero) with a positive real diagonal: the rule of method "auto" for Cholesky. v: the
  // block's values from its first entry. One pass over the rows: the entries right of the diagonal of
  // each row are met, as mirrors, by the rows below in column order, so a cursor per row finds them.
  template <class I>
  static bool hermitian_positive_diagonal(const CsrView<I>& p, const W* v, index_t r0, index_t r1) {
    const index_t e0 = static_cast<index_t>(p.indptr[r0]), e1 = static_cast<index_t>(p.indptr[r1]);
    double scale = 0.0;
    for (index_t e = e0; e < e1; ++e) scale = std::max(scale, std::abs(v[e - e0]));
    const double tol = 100.0 * std::numeric_limits<double>::epsilon() * scale;
    thread_local std::vector<index_t> cursor_buffer;
    std::vector<index_t>& cursor = cursor_buffer;  // per row: its next entry right of the diagonal
    cursor.resize(static_cast<std::size_t>(r1 - r0));
    for (index_t r = r0; r < r1; ++r) {
      index_t e = static_cast<index_t>(p.indptr[r]);
      const index_t end = static_cast<index_t>(p.indptr[r + 1]);
      while (e < end && static_cast<index_t>(p.indices[e]) < r) ++e;
      if (e == end || static_cast<index_t>(p.indices[e]) != r) return false;  // no diagonal entry
      const W d = v[e - e0];
      if (!(std::real(d) > 0.0) || std::abs(std::imag(std::complex<double>(d))) > tol) return false;
      cursor[static_cast<std::size_t>(r - r0)] = e + 1;
    }
    for (index_t r = r0; r < r1; ++r)
      for (index_t e = static_cast<index_t>(p.indptr[r]); e < static_cast<index_t>(p.indptr[r + 1]); ++e) {
        const index_t c = static_cast<index_t>(p.indices[e]);
        if (c >= r) break;
        // The mirror (c, r) in row c. Entries of row c before it have no mirror (theirs came earlier).
        index_t& q = cursor[static_cast<std::size_t>(c - r0)];
        const index_t end = static_cast<index_t>(p.indptr[c + 1]);
        for (; q < end && static_cast<index_t>(p.indices[q]) < r; ++q)
          if (std::abs(v[q - e0]) > tol) return false;
        W mirror(0.0);
        if (q < end && static_cast<index_t>(p.indices[q]) == r) mirror = v[q++ - e0];
        if (std::abs(v[e - e0] - conj_of(mirror)) > tol) return false;
      }
    for (index_t c = r0; c < r1; ++c)  // what is left right of the diagonal has no mirror
      for (index_t q = cursor[static_cast<std::size_t>(c - r0)]; q < static_cast<index_t>(p.indptr[c + 1]); ++q)
        if (std::abs(v[q - e0]) > tol) return false;
    return true;
  }

  template <class I>
  void factor_block(index_t k, Backend backend, Method method, const CsrView<I>& p, const void* values,
                    const BlockOptions& options, std::vector<char>& fell_back, CallAnalyses& analyses) {
    if (k % 64 == 0) poll_interrupt();
    const auto ks = static_cast<std::size_t>(k);
    const index_t r0 = offsets_[ks], r1 = offsets_[ks + 1], m = r1 - r0;
    if (m == 0) return;
    const index_t e0 = static_cast<index_t>(p.indptr[r0]), e1 = static_cast<index_t>(p.indptr[r1]);
    // The block's values in the working precision (converted once when they are in another).
    thread_local std::vector<W> value_buffer;
    const W* v = static_cast<const W*>(values) + e0;
    if (scalar_ != scalar_tag<W>::value) {
      load_values(values, e0, e1 - e0, value_buffer);
      v = value_buffer.data();
    }
    if (options.check_finite)
      for (index_t e = e0; e < e1; ++e)
        if (!std::isfinite(std::abs(v[static_cast<std::size_t>(e - e0)]))) {
          index_t r = r0;
          while (static_cast<index_t>(p.indptr[r + 1]) <= e) ++r;
          fail(ErrorKind::InvalidArgument, "A: a NaN or infinite value at (", r, ", ", p.indices[e],
               ") (pass check_finite=False to skip this check)");
        }
    bool fallback = options.fallback_lu;
    if (options.auto_method) {  // per block: Cholesky (LU if it breaks down) for Hermitian matrices with a
                                // positive real diagonal, else LU
      method = hermitian_positive_diagonal(p, v, r0, r1) ? Method::Cholesky : Method::LU;
      fallback = true;
    }
    if (method == Method::Cholesky) chosen_cholesky_[ks] = 1;
    if (m <= options.dense_max) {
      SmallFactor<W> f;
      f.n = m;
      thread_local SmallSymbolic symbolic_buffer;
      thread_local std::vector<index_t> pinv_buffer;
      thread_local std::vector<W> scratch_buffer;
      SmallSymbolic& symbolic = symbolic_buffer;
      std::vector<index_t>& pinv = pinv_buffer;
      std::vector<W>& a = scratch_buffer;
      min_degree_symbolic(p, r0, m, symbolic);
      pinv.resize(static_cast<std::size_t>(m));
      for (index_t i = 0; i < m; ++i) pinv[static_cast<std::size_t>(symbolic.perm[static_cast<std::size_t>(i)])] = i;
      // The permuted block in the scratch matrix; for Cholesky its lower triangle from A's lower triangle
      // only, as the sparse backends read it (an entry that the permutation moves above the diagonal goes
      // to its mirror).
      auto fill = [&](bool lower) {
        a.assign(static_cast<std::size_t>(m * m), W(0.0));
        for (index_t r = r0; r < r1; ++r)
          for (index_t e = static_cast<index_t>(p.indptr[r]); e < static_cast<index_t>(p.indptr[r + 1]); ++e) {
            const index_t c = static_cast<index_t>(p.indices[e]);
            if (lower && c > r) continue;
            const index_t i = pinv[static_cast<std::size_t>(r - r0)], j = pinv[static_cast<std::size_t>(c - r0)];
            const W x = v[static_cast<std::size_t>(e - e0)];
            if (lower && i < j)
              a[static_cast<std::size_t>(j + i * m)] = conj_of(x);
            else
              a[static_cast<std::size_t>(i + j * m)] = x;
          }
      };
      if (method == Method::Cholesky) {
        fill(true);
        try {
          f.factor_cholesky(a.data(), symbolic);
        } catch (const Error& e) {
          if (e.kind() != ErrorKind::NotPositiveDefinite || !fallback) throw;
          fell_back[ks] = 1;
          fill(false);
          f.factor_lu(a.data(), symbolic);
        }
      } else {
        fill(false);
        f.factor_lu(a.data(), symbolic);
      }
      dense_[ks] = std::move(f);
      return;
    }
    // A large block: its own sparse analysis and factorization. Its pattern renumbered from 0 (buffers per
    // thread, reused: no allocation, and no fresh pages, per block).
    thread_local std::vector<std::int64_t> indptr_buffer, indices_buffer;
    std::vector<std::int64_t>&indptr = indptr_buffer, &indices = indices_buffer;
    indptr.resize(static_cast<std::size_t>(m + 1));
    indices.resize(static_cast<std::size_t>(e1 - e0));
    for (index_t r = r0; r <= r1; ++r)
      indptr[static_cast<std::size_t>(r - r0)] = static_cast<std::int64_t>(p.indptr[r]) - e0;
    for (index_t e = e0; e < e1; ++e)
      indices[static_cast<std::size_t>(e - e0)] = static_cast<std::int64_t>(p.indices[e]) - r0;
    CsrView<std::int64_t> view{m, m, indptr.data(), indices.data()};
    const char* block_values = static_cast<const char*>(values) + e0 * static_cast<index_t>(scalar_size(scalar_));
    try {
      sparse_[ks] = sla::factorize(analyses.get(backend, method, scalar_, view), block_values);
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::NotPositiveDefinite || !fallback) throw;
      fell_back[ks] = 1;
      sparse_[ks] = sla::factorize(analyses.get(backend, Method::LU, scalar_, view), block_values);
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
        std::copy_n(static_cast<const char*>(b) + (r0 + j * n_) * static_cast<index_t>(sz),
                    m * static_cast<index_t>(sz), bb.data() + j * m * static_cast<index_t>(sz));
      sparse_[ks]->solve(bb.data(), xx.data(), nrhs, op);
      for (index_t j = 0; j < nrhs; ++j)
        std::copy_n(xx.data() + j * m * static_cast<index_t>(sz), m * static_cast<index_t>(sz),
                    static_cast<char*>(x) + (r0 + j * n_) * static_cast<index_t>(sz));
      return;
    }
    thread_local std::vector<W> col, work;  // buffers per thread, reused by every block it solves
    col.resize(static_cast<std::size_t>(m));
    work.resize(static_cast<std::size_t>(m));
    for (index_t j = 0; j < nrhs; ++j) {
      if (scalar_ == scalar_tag<W>::value) {  // the working precision: solve in place in x
        W* xj = static_cast<W*>(x) + r0 + j * n_;
        std::copy_n(static_cast<const W*>(b) + r0 + j * n_, m, xj);
        dense_[ks].solve(xj, op, work.data());
        continue;
      }
      for (index_t i = 0; i < m; ++i) col[static_cast<std::size_t>(i)] = load<W>(b, scalar_, r0 + i + j * n_);
      dense_[ks].solve(col.data(), op, work.data());
      for (index_t i = 0; i < m; ++i) store<W>(x, scalar_, r0 + i + j * n_, col[static_cast<std::size_t>(i)]);
    }
  }

  ScalarType scalar_;
  index_t n_;
  std::vector<index_t> offsets_;
  std::vector<SmallFactor<W>> dense_;
  std::vector<std::unique_ptr<Numeric>> sparse_;
  std::vector<char> failed_;
  std::vector<char> chosen_cholesky_;  // the block was factorized (or first tried) by Cholesky
  std::vector<BlockError> errors_;
  index_t dense_count_ = 0, sparse_count_ = 0, fallbacks_ = 0, analyses_ = 0, analyses_reused_ = 0;
};

// Whether every entry of block k lies in its rows and columns.
template <class I>
bool block_is_closed(const CsrView<I>& p, const index_t* offsets, index_t k) {
  const index_t lo = offsets[k], hi = offsets[k + 1];
  for (index_t e = static_cast<index_t>(p.indptr[lo]); e < static_cast<index_t>(p.indptr[hi]); ++e) {
    const index_t c = static_cast<index_t>(p.indices[e]);
    if (c < lo || c >= hi) return false;
  }
  return true;
}

template <class I>
void check_blocks(const CsrView<I>& p, const index_t* offsets, index_t nblocks, int threads) {
  if (nblocks < 0) fail(ErrorKind::InvalidArgument, "offsets: need at least one entry");
  if (offsets[0] != 0) fail(ErrorKind::InvalidArgument, "offsets: must start at 0, got ", offsets[0]);
  if (offsets[nblocks] != p.n_rows)
    fail(ErrorKind::InvalidArgument, "offsets: must end at the number of rows ", p.n_rows, ", got ", offsets[nblocks]);
  for (index_t k = 0; k < nblocks; ++k)
    if (offsets[k + 1] < offsets[k])
      fail(ErrorKind::InvalidArgument, "offsets: must be non-decreasing, but offsets[", k + 1, "] = ", offsets[k + 1],
           " < offsets[", k, "] = ", offsets[k]);
  // The entries of every block (in parallel: one pass over the whole pattern), then the first block that
  // fails, named with its first entry outside.
  index_t first_open = nblocks;
  const int t = p.indptr[p.n_rows] < 4 * kSerialWork ? 1 : threads;
#pragma omp parallel for schedule(static) reduction(min : first_open) num_threads(t) if (t > 1)
  for (index_t k = 0; k < nblocks; ++k)
    if (!block_is_closed(p, offsets, k)) first_open = std::min(first_open, k);
  if (first_open == nblocks) return;
  const index_t k = first_open;
  for (index_t r = offsets[k]; r < offsets[k + 1]; ++r)
    for (index_t e = static_cast<index_t>(p.indptr[r]); e < static_cast<index_t>(p.indptr[r + 1]); ++e) {
      const index_t c = static_cast<index_t>(p.indices[e]);
      if (c < offsets[k] || c >= offsets[k + 1])
        fail(ErrorKind::InvalidArgument, "A: entry (", r, ", ", c, ") couples block ", k, " (rows and columns ",
             offsets[k], " to ", offsets[k + 1] - 1, ") to another block; the matrix is not block diagonal");
    }
}

}  // namespace

std::unique_ptr<BlockFactors> factorize_blocks(Backend backend, Method method, ScalarType scalar,
                                               const CsrPattern& pattern, const index_t* offsets, index_t nblocks,
                                               const void* values, const BlockOptions& options) {
  if (pattern.n_rows() != pattern.n_cols())
    fail(ErrorKind::InvalidArgument, "A: expected a square matrix, got ", pattern.n_rows(), " x ", pattern.n_cols());
  const int threads = detail::batch_threads(options.threads);
  if (pattern.index32())
    check_blocks(pattern.view<std::int32_t>(), offsets, nblocks, threads);
  else
    check_blocks(pattern.view<std::int64_t>(), offsets, nblocks, threads);
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
