// Tiny hand-checkable cases for the direct solvers, run on every backend and method.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cpu/cpu_symbolic.hpp"  // internal: the CSC plan of the CPU backends
#include "sla/direct.hpp"
#include "sla/errors.hpp"

using sla::Backend;
using sla::ErrorKind;
using sla::index_t;
using sla::Method;
using sla::Op;
using sla::ScalarType;

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
      if (transpose)
        y[j[k]] += v[k] * x[r];
      else
        y[r] += v[k] * x[j[k]];
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
                                           Case{Backend::SuiteSparse, Method::LDL},
                                           Case{Backend::SuiteSparse, Method::LU},
                                           Case{Backend::Eigen, Method::Cholesky}, Case{Backend::Eigen, Method::LDL},
                                           Case{Backend::Eigen, Method::LU}, Case{Backend::Pardiso, Method::Cholesky},
                                           Case{Backend::Pardiso, Method::LDL}, Case{Backend::Pardiso, Method::LU}));

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

INSTANTIATE_TEST_SUITE_P(Direct, DirectLU, ::testing::Values(Backend::SuiteSparse, Backend::Eigen, Backend::Pardiso));

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
  auto ldl = sla::factorize(
      sla::analyze(be, Method::LDL, ScalarType::Float64, sla::CsrView<index_t>{2, 2, p.data(), j.data()}), v.data());
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

INSTANTIATE_TEST_SUITE_P(Direct, DirectCholesky,
                         ::testing::Values(Backend::SuiteSparse, Backend::Eigen, Backend::Pardiso));

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
  expect_invalid([&] { sla::validate_csr(sla::CsrView<index_t>{2, 2, p.data(), j.data()}, 3, 3, "A"); }, "not sorted");
  std::vector<index_t> j2{0, 1, 5};
  expect_invalid(
      [&] {
        sla::validate_csr(sla::CsrView<index_t>{2, 2, p.data(), j2.data()}, 3, 3, "A");
      },
      "out of range");
  std::vector<index_t> p3{0, 3, 2};
  expect_invalid([&] { sla::validate_csr(sla::CsrView<index_t>{2, 6, p3.data(), j2.data()}, 3, 3, "A"); }, "decreases");
  expect_invalid(
      [&] {
        sla::analyze(Backend::Eigen, Method::LU, ScalarType::Float64, sla::CsrView<index_t>{2, 3, p.data(), j2.data()});
      },
      "square");
}

template <class F>
void expect_invalid_argument(F&& fn, const std::string& fragment) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
  } catch (const sla::Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(DeviceContract, NamesAndChecksDevices) {
  EXPECT_EQ(sla::Device::cpu().str(), "cpu");
  EXPECT_EQ(sla::Device::cuda(0).str(), "cuda:0");
  EXPECT_EQ(sla::Device::cuda(3).str(), "cuda:3");
  EXPECT_NE(sla::Device::cuda(0), sla::Device::cuda(1));
  EXPECT_NO_THROW(sla::check_device(sla::Device::cpu(), sla::Device::cpu(), "b"));
  EXPECT_NO_THROW(sla::check_device(sla::Device::cuda(1), sla::Device::cuda(1), "b"));
  // A CUDA array given to a CPU entry point (no GPU needed: the device is only a tag here).
  expect_invalid_argument([] { sla::check_device(sla::Device::cuda(0), sla::Device::cpu(), "values"); },
                          "values: on cuda:0, this backend runs on the CPU");
  expect_invalid_argument([] { sla::check_device(sla::Device::cpu(), sla::Device::cuda(0), "x"); },
                          "x: on cpu, this backend runs on cuda:0");
  expect_invalid_argument([] { sla::check_device(sla::Device::cuda(1), sla::Device::cuda(0), "b"); },
                          "b: on cuda:1, this backend runs on cuda:0");
}

TEST(DeviceContract, CpuBackendsRunOnTheCpu) {
  Spd3 a;
  for (Backend b : {Backend::SuiteSparse, Backend::Eigen, Backend::Pardiso}) {
    if (!sla::backend_available(b)) continue;
    auto sym = sla::analyze(b, Method::LDL, ScalarType::Float64, a.view());
    EXPECT_EQ(sym->device(), sla::Device::cpu());
    EXPECT_EQ(sym->n(), 3);
    EXPECT_EQ(sym->csr_nnz(), 7);
    EXPECT_EQ(sla::factorize(sym, a.values.data())->device(), sla::Device::cpu());
  }
  // The 0 x 0 analysis too.
  std::vector<index_t> p0{0};
  auto empty =
      sla::analyze(Backend::Eigen, Method::LU, ScalarType::Float64, sla::CsrView<index_t>{0, 0, p0.data(), nullptr});
  EXPECT_EQ(empty->device(), sla::Device::cpu());
  EXPECT_EQ(empty->csr_nnz(), 0);
}

TEST(DirectPlan, LowerTriangleCscPermutation) {
  Spd3 a;
  sla::detail::CscPlan plan = sla::detail::make_csc_plan(a.view(), true);
  // Lower triangle of the 3x3 tridiagonal: columns {0,1}, {1,2}, {2}.
  EXPECT_EQ(plan.colptr, (std::vector<index_t>{0, 2, 4, 5}));
  EXPECT_EQ(plan.rowind, (std::vector<index_t>{0, 1, 1, 2, 2}));
  EXPECT_EQ(plan.perm, (std::vector<index_t>{0, 2, 3, 5, 6}));
}

}  // namespace

