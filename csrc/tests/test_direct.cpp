// Tiny hand-checkable cases for the direct solvers, run on every backend and method.
#include <gtest/gtest.h>

#include <complex>
#include <cstdint>
#include <vector>

#include "sla/direct.hpp"
#include "sla/errors.hpp"

using sla::Backend;
using sla::ErrorKind;
using sla::Method;
using sla::Op;
using sla::ScalarType;
using sla::index_t;

namespace {

// [[4, 1, 0], [1, 3, 1], [0, 1, 2]]: SPD, det = 18.
struct Spd3 {
  std::vector<index_t> indptr{0, 2, 5, 7};
  std::vector<index_t> indices{0, 1, 0, 1, 2, 1, 2};
  std::vector<double> values{4, 1, 1, 3, 1, 1, 2};
  sla::CsrView<index_t> view() const { return {3, 3, indptr.data(), indices.data()}; }
};

// [[2, 1, 0], [0, 3, 1], [1, 0, 4]]: unsymmetric, det = 25.
struct Gen3 {
  std::vector<index_t> indptr{0, 2, 4, 6};
  std::vector<index_t> indices{0, 1, 1, 2, 0, 2};
  std::vector<double> values{2, 1, 3, 1, 1, 4};
  sla::CsrView<index_t> view() const { return {3, 3, indptr.data(), indices.data()}; }
};

std::vector<double> matvec(const std::vector<index_t>& p, const std::vector<index_t>& j, const std::vector<double>& v,
                           const std::vector<double>& x, bool transpose) {
  std::vector<double> y(x.size(), 0.0);
  for (size_t r = 0; r + 1 < p.size(); ++r)
    for (index_t k = p[r]; k < p[r + 1]; ++k) {
      if (transpose) y[j[k]] += v[k] * x[r];
      else y[r] += v[k] * x[j[k]];
    }
  return y;
}

struct Case {
  Backend backend;
  Method method;
};

class DirectAllBackends : public ::testing::TestWithParam<Case> {};

TEST_P(DirectAllBackends, SolvesSpdAndTwoRightHandSides) {
  const Case c = GetParam();
  if (!sla::backend_available(c.backend)) GTEST_SKIP() << "backend not compiled in";
  Spd3 a;
  auto sym = sla::analyze(c.backend, c.method, ScalarType::Float64, a.view());
  auto num = sla::factorize(sym, a.values.data());
  // Column-major n x 2: x1 = (1, 2, 3), x2 = (-1, 0, 1).
  std::vector<double> x_true{1, 2, 3, -1, 0, 1}, b(6), x(6);
  for (int j = 0; j < 2; ++j) {
    std::vector<double> xj(x_true.begin() + 3 * j, x_true.begin() + 3 * j + 3);
    auto bj = matvec(a.indptr, a.indices, a.values, xj, false);
    std::copy(bj.begin(), bj.end(), b.begin() + 3 * j);
  }
  num->solve(b.data(), x.data(), 2, Op::N);
  for (int k = 0; k < 6; ++k) EXPECT_NEAR(x[k], x_true[k], 1e-12);
}

INSTANTIATE_TEST_SUITE_P(Direct, DirectAllBackends,
                         ::testing::Values(Case{Backend::SuiteSparse, Method::Cholesky},
                                           Case{Backend::SuiteSparse, Method::LDL}, Case{Backend::SuiteSparse, Method::LU},
                                           Case{Backend::Eigen, Method::Cholesky}, Case{Backend::Eigen, Method::LDL},
                                           Case{Backend::Eigen, Method::LU}));

class DirectLU : public ::testing::TestWithParam<Backend> {};

TEST_P(DirectLU, UnsymmetricAndAdjointSolve) {
  const Backend be = GetParam();
  if (!sla::backend_available(be)) GTEST_SKIP() << "backend not compiled in";
  Gen3 a;
  auto num = sla::factorize(sla::analyze(be, Method::LU, ScalarType::Float64, a.view()), a.values.data());
  const std::vector<double> x_true{1, -2, 0.5};
  for (Op op : {Op::N, Op::H}) {
    auto b = matvec(a.indptr, a.indices, a.values, x_true, op == Op::H);
    std::vector<double> x(3);
    num->solve(b.data(), x.data(), 1, op);
    for (int k = 0; k < 3; ++k) EXPECT_NEAR(x[k], x_true[k], 1e-12) << "op " << (op == Op::N ? "N" : "H");
  }
}

TEST_P(DirectLU, ComplexAdjointSolve) {
  const Backend be = GetParam();
  if (!sla::backend_available(be)) GTEST_SKIP() << "backend not compiled in";
  using C = std::complex<double>;
  Gen3 a;
  std::vector<C> vals{{2, 1}, {1, -1}, {3, 0}, {0, 1}, {1, 2}, {4, -1}};
  auto num = sla::factorize(sla::analyze(be, Method::LU, ScalarType::Complex128, a.view()), vals.data());
  const std::vector<C> x_true{{1, 1}, {-2, 0}, {0.5, -3}};
  // b = A^H x_true: b[j] += conj(A[r][j]) x[r]
  std::vector<C> b(3, 0.0), x(3);
  for (index_t r = 0; r < 3; ++r)
    for (index_t k = a.indptr[r]; k < a.indptr[r + 1]; ++k) b[a.indices[k]] += std::conj(vals[k]) * x_true[r];
  num->solve(b.data(), x.data(), 1, Op::H);
  for (int k = 0; k < 3; ++k) EXPECT_NEAR(std::abs(x[k] - x_true[k]), 0.0, 1e-12);
}

TEST_P(DirectLU, SingularMatrixIsReported) {
  const Backend be = GetParam();
  if (!sla::backend_available(be)) GTEST_SKIP() << "backend not compiled in";
  // [[1, 2], [2, 4]] is singular.
  std::vector<index_t> p{0, 2, 4}, j{0, 1, 0, 1};
  std::vector<double> v{1, 2, 2, 4};
  auto sym = sla::analyze(be, Method::LU, ScalarType::Float64, sla::CsrView<index_t>{2, 2, p.data(), j.data()});
  try {
    sla::factorize(sym, v.data());
    FAIL() << "expected SingularMatrix";
  } catch (const sla::Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::SingularMatrix) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Direct, DirectLU, ::testing::Values(Backend::SuiteSparse, Backend::Eigen));

class DirectCholesky : public ::testing::TestWithParam<Backend> {};

TEST_P(DirectCholesky, IndefiniteMatrixIsReported) {
  const Backend be = GetParam();
  if (!sla::backend_available(be)) GTEST_SKIP() << "backend not compiled in";
  // [[1, 2], [2, 1]] has eigenvalues 3 and -1.
  std::vector<index_t> p{0, 2, 4}, j{0, 1, 0, 1};
  std::vector<double> v{1, 2, 2, 1};
  auto sym = sla::analyze(be, Method::Cholesky, ScalarType::Float64, sla::CsrView<index_t>{2, 2, p.data(), j.data()});
  try {
    sla::factorize(sym, v.data());
    FAIL() << "expected NotPositiveDefinite";
  } catch (const sla::Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NotPositiveDefinite) << e.what();
  }
  // LDL^T handles the indefinite matrix: x = (1, 1) gives b = (3, 3).
  auto ldl = sla::factorize(sla::analyze(be, Method::LDL, ScalarType::Float64, sla::CsrView<index_t>{2, 2, p.data(), j.data()}),
                            v.data());
  std::vector<double> b{3, 3}, x(2);
  ldl->solve(b.data(), x.data(), 1, Op::N);
  EXPECT_NEAR(x[0], 1.0, 1e-12);
  EXPECT_NEAR(x[1], 1.0, 1e-12);
}

