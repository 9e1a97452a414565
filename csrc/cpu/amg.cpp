// Smoothed-aggregation AMG: setup (strength, aggregation, smoothed prolongator, Galerkin products), the
// values-only re-setup, and the V/W cycle with Jacobi, Chebyshev and symmetric Gauss-Seidel smoothers.
#include "sla/amg.hpp"

#include <Eigen/Dense>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <mutex>
#include <sstream>

#include "krylov_kernels.hpp"
#include "sla/direct.hpp"
#include "sla/errors.hpp"
#include "sla/interrupt.hpp"

namespace sla::detail {
namespace {

using J = std::int32_t;

// A CSR pattern owned by the hierarchy (int64 row pointers, int32 sorted columns).
struct Pat {
  index_t rows = 0, cols = 0;
  std::vector<std::int64_t> p{0};
  std::vector<J> j;
  index_t nnz() const { return p.back(); }
};
using PatPtr = std::shared_ptr<const Pat>;

// C = A B: the pattern, rows in parallel, each row's columns sorted.
PatPtr spgemm_pattern(const Pat& A, const Pat& B, int threads) {
  auto C = std::make_shared<Pat>();
  C->rows = A.rows;
  C->cols = B.cols;
  C->p.assign(A.rows + 1, 0);
#pragma omp parallel num_threads(clamp_threads(threads))
  {
    std::vector<index_t> mark(B.cols, -1);
#pragma omp for schedule(dynamic, 512)
    for (index_t i = 0; i < A.rows; ++i) {
      index_t count = 0;
      for (auto q = A.p[i]; q < A.p[i + 1]; ++q) {
        const J k = A.j[q];
        for (auto t = B.p[k]; t < B.p[k + 1]; ++t)
          if (mark[B.j[t]] != i) mark[B.j[t]] = i, ++count;
      }
      C->p[i + 1] = count;
    }
  }
  for (index_t i = 0; i < A.rows; ++i) C->p[i + 1] += C->p[i];
  C->j.resize(C->p[A.rows]);
#pragma omp parallel num_threads(clamp_threads(threads))
  {
    std::vector<index_t> mark(B.cols, -1);
#pragma omp for schedule(dynamic, 512)
    for (index_t i = 0; i < A.rows; ++i) {
      auto out = C->p[i];
      for (auto q = A.p[i]; q < A.p[i + 1]; ++q) {
        const J k = A.j[q];
        for (auto t = B.p[k]; t < B.p[k + 1]; ++t)
          if (mark[B.j[t]] != i) mark[B.j[t]] = i, C->j[out++] = B.j[t];
      }
      std::sort(C->j.begin() + C->p[i], C->j.begin() + C->p[i + 1]);
    }
  }
  return C;
}

// Values of C = A B on C's known pattern.
template <class T>
void spgemm_values(const Pat& A, const T* av, const Pat& B, const T* bv, const Pat& C, T* cv, int threads) {
#pragma omp parallel num_threads(clamp_threads(threads))
  {
    std::vector<index_t> pos(C.cols, -1);
#pragma omp for schedule(dynamic, 512)
    for (index_t i = 0; i < A.rows; ++i) {
      for (auto q = C.p[i]; q < C.p[i + 1]; ++q) pos[C.j[q]] = q, cv[q] = T(0);
      for (auto q = A.p[i]; q < A.p[i + 1]; ++q) {
        const T a = av[q];
        const J k = A.j[q];
        for (auto t = B.p[k]; t < B.p[k + 1]; ++t) cv[pos[B.j[t]]] += a * bv[t];
      }
      for (auto q = C.p[i]; q < C.p[i + 1]; ++q) pos[C.j[q]] = -1;
    }
  }
}

// The transpose's pattern, and perm with transpose_values[q] = values[perm[q]].
PatPtr transpose_pattern(const Pat& A, std::vector<std::int64_t>& perm) {
  auto T = std::make_shared<Pat>();
  T->rows = A.cols;
  T->cols = A.rows;
  T->p.assign(A.cols + 1, 0);
  for (index_t q = 0; q < A.nnz(); ++q) ++T->p[A.j[q] + 1];
  for (index_t c = 0; c < A.cols; ++c) T->p[c + 1] += T->p[c];
  T->j.resize(A.nnz());
  perm.resize(A.nnz());
  std::vector<std::int64_t> next(T->p.begin(), T->p.end() - 1);
  for (index_t i = 0; i < A.rows; ++i)
    for (auto q = A.p[i]; q < A.p[i + 1]; ++q) {
      const auto dst = next[A.j[q]]++;
      T->j[dst] = static_cast<J>(i);
      perm[dst] = q;
    }
  return T;
}

template <class T>
void spmv(const Pat& A, const T* v, const T* x, T* y, int threads) {
#pragma omp parallel for schedule(static) num_threads(clamp_threads(threads))
  for (index_t i = 0; i < A.rows; ++i) {
    T s{};
    for (auto q = A.p[i]; q < A.p[i + 1]; ++q) s += v[q] * x[A.j[q]];
    y[i] = s;
  }
}

// r = b - A x
template <class T>
void residual(const Pat& A, const T* v, const T* x, const T* b, T* r, int threads) {
#pragma omp parallel for schedule(static) num_threads(clamp_threads(threads))
  for (index_t i = 0; i < A.rows; ++i) {
    T s = b[i];
    for (auto q = A.p[i]; q < A.p[i + 1]; ++q) s -= v[q] * x[A.j[q]];
    r[i] = s;
  }
}

// A small dense LU factorization with partial pivoting (serial, column-major) for the last level.
template <class T>
struct DenseLu {
  index_t n = 0;
  std::vector<T> a;  // L (unit, below the diagonal) and U, column-major
  std::vector<index_t> piv;
  double pivot_ratio = 1.0;  // min |u_kk| / max |u_kk|

  void factor(const Pat& A, const T* v) {
    n = A.rows;
    a.assign(static_cast<size_t>(n) * n, T(0));
    for (index_t i = 0; i < n; ++i)
      for (auto q = A.p[i]; q < A.p[i + 1]; ++q) a[static_cast<size_t>(A.j[q]) * n + i] = v[q];
    piv.resize(n);
    double pmax = 0.0, pmin = std::numeric_limits<double>::infinity();
    for (index_t k = 0; k < n; ++k) {
      T* ck = a.data() + static_cast<size_t>(k) * n;
      index_t p = k;
      for (index_t i = k + 1; i < n; ++i)
        if (std::abs(ck[i]) > std::abs(ck[p])) p = i;
      piv[k] = p;
      if (p != k)
        for (index_t j = 0; j < n; ++j) std::swap(a[static_cast<size_t>(j) * n + k], a[static_cast<size_t>(j) * n + p]);
      const double d = std::abs(static_cast<double>(ck[k]));
      pmax = std::max(pmax, d);
      pmin = std::min(pmin, d);
      if (d == 0.0) continue;
      const T inv = T(1) / ck[k];
      for (index_t i = k + 1; i < n; ++i) ck[i] *= inv;
      for (index_t j = k + 1; j < n; ++j) {
        T* cj = a.data() + static_cast<size_t>(j) * n;
        const T u = cj[k];
        if (u == T(0)) continue;
        for (index_t i = k + 1; i < n; ++i) cj[i] -= ck[i] * u;
      }
    }
    pivot_ratio = n == 0 ? 1.0 : pmin / pmax;
  }