// --- Edge cases on every backend x method x scalar type: n = 0, structurally singular, NaN / Inf ---------

namespace {

struct Combo {
  Backend backend;
  Method method;
  ScalarType scalar;
};

std::string combo_name(const ::testing::TestParamInfo<Combo>& info) {
  const Combo& c = info.param;
  return std::string(sla::backend_name(c.backend)) + "_" + sla::method_name(c.method) + "_" +
         sla::scalar_name(c.scalar);
}

std::vector<Combo> all_combos() {
  std::vector<Combo> out;
  for (Backend b : {Backend::SuiteSparse, Backend::Eigen, Backend::Pardiso})
    for (Method m : {Method::Cholesky, Method::LDL, Method::LU})
      for (ScalarType s : {ScalarType::Float32, ScalarType::Float64, ScalarType::Complex64, ScalarType::Complex128})
        out.push_back({b, m, s});
  return out;
}

// Values of any scalar type, converted from real doubles.
struct Values {
  ScalarType scalar;
  std::vector<float> f32;
  std::vector<double> f64;
  std::vector<std::complex<float>> c64;
  std::vector<std::complex<double>> c128;
  Values(ScalarType s, const std::vector<double>& v) : scalar(s) {
    for (double x : v) {
      f32.push_back(static_cast<float>(x));
      f64.push_back(x);
      c64.emplace_back(static_cast<float>(x), 0.0f);
      c128.emplace_back(x, 0.0);
    }
  }
  void* data() {
    switch (scalar) {
      case ScalarType::Float32: return f32.data();
      case ScalarType::Float64: return f64.data();
      case ScalarType::Complex64: return c64.data();
      case ScalarType::Complex128: return c128.data();
    }
    return nullptr;
  }
};

template <class I>
struct Pattern {
  index_t n;
  std::vector<I> indptr, indices;
  sla::CsrView<I> view() const { return {n, n, indptr.data(), indices.data()}; }
};

// The n x n pattern with the given (row, col) entries, sorted by row then column.
template <class I>
Pattern<I> pattern(index_t n, const std::vector<std::pair<index_t, index_t>>& entries) {
  Pattern<I> p{n, std::vector<I>(n + 1, 0), {}};
  for (const auto& e : entries) ++p.indptr[e.first + 1];
  for (index_t r = 0; r < n; ++r) p.indptr[r + 1] += p.indptr[r];
  for (const auto& e : entries) p.indices.push_back(static_cast<I>(e.second));
  return p;
}

template <class F>
void expect_error(ErrorKind kind, const std::string& fragment, F&& fn) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
  } catch (const sla::Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

class DirectEdge : public ::testing::TestWithParam<Combo> {
 protected:
  void SetUp() override {
    if (!sla::backend_available(GetParam().backend)) GTEST_SKIP() << "backend not compiled in";
  }
  std::shared_ptr<const sla::Symbolic> analyze(const sla::CsrView<index_t>& v) const {
    return sla::analyze(GetParam().backend, GetParam().method, GetParam().scalar, v);
  }
};

template <class I>
void check_empty(const Combo& c) {
  const Pattern<I> p = pattern<I>(0, {});
  auto sym = sla::analyze(c.backend, c.method, c.scalar, p.view());
  EXPECT_EQ(sym->n(), 0);
  EXPECT_EQ(sym->backend(), c.backend);
  EXPECT_EQ(sym->method(), c.method);
  EXPECT_GE(sym->memory_bytes(), sizeof(index_t));  // at least the plan's colptr
  Values none(c.scalar, {});
  auto num = sla::factorize(sym, none.data());
  ASSERT_NE(num, nullptr);
  EXPECT_GE(num->rcond(), num->eps()) << "a 0 x 0 matrix is not singular";
  EXPECT_EQ(num->factor_nnz(), 0);
  Values b(c.scalar, {}), x(c.scalar, {});
  for (index_t nrhs : {0, 1, 3})
    for (Op op : {Op::N, Op::H}) num->solve(b.data(), x.data(), nrhs, op);
  // A second factorization of the same analysis works too.
  EXPECT_NE(sla::factorize(sym, nullptr), nullptr);
}

TEST_P(DirectEdge, EmptyMatrixFactorizesAndSolvesTrivially) {
  check_empty<std::int32_t>(GetParam());
  check_empty<std::int64_t>(GetParam());
}

TEST_P(DirectEdge, ZeroMatrixIsStructurallySingular) {
  const Pattern<index_t> p = pattern<index_t>(3, {});
  auto sym = analyze(p.view());
  Values none(GetParam().scalar, {});
  expect_error(ErrorKind::SingularMatrix, "structurally singular", [&] { sla::factorize(sym, none.data()); });
}

TEST_P(DirectEdge, EmptyRowOrColumnIsStructurallySingular) {
  const Combo c = GetParam();
  // Row 1 empty; column 1 empty; for LU also a row without a column and a column without a row.
  std::vector<std::vector<std::pair<index_t, index_t>>> cases = {{{0, 0}, {2, 0}, {2, 2}}};
  if (c.method == Method::LU) {
    cases.push_back({{0, 0}, {0, 1}, {2, 2}});  // row 1 empty, column 1 not
    cases.push_back({{0, 0}, {1, 0}, {2, 2}});  // column 1 empty, row 1 not
  }
  for (const auto& entries : cases) {
    const Pattern<index_t> p = pattern<index_t>(3, entries);
    auto sym = analyze(p.view());
    Values v(c.scalar, std::vector<double>(entries.size(), 1.0));
    expect_error(ErrorKind::SingularMatrix, "structurally singular", [&] { sla::factorize(sym, v.data()); });
  }
}

TEST_P(DirectEdge, UpperTriangleOnlyIsReportedForSymmetricMethods) {
  const Combo c = GetParam();
  if (c.method == Method::LU) GTEST_SKIP() << "LU reads every entry";
  // [[4, 1], [., 3]] given as its upper triangle: Cholesky and LDL^T read the lower one, which lacks row 0.
  const Pattern<index_t> p = pattern<index_t>(2, {{0, 0}, {0, 1}});
  auto sym = analyze(p.view());
  Values v(c.scalar, {4.0, 1.0});
  expect_error(ErrorKind::SingularMatrix, "lower triangle", [&] { sla::factorize(sym, v.data()); });
}

TEST_P(DirectEdge, NonFinitePivotIsReported) {
  const Combo c = GetParam();
  Spd3 a;  // [[4, 1, 0], [1, 3, 1], [0, 1, 2]], CSR values 4 1 1 3 1 1 2
  auto sym = analyze(a.view());
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  // (position, value): a NaN on the diagonal, a NaN below it (in both triangles, as a symmetric matrix has
  // it), an infinite diagonal entry, an overflow of the pivots.
  struct Bad {
    std::vector<index_t> at;
    double value;
  };
  for (const Bad& bad :
       {Bad{{3}, nan}, Bad{{1, 2}, nan}, Bad{{0}, nan}, Bad{{6}, nan}, Bad{{3}, inf}, Bad{{5, 4}, inf}}) {
    std::vector<double> vals = a.values;
    for (index_t k : bad.at) vals[k] = bad.value;
    Values v(c.scalar, vals);
    SCOPED_TRACE("value " + std::to_string(bad.value) + " at CSR position " + std::to_string(bad.at[0]));
    expect_error(ErrorKind::SingularMatrix, "non-finite pivot", [&] { sla::factorize(sym, v.data()); });
    // The backend alone: when it accepts the values (a library may not notice a NaN), rcond() says NaN.
    std::unique_ptr<sla::Numeric> raw;
    try {
      raw = sym->factorize(sym, v.data(), sla::FactorizeOptions{});
    } catch (const sla::Error&) {
    }
    if (raw) EXPECT_TRUE(std::isnan(raw->rcond())) << "rcond " << raw->rcond();
  }
}

TEST_P(DirectEdge, MemoryBytesCoversThePlanAndGrowsWithN) {
  auto tridiagonal = [](index_t n) {
    std::vector<std::pair<index_t, index_t>> e;
    for (index_t i = 0; i < n; ++i) {
      if (i > 0) e.push_back({i, i - 1});
      e.push_back({i, i});
      if (i + 1 < n) e.push_back({i, i + 1});
    }
    return pattern<index_t>(n, e);
  };
  const auto p_small = tridiagonal(10), p_large = tridiagonal(10000);
  auto small = analyze(p_small.view());
  auto large = analyze(p_large.view());
  auto plan_bytes = [](const sla::Symbolic& s) {
    const sla::detail::CscPlan& p = dynamic_cast<const sla::detail::CpuSymbolic&>(s).plan();
    return (p.colptr.size() + p.rowind.size() + p.perm.size()) * sizeof(index_t);
  };
  EXPECT_GE(small->memory_bytes(), plan_bytes(*small));
  EXPECT_GT(large->memory_bytes(), plan_bytes(*large)) << "the backend's own analysis takes memory too";
  EXPECT_GT(large->memory_bytes(), small->memory_bytes());
  // A tridiagonal analysis is O(n): a loose upper bound of 1 KiB per row, plus 1 MiB of fixed cost.
  EXPECT_LT(large->memory_bytes(), 10000u * 1024u + (1u << 20));
}

INSTANTIATE_TEST_SUITE_P(Direct, DirectEdge, ::testing::ValuesIn(all_combos()), combo_name);

}  // namespace
