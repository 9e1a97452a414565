// Krylov solvers and preconditioners on small matrices with known answers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <memory>
#include <vector>

#include "sla/errors.hpp"
#include "sla/krylov.hpp"
#include "test_util.hpp"

using sla::index_t;

namespace {

// 1D Laplacian tridiag(-1, 2, -1) of size n (SPD), int32 indices.
struct Lap1d {
  std::vector<std::int32_t> p{0}, j;
  std::vector<double> v;
  index_t n;
  explicit Lap1d(index_t n_, double shift = 0.0) : n(n_) {
    for (index_t i = 0; i < n; ++i) {
      if (i > 0) j.push_back(i - 1), v.push_back(-1);
      j.push_back(i), v.push_back(2 + shift);
      if (i < n - 1) j.push_back(i + 1), v.push_back(-1);
      p.push_back(static_cast<std::int32_t>(j.size()));
    }
  }
  sla::CsrArrays arrays() const {
    sla::CsrArrays a;
    a.n_rows = a.n_cols = n;
    a.indptr = p.data();
    a.indices = j.data();
    a.values = v.data();
    a.index32 = true;
    return a;
  }
};

std::vector<double> residual(const Lap1d& L, const std::vector<double>& x, const std::vector<double>& b, index_t k) {
  std::vector<double> ax(b.size());
  sla::spmv(L.arrays(), x.data(), ax.data(), k, 1);
  for (size_t i = 0; i < b.size(); ++i) ax[i] = b[i] - ax[i];
  return ax;
}

double norm(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return std::sqrt(s);
}

TEST(Krylov, SpmvBlockMatchesHandComputation) {
  Lap1d L(3);
  std::vector<double> x{1, 10, 2, 20, 3, 30}, y(6);  // row-major 3 x 2
  sla::spmv(L.arrays(), x.data(), y.data(), 2, 1);
  EXPECT_EQ(y, (std::vector<double>{0, 0, 0, 0, 4, 40}));
}

class KrylovMethods : public ::testing::TestWithParam<sla::KrylovMethod> {};

TEST_P(KrylovMethods, SolvesLaplacianWithEveryPreconditioner) {
  Lap1d L(50, 0.1);
  const index_t k = 2;
  std::vector<double> b(50 * k);
  for (index_t i = 0; i < 50; ++i) b[i * k] = 1.0, b[i * k + 1] = std::sin(0.3 * i);
  sla::KrylovOptions o;
  o.rtol = 1e-10;
  o.maxiter = 500;
  for (int pk = -1; pk < 4; ++pk) {
    std::unique_ptr<sla::Preconditioner> M;
    if (pk >= 0) M = sla::make_preconditioner(static_cast<sla::PrecondKind>(pk), L.arrays(), 1.2, 1);
    std::vector<double> x(b.size(), 0.0);
    auto r = sla::krylov_solve(GetParam(), L.arrays(), b.data(), x.data(), k, M.get(), sla::Op::N, o, nullptr);
    EXPECT_TRUE(r.converged) << "precond " << pk << " reason " << r.reason;
    EXPECT_LT(norm(residual(L, x, b, k)), 1e-9 * norm(b) * 10) << "precond " << pk;
  }
}

INSTANTIATE_TEST_SUITE_P(Krylov, KrylovMethods,
                         ::testing::Values(sla::KrylovMethod::CG, sla::KrylovMethod::BiCGStab,
                                           sla::KrylovMethod::GMRES, sla::KrylovMethod::MINRES));

TEST(Krylov, CgReportsIndefiniteMatrix) {
  Lap1d L(20, -3.0);  // diagonal -1: indefinite
  std::vector<double> b(20, 1.0), x(20, 0.0);
  sla::KrylovOptions o;
  o.maxiter = 1000;
  auto r = sla::krylov_solve(sla::KrylovMethod::CG, L.arrays(), b.data(), x.data(), 1, nullptr, sla::Op::N, o, nullptr);
  EXPECT_FALSE(r.converged);
  EXPECT_EQ(r.reason, "indefinite");
  EXPECT_LT(r.iterations, 5);
}

TEST(Krylov, NanStopsAtOnce) {
  Lap1d L(20);
  std::vector<double> b(20, 1.0), x(20, 0.0);
  b[3] = std::nan("");
  sla::KrylovOptions o;
  o.maxiter = 1000;
  for (auto m : {sla::KrylovMethod::CG, sla::KrylovMethod::GMRES, sla::KrylovMethod::BiCGStab, sla::KrylovMethod::MINRES}) {
    std::fill(x.begin(), x.end(), 0.0);
    auto r = sla::krylov_solve(m, L.arrays(), b.data(), x.data(), 1, nullptr, sla::Op::N, o, nullptr);
    EXPECT_EQ(r.reason, "nan");
    EXPECT_LT(r.iterations, 5);
  }
}

TEST(Krylov, MaxiterIsReported) {
  Lap1d L(200);
  std::vector<double> b(200, 1.0), x(200, 0.0);
  sla::KrylovOptions o;
  o.maxiter = 3;
  auto r = sla::krylov_solve(sla::KrylovMethod::CG, L.arrays(), b.data(), x.data(), 1, nullptr, sla::Op::N, o, nullptr);
  EXPECT_FALSE(r.converged);
  EXPECT_EQ(r.reason, "maxiter");
  EXPECT_EQ(r.iterations, 3);
}

TEST(Krylov, IncompleteFactorizationsAreExactOnTridiagonal) {
  // IC(0) and ILU(0) of a tridiagonal matrix have no dropped fill: they are exact, so one application
  // solves the system.
  Lap1d L(30);
  std::vector<double> b(30), z(30);
  for (int i = 0; i < 30; ++i) b[i] = 1.0 + i;
  for (auto kind : {sla::PrecondKind::IC0, sla::PrecondKind::ILU0}) {
    auto M = sla::make_preconditioner(kind, L.arrays(), 1.0, 1);
    for (auto op : {sla::Op::N, sla::Op::H}) {
      M->apply(b.data(), z.data(), 1, op);
      EXPECT_LT(norm(residual(L, z, b, 1)), 1e-10 * norm(b));
    }
  }
}

TEST(Krylov, PreconditionerBreakdownsAreReported) {
  Lap1d L(10, -3.0);  // negative diagonal: IC(0) fails at row 0
  try {
    sla::make_preconditioner(sla::PrecondKind::IC0, L.arrays(), 1.0, 1);
    FAIL();
  } catch (const sla::Error& e) {
    EXPECT_EQ(e.kind(), sla::ErrorKind::NotPositiveDefinite);
  }
  Lap1d Z(4, -2.0);  // zero diagonal
  for (auto kind : {sla::PrecondKind::ILU0, sla::PrecondKind::Jacobi}) {
    try {
      sla::make_preconditioner(kind, Z.arrays(), 1.0, 1);
      FAIL();
    } catch (const sla::Error& e) {
      EXPECT_EQ(e.kind(), sla::ErrorKind::SingularMatrix);
    }
  }
}

TEST(Krylov, ComplexGmresAndAdjointPreconditioner) {
  using C = std::complex<double>;
  // Unsymmetric complex tridiagonal: diag 4+i, sub 1, super -1+2i.
  const index_t n = 40;
  std::vector<std::int64_t> p{0}, j;
  std::vector<C> v;
  for (index_t i = 0; i < n; ++i) {
    if (i > 0) j.push_back(i - 1), v.push_back(C(1, 0));
    j.push_back(i), v.push_back(C(4, 1));
    if (i < n - 1) j.push_back(i + 1), v.push_back(C(-1, 2));
    p.push_back(static_cast<std::int64_t>(j.size()));
  }
  sla::CsrArrays a;
  a.n_rows = a.n_cols = n;
  a.indptr = p.data();
  a.indices = j.data();
  a.values = v.data();
  a.scalar = sla::ScalarType::Complex128;
  std::vector<C> b(n, C(1, -1)), x(n, C(0, 0)), ax(n);
  auto M = sla::make_preconditioner(sla::PrecondKind::ILU0, a, 1.0, 1);
  sla::KrylovOptions o;
  o.rtol = 1e-12;
  auto r = sla::krylov_solve(sla::KrylovMethod::GMRES, a, b.data(), x.data(), 1, M.get(), sla::Op::N, o, nullptr);
  EXPECT_TRUE(r.converged) << r.reason;
  EXPECT_LE(r.iterations, 2);  // ILU(0) is exact here
  sla::spmv(a, x.data(), ax.data(), 1, 1);
  double err = 0;
  for (index_t i = 0; i < n; ++i) err = std::max(err, std::abs(ax[i] - b[i]));
  EXPECT_LT(err, 1e-10);
}

TEST(Krylov, RejectsBadOptions) {
  Lap1d L(5);
  std::vector<double> b(5, 1.0), x(5, 0.0);
  sla::KrylovOptions o;
  o.rtol = 0.0;
  EXPECT_THROW(sla::krylov_solve(sla::KrylovMethod::CG, L.arrays(), b.data(), x.data(), 1, nullptr, sla::Op::N, o, nullptr),
               sla::Error);
  o.rtol = 1e-8;
  o.maxiter = 0;
  EXPECT_THROW(sla::krylov_solve(sla::KrylovMethod::CG, L.arrays(), b.data(), x.data(), 1, nullptr, sla::Op::N, o, nullptr),
               sla::Error);
}

}  // namespace

