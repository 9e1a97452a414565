// Internal: the members of a batch run in parallel (OpenMP), their errors captured and reported once.
//
// No exception crosses the OpenMP boundary: each member runs inside its own try/catch, and the failure is
// rethrown once, after the parallel region:
// * an sla::Error of member i stops the members above i (those not started are skipped, those running stop
//   at their next poll_interrupt()); the members below i still run, so the error reported is the one of
//   the lowest member that fails, exactly what a loop over the members would raise. It comes out with its
//   kind unchanged and "batch member i: " (i 0-based) before its message;
// * any other exception (what an interrupt handler throws, std::bad_alloc) stops every member and comes
//   out as it is, since its type is what the caller catches.
#pragma once

#include <atomic>
#include <exception>
#include <vector>

#include "sla/errors.hpp"
#include "sla/types.hpp"

namespace sla::detail {

// Thrown by poll_interrupt() in a member of a batch that the batch no longer needs (see BatchState).
struct BatchCancelled {};

// What the members of a running batch share: which of them are still needed.
struct BatchState {
  explicit BatchState(index_t count) : first_error(count) {}
  // The lowest member that failed with an sla::Error so far (the member count: none). Members above it
  // are not needed: the batch reports that error, as a loop over the members would.
  std::atomic<index_t> first_error;
  // A member failed with another exception (what an interrupt handler throws, std::bad_alloc): no
  // member is needed any more.
  std::atomic<bool> abort_all{false};
  bool cancels(index_t member) const {
    return abort_all.load(std::memory_order_relaxed) || first_error.load(std::memory_order_relaxed) < member;
  }
  void record_error(index_t member) {
    index_t seen = first_error.load(std::memory_order_relaxed);
    while (member < seen && !first_error.compare_exchange_weak(seen, member, std::memory_order_relaxed)) {
    }
  }
};

// While it lives, this thread runs member `member` of the batch `state`: poll_interrupt() throws
// BatchCancelled once the batch no longer needs that member.
class MemberScope {
 public:
  MemberScope(const BatchState* state, index_t member) noexcept;
  ~MemberScope();
  MemberScope(const MemberScope&) = delete;
  MemberScope& operator=(const MemberScope&) = delete;

 private:
  const BatchState* previous_state_;
  index_t previous_member_;
};

// While one lives, OpenMP regions nested inside parallel regions run on the thread that meets them. The
// libraries under a batch member open regions of their own (CHOLMOD's supernodal factorization asks for a
// team of several threads for each of a few loops); inside the batch's parallel loop each such region
// would start a team of new threads (the runtime keeps no pool for nested teams) and oversubscribe the
// cores that the batch already uses. The setting (max-active-levels) is the process's; it is lowered to 1
// while any scope lives and restored when the last one ends. Regions outside parallel regions are not
// affected.
class SerialNestedRegions {
 public:
  SerialNestedRegions();
  ~SerialNestedRegions();
  SerialNestedRegions(const SerialNestedRegions&) = delete;
  SerialNestedRegions& operator=(const SerialNestedRegions&) = delete;
};

// Throws BatchCancelled when this thread runs a member of a batch that no longer needs it (poll_interrupt).
void check_batch_cancelled();

// Rethrow `error`, raised by batch member `member`, as described above.
[[noreturn]] void rethrow_member_error(index_t member, const std::exception_ptr& error);

// Run f(i) for every member i in [0, count) on up to `threads` OpenMP threads (1: in order on this
// thread), members handed out in index order one at a time (they may differ in cost).
template <class F>
void for_each_member(index_t count, int threads, F&& f) {
  if (count <= 0) return;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(count));
  std::vector<char> other(static_cast<std::size_t>(count), 0);  // errors[i] is not an sla::Error
  BatchState state(count);
  const int t = threads < 1 ? 1 : (static_cast<index_t>(threads) > count ? static_cast<int>(count) : threads);
  auto member = [&](index_t i) {
    if (state.cancels(i)) return;
    MemberScope scope(&state, i);
    try {
      f(i);
    } catch (const BatchCancelled&) {
      // Not needed any more: the error of another member is the one reported.
    } catch (const Error&) {
      errors[static_cast<std::size_t>(i)] = std::current_exception();
      state.record_error(i);
    } catch (...) {
      errors[static_cast<std::size_t>(i)] = std::current_exception();
      other[static_cast<std::size_t>(i)] = 1;
      state.abort_all.store(true, std::memory_order_relaxed);
    }
  };
  if (t > 1) {
    SerialNestedRegions nested;
#pragma omp parallel for schedule(dynamic, 1) num_threads(t)
    for (index_t i = 0; i < count; ++i) member(i);
  } else {  // no parallel region at all: the libraries' own regions stay top-level (their thread pool)
    for (index_t i = 0; i < count; ++i) member(i);
  }
  for (index_t i = 0; i < count; ++i)
    if (other[static_cast<std::size_t>(i)]) std::rethrow_exception(errors[static_cast<std::size_t>(i)]);
  for (index_t i = 0; i < count; ++i)
    if (errors[static_cast<std::size_t>(i)]) rethrow_member_error(i, errors[static_cast<std::size_t>(i)]);
}

// The BLAS thread count for a scope (OpenBLAS; nothing when the BLAS has no such control), restored after.
// A batch whose members run in parallel keeps the BLAS under each member single-threaded: members x BLAS
// threads would oversubscribe the cores. The count is the process's: a BLAS call made meanwhile by another
// thread of the process runs single-threaded too.
inline constexpr int kKeepBlasThreads = 0;

class BlasThreadsScope {
 public:
  // threads = kKeepBlasThreads leaves the count as it is.
  explicit BlasThreadsScope(int threads);
  ~BlasThreadsScope();
  BlasThreadsScope(const BlasThreadsScope&) = delete;
  BlasThreadsScope& operator=(const BlasThreadsScope&) = delete;

 private:
  int previous_ = -1;  // -1: nothing to restore
};

// Threads for a batch: `threads` when positive, else OpenMP's default (OMP_NUM_THREADS or the cores).
int batch_threads(int threads);

}  // namespace sla::detail