  // x = A^{-1} b (tr: A^{-T} b), b and x of n values (may alias).
  void solve(const T* b, T* x, bool tr) const {
    if (x != b) std::copy(b, b + n, x);
    auto at = [&](index_t i, index_t j) { return a[static_cast<size_t>(j) * n + i]; };
    if (!tr) {  // P A = L U: x = U^{-1} L^{-1} P b
      for (index_t k = 0; k < n; ++k) std::swap(x[k], x[piv[k]]);
      for (index_t j = 0; j < n; ++j)
        for (index_t i = j + 1; i < n; ++i) x[i] -= at(i, j) * x[j];
      for (index_t j = n - 1; j >= 0; --j) {
        x[j] /= at(j, j);
        for (index_t i = 0; i < j; ++i) x[i] -= at(i, j) * x[j];
      }
    } else {  // A^T = U^T L^T P: x = P^T L^{-T} U^{-T} b
      for (index_t i = 0; i < n; ++i) {
        T acc = x[i];
        for (index_t k = 0; k < i; ++k) acc -= at(k, i) * x[k];
        x[i] = acc / at(i, i);
      }
      for (index_t i = n - 1; i >= 0; --i) {
        T acc = x[i];
        for (index_t k = i + 1; k < n; ++k) acc -= at(k, i) * x[k];
        x[i] = acc;
      }
      for (index_t k = n - 1; k >= 0; --k) std::swap(x[k], x[piv[k]]);
    }
  }
};

// The structural pieces of one level, shared by every values-only re-setup.
struct LevelSym {
  // AT: only for a non-symmetric hierarchy; P, R, AP, Tent, PT: not on the last. PT is the pattern of A T
  // (Tent's), the smoothed prolongator's before truncation; P is PT or its truncation, with P's entry q at
  // PT's entry p_keep[q] (p_keep is empty when P is PT).
  // RAP: the pattern of the Galerkin product R A P, when the next level's operator is its sparsification
  // (with the next level's entry q at RAP's entry c_keep[q]; else null).
  PatPtr A, AT, P, R, AP, Tent, PT, RAP;
  std::vector<std::int64_t> at_perm, r_perm, p_keep, c_keep;
  // Nodes: the strength graph and the aggregates are those of nodes, node I being the rows
  // node_ptr[I] .. node_ptr[I + 1] - 1 (empty node_ptr: one row a node).
  std::vector<std::int64_t> node_ptr;
  std::vector<J> agg;  // aggregate of each node (-1: isolated, in no aggregate)
  index_t n_agg = 0;
  // Aggregate c's columns of the tentative prolongator (the next level's rows): cptr[c] .. cptr[c + 1] - 1,
  // one per near-null-space vector independent on the aggregate.
  std::vector<std::int64_t> cptr;
};

struct HierSym {
  std::vector<LevelSym> levels;
  std::shared_ptr<const Symbolic> coarse;
  std::vector<std::int64_t> coarse_p, coarse_j;  // the last level's pattern with int64 indices
  AmgOptions options;
  bool symmetric = true;
  int k = 1;                          // near-null-space vectors
  std::vector<std::int32_t> tpos0;    // level 0: the position of each entry's transpose (-1: not stored)
  std::vector<std::uint8_t> strong0;  // level 0's strong connections (for the same-strength reuse test)
};

// A values-only setup met an aggregate on which the new near-null space has another rank than the
// reused hierarchy's: its patterns do not fit (a full setup is done instead).
struct RankChanged {};

template <class T>
struct Level {
  std::vector<T> A, AT, P, R, AP, dinv;
  std::vector<T> B;          // the level's near-null space (n x k, row-major)
  std::vector<double> ritz;  // the eigenvector estimate of the spectral radius estimate
  double rho = 1.0;
};

constexpr index_t kDenseCoarse = 1000;  // a last level of at most this many rows is factorized dense
constexpr int kColdSteps = 12;          // Lanczos steps from a pseudo-random start
constexpr int kWarmSteps = 5;           // from the eigenvector estimate of a hierarchy on the same pattern

// rho(D^{-1} A), capped by the Gershgorin bound, by `steps` steps of Lanczos (symmetric A with a positive
// diagonal: D^{-1} A is self-adjoint in the D inner product; the largest Ritz value, accurate from below)
// or of power iteration (otherwise). `vec` holds the start vector (empty: a fixed pseudo-random one with
// oscillatory components) and returns the Ritz vector (Lanczos) or the last iterate (power iteration),
// a warm start for the next estimate on the same pattern (a values-only setup).
template <class T>
double spectral_radius_estimate(const Pat& A, const T* v, const std::vector<T>& dinv, bool symmetric, int threads,
                                std::vector<double>& vec, int steps) {
  const index_t n = A.rows;
  if (n == 0) return 1.0;
  const int th = clamp_threads(threads);
  double gersh = 0.0;
  int negative = 0;
#pragma omp parallel for schedule(static) reduction(max : gersh) reduction(+ : negative) num_threads(th)
  for (index_t i = 0; i < n; ++i) {
    double s = 0.0;
    for (auto q = A.p[i]; q < A.p[i + 1]; ++q) s += std::abs(static_cast<double>(v[q]));
    gersh = std::max(gersh, s * std::abs(static_cast<double>(dinv[i])));
    negative += !(dinv[i] > T(0));
  }
  const bool lanczos = symmetric && negative == 0;
  std::vector<double> w(n), prev(n, 0.0), y(n);
  if (static_cast<index_t>(vec.size()) == n) {
    w = vec;
  } else {
    std::uint64_t s = 0x9E3779B97F4A7C15ull;
    for (index_t i = 0; i < n; ++i) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      w[i] = 2.0 * static_cast<double>(s >> 11) / 9007199254740992.0 - 1.0;
    }
  }
  steps = static_cast<int>(std::min<index_t>(steps, n));
  double est = 0.0;
  if (lanczos) {
    // u_k = sc w (D-normalized), y = A u_k, alpha_k = u_k^T A u_k, w' = D^{-1} y - alpha_k u_k - beta_k u_{k-1},
    // beta_{k+1} = |w'|_D: two fused passes a step. The basis is kept (in float) for the Ritz vector.
    double nw = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : nw) num_threads(th)
    for (index_t i = 0; i < n; ++i) nw += w[i] * w[i] / static_cast<double>(dinv[i]);
    if (!(nw > 0.0)) return gersh > 0.0 ? gersh : 1.0;
    double sc = 1.0 / std::sqrt(nw), sc_prev = 0.0, b_prev = 0.0;
    std::vector<double> alpha, beta;
    std::unique_ptr<float[]> basis(new float[static_cast<size_t>(n) * steps]);
    for (int k = 0; k < steps; ++k) {
      float* u = basis.get() + static_cast<size_t>(k) * n;
      double a = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : a) num_threads(th)
      for (index_t i = 0; i < n; ++i) {
        double acc = 0.0;
        for (auto q = A.p[i]; q < A.p[i + 1]; ++q) acc += static_cast<double>(v[q]) * w[A.j[q]];
        y[i] = sc * acc;
        u[i] = static_cast<float>(sc * w[i]);
        a += sc * w[i] * y[i];
      }
      double b2 = 0.0;
      const double cp = b_prev * sc_prev;
#pragma omp parallel for schedule(static) reduction(+ : b2) num_threads(th)
      for (index_t i = 0; i < n; ++i) {
        const double di = static_cast<double>(dinv[i]);
        const double t = di * y[i] - a * sc * w[i] - cp * prev[i];
        y[i] = t;
        b2 += t * t / di;
      }
      alpha.push_back(a);
      const double b = std::sqrt(b2);
      if (!(b > 1e-10 * std::abs(a))) break;  // an invariant subspace: the estimate is exact
      if (k + 1 < steps) beta.push_back(b);
      prev.swap(w);  // prev = w_k (scale sc), w = w_{k+1} (scale 1 / b)
      w.swap(y);
      sc_prev = sc;
      sc = 1.0 / b;
      b_prev = b;
    }
    const index_t m = static_cast<index_t>(alpha.size());
    Eigen::VectorXd dg(m), off(std::max<index_t>(m - 1, 0));
    for (index_t k = 0; k < m; ++k) dg[k] = alpha[k];
    for (index_t k = 0; k + 1 < m; ++k) off[k] = beta[k];
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es;
    es.computeFromTridiagonal(dg, off, Eigen::ComputeEigenvectors);
    index_t top = 0;
    es.eigenvalues().maxCoeff(&top);
    est = es.eigenvalues()[top];
    vec.resize(n);
    std::vector<double> c(m);
    for (index_t k = 0; k < m; ++k) c[k] = es.eigenvectors()(k, top);
#pragma omp parallel for schedule(static) num_threads(th)
    for (index_t i = 0; i < n; ++i) {
      double acc = 0.0;
      for (index_t k = 0; k < m; ++k) acc += c[k] * static_cast<double>(basis[k * n + i]);
      vec[i] = acc;
    }
  } else {
    for (int it = 0; it < steps; ++it) {
      double nn = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : nn) num_threads(th)
      for (index_t i = 0; i < n; ++i) nn += w[i] * w[i];
      if (!(nn > 0.0)) break;
      const double sc = 1.0 / std::sqrt(nn);
      double ny = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : ny) num_threads(th)
      for (index_t i = 0; i < n; ++i) {
        double acc = 0.0;
        for (auto q = A.p[i]; q < A.p[i + 1]; ++q) acc += static_cast<double>(v[q]) * w[A.j[q]];
        y[i] = sc * acc * static_cast<double>(dinv[i]);
        ny += y[i] * y[i];
      }
      est = std::sqrt(ny);
      w.swap(y);
    }
    vec = std::move(w);
    est *= 1.05;  // power iteration approaches from below, slowly
  }
  if (!(est > 0.0) || !std::isfinite(est)) est = gersh;
  return std::min(est, gersh > 0.0 ? gersh : est);
}

// Strong connections: mask[q] = 1 when entry q (off the diagonal) is strong, |a_ij| >= theta sqrt(|a_ii a_jj|).
template <class T>
std::vector<std::uint8_t> strong_mask(const Pat& A, const T* v, double theta, int threads) {
  const index_t n = A.rows;
  std::vector<double> d(n, 0.0);
  std::vector<std::uint8_t> mask(A.nnz());
  const double t2 = theta * theta;
#pragma omp parallel num_threads(clamp_threads(threads))
  {
#pragma omp for schedule(static)
    for (index_t i = 0; i < n; ++i)
      for (auto q = A.p[i]; q < A.p[i + 1]; ++q)
        if (A.j[q] == i) d[i] = std::abs(static_cast<double>(v[q]));
#pragma omp for schedule(static)
    for (index_t i = 0; i < n; ++i)
      for (auto q = A.p[i]; q < A.p[i + 1]; ++q) {
        const J c = A.j[q];
        const double a = static_cast<double>(v[q]);
        mask[q] = c != i && a != 0.0 && a * a >= t2 * d[i] * d[c];
      }
  }
  return mask;
}

