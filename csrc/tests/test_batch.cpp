// Batched entry points: equal to one-at-a-time calls, and a failing member is named once.
#include <gtest/gtest.h>

#include <complex>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "sla/direct.hpp"
#include "sla/errors.hpp"
#include "sla/krylov.hpp"
#include "sla/pattern.hpp"
#include "test_util.hpp"

using sla::Backend;
using sla::index_t;
using sla::Method;
using sla::ScalarType;

namespace {

// The 2D Poisson matrix of the tests, with a batch of perturbed values.
struct Poisson : sla::test::Poisson2d {
  using Poisson2d::Poisson2d;
  // batch x nnz values: member i is A scaled by a member's own factor, its off-diagonal slightly perturbed
  // (still SPD: diagonally dominant).
  std::vector<double> batch_values(index_t batch, unsigned seed = 1) const {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    std::vector<double> out(static_cast<std::size_t>(batch * nnz()));
    for (index_t i = 0; i < batch; ++i) {
      const double scale = 1.0 + u(rng);
      for (index_t k = 0; k < nnz(); ++k) out[i * nnz() + k] = scale * v[k] * (v[k] < 0 ? 0.5 + 0.5 * u(rng) : 1.0);
      // Symmetric again: mirror the lower triangle onto the upper one.
      for (index_t r = 0; r < n; ++r)
        for (index_t q = p[r]; q < p[r + 1]; ++q)
          if (j[q] > r)
            for (index_t t = p[j[q]]; t < p[j[q] + 1]; ++t)
              if (j[t] == r) out[i * nnz() + q] = out[i * nnz() + t];
    }
    return out;
  }
};

template <class F>
void expect_error(sla::ErrorKind kind, const std::string& fragment, F&& fn) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << fragment << "'";
  } catch (const sla::Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

struct Case {
  Backend backend;
  Method method;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return std::string(sla::backend_name(info.param.backend)) + "_" + sla::method_name(info.param.method);
}

class FactorizeBatch : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (!sla::backend_available(GetParam().backend)) GTEST_SKIP() << "backend not compiled in";
  }
};

TEST_P(FactorizeBatch, EqualsALoopOfFactorizeBitForBit) {
  const Poisson a(9);
  const index_t batch = 7, nrhs = 2, n = a.n;
  const auto values = a.batch_values(batch);
  auto sym = sla::analyze(GetParam().backend, GetParam().method, ScalarType::Float64, a.view());
  std::vector<double> b(static_cast<std::size_t>(batch * nrhs * n));
  std::mt19937 rng(3);
  std::normal_distribution<double> g;
  for (double& x : b) x = g(rng);
  const int blas_before = sla::blas_threads();
  for (int threads : {1, 2, 3, 16}) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    const sla::NumericBatch nb = sla::factorize_batch(sym, values.data(), batch, threads);
    ASSERT_EQ(nb.size(), batch);
    EXPECT_EQ(sla::blas_threads(), blas_before) << "the BLAS thread count is restored";
    std::vector<double> x(b.size());
    nb.solve(b.data(), x.data(), nrhs, sla::Op::N, threads);
    index_t total = 0;
    for (index_t i = 0; i < batch; ++i) {
      auto one = sla::factorize(sym, values.data() + i * a.nnz());
      EXPECT_EQ(nb[i]->factor_nnz(), one->factor_nnz());
      EXPECT_EQ(nb[i]->rcond(), one->rcond());
      total += one->factor_nnz();
      std::vector<double> xi(static_cast<std::size_t>(nrhs * n));
      one->solve(b.data() + i * nrhs * n, xi.data(), nrhs, sla::Op::N);
      EXPECT_EQ(std::vector<double>(x.begin() + i * nrhs * n, x.begin() + (i + 1) * nrhs * n), xi) << "member " << i;
    }
    EXPECT_EQ(nb.factor_nnz(), total);
  }
}

