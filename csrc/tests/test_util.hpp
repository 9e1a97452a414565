// Helpers shared by the C++ tests.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

namespace sla::test {

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