// The graph of nodes (contiguous row ranges node_ptr[I] .. node_ptr[I + 1] - 1): entry (I, J) is the
// Frobenius norm of A's block (I, J), for the strength of connection of block systems.
template <class T>
Pat condense(const Pat& A, const T* v, const std::vector<std::int64_t>& node_ptr, std::vector<double>& gv,
             int threads) {
  const index_t nn = static_cast<index_t>(node_ptr.size()) - 1;
  std::vector<J> node_of(A.rows);
  for (index_t I = 0; I < nn; ++I)
    for (auto i = node_ptr[I]; i < node_ptr[I + 1]; ++i) node_of[i] = static_cast<J>(I);
  Pat G;
  G.rows = G.cols = nn;
  G.p.assign(nn + 1, 0);
  std::vector<std::vector<J>> cols(nn);
  std::vector<std::vector<double>> vals(nn);
#pragma omp parallel num_threads(clamp_threads(threads))
  {
    std::vector<index_t> pos(nn, -1);
#pragma omp for schedule(dynamic, 256)
    for (index_t I = 0; I < nn; ++I) {
      auto& c = cols[I];
      auto& w = vals[I];
      for (auto i = node_ptr[I]; i < node_ptr[I + 1]; ++i)
        for (auto q = A.p[i]; q < A.p[i + 1]; ++q) {
          const J K = node_of[A.j[q]];
          const double a = static_cast<double>(v[q]);
          if (pos[K] < 0) pos[K] = static_cast<index_t>(c.size()), c.push_back(K), w.push_back(0.0);
          w[pos[K]] += a * a;
        }
      std::vector<index_t> order(c.size());
      for (size_t t = 0; t < c.size(); ++t) order[t] = static_cast<index_t>(t), pos[c[t]] = -1;
      std::sort(order.begin(), order.end(), [&](index_t x, index_t y) { return c[x] < c[y]; });
      std::vector<J> cs(c.size());
      std::vector<double> ws(c.size());
      for (size_t t = 0; t < c.size(); ++t) cs[t] = c[order[t]], ws[t] = std::sqrt(w[order[t]]);
      c.swap(cs);
      w.swap(ws);
    }
  }
  for (index_t I = 0; I < nn; ++I) G.p[I + 1] = G.p[I] + static_cast<std::int64_t>(cols[I].size());
  G.j.resize(G.p[nn]);
  gv.resize(G.p[nn]);
  for (index_t I = 0; I < nn; ++I) {
    std::copy(cols[I].begin(), cols[I].end(), G.j.begin() + G.p[I]);
    std::copy(vals[I].begin(), vals[I].end(), gv.begin() + G.p[I]);
  }
  return G;
}

// The tentative prolongator of k near-null-space vectors B (n x k, row-major): on each aggregate (its
// rows, in order) a QR factorization B_c = Q_c R_c by modified Gram-Schmidt with one reorthogonalization,
// a vector that is (numerically) in the span of the earlier ones on the aggregate adding no column
// (|residual| <= 1e-10 |b_j|). Q_c's columns are the aggregate's columns of T; the rows of R_c, the coarse
// near-null space (T Bc = B). Returns the column count of each aggregate; tv: T's values row by row,
// each row's columns in order; bc: the coarse near-null space (sum of the counts x k).
template <class T>
std::vector<index_t> tentative(index_t n, const std::vector<std::int64_t>& node_ptr, const std::vector<J>& agg,
                               index_t n_agg, const std::vector<T>& B, int k, std::vector<T>& tv,
                               std::vector<double>& bc, int threads) {
  // The rows of each aggregate, in order.
  const index_t nn = node_ptr.empty() ? n : static_cast<index_t>(node_ptr.size()) - 1;
  auto first = [&](index_t I) { return node_ptr.empty() ? I : static_cast<index_t>(node_ptr[I]); };
  auto last = [&](index_t I) { return node_ptr.empty() ? I + 1 : static_cast<index_t>(node_ptr[I + 1]); };
  std::vector<std::int64_t> rows_ptr(n_agg + 1, 0);
  std::vector<index_t> rows;
  for (index_t I = 0; I < nn; ++I)
    if (agg[I] >= 0) rows_ptr[agg[I] + 1] += last(I) - first(I);
  for (index_t c = 0; c < n_agg; ++c) rows_ptr[c + 1] += rows_ptr[c];
  rows.resize(rows_ptr[n_agg]);
  {
    std::vector<std::int64_t> next(rows_ptr.begin(), rows_ptr.end() - 1);
    for (index_t I = 0; I < nn; ++I)
      if (agg[I] >= 0)
        for (index_t i = first(I); i < last(I); ++i) rows[next[agg[I]]++] = i;
  }
  std::vector<index_t> rank(n_agg, 0);
  // Per aggregate: Q (m x k, column-major in a scratch buffer), R (k x k).
  std::vector<double> qall(static_cast<size_t>(rows.size()) * k), rall(static_cast<size_t>(n_agg) * k * k, 0.0);
#pragma omp parallel num_threads(clamp_threads(threads))
  {
    std::vector<double> v;  // one column, reused
#pragma omp for schedule(dynamic, 256)
    for (index_t c = 0; c < n_agg; ++c) {
      const index_t m = rows_ptr[c + 1] - rows_ptr[c];
      const index_t* rw = rows.data() + rows_ptr[c];
      double* Q = qall.data() + static_cast<size_t>(rows_ptr[c]) * k;  // column r at Q + r m
      double* R = rall.data() + static_cast<size_t>(c) * k * k;        // R[r k + j]
      v.resize(m);
      index_t got = 0;
      for (int j = 0; j < k; ++j) {
        double bn = 0.0;
        for (index_t t = 0; t < m; ++t) v[t] = static_cast<double>(B[rw[t] * k + j]), bn += v[t] * v[t];
        bn = std::sqrt(bn);
        for (int pass = 0; pass < 2; ++pass)
          for (index_t r = 0; r < got; ++r) {
            const double* q = Q + r * m;
            double d = 0.0;
            for (index_t t = 0; t < m; ++t) d += q[t] * v[t];
            for (index_t t = 0; t < m; ++t) v[t] -= d * q[t];
            R[r * k + j] += d;
          }
        double vn = 0.0;
        for (index_t t = 0; t < m; ++t) vn += v[t] * v[t];
        vn = std::sqrt(vn);
        if (got < m && vn > 1e-10 * bn && vn > 0.0) {
          double* q = Q + got * m;
          for (index_t t = 0; t < m; ++t) q[t] = v[t] / vn;
          R[got * k + j] = vn;
          ++got;
        }
      }
      rank[c] = got;
    }
  }
  index_t total = 0;
  for (index_t c = 0; c < n_agg; ++c) total += rank[c];
  // T's values: row rw[t] of aggregate c has columns cptr[c] .. cptr[c] + rank[c] - 1 with values Q[t, r].
  std::vector<std::int64_t> tptr(n + 1, 0);
  std::vector<J> owner(n, -1);
  std::vector<index_t> local(n, 0);
  for (index_t c = 0; c < n_agg; ++c)
    for (auto t = rows_ptr[c]; t < rows_ptr[c + 1]; ++t) {
      owner[rows[t]] = static_cast<J>(c);
      local[rows[t]] = t - rows_ptr[c];
    }
  for (index_t i = 0; i < n; ++i) tptr[i + 1] = tptr[i] + (owner[i] >= 0 ? rank[owner[i]] : 0);
  tv.resize(tptr[n]);
  for (index_t i = 0; i < n; ++i) {
    if (owner[i] < 0) continue;
    const index_t c = owner[i], m = rows_ptr[c + 1] - rows_ptr[c];
    const double* Q = qall.data() + static_cast<size_t>(rows_ptr[c]) * k;
    for (index_t r = 0; r < rank[c]; ++r) tv[tptr[i] + r] = static_cast<T>(Q[r * m + local[i]]);
  }
  bc.assign(static_cast<size_t>(total) * k, 0.0);
  index_t off = 0;
  for (index_t c = 0; c < n_agg; ++c) {
    const double* R = rall.data() + static_cast<size_t>(c) * k * k;
    for (index_t r = 0; r < rank[c]; ++r)
      for (int j = 0; j < k; ++j) bc[(off + r) * k + j] = R[r * k + j];
    off += rank[c];
  }
  return rank;
}

// Greedy aggregation of the strong graph (three passes). Returns the number of aggregates.
template <class T>
index_t aggregate(const Pat& A, const T* v, const std::vector<std::uint8_t>& mask, std::vector<J>& agg) {
  const index_t n = A.rows;
  std::vector<std::int64_t> sp(n + 1, 0);
  std::vector<J> sj;
  sj.reserve(A.nnz());
  for (index_t i = 0; i < n; ++i) {
    for (auto q = A.p[i]; q < A.p[i + 1]; ++q)
      if (mask[q]) sj.push_back(A.j[q]);
    sp[i + 1] = static_cast<std::int64_t>(sj.size());
  }
  agg.assign(n, -1);
  index_t na = 0;
  // Pass 1: a node whose strong neighbours are all free starts an aggregate with them.
  for (index_t i = 0; i < n; ++i) {
    if (agg[i] >= 0 || sp[i + 1] == sp[i]) continue;
    bool free = true;
    for (auto q = sp[i]; q < sp[i + 1] && free; ++q) free = agg[sj[q]] < 0;
    if (!free) continue;
    agg[i] = static_cast<J>(na);
    for (auto q = sp[i]; q < sp[i + 1]; ++q) agg[sj[q]] = static_cast<J>(na);
    ++na;
  }
  // Pass 2: a free node joins the aggregate of a strong neighbour from pass 1 (the strongest).
  std::vector<J> first(agg);
  for (index_t i = 0; i < n; ++i) {
    if (agg[i] >= 0 || sp[i + 1] == sp[i]) continue;
    double best = -1.0;
    J pick = -1;
    for (auto q = sp[i]; q < sp[i + 1]; ++q) {
      const J c = sj[q];
      if (first[c] < 0) continue;
      double w = 0.0;
      for (auto t = A.p[i]; t < A.p[i + 1]; ++t)
        if (A.j[t] == c) w = std::abs(static_cast<double>(v[t]));
      if (w > best) best = w, pick = first[c];
    }
    if (pick >= 0) agg[i] = pick;
  }
  // Pass 3: what is left forms aggregates with its free strong neighbours.
  for (index_t i = 0; i < n; ++i) {
    if (agg[i] >= 0 || sp[i + 1] == sp[i]) continue;
    agg[i] = static_cast<J>(na);
    for (auto q = sp[i]; q < sp[i + 1]; ++q)
      if (agg[sj[q]] < 0) agg[sj[q]] = static_cast<J>(na);
    ++na;
  }
  return na;
}