TEST_P(FactorizeBatch, TheFirstFailingMemberIsNamedOnce) {
  const Poisson a(6);
  const index_t batch = 9;
  auto values = a.batch_values(batch);
  // Members 2 and 6: a zero matrix (every pivot zero), not positive definite and singular for every method.
  for (index_t bad : {2, 6})
    for (index_t k = 0; k < a.nnz(); ++k) values[bad * a.nnz() + k] = 0.0;
  auto sym = sla::analyze(GetParam().backend, GetParam().method, ScalarType::Float64, a.view());
  const auto kind =
      GetParam().method == Method::Cholesky ? sla::ErrorKind::NotPositiveDefinite : sla::ErrorKind::SingularMatrix;
  for (int threads : {1, 2, 4}) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    // The same error a loop over the members would raise: member 2's, never member 6's.
    expect_error(kind, "batch member 2: ", [&] { sla::factorize_batch(sym, values.data(), batch, threads); });
  }
  // A NaN in member 5 alone is reported as such.
  auto nan_values = a.batch_values(batch);
  nan_values[5 * a.nnz() + 3] = std::numeric_limits<double>::quiet_NaN();
  expect_error(sla::ErrorKind::SingularMatrix, "batch member 5: the ",
               [&] { sla::factorize_batch(sym, nan_values.data(), batch, 2); });
}

INSTANTIATE_TEST_SUITE_P(Batch, FactorizeBatch,
                         ::testing::Values(Case{Backend::SuiteSparse, Method::Cholesky},
                                           Case{Backend::SuiteSparse, Method::LDL},
                                           Case{Backend::SuiteSparse, Method::LU},
                                           Case{Backend::Eigen, Method::Cholesky}, Case{Backend::Eigen, Method::LDL},
                                           Case{Backend::Eigen, Method::LU}),
                         case_name);

TEST(FactorizeBatchEdges, EmptyBatchComplexValuesAndBadArguments) {
  const Poisson a(4);
  auto sym = sla::analyze(Backend::Eigen, Method::LU, ScalarType::Complex128, a.view());
  EXPECT_EQ(sla::factorize_batch(sym, nullptr, 0, 2).size(), 0);
  std::vector<std::complex<double>> values;
  for (int i = 0; i < 3; ++i)
    for (double x : a.v) values.emplace_back(x * (1 + i), 0.25 * i);
  const auto nb = sla::factorize_batch(sym, values.data(), 3, 2);
  std::vector<std::complex<double>> b(3 * a.n, {1.0, -1.0}), x(b.size()), xi(a.n);
  nb.solve(b.data(), x.data(), 1, sla::Op::H, 2);
  for (index_t i = 0; i < 3; ++i) {
    sla::factorize(sym, values.data() + i * a.nnz())->solve(b.data() + i * a.n, xi.data(), 1, sla::Op::H);
    EXPECT_EQ(std::vector<std::complex<double>>(x.begin() + i * a.n, x.begin() + (i + 1) * a.n), xi);
  }
  expect_error(sla::ErrorKind::InvalidArgument, "negative batch size",
               [&] { sla::factorize_batch(sym, values.data(), -1, 1); });
  expect_error(sla::ErrorKind::InvalidArgument, "null pointer", [&] { sla::factorize_batch(sym, nullptr, 2, 1); });
}

// --- Krylov ----------------------------------------------------------------------------------------------

std::vector<sla::KrylovResult> loop_of_krylov_solve(sla::KrylovMethod method, const sla::CsrPattern& p,
                                                    const std::vector<double>& values, index_t batch,
                                                    const std::vector<double>& b, std::vector<double>& x, index_t k,
                                                    const std::vector<const sla::Preconditioner*>& M,
                                                    const sla::KrylovOptions& o) {
  std::vector<sla::KrylovResult> out;
  for (index_t i = 0; i < batch; ++i) {
    const auto a = p.with_values(values.data() + i * p.nnz(), ScalarType::Float64);
    out.push_back(sla::krylov_solve(method, a, b.data() + i * p.n_rows() * k, x.data() + i * p.n_rows() * k, k,
                                    M.empty() ? nullptr : M[i], sla::Op::N, o, nullptr));
  }
  return out;
}

class KrylovBatch : public ::testing::TestWithParam<sla::KrylovMethod> {};

