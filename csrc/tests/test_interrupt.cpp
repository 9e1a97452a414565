// The interrupt handler: its rate limit, and long computations that it aborts.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "sla/errors.hpp"
#include "sla/interrupt.hpp"
#include "sla/krylov.hpp"
#include "sla/mtx.hpp"
#include "sla/pattern.hpp"
#include "test_util.hpp"

using sla::index_t;

namespace {

struct Interrupted {};  // what the test handlers throw

std::atomic<int> g_calls{0};
std::atomic<int> g_throw_on{1};  // throw on this call (1-based); 0 = never

void counting_handler() {
  const int c = ++g_calls;
  if (g_throw_on.load() > 0 && c >= g_throw_on.load()) throw Interrupted{};
}

// Installs counting_handler for one test; removes it (and checks that it is gone) afterwards.
class InterruptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    g_calls = 0;
    g_throw_on = 1;
    sla::set_interrupt_handler(&counting_handler);
    // The rate limit is per thread: let the period since this thread's last handler call (in an earlier
    // test of the same process) run out, so that the first poll of the test calls the handler.
    std::this_thread::sleep_for(std::chrono::milliseconds(sla::kInterruptPeriodMs + 10));
  }
  void TearDown() override {
    sla::set_interrupt_handler(nullptr);
    EXPECT_EQ(sla::interrupt_handler(), nullptr);
  }
};

TEST_F(InterruptTest, HandlerRunsAtMostOncePerPeriod) {
  g_throw_on = 0;
  const auto t0 = std::chrono::steady_clock::now();
  long polls = 0;
  while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(5 * sla::kInterruptPeriodMs + 20)) {
    sla::poll_interrupt();
    ++polls;
  }
  EXPECT_GT(polls, 1000);
  // First poll, then one call per period: 6 in 270 ms; allow the coarse clock's few ms of jitter.
  EXPECT_GE(g_calls.load(), 4);
  EXPECT_LE(g_calls.load(), 7);
}

TEST_F(InterruptTest, NoHandlerNoCall) {
  sla::set_interrupt_handler(nullptr);
  for (int i = 0; i < 1000; ++i) sla::poll_interrupt();
  EXPECT_EQ(g_calls.load(), 0);
}