// Truncation of a prolongator: the entries of each row with |p_ij| >= theta max_j |p_ij| (the largest one
// always). Returns their pattern; keep[q] is the position in P of the truncated pattern's entry q.
template <class T>
PatPtr truncate_pattern(const Pat& P, const T* v, double theta, std::vector<std::int64_t>& keep) {
  auto out = std::make_shared<Pat>();
  out->rows = P.rows;
  out->cols = P.cols;
  out->p.assign(P.rows + 1, 0);
  keep.clear();
  keep.reserve(P.nnz());
  for (index_t i = 0; i < P.rows; ++i) {
    double mx = 0.0;
    for (auto q = P.p[i]; q < P.p[i + 1]; ++q) mx = std::max(mx, std::abs(static_cast<double>(v[q])));
    for (auto q = P.p[i]; q < P.p[i + 1]; ++q)
      if (std::abs(static_cast<double>(v[q])) >= theta * mx) keep.push_back(q);
    out->p[i + 1] = static_cast<std::int64_t>(keep.size());
  }
  out->j.resize(keep.size());
  for (size_t q = 0; q < keep.size(); ++q) out->j[q] = P.j[keep[q]];
  return out;
}

// The values of the truncated prolongator: the kept entries of each row, scaled so that the row still
// interpolates the coarse near-null space exactly (sum_j p_ij bc_j unchanged), unless the kept part's sum
// has another sign or vanishes (then unscaled).
template <class T>
void truncate_values(const Pat& P, const T* v, const Pat& Pt, const std::vector<std::int64_t>& keep, const double* bc,
                     T* out, int threads) {
#pragma omp parallel for schedule(static) num_threads(clamp_threads(threads))
  for (index_t i = 0; i < P.rows; ++i) {
    double all = 0.0, kept = 0.0;
    for (auto q = P.p[i]; q < P.p[i + 1]; ++q) all += static_cast<double>(v[q]) * bc[P.j[q]];
    for (auto q = Pt.p[i]; q < Pt.p[i + 1]; ++q) kept += static_cast<double>(v[keep[q]]) * bc[Pt.j[q]];
    const T scale = static_cast<T>(all * kept > 0.0 ? all / kept : 1.0);
    for (auto q = Pt.p[i]; q < Pt.p[i + 1]; ++q) out[q] = v[keep[q]] * scale;
  }
}

// Sparsification of a coarse operator C: drops c_ij (i != j) when it is weak for both rows,
// |c_ij| < theta min(|c_ii|, |c_jj|), and i and j have a common strong neighbour k (strong in the sense of
// strong_mask with threshold `strength`): the coupling is then carried by the path i - k - j, whereas a
// weak coupling without such a path (an anisotropy's weak direction) is kept for the coarser levels.
// Returns the kept pattern; keep[q] is the position in C of the kept entry q.
template <class T>
PatPtr sparsify_pattern(const Pat& C, const T* v, double theta, double strength, const double* bc,
                        std::vector<std::int64_t>& keep, int threads) {
  const index_t n = C.rows;
  std::vector<double> dg(n, 0.0), d(n);
  for (index_t i = 0; i < n; ++i) {
    for (auto q = C.p[i]; q < C.p[i + 1]; ++q)
      if (C.j[q] == i) dg[i] = static_cast<double>(v[q]);
    d[i] = std::abs(dg[i]);
  }
  const std::vector<std::uint8_t> strong = strong_mask(C, v, strength, threads);
  std::vector<std::uint8_t> kept(C.nnz(), 1);
#pragma omp parallel num_threads(clamp_threads(threads))
  {
    std::vector<index_t> stamp(n, -1);
#pragma omp for schedule(dynamic, 256)
    for (index_t i = 0; i < n; ++i) {
      for (auto q = C.p[i]; q < C.p[i + 1]; ++q)
        if (strong[q]) stamp[C.j[q]] = i;
      for (auto q = C.p[i]; q < C.p[i + 1]; ++q) {
        const J j = C.j[q];
        if (j == i || std::abs(static_cast<double>(v[q])) >= theta * std::min(d[i], d[j])) continue;
        bool path = false;
        for (auto t = C.p[j]; t < C.p[j + 1] && !path; ++t) path = strong[t] && stamp[C.j[t]] == i;
        kept[q] = !path;
      }
    }
  }
  // A row whose diagonal the dropped entries would more than halve (or flip) keeps its entries, and so do
  // the entries of its column (a symmetric pattern stays symmetric).
  std::vector<std::uint8_t> whole(n, 0);
#pragma omp parallel for schedule(static) num_threads(clamp_threads(threads))
  for (index_t i = 0; i < n; ++i) {
    double lump = 0.0;
    for (auto q = C.p[i]; q < C.p[i + 1]; ++q)
      if (!kept[q]) lump += static_cast<double>(v[q]) * bc[C.j[q]] / bc[i];
    whole[i] = !((dg[i] + lump) * dg[i] >= 0.5 * dg[i] * dg[i]);
  }
#pragma omp parallel for schedule(static) num_threads(clamp_threads(threads))
  for (index_t i = 0; i < n; ++i)
    for (auto q = C.p[i]; q < C.p[i + 1]; ++q) kept[q] = kept[q] || whole[i] || whole[C.j[q]];
  auto out = std::make_shared<Pat>();
  out->rows = C.rows;
  out->cols = C.cols;
  out->p.assign(n + 1, 0);
  keep.clear();
  keep.reserve(C.nnz());
  for (index_t i = 0; i < n; ++i) {
    for (auto q = C.p[i]; q < C.p[i + 1]; ++q)
      if (kept[q]) keep.push_back(q);
    out->p[i + 1] = static_cast<std::int64_t>(keep.size());
  }
  out->j.resize(keep.size());
  for (size_t q = 0; q < keep.size(); ++q) out->j[q] = C.j[keep[q]];
  return out;
}

// The values of the sparsified operator: the kept entries, each dropped one added to the diagonal
// weighted so that the operator's product with the near-null space bc is unchanged
// (c_ii += c_ij bc_j / bc_i).
template <class T>
void sparsify_values(const Pat& C, const T* v, const Pat& K, const std::vector<std::int64_t>& keep, const double* bc,
                     T* out, int threads) {
#pragma omp parallel for schedule(static) num_threads(clamp_threads(threads))
  for (index_t i = 0; i < C.rows; ++i) {
    double lump = 0.0;
    auto k = K.p[i];
    std::int64_t diag = -1;
    for (auto q = C.p[i]; q < C.p[i + 1]; ++q) {
      if (k < K.p[i + 1] && keep[k] == q) {
        if (C.j[q] == i) diag = k;
        out[k++] = v[q];
      } else {
        lump += static_cast<double>(v[q]) * bc[C.j[q]];
      }
    }
    if (diag >= 0) out[diag] += static_cast<T>(lump / bc[i]);
  }
}

template <class T>
class Amg final : public AmgPreconditioner {
 public:
  Amg(const CsrArrays& a, const AmgOptions& opts, const Amg* reuse, bool same_strength_only)
      : AmgPreconditioner(scalar_tag<T>::value, a.n_rows) {
    const auto t0 = std::chrono::steady_clock::now();
    threads_ = opts.threads;
    options_ = opts;
    // The pattern is copied for a full setup only; a values-only one compares it with the reused one's.
    const Amg* given = reuse;
    std::shared_ptr<Pat> level0;
    if (reuse != nullptr && !same_pattern(a, *reuse->sym_->levels[0].A))
      fail(ErrorKind::InvalidArgument, "amg: a values-only setup needs the pattern of the hierarchy it reuses");
    if (reuse == nullptr) level0 = copy_pattern(a);
    std::vector<T> v0 = copy_values(a);
    const Pat& p0 = level0 ? *level0 : *given->sym_->levels[0].A;
    std::vector<std::int32_t> tpos;  // of a new pattern
    if (given == nullptr) tpos = transpose_positions(p0);
    const bool symmetric = numerically_symmetric(p0, v0, given != nullptr ? given->sym_->tpos0 : tpos);
    if (reuse != nullptr) {
      const HierSym& old = *reuse->sym_;
      if (old.k != opts.near_nullspace_columns || old.options.block_size != opts.block_size)
        fail(ErrorKind::InvalidArgument, "amg: a values-only setup needs the number of near-null-space vectors (",
             old.k, ") and the block size (", old.options.block_size, ") of the hierarchy it reuses");
      // A (non)symmetric matrix needs (no) transposed levels; the strong connections of the new values
      // decide the aggregates: with same_strength_only, reuse only when they are unchanged.
      if (symmetric != old.symmetric)
        reuse = nullptr;
      else if (same_strength_only && !old.strong0.empty() && strength0(p0, v0, old.options) != old.strong0)
        reuse = nullptr;
    }
    if (reuse != nullptr) {
      sym_ = reuse->sym_;
      values_only_ = true;
      set_options(opts);
      try {
        // The values are kept for a full setup when the near-null space's ranks differ (several vectors).
        build(opts.near_nullspace_columns > 1 ? v0 : std::move(v0), opts.near_nullspace, false, &reuse->lv_);
      } catch (const RankChanged&) {
        values_only_ = false;
      }
    }
    if (!values_only_) {
      auto sym = std::make_shared<HierSym>();
      if (!level0) level0 = std::make_shared<Pat>(p0);  // given's, which values-only setups could not use
      sym->tpos0 = given != nullptr ? given->sym_->tpos0 : std::move(tpos);
      sym->options = opts;
      sym->symmetric = symmetric;
      sym->k = opts.near_nullspace_columns;
      sym->levels.emplace_back();
      sym->levels[0].A = level0;
      sym_ = sym;
      set_options(opts);
      build(std::move(v0), opts.near_nullspace, true, nullptr);
    }
    setup_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  int num_levels() const override { return static_cast<int>(lv_.size()); }
  int near_nullspace_columns() const override { return sym_->k; }
  AmgCsr matrix(int l, char which) const override {
    check_level(l);
    const LevelSym& s = sym_->levels[l];
    const Level<T>& n = lv_[l];
    const bool last = l + 1 == num_levels();
    switch (which) {
      case 'A': return view(*s.A, n.A.data());
      case 'T': return sym_->symmetric ? AmgCsr{} : view(*s.AT, n.AT.data());
      case 'P':
        if (!last) return view(*s.P, n.P.data());
        break;
      case 'R':
        if (!last) return view(*s.R, n.R.data());
        break;
    }
    fail(ErrorKind::InvalidArgument, "amg: level ", l, " has no matrix '", which, "'");
  }
  const void* inv_diag(int l) const override { return check_level(l), lv_[l].dinv.data(); }
  const void* near_nullspace(int l) const override { return check_level(l), lv_[l].B.data(); }

  double spectral_radius(int l) const override { return check_level(l), lv_[l].rho; }
  const AmgOptions& options() const override { return options_; }
  bool symmetric() const override { return sym_->symmetric; }
  double setup_seconds() const override { return setup_s_; }
  std::vector<double> setup_level_seconds() const override { return setup_s_levels_; }
  std::vector<double> cycle_level_seconds() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return cycle_s_;
  }
  bool values_only() const override { return values_only_; }
  std::string name() const override { return "amg"; }

