// Smoothed-aggregation AMG: hierarchy, cycles, smoothers, values-only setup, transposed cycle, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "sla/amg.hpp"
#include "sla/errors.hpp"
#include "sla/krylov.hpp"
#include "test_util.hpp"

using sla::index_t;

namespace {

// The m x m 2D operator -eps u_xx - u_yy (5-point, Dirichlet), int64 indices.
struct Aniso2d {
  index_t n;
  std::vector<std::int64_t> p{0}, j;
  std::vector<double> v;
  Aniso2d(index_t m, double eps, double skew = 0.0) : n(m * m) {
    for (index_t r = 0; r < n; ++r) {
      const index_t x = r % m, y = r / m;
      auto push = [&](index_t c, double val) { j.push_back(c), v.push_back(val); };
      if (y > 0) push(r - m, -1);
      if (x > 0) push(r - 1, -eps - skew);
      push(r, 2 + 2 * eps);
      if (x < m - 1) push(r + 1, -eps + skew);
      if (y < m - 1) push(r + m, -1);
      p.push_back(static_cast<std::int64_t>(j.size()));
    }
  }
  sla::CsrArrays arrays() const {
    sla::CsrArrays a;
    a.n_rows = a.n_cols = n;
    a.indptr = p.data();
    a.indices = j.data();
    a.values = v.data();
    a.index32 = false;
    return a;
  }
};

// The 7-point Laplacian on an m^3 grid (Dirichlet), int64 indices.
struct Poisson3d : Aniso2d {
  explicit Poisson3d(index_t m) : Aniso2d(0, 1.0) {
    n = m * m * m;
    p.assign(1, 0);
    for (index_t r = 0; r < n; ++r) {
      const index_t x = r % m, y = (r / m) % m, z = r / (m * m);
      auto push = [&](index_t c, double val) { j.push_back(c), v.push_back(val); };
      if (z > 0) push(r - m * m, -1);
      if (y > 0) push(r - m, -1);
      if (x > 0) push(r - 1, -1);
      push(r, 6);
      if (x < m - 1) push(r + 1, -1);
      if (y < m - 1) push(r + m, -1);
      if (z < m - 1) push(r + m * m, -1);
      p.push_back(static_cast<std::int64_t>(j.size()));
    }
  }
};

std::vector<double> csr_matvec(const sla::AmgCsr& a, const std::vector<double>& x) {
  std::vector<double> y(a.n_rows, 0.0);
  const auto* v = static_cast<const double*>(a.values);
  for (index_t i = 0; i < a.n_rows; ++i)
    for (auto q = a.indptr[i]; q < a.indptr[i + 1]; ++q) y[i] += v[q] * x[a.indices[q]];
  return y;
}

std::vector<double> diff(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

double norm(const std::vector<double>& a) {
  double s = 0;
  for (double x : a) s += x * x;
  return std::sqrt(s);
}

sla::KrylovResult pcg(const Aniso2d& A, const sla::Preconditioner* M,
                      sla::KrylovMethod method = sla::KrylovMethod::CG) {
  std::vector<double> b(A.n, 1.0), x(A.n, 0.0);
  sla::KrylovOptions o;
  o.rtol = 1e-8;
  o.maxiter = 500;
  return sla::krylov_solve(method, A.arrays(), b.data(), x.data(), 1, M, sla::Op::N, o, nullptr);
}

TEST(Amg, HierarchyCoarsensPoissonWithLowComplexity) {
  Aniso2d A(100, 1.0);
  sla::AmgOptions o;
  o.max_coarse = 50;
  auto M = sla::make_amg(A.arrays(), o);
  EXPECT_GE(M->num_levels(), 3);
  EXPECT_LE(M->matrix(M->num_levels() - 1, 'A').n_rows, 50);
  EXPECT_LT(M->operator_complexity(), 1.5);
  EXPECT_GT(M->grid_complexity(), 1.0);
  EXPECT_NE(M->describe().find("operator complexity"), std::string::npos);
  for (int l = 0; l + 1 < M->num_levels(); ++l) {
    const sla::AmgCsr P = M->matrix(l, 'P'), R = M->matrix(l, 'R');
    EXPECT_EQ(P.n_rows, M->matrix(l, 'A').n_rows);
    EXPECT_EQ(P.n_cols, M->matrix(l + 1, 'A').n_rows);
    EXPECT_EQ(R.nnz(), P.nnz());
  }
  EXPECT_THROW(M->matrix(M->num_levels() - 1, 'P'), sla::Error);
}

TEST(Amg, EverySmootherAndCycleConvergesFastOnPoisson) {
  Aniso2d A(80, 1.0);
  for (auto sm : {sla::AmgSmoother::Jacobi, sla::AmgSmoother::Chebyshev, sla::AmgSmoother::SGS})
    for (auto cy : {sla::AmgCycle::V, sla::AmgCycle::W}) {
      sla::AmgOptions o;
      o.smoother = sm;
      o.cycle = cy;
      o.max_coarse = 40;
      auto M = sla::make_amg(A.arrays(), o);
      const auto r = pcg(A, M.get());
      EXPECT_TRUE(r.converged);
      EXPECT_LE(r.iterations, 25) << static_cast<int>(sm) << " " << static_cast<int>(cy);
    }
}

TEST(Amg, AnisotropicPoissonConverges) {
  Aniso2d A(80, 1e-3);
  sla::AmgOptions o;
  o.max_coarse = 40;
  auto M = sla::make_amg(A.arrays(), o);
  const auto r = pcg(A, M.get());
  EXPECT_TRUE(r.converged);
  EXPECT_LE(r.iterations, 30);
}

TEST(Amg, ValuesOnlySetupMatchesFullSetup) {
  Aniso2d A(60, 1.0), B(60, 1.0);
  for (auto& x : B.v) x *= 4.0;  // exact: the full setup of B makes the same aggregates as A's
  sla::AmgOptions o;
  o.max_coarse = 30;
  auto MA = sla::make_amg(A.arrays(), o);
  auto MB = sla::make_amg(B.arrays(), o);
  auto MR = sla::make_amg(B.arrays(), o, MA.get());
  EXPECT_TRUE(MR->values_only());
  EXPECT_FALSE(MB->values_only());
  ASSERT_EQ(MR->num_levels(), MB->num_levels());
  for (int l = 0; l < MB->num_levels(); ++l) {
    EXPECT_EQ(MR->matrix(l, 'A').nnz(), MB->matrix(l, 'A').nnz());
    // The estimates differ only by their start vectors (the values-only one: A's eigenvector estimate).
    EXPECT_NEAR(MR->spectral_radius(l), MB->spectral_radius(l), 0.01 * MB->spectral_radius(l));
  }
  std::vector<double> r(A.n), z1(A.n), z2(A.n);
  for (index_t i = 0; i < A.n; ++i) r[i] = std::sin(0.1 * i);
  MB->apply(r.data(), z1.data(), 1, sla::Op::N);
  MR->apply(r.data(), z2.data(), 1, sla::Op::N);
  EXPECT_LT(norm(diff(z1, z2)), 0.02 * norm(z1));
  EXPECT_EQ(pcg(B, MR.get()).iterations, pcg(B, MB.get()).iterations);
  // Same pattern, other strong connections: with same_strength_only a full setup is done instead.
  Aniso2d D(60, 1e-3);
  EXPECT_FALSE(sla::make_amg(D.arrays(), o, MA.get(), true)->values_only());
  EXPECT_TRUE(sla::make_amg(B.arrays(), o, MA.get(), true)->values_only());
  Aniso2d C(50, 1.0);  // another pattern
  EXPECT_THROW(sla::make_amg(C.arrays(), o, MA.get()), sla::Error);
}

TEST(Amg, SparsifiedCoarseOperatorsKeepTheNearNullSpace) {
  Poisson3d A(14);
  sla::AmgOptions exact, o;
  exact.coarse_drop = 0.0;
  exact.max_coarse = o.max_coarse = 40;
  auto ME = sla::make_amg(A.arrays(), exact);
  auto M = sla::make_amg(A.arrays(), o);
  ASSERT_GE(M->num_levels(), 3);
  EXPECT_LT(M->operator_complexity(), ME->operator_complexity());
  // Level 1 of both: the same aggregates and prolongator, the Galerkin product R A P (ME) and its
  // sparsification (M): a subset of the entries, equal off the diagonal, the same product with B_1.
  const sla::AmgCsr G = ME->matrix(1, 'A'), S = M->matrix(1, 'A');
  ASSERT_EQ(G.n_rows, S.n_rows);
  EXPECT_LT(S.nnz(), G.nnz());
  const auto* gv = static_cast<const double*>(G.values);
  const auto* sv = static_cast<const double*>(S.values);
  for (index_t i = 0; i < S.n_rows; ++i) {
    auto g = G.indptr[i];
    for (auto q = S.indptr[i]; q < S.indptr[i + 1]; ++q) {
      while (g < G.indptr[i + 1] && G.indices[g] < S.indices[q]) ++g;
      ASSERT_LT(g, G.indptr[i + 1]);
      ASSERT_EQ(G.indices[g], S.indices[q]);
      if (S.indices[q] != i) EXPECT_EQ(sv[q], gv[g]);
    }
  }
  const auto* b1 = static_cast<const double*>(M->near_nullspace(1));
  std::vector<double> b(b1, b1 + S.n_rows);
  const std::vector<double> gb = csr_matvec(G, b), sb = csr_matvec(S, b);
  EXPECT_LT(norm(diff(gb, sb)), 1e-12 * norm(gb));
  // and the iterations hardly change
  EXPECT_LE(pcg(A, M.get()).iterations, pcg(A, ME.get()).iterations + 1);
}

TEST(Amg, TruncatedProlongatorStillInterpolatesTheNearNullSpace) {
  Aniso2d A(60, 1.0);
  sla::AmgOptions o, t;
  o.max_coarse = t.max_coarse = 30;
  o.truncation = 0.0;
  t.truncation = 0.3;
  auto M = sla::make_amg(A.arrays(), o);
  auto MT = sla::make_amg(A.arrays(), t);
  const sla::AmgCsr P = M->matrix(0, 'P'), PT = MT->matrix(0, 'P');
  ASSERT_EQ(P.n_cols, PT.n_cols);
  EXPECT_LT(PT.nnz(), P.nnz());
  const auto* b1 = static_cast<const double*>(M->near_nullspace(1));
  std::vector<double> b(b1, b1 + P.n_cols);
  const std::vector<double> pb = csr_matvec(P, b), tb = csr_matvec(PT, b);
  EXPECT_LT(norm(diff(pb, tb)), 1e-12 * norm(pb));
  // rows keep their largest entry, and R is P's transpose
  const sla::AmgCsr R = MT->matrix(0, 'R');
  EXPECT_EQ(R.nnz(), PT.nnz());
  const auto r = pcg(A, MT.get());
  EXPECT_TRUE(r.converged);
  EXPECT_LE(r.iterations, 25);
  // values-only: the truncated pattern is kept
  Aniso2d B(60, 1.0);
  for (auto& x : B.v) x *= 2.0;
  auto MR = sla::make_amg(B.arrays(), o, MT.get());
  EXPECT_TRUE(MR->values_only());
  EXPECT_EQ(MR->matrix(0, 'P').nnz(), PT.nnz());
}

TEST(Amg, ParallelGaussSeidelKeepsTheCycleSymmetric) {
  Aniso2d A(160, 1.0);  // 25600 rows: the finest level is swept in two blocks
  sla::AmgOptions o1, o2;
  o2.threads = 2;
  o2.parallel_rows = 20000;
  auto M1 = sla::make_amg(A.arrays(), o1);
  auto M2 = sla::make_amg(A.arrays(), o2);
  std::vector<double> x(A.n), y(A.n), mx(A.n), my(A.n), m1(A.n);
  for (index_t i = 0; i < A.n; ++i) x[i] = std::cos(0.37 * i), y[i] = std::sin(0.11 * i + 1);
  M2->apply(x.data(), mx.data(), 1, sla::Op::N);
  M2->apply(y.data(), my.data(), 1, sla::Op::N);
  double a = 0, b = 0;
  for (index_t i = 0; i < A.n; ++i) a += mx[i] * y[i], b += x[i] * my[i];
  EXPECT_NEAR(a, b, 1e-10 * std::abs(a));
  // another preconditioner than the sequential sweeps', as good
  M1->apply(x.data(), m1.data(), 1, sla::Op::N);
  EXPECT_GT(norm(diff(mx, m1)), 1e-8 * norm(m1));
  EXPECT_LE(pcg(A, M2.get()).iterations, pcg(A, M1.get()).iterations + 1);
  // deterministic
  std::vector<double> again(A.n);
  M2->apply(x.data(), again.data(), 1, sla::Op::N);
  EXPECT_EQ(again, mx);
  // Two sweeps, and a W-cycle whose second visit of level 1 (parallel too) starts from a nonzero x.
  Aniso2d F(120, 1.0);
  sla::AmgOptions w;
  w.threads = 2;
  w.parallel_rows = 1000;
  w.sweeps = 2;
  w.cycle = sla::AmgCycle::W;
  auto MW = sla::make_amg(F.arrays(), w);
  ASSERT_GT(MW->matrix(1, 'A').n_rows, 1000);
  std::vector<double> u(F.n), t(F.n), mu(F.n), mt(F.n);
  for (index_t i = 0; i < F.n; ++i) u[i] = std::cos(0.37 * i), t[i] = std::sin(0.11 * i + 1);
  MW->apply(u.data(), mu.data(), 1, sla::Op::N);
  MW->apply(t.data(), mt.data(), 1, sla::Op::N);
  a = b = 0;
  for (index_t i = 0; i < F.n; ++i) a += mu[i] * t[i], b += u[i] * mt[i];
  EXPECT_NEAR(a, b, 1e-10 * std::abs(a));
}

TEST(Amg, OpHIsTheTransposeOfTheCycleAndGmresConverges) {
  Aniso2d A(40, 1.0, 0.3);  // convection-like: not symmetric
  sla::AmgOptions o;
  o.max_coarse = 20;
  for (auto sm : {sla::AmgSmoother::Jacobi, sla::AmgSmoother::Chebyshev, sla::AmgSmoother::SGS}) {
    o.smoother = sm;
    auto M = sla::make_amg(A.arrays(), o);
    EXPECT_FALSE(M->symmetric());
    std::vector<double> x(A.n), y(A.n), mx(A.n), mty(A.n);
    for (index_t i = 0; i < A.n; ++i) x[i] = std::cos(0.37 * i), y[i] = std::sin(0.11 * i + 1);
    M->apply(x.data(), mx.data(), 1, sla::Op::N);
    M->apply(y.data(), mty.data(), 1, sla::Op::H);
    double a = 0, b = 0;
    for (index_t i = 0; i < A.n; ++i) a += mx[i] * y[i], b += x[i] * mty[i];
    EXPECT_NEAR(a, b, 1e-10 * std::abs(a));
    EXPECT_TRUE(pcg(A, M.get(), sla::KrylovMethod::GMRES).converged);
    EXPECT_TRUE(pcg(A, M.get(), sla::KrylovMethod::BiCGStab).converged);
  }
}

TEST(Amg, BlocksOfColumnsMatchSingleColumns) {
  Aniso2d A(30, 1.0);
  auto M = sla::make_amg(A.arrays(), sla::AmgOptions{});  // 900 rows: two levels
  std::vector<double> r(2 * A.n), z(2 * A.n), c(A.n), zc(A.n);
  for (index_t i = 0; i < 2 * A.n; ++i) r[i] = std::sin(0.3 * i);
  M->apply(r.data(), z.data(), 2, sla::Op::N);
  for (index_t i = 0; i < A.n; ++i) c[i] = r[2 * i + 1];
  M->apply(c.data(), zc.data(), 1, sla::Op::N);
  for (index_t i = 0; i < A.n; ++i) EXPECT_DOUBLE_EQ(z[2 * i + 1], zc[i]);
}

TEST(Amg, BadInputThrowsNamedErrors) {
  Aniso2d A(10, 1.0);
  for (auto q = A.p[5]; q < A.p[6]; ++q)
    if (A.j[q] == 5) A.v[q] = 0.0;
  try {
    sla::make_amg(A.arrays(), sla::AmgOptions{});
    FAIL() << "no error";
  } catch (const sla::Error& e) {
    EXPECT_EQ(e.kind(), sla::ErrorKind::SingularMatrix);
    EXPECT_NE(std::string(e.what()).find("diagonal"), std::string::npos);
  }
  Aniso2d B(10, 1.0);
  sla::CsrArrays a = B.arrays();
  a.n_cols = a.n_rows + 1;
  EXPECT_THROW(sla::make_amg(a, sla::AmgOptions{}), sla::Error);
  sla::AmgOptions bad;
  bad.strength = 1.5;
  EXPECT_THROW(sla::make_amg(B.arrays(), bad), sla::Error);
  bad = sla::AmgOptions{};
  bad.truncation = 1.0;
  EXPECT_THROW(sla::make_amg(B.arrays(), bad), sla::Error);
  bad = sla::AmgOptions{};
  bad.coarse_drop = -0.1;
  EXPECT_THROW(sla::make_amg(B.arrays(), bad), sla::Error);
  std::vector<std::complex<double>> cv(B.v.begin(), B.v.end());
  sla::CsrArrays c = B.arrays();
  c.values = cv.data();
  c.scalar = sla::ScalarType::Complex128;
  EXPECT_THROW(sla::make_amg(c, sla::AmgOptions{}), sla::Error);
}

TEST(Amg, NearNullspaceIsUsed) {
  // A diagonally scaled Poisson matrix S A S has near-null space S^{-1} 1.
  Aniso2d A(60, 1.0);
  std::vector<double> s(A.n), ns(A.n);
  for (index_t i = 0; i < A.n; ++i) s[i] = 1.0 + 0.5 * std::sin(0.05 * i), ns[i] = 1.0 / s[i];
  for (index_t i = 0; i < A.n; ++i)
    for (auto q = A.p[i]; q < A.p[i + 1]; ++q) A.v[q] *= s[i] * s[A.j[q]];
  sla::AmgOptions o;
  o.max_coarse = 30;
  o.near_nullspace = ns.data();
  auto M = sla::make_amg(A.arrays(), o);
  const auto r = pcg(A, M.get());
  EXPECT_TRUE(r.converged);
  EXPECT_LE(r.iterations, 25);
}

// Two copies of the 2D Poisson operator, interleaved (unknowns (u, v) of node r at rows 2r, 2r + 1).
struct Pair2d : Aniso2d {
  explicit Pair2d(index_t m) : Aniso2d(0, 1.0) {
    const Aniso2d S(m, 1.0);
    n = 2 * S.n;
    p.assign(1, 0);
    for (index_t r = 0; r < S.n; ++r)
      for (int c = 0; c < 2; ++c) {
        for (auto q = S.p[r]; q < S.p[r + 1]; ++q) j.push_back(2 * S.j[q] + c), v.push_back(S.v[q]);
        p.push_back(static_cast<std::int64_t>(j.size()));
      }
  }
};

TEST(Amg, SeveralNearNullSpaceVectorsOnBlocks) {
  Pair2d A(50);
  std::vector<double> B(2 * A.n, 0.0);  // (1, 0) and (0, 1) on every node
  for (index_t r = 0; r < A.n; ++r) B[2 * r + r % 2] = 1.0;
  sla::AmgOptions o;
  o.max_coarse = 40;
  o.block_size = 2;
  o.near_nullspace = B.data();
  o.near_nullspace_columns = 2;
  auto M = sla::make_amg(A.arrays(), o);
  ASSERT_GE(M->num_levels(), 3);
  EXPECT_EQ(M->near_nullspace_columns(), 2);
  // Every aggregate of nodes has two coarse unknowns; T B_1 = B_0 makes P B_1 = (I - omega D^{-1} A) B_0.
  const sla::AmgCsr P = M->matrix(0, 'P'), A0 = M->matrix(0, 'A');
  EXPECT_EQ(P.n_cols % 2, 0);
  const auto* b1 = static_cast<const double*>(M->near_nullspace(1));
  const auto* dinv = static_cast<const double*>(M->inv_diag(0));
  const double omega = 4.0 / (3.0 * M->spectral_radius(0));
  for (int c = 0; c < 2; ++c) {
    std::vector<double> x(P.n_cols), b0(A.n);
    for (index_t i = 0; i < P.n_cols; ++i) x[i] = b1[2 * i + c];
    for (index_t i = 0; i < A.n; ++i) b0[i] = B[2 * i + c];
    const std::vector<double> pb = csr_matvec(P, x), ab = csr_matvec(A0, b0);
    for (index_t i = 0; i < A.n; ++i) EXPECT_NEAR(pb[i], b0[i] - omega * dinv[i] * ab[i], 1e-12);
  }
  const auto r = pcg(A, M.get());
  EXPECT_TRUE(r.converged);
  EXPECT_LE(r.iterations, 20);
  // Dependent vectors add no coarse unknowns: (1, 1) twice is one vector.
  std::vector<double> same(2 * A.n, 1.0);
  o.near_nullspace = same.data();
  auto M1 = sla::make_amg(A.arrays(), o);
  EXPECT_EQ(M1->matrix(0, 'P').n_cols, P.n_cols / 2);
  // A values-only setup whose near-null space has other ranks on the aggregates sets up anew.
  auto MR = sla::make_amg(A.arrays(), o, M.get());
  EXPECT_FALSE(MR->values_only());
  o.near_nullspace = B.data();
  EXPECT_TRUE(sla::make_amg(A.arrays(), o, M.get())->values_only());
  // Bad options: a block size that does not divide n; several vectors announced, none given.
  sla::AmgOptions bad = o;
  bad.block_size = 3;
  EXPECT_THROW(sla::make_amg(A.arrays(), bad), sla::Error);
  bad = sla::AmgOptions{};
  bad.near_nullspace_columns = 2;
  EXPECT_THROW(sla::make_amg(A.arrays(), bad), sla::Error);
}

}  // namespace