namespace {
TEST(Krylov, BiCGStabRenewsAnOrthogonalShadowResidual) {
  // Lower bidiagonal [[2,0,0],[1,2,0],[0,1,2]] with b = e_0: after one step the residual is
  // orthogonal to the first shadow residual; BiCGStab must restart, not report a breakdown.
  std::vector<std::int64_t> p{0, 1, 3, 5}, j{0, 0, 1, 1, 2};
  std::vector<double> v{2, 1, 2, 1, 2};
  sla::CsrArrays a;
  a.n_rows = a.n_cols = 3;
  a.indptr = p.data();
  a.indices = j.data();
  a.values = v.data();
  std::vector<double> b{1, 0, 0}, x(3, 0.0);
  sla::KrylovOptions o;
  o.rtol = 1e-12;
  auto r = sla::krylov_solve(sla::KrylovMethod::BiCGStab, a, b.data(), x.data(), 1, nullptr, sla::Op::N, o, nullptr);
  EXPECT_TRUE(r.converged) << r.reason;
  EXPECT_NEAR(x[0], 0.5, 1e-12);
  EXPECT_NEAR(x[1], -0.25, 1e-12);
  EXPECT_NEAR(x[2], 0.125, 1e-12);
}
}  // namespace

// --- Edge cases: n = 0, k = 0, a matrix without entries ------------------------------------------------

