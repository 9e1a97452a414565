// PARDISO (MKL, loaded at run time): what the cross-backend tests of test_direct.cpp do not reach. The
// library is loaded once for the whole test binary (from TORCH_SLA_MKL_RT, else SLA_TEST_MKL_RT, else the
// dynamic loader's search); without it, every PARDISO test is skipped and says why.
#include <gtest/gtest.h>

#include <complex>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "sla/direct.hpp"
#include "sla/errors.hpp"

using sla::Backend;
using sla::ErrorKind;
using sla::index_t;
using sla::Method;
using sla::Op;
using sla::ScalarType;

namespace {

class LoadPardiso : public ::testing::Environment {
 public:
  void SetUp() override {
#ifdef SLA_TEST_MKL_RT
    sla::load_pardiso({SLA_TEST_MKL_RT});
#else
    sla::load_pardiso({});
#endif
  }
};
const auto* const kLoad = ::testing::AddGlobalTestEnvironment(new LoadPardiso);

#define REQUIRE_PARDISO()                                                           \
  do {                                                                              \
    if (!sla::backend_available(Backend::Pardiso))                                  \
      GTEST_SKIP() << "PARDISO not loaded: " << sla::pardiso_library().description; \
  } while (0)

// A dense n x n pattern in CSR.
struct Dense {
  index_t n;
  std::vector<index_t> indptr, indices;
  explicit Dense(index_t n_) : n(n_) {
    for (index_t r = 0; r <= n; ++r) indptr.push_back(r * n);
    for (index_t r = 0; r < n; ++r)
      for (index_t c = 0; c < n; ++c) indices.push_back(c);
  }
  sla::CsrView<index_t> view() const { return {n, n, indptr.data(), indices.data()}; }
};

double conj(double v) { return v; }
std::complex<double> conj(std::complex<double> v) { return std::conj(v); }

// y = op(A) x for a dense row-major A.
template <class T>
std::vector<T> apply(const std::vector<T>& a, const std::vector<T>& x, Op op) {
  const size_t n = x.size();
  std::vector<T> y(n, T(0));
  for (size_t r = 0; r < n; ++r)
    for (size_t c = 0; c < n; ++c) {
      if (op == Op::N)
        y[r] += a[r * n + c] * x[c];
      else
        y[c] += conj(a[r * n + c]) * x[r];
    }
  return y;
}

TEST(Pardiso, LoadedOrSaysWhy) {
  const sla::PardisoLibrary lib = sla::pardiso_library();
  EXPECT_FALSE(lib.description.empty());
  if (lib.loaded)
    EXPECT_NE(lib.description.find("Math Kernel Library"), std::string::npos) << lib.description;
  else  // not found (names the library) or disabled (names the variable)
    EXPECT_TRUE(lib.description.find("libmkl_rt") != std::string::npos ||
                lib.description.find("TORCH_SLA_MKL_RT") != std::string::npos)
        << lib.description;
  EXPECT_EQ(std::string(sla::backend_name(Backend::Pardiso)), "pardiso");
}

TEST(Pardiso, MissingDiagonalEntriesAreInserted) {
  REQUIRE_PARDISO();
  // [[0, 1], [1, 0]] stored without its diagonal: regular, symmetric, indefinite.
  std::vector<index_t> p{0, 1, 2}, j{1, 0};
  std::vector<double> v{1, 1}, b{2, 3}, x(2);
  for (Method m : {Method::LDL, Method::LU}) {
    auto num = sla::factorize(
        sla::analyze(Backend::Pardiso, m, ScalarType::Float64, sla::CsrView<index_t>{2, 2, p.data(), j.data()}),
        v.data());
    num->solve(b.data(), x.data(), 1, Op::N);
    EXPECT_NEAR(x[0], 3.0, 1e-14) << sla::method_name(m);
    EXPECT_NEAR(x[1], 2.0, 1e-14) << sla::method_name(m);
  }
}

TEST(Pardiso, ComplexHermitianIndefiniteAndUnsymmetricSolves) {
  REQUIRE_PARDISO();
  using C = std::complex<double>;
  const Dense d(3);
  // Hermitian, indefinite (diagonal 2, -3, 1 with coupling).
  const std::vector<C> h{{2, 0}, {1, 1}, {0, -1}, {1, -1}, {-3, 0}, {0.5, 0}, {0, 1}, {0.5, 0}, {1, 0}};
  // Unsymmetric.
  const std::vector<C> u{{2, 1}, {1, -1}, {0, 0.5}, {0, 1}, {3, 0}, {1, 1}, {1, 2}, {0, 0}, {4, -1}};
  const std::vector<C> x_true{{1, 1}, {-2, 0}, {0.5, -3}};
  for (auto [method, a] : {std::pair{Method::LDL, h}, std::pair{Method::LU, u}}) {
    auto num = sla::factorize(sla::analyze(Backend::Pardiso, method, ScalarType::Complex128, d.view()), a.data());
    for (Op op : {Op::N, Op::H}) {
      std::vector<C> b = apply(a, x_true, op), x(3);
      num->solve(b.data(), x.data(), 1, op);
      for (int k = 0; k < 3; ++k)
        EXPECT_NEAR(std::abs(x[k] - x_true[k]), 0.0, 1e-12) << sla::method_name(method) << (op == Op::N ? " N" : " H");
    }
  }
}

TEST(Pardiso, RefactorizationReusesTheAnalysisAndRematchesFarValues) {
  REQUIRE_PARDISO();
  const Dense d(3);
  auto sym = sla::analyze(Backend::Pardiso, Method::LU, ScalarType::Float64, d.view());
  // Diagonally dominant, then dominant on the anti-diagonal with a zero diagonal: the matching of the
  // first values would put zero pivots on the diagonal, so the second factorization analyses again.
  const std::vector<double> a1{4, 1, 0, 1, 5, 1, 0, 1, 6}, a2{0, 1, 7, 1, 0, 5, 6, 1, 0};
  const std::vector<double> x_true{1, -2, 3};
  for (int round = 0; round < 2; ++round) {  // round 1 takes the handles from the analysis's pool
    auto f1 = sla::factorize(sym, a1.data());
    auto f2 = sla::factorize(sym, a2.data());  // alive at once: a handle each
    for (auto [f, a] : {std::pair{f1.get(), &a1}, std::pair{f2.get(), &a2}})
      for (Op op : {Op::N, Op::H}) {
        std::vector<double> b = apply(*a, x_true, op), x(3);
        f->solve(b.data(), x.data(), 1, op);
        for (int k = 0; k < 3; ++k) EXPECT_NEAR(x[k], x_true[k], 1e-12) << "round " << round;
      }
    EXPECT_GT(f1->factor_nnz(), 0);
  }
  EXPECT_GT(sym->predicted_factor_bytes(), 0.0) << "known after the first analysis";
}

TEST(Pardiso, SpdAnalysisPredictsTheFactorBeforeAnyValues) {
  REQUIRE_PARDISO();
  const Dense d(4);
  auto sym = sla::analyze(Backend::Pardiso, Method::Cholesky, ScalarType::Float64, d.view());
  EXPECT_GT(sym->predicted_factor_bytes(), 0.0);
}

TEST(Pardiso, SingularAndIndefiniteMatricesAreReported) {
  REQUIRE_PARDISO();
  const Dense d(2);
  const std::vector<double> singular{1, 2, 2, 4}, indefinite{1, 2, 2, 1};
  for (Method m : {Method::LU, Method::LDL}) {
    auto sym = sla::analyze(Backend::Pardiso, m, ScalarType::Float64, d.view());
    try {
      sla::factorize(sym, singular.data());
      ADD_FAILURE() << "expected SingularMatrix";
    } catch (const sla::Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::SingularMatrix) << e.what();
    }
    // Accepted on request: a factor with rcond 0 whose solves refuse.
    sla::FactorizeOptions keep;
    keep.allow_singular = true;
    auto num = sla::factorize(sym, singular.data(), keep);
    EXPECT_EQ(num->rcond(), 0.0);
    std::vector<double> b{1, 1}, x(2);
    EXPECT_THROW(num->solve(b.data(), x.data(), 1, Op::N), sla::Error);
  }
  auto chol = sla::analyze(Backend::Pardiso, Method::Cholesky, ScalarType::Float64, d.view());
  try {
    sla::factorize(chol, indefinite.data());
    ADD_FAILURE() << "expected NotPositiveDefinite";
  } catch (const sla::Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::NotPositiveDefinite) << e.what();
  }
}

