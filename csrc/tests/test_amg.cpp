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

sla::KrylovResult pcg(const Aniso2d& A, const sla::Preconditioner* M, sla::KrylovMethod method = sla::KrylovMethod::CG) {
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

TEST(Amg, ValuesOnlySetupEqualsFullSetup) {
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
  std::vector<double> r(A.n), z1(A.n), z2(A.n);
  for (index_t i = 0; i < A.n; ++i) r[i] = std::sin(0.1 * i);
  MB->apply(r.data(), z1.data(), 1, sla::Op::N);
  MR->apply(r.data(), z2.data(), 1, sla::Op::N);
  for (index_t i = 0; i < A.n; ++i) EXPECT_NEAR(z1[i], z2[i], 1e-12 * (1 + std::abs(z1[i])));
  // Same pattern, other strong connections: with same_strength_only a full setup is done instead.
  Aniso2d D(60, 1e-3);
  EXPECT_FALSE(sla::make_amg(D.arrays(), o, MA.get(), true)->values_only());
  EXPECT_TRUE(sla::make_amg(B.arrays(), o, MA.get(), true)->values_only());
  Aniso2d C(50, 1.0);  // another pattern
  EXPECT_THROW(sla::make_amg(C.arrays(), o, MA.get()), sla::Error);
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

}  // namespace