TEST_P(KrylovBatch, EqualsALoopOfKrylovSolveBitForBit) {
  const Poisson a(10);
  const sla::CsrPattern p = a.pattern();
  const index_t batch = 5, k = 2, n = a.n;
  const auto values = a.batch_values(batch, 7);
  std::vector<double> b(static_cast<std::size_t>(batch * n * k));
  std::mt19937 rng(11);
  std::normal_distribution<double> g;
  for (double& v : b) v = g(rng);
  // Members 0, 2, 4 with IC(0); 1 with Jacobi; 3 without a preconditioner.
  std::vector<std::unique_ptr<sla::Preconditioner>> owned;
  std::vector<const sla::Preconditioner*> M;
  for (index_t i = 0; i < batch; ++i) {
    const auto ai = p.with_values(values.data() + i * p.nnz(), ScalarType::Float64);
    if (i == 3) {
      M.push_back(nullptr);
      continue;
    }
    owned.push_back(sla::make_preconditioner(i == 1 ? sla::PrecondKind::Jacobi : sla::PrecondKind::IC0, ai, 1.0, 2));
    M.push_back(owned.back().get());
  }
  sla::KrylovOptions o;
  o.rtol = 1e-10;
  o.maxiter = 400;
  o.record_history = true;
  // threads 2 and 4 <= batch: members in parallel, one thread each; 8 > batch: one after the other, 8 inside.
  for (int threads : {1, 2, 4, 8}) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    o.threads = threads;
    std::vector<double> x(b.size(), 0.0), x_loop(b.size(), 0.0);
    const auto got = sla::krylov_solve_batch(GetParam(), p, values.data(), ScalarType::Float64, batch, b.data(),
                                             x.data(), k, M, sla::Op::N, o);
    sla::KrylovOptions lo = o;
    lo.threads = threads <= batch ? 1 : threads;
    const auto want = loop_of_krylov_solve(GetParam(), p, values, batch, b, x_loop, k, M, lo);
    ASSERT_EQ(got.size(), static_cast<std::size_t>(batch));
    for (index_t i = 0; i < batch; ++i) {
      EXPECT_TRUE(got[i].converged) << "member " << i << ": " << got[i].reason;
      EXPECT_EQ(got[i].iterations, want[i].iterations);
      EXPECT_EQ(got[i].residual, want[i].residual);
      EXPECT_EQ(got[i].reason, want[i].reason);
      EXPECT_EQ(got[i].history, want[i].history);
    }
    EXPECT_EQ(x, x_loop);
  }
}

INSTANTIATE_TEST_SUITE_P(Batch, KrylovBatch,
                         ::testing::Values(sla::KrylovMethod::CG, sla::KrylovMethod::BiCGStab, sla::KrylovMethod::GMRES,
                                           sla::KrylovMethod::MINRES));

TEST(KrylovBatchEdges, ChecksThePreconditionersAndNamesAFailingMember) {
  const Poisson a(5), small(3);
  const sla::CsrPattern p = a.pattern(), ps = small.pattern();
  const index_t batch = 3;
  const auto values = a.batch_values(batch);
  std::vector<double> b(static_cast<std::size_t>(batch * a.n), 1.0), x(b.size(), 0.0);
  sla::KrylovOptions o;
  o.threads = 2;
  auto run = [&](const std::vector<const sla::Preconditioner*>& M) {
    return sla::krylov_solve_batch(sla::KrylovMethod::CG, p, values.data(), ScalarType::Float64, batch, b.data(),
                                   x.data(), 1, M, sla::Op::N, o);
  };
  auto m_small = sla::make_preconditioner(sla::PrecondKind::Jacobi,
                                          small.pattern().with_values(small.v.data(), ScalarType::Float64), 1.0, 1);
  expect_error(sla::ErrorKind::InvalidArgument, "preconds: 1 preconditioners for 3 members", [&] { run({nullptr}); });
  expect_error(sla::ErrorKind::InvalidArgument, "preconds[1]: built for another matrix size",
               [&] { run({nullptr, m_small.get(), nullptr}); });
  // An option every member rejects: the error of member 0, named.
  o.maxiter = 0;
  expect_error(sla::ErrorKind::InvalidArgument, "batch member 0: maxiter", [&] { run({}); });
  o.maxiter = 100;
  // An empty batch.
  EXPECT_TRUE(sla::krylov_solve_batch(sla::KrylovMethod::CG, p, nullptr, ScalarType::Float64, 0, nullptr, nullptr, 1,
                                      {}, sla::Op::N, o)
                  .empty());
  (void)ps;
}

}  // namespace
