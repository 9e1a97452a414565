// The interrupt handler and its per-thread rate limit.
//
// Every poll reads a clock, and the clock is chosen to be cheap: on Linux CLOCK_MONOTONIC_COARSE, a
// vDSO read of the kernel's tick time (a few ns, resolution of a few ms, ample for a 50 ms period);
// elsewhere std::chrono::steady_clock (~20 ns). A poll counter that reads the clock only every N calls
// would be cheaper still, but its delay grows with the time between polls: after a burst of fast polls
// (short Matrix Market lines) a run of slow ones (Krylov iterations on a large matrix) would wait N slow
// polls before the handler runs. Reading the clock each time keeps the delay at 50 ms plus one poll.
#include "sla/interrupt.hpp"

#include <atomic>
#include <cstdint>
#include <limits>

#include "batch.hpp"

#if defined(__linux__)
#include <time.h>
#else
#include <chrono>
#endif

namespace sla {
namespace {

std::atomic<InterruptHandler> g_handler{nullptr};

// Milliseconds on a monotonic clock.
std::int64_t now_ms() {
#if defined(__linux__)
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
#else
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
#endif
}

// When this thread last called the handler; a thread that never did calls it at its first poll.
thread_local std::int64_t t_last_call_ms = std::numeric_limits<std::int64_t>::min() / 2;

// Set while this thread runs a member of a batch: the batch and the member.
thread_local const detail::BatchState* t_batch = nullptr;
thread_local index_t t_member = 0;

}  // namespace

namespace detail {

MemberScope::MemberScope(const BatchState* state, index_t member) noexcept
    : previous_state_(t_batch), previous_member_(t_member) {
  t_batch = state;
  t_member = member;
}

MemberScope::~MemberScope() {
  t_batch = previous_state_;
  t_member = previous_member_;
}

void check_batch_cancelled() {
  if (t_batch != nullptr && t_batch->cancels(t_member)) throw BatchCancelled{};
}

}  // namespace detail

void set_interrupt_handler(InterruptHandler handler) { g_handler.store(handler, std::memory_order_release); }

InterruptHandler interrupt_handler() { return g_handler.load(std::memory_order_acquire); }

void poll_interrupt() {
  detail::check_batch_cancelled();
  const InterruptHandler handler = g_handler.load(std::memory_order_acquire);
  if (handler == nullptr) return;
  const std::int64_t now = now_ms();
  if (now - t_last_call_ms < kInterruptPeriodMs) return;
  t_last_call_ms = now;
  handler();  // may throw: the caller's stack unwinds to whoever catches it
}

}  // namespace sla