  void apply(const void* r, void* z, index_t k, Op op) const override {
    std::lock_guard<std::mutex> lock(mutex_);  // the work vectors are shared
    const T* rr = static_cast<const T*>(r);
    T* zz = static_cast<T*>(z);
    const bool tr = op == Op::H && !sym_->symmetric;
    if (k == 1) {
      cycle(0, rr, zz, true, tr);
      return;
    }
    std::vector<T> bc(n_), xc(n_);
    for (index_t c = 0; c < k; ++c) {
      for (index_t i = 0; i < n_; ++i) bc[i] = rr[i * k + c];
      cycle(0, bc.data(), xc.data(), true, tr);
      for (index_t i = 0; i < n_; ++i) zz[i * k + c] = xc[i];
    }
  }

 private:
  static AmgCsr view(const Pat& p, const T* v) { return {p.rows, p.cols, p.p.data(), p.j.data(), v}; }
  void check_level(int l) const {
    if (l < 0 || l >= num_levels())
      fail(ErrorKind::InvalidArgument, "amg: level ", l, " out of range (", num_levels(), " levels)");
  }

  // The options: those given, with the structural ones of the hierarchy whose patterns are used.
  void set_options(const AmgOptions& opts) {
    options_ = opts;
    const AmgOptions& s = sym_->options;
    options_.strength = s.strength;
    options_.truncation = s.truncation;
    options_.coarse_drop = s.coarse_drop;
    options_.max_coarse = s.max_coarse;
    options_.max_levels = s.max_levels;
    options_.block_size = s.block_size;
    options_.near_nullspace = nullptr;
  }

  // Level 0's strong connections (of its nodes with a block size).
  std::vector<std::uint8_t> strength0(const Pat& A, const std::vector<T>& v, const AmgOptions& o) const {
    const int th = th_for(A.rows);
    if (o.block_size <= 1) return strong_mask(A, v.data(), o.strength, th);
    std::vector<std::int64_t> node_ptr;
    for (index_t i = 0; i <= A.rows; i += o.block_size) node_ptr.push_back(i);
    std::vector<double> gv;
    const Pat G = condense(A, v.data(), node_ptr, gv, th);
    return strong_mask(G, gv.data(), o.strength, th);
  }

  static std::shared_ptr<Pat> copy_pattern(const CsrArrays& a) {
    auto p = std::make_shared<Pat>();
    visit_csr(a, [&](auto t, auto ix) {
      const Csr<decltype(t), decltype(ix)> A = typed<decltype(t), decltype(ix)>(a);
      p->rows = p->cols = a.n_rows;
      p->p.resize(a.n_rows + 1);
      p->p[0] = 0;
      for (index_t i = 0; i < a.n_rows; ++i) p->p[i + 1] = static_cast<std::int64_t>(A.p[i + 1]);
      p->j.resize(p->p[a.n_rows]);
      for (index_t q = 0; q < p->p[a.n_rows]; ++q) p->j[q] = static_cast<J>(A.j[q]);
    });
    return p;
  }

  bool same_pattern(const CsrArrays& a, const Pat& p) const {
    if (a.n_rows != p.rows || a.nnz() != p.nnz()) return false;
    bool same = true;
    const int th = clamp_threads(th_for(p.rows));
    visit_csr(a, [&](auto t, auto ix) {
      const Csr<decltype(t), decltype(ix)> A = typed<decltype(t), decltype(ix)>(a);
#pragma omp parallel for schedule(static) reduction(&& : same) num_threads(th)
      for (index_t i = 0; i < a.n_rows; ++i) {
        bool row = static_cast<std::int64_t>(A.p[i + 1]) == p.p[i + 1];
        for (auto q = p.p[i]; q < p.p[i + 1] && row; ++q) row = static_cast<J>(A.j[q]) == p.j[q];
        same = same && row;
      }
    });
    return same;
  }

  static std::vector<T> copy_values(const CsrArrays& a) {
    std::vector<T> v;
    visit_csr(a, [&](auto t, auto ix) {
      using S = decltype(t);
      if constexpr (!std::is_same_v<S, T>) {
        fail(ErrorKind::Internal, "amg: scalar type mismatch");
      } else {
        const Csr<S, decltype(ix)> A = typed<S, decltype(ix)>(a);
        v.assign(A.v, A.v + a.nnz());
      }
    });
    return v;
  }

  // The position of each entry's transpose (a_ji for a_ij; -1 when it is not stored): binary searches in
  // the sorted rows, once per pattern.
  std::vector<std::int32_t> transpose_positions(const Pat& A) const {
    std::vector<std::int32_t> t(A.nnz());
#pragma omp parallel for schedule(static) num_threads(clamp_threads(th_for(A.rows)))
    for (index_t i = 0; i < A.rows; ++i)
      for (auto q = A.p[i]; q < A.p[i + 1]; ++q) {
        const J c = A.j[q];
        const J* beg = A.j.data() + A.p[c];
        const J* end = A.j.data() + A.p[c + 1];
        const J* hit = std::lower_bound(beg, end, static_cast<J>(i));
        t[q] = hit == end || *hit != i ? -1 : static_cast<std::int32_t>(hit - A.j.data());
      }
    return t;
  }

  // A == A^T (pattern and values, to a relative 1e-12 plus 1e-15 max |A|), by the transpose positions.
  bool numerically_symmetric(const Pat& A, const std::vector<T>& v, const std::vector<std::int32_t>& tpos) const {
    const int th = clamp_threads(th_for(A.rows));
    double amax = 0.0;  // entries that cancelled to rounding noise are compared on the scale of A
#pragma omp parallel for schedule(static) reduction(max : amax) num_threads(th)
    for (index_t q = 0; q < A.nnz(); ++q) amax = std::max(amax, std::abs(static_cast<double>(v[q])));
    const double floor = 1e-15 * amax;
    bool sym = true;
#pragma omp parallel for schedule(static) reduction(&& : sym) num_threads(th)
    for (index_t q = 0; q < A.nnz(); ++q) {
      if (tpos[q] < 0) {
        sym = false;
        continue;
      }
      const double x = static_cast<double>(v[q]), y = static_cast<double>(v[tpos[q]]);
      sym = sym && std::abs(x - y) <= 1e-12 * std::max(std::abs(x), std::abs(y)) + floor;
    }
    return sym;
  }