TEST_P(DirectCholesky, BatchSharesOneAnalysisAndFloat32Works) {
  const Backend be = GetParam();
  if (!sla::backend_available(be)) GTEST_SKIP() << "backend not compiled in";
  Spd3 a;
  std::vector<float> v1(a.values.begin(), a.values.end()), v2(v1);
  for (auto& v : v2) v *= 2.0f;  // 2A
  std::vector<int32_t> p(a.indptr.begin(), a.indptr.end()), j(a.indices.begin(), a.indices.end());
  auto sym = sla::analyze(be, Method::Cholesky, ScalarType::Float32, sla::CsrView<int32_t>{3, 3, p.data(), j.data()});
  auto f1 = sla::factorize(sym, v1.data());
  auto f2 = sla::factorize(sym, v2.data());
  EXPECT_EQ(f1->symbolic().get(), f2->symbolic().get());
  std::vector<float> b{5, 6, 3}, x1(3), x2(3);  // A (1, 1, 1) = (5, 5, 3)... use b = A (1,1,1)
  b = {5, 5, 3};
  f1->solve(b.data(), x1.data(), 1, Op::N);
  f2->solve(b.data(), x2.data(), 1, Op::N);
  for (int k = 0; k < 3; ++k) {
    EXPECT_NEAR(x1[k], 1.0f, 1e-5);
    EXPECT_NEAR(x2[k], 0.5f, 1e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(Direct, DirectCholesky, ::testing::Values(Backend::SuiteSparse, Backend::Eigen));

TEST(DirectValidation, RejectsBadPatterns) {
  std::vector<index_t> p{0, 2, 3}, j{1, 0, 5};  // unsorted row 0, out-of-range column
  auto expect_invalid = [](auto&& fn, const char* needle) {
    try {
      fn();
      FAIL() << "expected InvalidArgument";
    } catch (const sla::Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_invalid([&] { sla::validate_csr(sla::CsrView<index_t>{2, 2, p.data(), j.data()}, 3, 3, "A"); },
                 "not sorted");
  std::vector<index_t> j2{0, 1, 5};
  expect_invalid([&] { sla::validate_csr(sla::CsrView<index_t>{2, 2, p.data(), j2.data()}, 3, 3, "A"); },
                 "out of range");
  std::vector<index_t> p3{0, 3, 2};
  expect_invalid([&] { sla::validate_csr(sla::CsrView<index_t>{2, 6, p3.data(), j2.data()}, 3, 3, "A"); },
                 "decreases");
  expect_invalid(
      [&] { sla::analyze(Backend::Eigen, Method::LU, ScalarType::Float64, sla::CsrView<index_t>{2, 3, p.data(), j2.data()}); },
      "square");
}

TEST(DirectPlan, LowerTriangleCscPermutation) {
  Spd3 a;
  sla::CscPlan plan = sla::make_csc_plan(a.view(), true);
  // Lower triangle of the 3x3 tridiagonal: columns {0,1}, {1,2}, {2}.
  EXPECT_EQ(plan.colptr, (std::vector<index_t>{0, 2, 4, 5}));
  EXPECT_EQ(plan.rowind, (std::vector<index_t>{0, 1, 1, 2, 2}));
  EXPECT_EQ(plan.perm, (std::vector<index_t>{0, 2, 3, 5, 6}));
}

}  // namespace