// 1D Laplacian tridiag(-1, 2, -1), int32 indices.
struct Lap {
  std::vector<std::int32_t> p{0}, j;
  std::vector<double> v;
  index_t n;
  explicit Lap(index_t n_) : n(n_) {
    for (index_t i = 0; i < n; ++i) {
      if (i > 0) j.push_back(static_cast<std::int32_t>(i - 1)), v.push_back(-1);
      j.push_back(static_cast<std::int32_t>(i)), v.push_back(2);
      if (i < n - 1) j.push_back(static_cast<std::int32_t>(i + 1)), v.push_back(-1);
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

class InterruptKrylov : public InterruptTest, public ::testing::WithParamInterface<sla::KrylovMethod> {};

// A tolerance no method reaches and an effectively unbounded iteration count: only the handler ends the
// solve. It throws on its third call, so the solve must have polled through at least two periods.
TEST_P(InterruptKrylov, LongSolveIsAborted) {
  g_throw_on = 3;
  Lap L(100000);
  std::vector<double> b(L.n, 1.0), x(L.n, 0.0);
  sla::KrylovOptions o;
  o.rtol = 1e-300;
  o.maxiter = index_t{1} << 50;
  index_t iterations = 0;
  const sla::Progress progress = [&](index_t it, double) { iterations = it; };
  const double t = sla::test::within_seconds(30.0, "an interrupted Krylov solve", [&] {
    EXPECT_THROW(sla::krylov_solve(GetParam(), L.arrays(), b.data(), x.data(), 1, nullptr, sla::Op::N, o, progress),
                 Interrupted);
  });
  EXPECT_EQ(g_calls.load(), 3);
  EXPECT_GT(iterations, 0);
  EXPECT_LT(t, 2.0) << "the handler should stop the solve about 2 periods (100 ms) after it starts";
}

INSTANTIATE_TEST_SUITE_P(Interrupt, InterruptKrylov,
                         ::testing::Values(sla::KrylovMethod::CG, sla::KrylovMethod::BiCGStab, sla::KrylovMethod::GMRES,
                                           sla::KrylovMethod::MINRES));

TEST_F(InterruptTest, GmresThatCannotConvergeIsAborted) {
  // GMRES(1) on the rotation [[0, 1], [-1, 0]] stagnates forever: r^T A r = 0 for every r.
  std::vector<std::int64_t> p{0, 1, 2}, j{1, 0};
  std::vector<double> v{1, -1};
  sla::CsrArrays a;
  a.n_rows = a.n_cols = 2;
  a.indptr = p.data();
  a.indices = j.data();
  a.values = v.data();
  std::vector<double> b{1, 0}, x(2, 0.0);
  sla::KrylovOptions o;
  o.restart = 1;
  o.maxiter = index_t{1} << 60;
  sla::test::within_seconds(30.0, "GMRES(1) on a rotation", [&] {
    EXPECT_THROW(sla::krylov_solve(sla::KrylovMethod::GMRES, a, b.data(), x.data(), 1, nullptr, sla::Op::N, o, nullptr),
                 Interrupted);
  });
  // Without a handler the same solve ends at maxiter.
  sla::set_interrupt_handler(nullptr);
  o.maxiter = 1000;
  const auto r = sla::krylov_solve(sla::KrylovMethod::GMRES, a, b.data(), x.data(), 1, nullptr, sla::Op::N, o, nullptr);
  EXPECT_FALSE(r.converged);
  EXPECT_EQ(r.reason, "maxiter");
}

TEST_F(InterruptTest, KrylovBatchIsAbortedAsAWholeWithTheHandlersException) {
  // Six members of GMRES(1) on the rotation [[0, 1], [-1, 0]], which never converges, on 2 threads: the
  // handler (called from either thread) throws on its third call, every member stops, and the handler's
  // own exception comes out of the batch, not an sla::Error naming a member.
  g_throw_on = 3;
  std::vector<std::int64_t> p{0, 1, 2}, j{1, 0};
  const auto pattern = sla::CsrPattern::copy_of(sla::CsrView<std::int64_t>{2, 2, p.data(), j.data()}, 3, 2, "A");
  const index_t batch = 6;
  std::vector<double> v, b, x(2 * batch, 0.0);
  for (index_t i = 0; i < batch; ++i) v.insert(v.end(), {1.0, -1.0}), b.insert(b.end(), {1.0, 0.0});
  sla::KrylovOptions o;
  o.restart = 1;
  o.maxiter = index_t{1} << 60;
  o.threads = 2;
  const double t = sla::test::within_seconds(30.0, "an interrupted Krylov batch", [&] {
    EXPECT_THROW(sla::krylov_solve_batch(sla::KrylovMethod::GMRES, pattern, v.data(), sla::ScalarType::Float64, batch,
                                         b.data(), x.data(), 1, {}, sla::Op::N, o),
                 Interrupted);
  });
  EXPECT_GE(g_calls.load(), 3);
  EXPECT_LT(t, 5.0) << "every member should stop soon after the handler throws";
}

TEST_F(InterruptTest, MatrixMarketReadIsAborted) {
  const auto path =
      std::filesystem::temp_directory_path() / ("sla_interrupt_" + std::to_string(std::random_device{}()) + ".mtx");
  {
    std::ofstream f(path, std::ios::binary);
    f << "%%MatrixMarket matrix coordinate real general\n20000 1 20000\n";
    for (int i = 1; i <= 20000; ++i) f << i << " 1 1.5\n";
  }
  EXPECT_THROW(sla::read_mtx(path.string()), Interrupted);
  EXPECT_EQ(g_calls.load(), 1);
  sla::set_interrupt_handler(nullptr);
  EXPECT_EQ(sla::read_mtx(path.string()).nnz(), 20000);
  std::filesystem::remove(path);
}

}  // namespace