TEST(Pardiso, BatchMembersInParallel) {
  REQUIRE_PARDISO();
  const Dense d(3);
  auto sym = sla::analyze(Backend::Pardiso, Method::LU, ScalarType::Float64, d.view());
  std::vector<double> values;
  const int batch = 5;
  for (int i = 0; i < batch; ++i)
    for (double v : {4.0, 1.0, 0.0, 1.0, 5.0, 1.0, 0.0, 1.0, 6.0}) values.push_back(v * (i + 1));
  sla::set_pardiso_threads(2);
  auto f = sla::factorize_batch(sym, values.data(), batch, 2);
  std::vector<double> b(static_cast<size_t>(batch) * 3, 1.0), x(b.size());
  f.solve(b.data(), x.data(), 1, Op::N, 2);
  for (int i = 0; i < batch; ++i) {
    std::vector<double> a(values.begin() + 9 * i, values.begin() + 9 * (i + 1));
    std::vector<double> xi(x.begin() + 3 * i, x.begin() + 3 * (i + 1));
    std::vector<double> r = apply(a, xi, Op::N);
    for (int k = 0; k < 3; ++k) EXPECT_NEAR(r[k], 1.0, 1e-12) << "member " << i;
  }
  sla::set_pardiso_threads(0);
}

}  // namespace