  void build(std::vector<T> v0, const void* near_nullspace, bool full, const std::vector<Level<T>>* warm_start) {
    HierSym& sym = const_cast<HierSym&>(*sym_);  // written only while this object builds it (full setup)
    const AmgOptions& o = options_;
    // The near-null space of the current level (n x k, row-major).
    const int k = sym.k;
    std::vector<T> B(static_cast<size_t>(n_) * k, T(1));
    if (near_nullspace != nullptr) {
      const T* b = static_cast<const T*>(near_nullspace);
      B.assign(b, b + static_cast<size_t>(n_) * k);
      for (size_t i = 0; i < B.size(); ++i)
        if (!std::isfinite(static_cast<double>(B[i])))
          fail(ErrorKind::InvalidArgument, "near_nullspace: entry (", i / k, ", ", i % k, ") is not finite");
    }
    lv_.clear();
    // References into these vectors are held across emplace_back: no reallocation.
    lv_.reserve(o.max_levels + 1);
    if (full) sym.levels.reserve(o.max_levels + 1);
    lv_.emplace_back();
    lv_[0].A = std::move(v0);
    lv_[0].B = B;
    setup_s_levels_.clear();
    for (int l = 0;; ++l) {
      poll_interrupt();
      const auto t_level = std::chrono::steady_clock::now();
      // Level l's setup time: what follows, up to the next level (that of the direct solve for the last).
      struct Clock {
        std::vector<double>& out;
        std::chrono::steady_clock::time_point t;
        ~Clock() { out.push_back(seconds_since(t)); }
      } clock{setup_s_levels_, t_level};
      if (full && static_cast<int>(sym.levels.size()) <= l) sym.levels.emplace_back();
      LevelSym& s = sym.levels[l];
      Level<T>& L = lv_[l];
      const Pat& A = *s.A;
      const index_t n = A.rows;
      const int th = th_for(n);
      // Inverse diagonal (every diagonal entry stored and nonzero).
      L.dinv.assign(n, T(0));
      std::vector<T> diag(n, T(0));
#pragma omp parallel for schedule(static) num_threads(clamp_threads(th))
      for (index_t i = 0; i < n; ++i)
        for (auto q = A.p[i]; q < A.p[i + 1]; ++q)
          if (A.j[q] == i) diag[i] = L.A[q];
      for (index_t i = 0; i < n; ++i) {
        if (diag[i] == T(0) || !std::isfinite(static_cast<double>(diag[i]))) {
          if (l == 0)
            fail(ErrorKind::SingularMatrix, "amg: needs a nonzero finite diagonal; A[", i, ", ", i,
                 "] is 0, not finite or not stored");
          fail(ErrorKind::SingularMatrix, "amg: the coarse operator of level ", l, " has a zero diagonal at row ", i,
               " (is A positive definite, or the near-null space right?)");
        }
        L.dinv[i] = T(1) / diag[i];
      }
      if (!sym.symmetric) {
        if (full) s.AT = transpose_pattern(A, s.at_perm);
        L.AT.resize(A.nnz());
#pragma omp parallel for schedule(static) num_threads(clamp_threads(th))
        for (index_t q = 0; q < A.nnz(); ++q) L.AT[q] = L.A[s.at_perm[q]];
      }
      // A values-only setup starts from the previous hierarchy's estimate of the eigenvector: fewer steps.
      const bool warm = warm_start != nullptr && static_cast<int>(warm_start->size()) > l;
      if (warm) L.ritz = (*warm_start)[l].ritz;
      L.rho =
          spectral_radius_estimate(A, L.A.data(), L.dinv, sym.symmetric, th, L.ritz, warm ? kWarmSteps : kColdSteps);
      bool last;
      if (full) {
        last = n <= o.max_coarse || l + 1 >= o.max_levels;
        if (!last) {
          if (l == 0 && o.block_size > 1)
            for (index_t i = 0; i <= n; i += o.block_size) s.node_ptr.push_back(i);
          std::vector<std::uint8_t> mask;
          index_t nodes = n;
          if (s.node_ptr.empty()) {
            mask = strong_mask(A, L.A.data(), o.strength, th);
            s.n_agg = aggregate(A, L.A.data(), mask, s.agg);
          } else {  // the strength graph of nodes
            std::vector<double> gv;
            const Pat G = condense(A, L.A.data(), s.node_ptr, gv, th);
            mask = strong_mask(G, gv.data(), o.strength, th);
            s.n_agg = aggregate(G, gv.data(), mask, s.agg);
            nodes = G.rows;
          }
          if (l == 0) sym.strong0 = std::move(mask);
          // No coarsening worth a level: solve this one directly.
          if (s.n_agg == 0 || s.n_agg >= nodes || static_cast<double>(s.n_agg) > 0.9 * static_cast<double>(nodes))
            last = true;
        }
        if (last) sym.levels.resize(l + 1);
      } else {
        last = l + 1 == static_cast<int>(sym.levels.size());
      }
      if (last) break;
      // Tentative prolongator: per aggregate, the QR factorization of B's rows; the coarse B is R.
      std::vector<T> tv;
      std::vector<double> Bc;
      const std::vector<index_t> rank = tentative(n, s.node_ptr, s.agg, s.n_agg, B, k, tv, Bc, th);
      for (index_t c = 0; c < s.n_agg; ++c)
        if (rank[c] == 0)
          fail(ErrorKind::InvalidArgument, "near_nullspace: zero on every row of aggregate ", c, " of level ", l,
               "; it must not vanish on a whole neighbourhood");
      if (full) {
        s.cptr.assign(s.n_agg + 1, 0);
        for (index_t c = 0; c < s.n_agg; ++c) s.cptr[c + 1] = s.cptr[c] + rank[c];
        auto tent = std::make_shared<Pat>();
        tent->rows = n;
        tent->cols = s.cptr[s.n_agg];
        std::vector<J> col_of(n, -1);  // the aggregate of each row
        const index_t nn = s.node_ptr.empty() ? n : static_cast<index_t>(s.node_ptr.size()) - 1;
        for (index_t I = 0; I < nn; ++I)
          if (s.agg[I] >= 0) {
            const index_t a = s.node_ptr.empty() ? I : s.node_ptr[I],
                          b = s.node_ptr.empty() ? I + 1 : s.node_ptr[I + 1];
            for (index_t i = a; i < b; ++i) col_of[i] = s.agg[I];
          }
        tent->p.assign(n + 1, 0);
        for (index_t i = 0; i < n; ++i) tent->p[i + 1] = tent->p[i] + (col_of[i] >= 0 ? rank[col_of[i]] : 0);
        tent->j.reserve(tent->p[n]);
        for (index_t i = 0; i < n; ++i)
          if (col_of[i] >= 0)
            for (auto c = s.cptr[col_of[i]]; c < s.cptr[col_of[i] + 1]; ++c) tent->j.push_back(static_cast<J>(c));
        s.Tent = tent;
        s.PT = spgemm_pattern(A, *tent, th);  // the pattern of A T contains T's (the diagonal is stored)
      } else {
        for (index_t c = 0; c < s.n_agg; ++c)
          if (rank[c] != s.cptr[c + 1] - s.cptr[c]) throw RankChanged{};
      }
      const index_t nc = s.cptr[s.n_agg];
      const Pat& Tp = *s.Tent;
      // Truncation and sparsification keep the product with a single near-null-space vector.
      const bool single = k == 1;
      // P = (I - omega D^{-1} A) T on the pattern of A T, then truncated.
      const Pat& PT = *s.PT;
      std::vector<T> pv(PT.nnz());
      spgemm_values(A, L.A.data(), Tp, tv.data(), PT, pv.data(), th);
      const T omega = static_cast<T>(4.0 / (3.0 * L.rho));
#pragma omp parallel for schedule(static) num_threads(clamp_threads(th))
      for (index_t i = 0; i < n; ++i) {
        const T w = omega * L.dinv[i];
        auto t = Tp.p[i];  // T's row i within PT's (both sorted)
        for (auto q = PT.p[i]; q < PT.p[i + 1]; ++q) {
          const bool hit = t < Tp.p[i + 1] && Tp.j[t] == PT.j[q];
          pv[q] = (hit ? tv[t++] : T(0)) - w * pv[q];
        }
      }
      if (full) {
        s.P = single && o.truncation > 0.0 ? truncate_pattern(PT, pv.data(), o.truncation, s.p_keep) : s.PT;
        if (s.P != s.PT && s.P->nnz() == PT.nnz()) s.P = s.PT, s.p_keep.clear();  // nothing dropped
        s.R = transpose_pattern(*s.P, s.r_perm);
        s.AP = spgemm_pattern(A, *s.P, th);
        sym.levels.emplace_back();
        sym.levels[l + 1].A = spgemm_pattern(*s.R, *s.AP, th);
        if (k > 1) sym.levels[l + 1].node_ptr = s.cptr;  // the next level's nodes: the aggregates' columns
      }
      const Pat& P = *s.P;
      if (s.p_keep.empty()) {
        L.P = std::move(pv);
      } else {
        L.P.resize(P.nnz());
        truncate_values(PT, pv.data(), P, s.p_keep, Bc.data(), L.P.data(), th);
      }
      L.R.resize(P.nnz());
#pragma omp parallel for schedule(static) num_threads(clamp_threads(th))
      for (index_t q = 0; q < P.nnz(); ++q) L.R[q] = L.P[s.r_perm[q]];
      L.AP.resize(s.AP->nnz());
      spgemm_values(A, L.A.data(), P, L.P.data(), *s.AP, L.AP.data(), th);
      const Pat& RAP = s.RAP ? *s.RAP : *sym.levels[l + 1].A;
      std::vector<T> next(RAP.nnz());
      spgemm_values(*s.R, L.R.data(), *s.AP, L.AP.data(), RAP, next.data(), th);
      if (full && single && o.coarse_drop > 0.0) {
        auto K = sparsify_pattern(RAP, next.data(), o.coarse_drop, o.strength, Bc.data(), s.c_keep, th);
        if (K->nnz() < RAP.nnz())
          s.RAP = sym.levels[l + 1].A, sym.levels[l + 1].A = K;
        else
          s.c_keep.clear();
      }
      if (s.RAP) {
        std::vector<T> kept(sym.levels[l + 1].A->nnz());
        sparsify_values(*s.RAP, next.data(), *sym.levels[l + 1].A, s.c_keep, Bc.data(), kept.data(), th);
        next = std::move(kept);
      }
      std::vector<T>().swap(L.AP);  // needed only for the product
      lv_.emplace_back();
      lv_[l + 1].A = std::move(next);
      B.resize(static_cast<size_t>(nc) * k);
      for (size_t c = 0; c < B.size(); ++c) B[c] = static_cast<T>(Bc[c]);
      lv_[l + 1].B = B;
    }
    // The direct solve of the last level: a dense LU factorization when it is small (partial pivoting: as
    // robust as it gets, and what the torch cycle does), else a sparse one.
    const auto t_coarse = std::chrono::steady_clock::now();
    const LevelSym& s = sym.levels.back();
    const index_t nlast = s.A->rows;
    dense_coarse_ = nlast <= kDenseCoarse;
    if (dense_coarse_) {
      dense_.factor(*s.A, lv_.back().A.data());
      const double eps = static_cast<double>(std::numeric_limits<T>::epsilon());
      if (!(dense_.pivot_ratio >= eps))
        fail(ErrorKind::SingularMatrix, "amg: the coarsest level (", nlast,
             " rows) is singular to working precision (pivot ratio ", dense_.pivot_ratio,
             "); is A nonsingular, and the near-null space right?");
    } else if (full) {
      sym.coarse_p.assign(s.A->p.begin(), s.A->p.end());
      sym.coarse_j.assign(s.A->j.begin(), s.A->j.end());
      const CsrView<std::int64_t> view{s.A->rows, s.A->cols, sym.coarse_p.data(), sym.coarse_j.data()};
      const CsrPattern pat = CsrPattern::copy_of(view, s.A->rows + 1, s.A->nnz(), "amg coarse level");
      const Backend be = backend_available(Backend::SuiteSparse) ? Backend::SuiteSparse : Backend::Eigen;
      sym.coarse = analyze(be, Method::LU, scalar_, pat);
    }
    if (!dense_coarse_) coarse_ = factorize(sym.coarse, lv_.back().A.data());
    setup_s_levels_.back() += seconds_since(t_coarse);
    cycle_s_.assign(lv_.size(), 0.0);
    // Work vectors.
    work_.resize(lv_.size());
    for (size_t l = 0; l < lv_.size(); ++l) {
      const index_t n = sym.levels[l].A->rows;
      work_[l].r.assign(n, T(0));
      work_[l].b.assign(n, T(0));
      work_[l].x.assign(n, T(0));
      work_[l].d.assign(n, T(0));
      if (sgs_blocks(static_cast<int>(l)) > 1) work_[l].xo.assign(n, T(0)), work_[l].xo2.assign(n, T(0));
    }
  }

