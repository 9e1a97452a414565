// Helpers shared by the C++ tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sla/pattern.hpp"
#include "sla/types.hpp"

namespace sla::test {

// The m x m 2D Laplacian (5-point, SPD), CSR with sorted columns and int64 indices.
struct Poisson2d {
  index_t n;
  std::vector<std::int64_t> p{0}, j;
  std::vector<double> v;
  explicit Poisson2d(index_t m) : n(m * m) {
    for (index_t r = 0; r < n; ++r) {
      const index_t x = r % m, y = r / m;
      auto push = [&](index_t c, double val) { j.push_back(c), v.push_back(val); };
      if (y > 0) push(r - m, -1);
      if (x > 0) push(r - 1, -1);
      push(r, 4);
      if (x < m - 1) push(r + 1, -1);
      if (y < m - 1) push(r + m, -1);
      p.push_back(static_cast<std::int64_t>(j.size()));
    }
  }
  index_t nnz() const { return static_cast<index_t>(j.size()); }
  CsrView<std::int64_t> view() const { return {n, n, p.data(), j.data()}; }
  CsrPattern pattern() const { return CsrPattern::copy_of(view(), static_cast<index_t>(p.size()), nnz(), "A"); }
};

// Run fn() and return its wall time in seconds. If fn has not returned after `limit_s`, print `what` and
// end the process with a failure: a hang (the bug being tested for) must fail the test, not block the
// suite, and the runaway call cannot be stopped safely from outside.
template <class F>
double within_seconds(double limit_s, const std::string& what, F&& fn) {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::thread watchdog([&] {
    std::unique_lock<std::mutex> lock(m);
    if (!cv.wait_for(lock, std::chrono::duration<double>(limit_s), [&] { return done; })) {
      std::fprintf(stderr, "FAILED: %s did not return within %.1f s\n", what.c_str(), limit_s);
      std::fflush(stderr);
      std::_Exit(1);
    }
  });
  const auto t0 = std::chrono::steady_clock::now();
  auto finish = [&] {
    {
      std::lock_guard<std::mutex> lock(m);
      done = true;
    }
    cv.notify_one();
    watchdog.join();
  };
  try {
    fn();
  } catch (...) {
    finish();
    throw;
  }
  finish();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace sla::test