namespace {

const sla::KrylovMethod kMethods[] = {sla::KrylovMethod::CG, sla::KrylovMethod::BiCGStab, sla::KrylovMethod::GMRES,
                                      sla::KrylovMethod::MINRES};
const sla::PrecondKind kPreconds[] = {sla::PrecondKind::Jacobi, sla::PrecondKind::SSOR, sla::PrecondKind::IC0,
                                      sla::PrecondKind::ILU0};

// An n x n CSR matrix without stored entries.
struct NoEntries {
  std::vector<std::int64_t> p;
  std::vector<std::int64_t> j;
  std::vector<double> v;
  index_t n;
  explicit NoEntries(index_t n_) : p(n_ + 1, 0), n(n_) {}
  sla::CsrArrays arrays() const {
    sla::CsrArrays a;
    a.n_rows = a.n_cols = n;
    a.indptr = p.data();
    a.indices = j.data();
    a.values = v.data();
    return a;
  }
};

class KrylovEdge : public ::testing::TestWithParam<sla::KrylovMethod> {};

TEST_P(KrylovEdge, EmptySystemConvergesAtOnce) {
  NoEntries A(0);
  sla::validate_csr_arrays(A.arrays(), 1, 0, "A");
  for (index_t k : {0, 1, 3}) {
    for (int pk = -1; pk < 4; ++pk) {
      std::unique_ptr<sla::Preconditioner> M;
      if (pk >= 0) M = sla::make_preconditioner(kPreconds[pk], A.arrays(), 1.0, 1);
      std::vector<double> b, x;
      sla::KrylovOptions o;
      const auto r = sla::krylov_solve(GetParam(), A.arrays(), b.data(), x.data(), k, M.get(), sla::Op::N, o, nullptr);
      EXPECT_TRUE(r.converged) << "k " << k << " precond " << pk << " reason " << r.reason;
      EXPECT_EQ(r.reason, "converged");
      EXPECT_EQ(r.iterations, 0);
      EXPECT_EQ(r.residual, 0.0);
    }
  }
}

TEST_P(KrylovEdge, NoRightHandSidesIsConverged) {
  Lap1d L(5);
  std::vector<double> b, x;
  sla::KrylovOptions o;
  for (int pk = -1; pk < 4; ++pk) {
    std::unique_ptr<sla::Preconditioner> M;
    if (pk >= 0) M = sla::make_preconditioner(kPreconds[pk], L.arrays(), 1.0, 1);
    const auto r = sla::krylov_solve(GetParam(), L.arrays(), b.data(), x.data(), 0, M.get(), sla::Op::N, o, nullptr);
    EXPECT_TRUE(r.converged) << "precond " << pk;
    EXPECT_EQ(r.reason, "converged");
    EXPECT_EQ(r.iterations, 0);
  }
}

TEST_P(KrylovEdge, MatrixWithoutEntriesStopsWithAReason) {
  NoEntries A(3);
  sla::KrylovOptions o;
  o.maxiter = 1000000;
  for (index_t k : {1, 2}) {
    std::vector<double> b(3 * k, 1.0), x(3 * k, 0.0);
    sla::KrylovResult r;
    sla::test::within_seconds(10.0, "a Krylov solve with a zero matrix", [&] {
      r = sla::krylov_solve(GetParam(), A.arrays(), b.data(), x.data(), k, nullptr, sla::Op::N, o, nullptr);
    });
    EXPECT_FALSE(r.converged);
    EXPECT_TRUE(r.reason == "breakdown" || r.reason == "indefinite") << r.reason;
    EXPECT_LT(r.iterations, 10);
    for (double xi : x) EXPECT_TRUE(std::isfinite(xi)) << "x is left with a non-finite value";
    // b = 0 is solved by x = 0.
    std::fill(b.begin(), b.end(), 0.0);
    std::fill(x.begin(), x.end(), 0.0);
    r = sla::krylov_solve(GetParam(), A.arrays(), b.data(), x.data(), k, nullptr, sla::Op::N, o, nullptr);
    EXPECT_TRUE(r.converged) << r.reason;
  }
}

INSTANTIATE_TEST_SUITE_P(Krylov, KrylovEdge, ::testing::ValuesIn(kMethods));

TEST(KrylovEdgeCases, PreconditionersOfEmptyAndEntrylessMatrices) {
  NoEntries empty(0), zero(3);
  for (auto kind : kPreconds) {
    auto M = sla::make_preconditioner(kind, empty.arrays(), 1.0, 1);
    EXPECT_EQ(M->n(), 0);
    std::vector<double> r, z;
    for (auto op : {sla::Op::N, sla::Op::H}) M->apply(r.data(), z.data(), 1, op);
    try {
      sla::make_preconditioner(kind, zero.arrays(), 1.0, 1);
      ADD_FAILURE() << "no error for kind " << static_cast<int>(kind);
    } catch (const sla::Error& e) {
      EXPECT_EQ(e.kind(), sla::ErrorKind::SingularMatrix) << e.what();
    }
  }
}

TEST(KrylovEdgeCases, SpmvAndValidationOfEmptyShapes) {
  // 0 x 0, 3 x 0 and 0 x 2 products; a 3 x 2 matrix without entries gives y = 0.
  std::vector<std::int64_t> p0{0}, p3{0, 0, 0, 0}, none;
  std::vector<double> vals, x{1.0, 2.0}, y(3, 7.0);
  sla::CsrArrays a;
  a.indptr = p0.data();
  a.indices = none.data();
  a.values = vals.data();
  sla::validate_csr_arrays(a, 1, 0, "A");
  sla::spmv(a, x.data(), y.data(), 1, 1);
  a.n_cols = 2;
  sla::validate_csr_arrays(a, 1, 0, "A");
  sla::spmv(a, x.data(), y.data(), 1, 1);
  a.indptr = p3.data();
  a.n_rows = 3;
  a.n_cols = 0;
  sla::validate_csr_arrays(a, 4, 0, "A");
  sla::spmv(a, x.data(), y.data(), 1, 1);
  EXPECT_EQ(y, (std::vector<double>{0, 0, 0}));
  a.n_cols = 2;
  y.assign(3, 7.0);
  sla::spmv(a, x.data(), y.data(), 1, 1);
  EXPECT_EQ(y, (std::vector<double>{0, 0, 0}));
  // indptr must have n_rows + 1 entries even for n_rows = 0; it is not read when it has none.
  a.n_rows = 0;
  a.indptr = nullptr;
  EXPECT_THROW(sla::validate_csr_arrays(a, 0, 0, "A"), sla::Error);
}

}  // namespace