  // Row blocks of the symmetric Gauss-Seidel sweeps on level l: `threads` on large levels, else 1.
  int sgs_blocks(int l) const {
    return options_.smoother == AmgSmoother::SGS ? clamp_threads(th_for(sym_->levels[l].A->rows)) : 1;
  }

  // The threads for the loops of a level of n rows: one below options().parallel_rows.
  int th_for(index_t n) const { return n >= options_.parallel_rows ? threads_ : 1; }

  // Symmetric Gauss-Seidel on a large level: the rows cut into sgs_blocks(l) contiguous blocks, swept in
  // parallel (Gauss-Seidel within a block; the other blocks' values from before the sweep, in one of two
  // buffers that alternate). The backward sweep is the forward one's transpose, so the cycle stays
  // symmetric; the result depends on the thread count only, not on the schedule. One parallel region,
  // one barrier a sweep. zero: x is zero on entry; snapshot: work_[l].xo holds x already.
  void sgs_parallel(int l, const Pat& A, const T* v, const T* b, T* x, bool zero, bool snapshot) const {
    const int nb = sgs_blocks(l);
    const index_t n = A.rows;
    const T* dinv = lv_[l].dinv.data();
    T* buf[2] = {work_[l].xo.data(), work_[l].xo2.data()};
    const int steps = 2 * options_.sweeps;
#pragma omp parallel num_threads(nb)
    {
      if (!zero && !snapshot) {
#pragma omp for schedule(static)
        for (index_t i = 0; i < n; ++i) buf[0][i] = x[i];
      }
      for (int step = 0; step < steps; ++step) {
        const bool none = zero && step == 0;  // the other blocks are zero
        const T* old = buf[step % 2];
        T* next = buf[(step + 1) % 2];
#pragma omp for schedule(static, 1)
        for (int blk = 0; blk < nb; ++blk) {
          const index_t lo = n * blk / nb, hi = n * (blk + 1) / nb;
          if (none) std::fill(x + lo, x + hi, T(0));
          for (index_t k = 0; k < hi - lo; ++k) {
            const index_t i = step % 2 == 0 ? lo + k : hi - 1 - k;
            T acc = b[i];
            for (auto q = A.p[i]; q < A.p[i + 1]; ++q) {
              const J c = A.j[q];
              if (c == i) continue;
              if (c >= lo && c < hi)
                acc -= v[q] * x[c];
              else if (!none)
                acc -= v[q] * old[c];
            }
            x[i] = acc * dinv[i];
          }
          std::copy(x + lo, x + hi, next + lo);
        }
      }
    }
  }

  // One smoothing step set on level l (A x = b, x in place). first: x is zero on entry.
  // snapshot: x's values are in work_[l].xo already (the parallel Gauss-Seidel sweeps start from them).
  void smooth(int l, const T* b, T* x, bool first, bool tr, bool snapshot = false) const {
    const LevelSym& s = sym_->levels[l];
    const Level<T>& L = lv_[l];
    const Pat& A = tr ? *s.AT : *s.A;
    const T* v = tr ? L.AT.data() : L.A.data();
    const index_t n = A.rows;
    const int th = th_for(n);
    T* r = work_[l].r.data();
    if (sgs_blocks(l) > 1) return sgs_parallel(l, A, v, b, x, first, snapshot);
    for (int sweep = 0; sweep < options_.sweeps; ++sweep) {
      switch (options_.smoother) {
        case AmgSmoother::Jacobi: {
          const T w = static_cast<T>(4.0 / (3.0 * L.rho));
          if (first && sweep == 0) {
#pragma omp parallel for schedule(static) num_threads(clamp_threads(th))
            for (index_t i = 0; i < n; ++i) x[i] = w * L.dinv[i] * b[i];
          } else {
            residual(A, v, x, b, r, th);
#pragma omp parallel for schedule(static) num_threads(clamp_threads(th))
            for (index_t i = 0; i < n; ++i) x[i] += w * L.dinv[i] * r[i];
          }
          break;
        }
        case AmgSmoother::SGS: {  // a forward then a backward sweep (large levels: sgs_parallel)
          if (first && sweep == 0) std::fill(x, x + n, T(0));
          for (index_t i = 0; i < n; ++i) {  // forward
            T acc = b[i];
            for (auto q = A.p[i]; q < A.p[i + 1]; ++q)
              if (A.j[q] != i) acc -= v[q] * x[A.j[q]];
            x[i] = acc * L.dinv[i];
          }
          for (index_t i = n - 1; i >= 0; --i) {  // backward
            T acc = b[i];
            for (auto q = A.p[i]; q < A.p[i + 1]; ++q)
              if (A.j[q] != i) acc -= v[q] * x[A.j[q]];
            x[i] = acc * L.dinv[i];
          }
          break;
        }
        case AmgSmoother::Chebyshev: {
          // Chebyshev iteration for D^{-1} A on [hi / 30, hi], hi = 1.1 rho.
          const double hi = 1.1 * L.rho, lo = hi / 30.0;
          const double theta = 0.5 * (hi + lo), delta = 0.5 * (hi - lo), sigma = theta / delta;
          double rho_k = 1.0 / sigma;
          T* d = work_[l].d.data();
          if (first && sweep == 0) {
#pragma omp parallel for schedule(static) num_threads(clamp_threads(th))
            for (index_t i = 0; i < n; ++i) {
              x[i] = T(0);
              r[i] = L.dinv[i] * b[i];
            }
          } else {
            residual(A, v, x, b, r, th);
            for (index_t i = 0; i < n; ++i) r[i] *= L.dinv[i];
          }
          const T inv_theta = static_cast<T>(1.0 / theta);
          for (index_t i = 0; i < n; ++i) d[i] = r[i] * inv_theta;
          for (int k = 1;; ++k) {
            for (index_t i = 0; i < n; ++i) x[i] += d[i];
            if (k >= options_.degree) break;
            residual(A, v, x, b, r, th);
            const double rho_n = 1.0 / (2.0 * sigma - rho_k);
            const T c1 = static_cast<T>(rho_n * rho_k), c2 = static_cast<T>(2.0 * rho_n / delta);
#pragma omp parallel for schedule(static) num_threads(clamp_threads(th))
            for (index_t i = 0; i < n; ++i) d[i] = c1 * d[i] + c2 * L.dinv[i] * r[i];
            rho_k = rho_n;
          }
          break;
        }
      }
    }
  }

  void coarse_solve(const T* b, T* x, bool tr) const {
    if (dense_coarse_)
      dense_.solve(b, x, tr);
    else
      coarse_->solve(b, x, 1, tr ? Op::H : Op::N);
  }

  // The time of each level's own work (the time in the level minus that in the levels below) is added to
  // cycle_s_ (a profile: cycle_level_seconds()).
  void cycle(int l, const T* b, T* x, bool zero, bool tr) const {
    const LevelSym& s = sym_->levels[l];
    const Level<T>& L = lv_[l];
    const int th = th_for(s.A->rows);
    const auto t0 = std::chrono::steady_clock::now();
    if (l + 1 == num_levels()) {
      if (zero) {
        coarse_solve(b, x, tr);
      } else {  // x += A^{-1} (b - A x)
        const Pat& A = tr ? *s.AT : *s.A;
        T* r = work_[l].r.data();
        T* d = work_[l].d.data();
        residual(A, tr ? L.AT.data() : L.A.data(), x, b, r, th);
        coarse_solve(r, d, tr);
        for (index_t i = 0; i < A.rows; ++i) x[i] += d[i];
      }
      cycle_s_[l] += seconds_since(t0);
      return;
    }
    const Pat& A = tr ? *s.AT : *s.A;
    const T* v = tr ? L.AT.data() : L.A.data();
    smooth(l, b, x, zero, tr);
    T* r = work_[l].r.data();
    T* bc = work_[l + 1].b.data();
    T* xc = work_[l + 1].x.data();
    {  // r = b - A x, bc = R r: one parallel region
      const Pat& R = *s.R;
      const T* rv = L.R.data();
#pragma omp parallel num_threads(clamp_threads(th))
      {
#pragma omp for schedule(static)
        for (index_t i = 0; i < A.rows; ++i) {
          T acc = b[i];
          for (auto q = A.p[i]; q < A.p[i + 1]; ++q) acc -= v[q] * x[A.j[q]];
          r[i] = acc;
        }
#pragma omp for schedule(static)
        for (index_t i = 0; i < R.rows; ++i) {
          T acc{};
          for (auto q = R.p[i]; q < R.p[i + 1]; ++q) acc += rv[q] * r[R.j[q]];
          bc[i] = acc;
        }
      }
    }
    const int visits = options_.cycle == AmgCycle::W && l + 2 < num_levels() ? 2 : 1;
    const auto t1 = std::chrono::steady_clock::now();
    for (int t = 0; t < visits; ++t) cycle(l + 1, bc, xc, t == 0, tr);
    const double below = seconds_since(t1);
    // x += P xc (and the copy the parallel Gauss-Seidel sweeps start from)
    const Pat& P = *s.P;
    const T* pv = L.P.data();
    T* snap = sgs_blocks(l) > 1 ? work_[l].xo.data() : nullptr;
#pragma omp parallel for schedule(static) num_threads(clamp_threads(th))
    for (index_t i = 0; i < P.rows; ++i) {
      T acc{};
      for (auto q = P.p[i]; q < P.p[i + 1]; ++q) acc += pv[q] * xc[P.j[q]];
      x[i] += acc;
      if (snap != nullptr) snap[i] = x[i];
    }
    smooth(l, b, x, false, tr, snap != nullptr);
    cycle_s_[l] += seconds_since(t0) - below;
  }

  static double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  }

  struct Work {
    std::vector<T> r, b, x, d, xo, xo2;  // xo, xo2: copies of x (the parallel Gauss-Seidel sweeps)
  };

  std::shared_ptr<const HierSym> sym_;
  std::vector<Level<T>> lv_;
  std::unique_ptr<Numeric> coarse_;  // the sparse factorization of the last level, or
  DenseLu<T> dense_;                 // its dense one
  bool dense_coarse_ = false;
  mutable std::vector<Work> work_;
  mutable std::vector<double> cycle_s_;  // per level: seconds of cycling (own work)
  std::vector<double> setup_s_levels_;   // per level: seconds of setup
  mutable std::mutex mutex_;
  AmgOptions options_;
  int threads_ = 1;
  double setup_s_ = 0.0;
  bool values_only_ = false;
};

}  // namespace
}  // namespace sla::detail

namespace sla {

double AmgPreconditioner::operator_complexity() const {
  double total = 0.0;
  for (int l = 0; l < num_levels(); ++l) total += static_cast<double>(matrix(l, 'A').nnz());
  const double first = static_cast<double>(matrix(0, 'A').nnz());
  return first > 0 ? total / first : 1.0;
}

double AmgPreconditioner::grid_complexity() const {
  double total = 0.0;
  for (int l = 0; l < num_levels(); ++l) total += static_cast<double>(matrix(l, 'A').n_rows);
  const double first = static_cast<double>(matrix(0, 'A').n_rows);
  return first > 0 ? total / first : 1.0;
}

std::string AmgPreconditioner::describe() const {
  std::ostringstream os;
  const AmgOptions& o = options();
  const char* sm = o.smoother == AmgSmoother::Jacobi ? "jacobi" : o.smoother == AmgSmoother::SGS ? "sgs" : "chebyshev";
  os << "smoothed-aggregation AMG: " << num_levels() << " levels, " << (o.cycle == AmgCycle::V ? "V" : "W")
     << "-cycle, " << sm << " smoother, strength " << o.strength;
  if (near_nullspace_columns() > 1)
    os << ", " << near_nullspace_columns() << " near-null-space vectors";
  else
    os << ", truncation " << o.truncation << ", coarse drop " << o.coarse_drop;
  if (o.block_size > 1) os << ", blocks of " << o.block_size;
  os << (values_only() ? ", values-only setup" : "") << "\n level        rows          nnz   nnz/row\n";
  for (int l = 0; l < num_levels(); ++l) {
    const AmgCsr a = matrix(l, 'A');
    char line[96];
    std::snprintf(line, sizeof line, " %5d %11lld %12lld %9.2f%s\n", l, static_cast<long long>(a.n_rows),
                  static_cast<long long>(a.nnz()), a.n_rows ? static_cast<double>(a.nnz()) / a.n_rows : 0.0,
                  l + 1 == num_levels() ? "  (direct)" : "");
    os << line;
  }
  char tail[128];
  std::snprintf(tail, sizeof tail, " operator complexity %.3f, grid complexity %.3f, setup %.3f s",
                operator_complexity(), grid_complexity(), setup_seconds());
  os << tail;
  return os.str();
}

std::unique_ptr<AmgPreconditioner> make_amg(const CsrArrays& a, const AmgOptions& options,
                                            const AmgPreconditioner* reuse, bool same_strength_only) {
  if (a.n_rows != a.n_cols)
    fail(ErrorKind::InvalidArgument, "amg: needs a square matrix, got (", a.n_rows, ", ", a.n_cols, ")");
  if (a.scalar != ScalarType::Float32 && a.scalar != ScalarType::Float64)
    fail(ErrorKind::InvalidArgument, "amg: needs real values (float32 or float64), got ", scalar_name(a.scalar));
  if (!(options.strength >= 0.0 && options.strength < 1.0))
    fail(ErrorKind::InvalidArgument, "strength: needs 0 <= strength < 1, got ", options.strength);
  if (!(options.truncation >= 0.0 && options.truncation < 1.0))
    fail(ErrorKind::InvalidArgument, "truncation: needs 0 <= truncation < 1, got ", options.truncation);
  if (!(options.coarse_drop >= 0.0 && options.coarse_drop < 1.0))
    fail(ErrorKind::InvalidArgument, "coarse_drop: needs 0 <= coarse_drop < 1, got ", options.coarse_drop);
  if (options.near_nullspace_columns < 1 || options.near_nullspace_columns > 64)
    fail(ErrorKind::InvalidArgument, "near_nullspace: needs 1 to 64 vectors, got ", options.near_nullspace_columns);
  if (options.near_nullspace_columns > 1 && options.near_nullspace == nullptr)
    fail(ErrorKind::InvalidArgument, "near_nullspace: ", options.near_nullspace_columns,
         " vectors announced but none given");
  if (options.block_size < 1 || a.n_rows % options.block_size != 0)
    fail(ErrorKind::InvalidArgument, "block_size: needs a divisor of the ", a.n_rows, " rows, got ",
         options.block_size);
  if (options.parallel_rows < 1)
    fail(ErrorKind::InvalidArgument, "parallel_rows: needs >= 1, got ", options.parallel_rows);
  if (options.sweeps < 1) fail(ErrorKind::InvalidArgument, "sweeps: needs >= 1, got ", options.sweeps);
  if (options.degree < 1) fail(ErrorKind::InvalidArgument, "degree: needs >= 1, got ", options.degree);
  if (options.max_coarse < 1) fail(ErrorKind::InvalidArgument, "max_coarse: needs >= 1, got ", options.max_coarse);
  if (options.max_levels < 1) fail(ErrorKind::InvalidArgument, "max_levels: needs >= 1, got ", options.max_levels);
  if (a.nnz() > 2147483647 || a.n_rows > 2147483647)
    fail(ErrorKind::InvalidArgument, "amg: matrices with more than 2^31 - 1 rows or entries are not supported");
  if (reuse != nullptr && (reuse->scalar() != a.scalar || reuse->n() != a.n_rows))
    fail(ErrorKind::InvalidArgument, "amg: a values-only setup needs a hierarchy of the same size and dtype");
  return detail::visit_csr(a, [&](auto t, auto ix) -> std::unique_ptr<AmgPreconditioner> {
    using T = decltype(t);
    using I = decltype(ix);
    const detail::Csr<T, I> A = detail::typed<T, I>(a);
    for (index_t i = 0; i < a.n_rows; ++i)
      if (A.p[i + 1] == A.p[i])
        fail(ErrorKind::SingularMatrix, "amg: A is structurally singular: row ", i, " of the ", a.n_rows, " x ",
             a.n_cols, " matrix has no stored entry");
    if constexpr (detail::is_complex_t<T>::value) {
      fail(ErrorKind::InvalidArgument, "amg: needs real values");
    } else {
      const index_t nnz = a.nnz();
      for (index_t q = 0; q < nnz; ++q)
        if (!std::isfinite(static_cast<double>(A.v[q])))
          fail(ErrorKind::InvalidArgument, "A: value ", q, " is not finite");
      const auto* prev = dynamic_cast<const detail::Amg<T>*>(reuse);
      if (reuse != nullptr && prev == nullptr) fail(ErrorKind::InvalidArgument, "amg: reuse is not a hierarchy");
      return std::make_unique<detail::Amg<T>>(a, options, prev, same_strength_only);
    }
  });
}

}  // namespace sla
