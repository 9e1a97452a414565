// Batches: the error that stops one, and the thread settings around one.
#include "batch.hpp"

#include <exception>
#include <mutex>

#include "sla/direct.hpp"
#include "sla/errors.hpp"

#ifdef SLA_HAVE_OPENMP
#include <omp.h>
#endif

namespace sla::detail {

void rethrow_member_error(index_t member, const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const Error& e) {
    throw Error(e.kind(), detail::concat("batch member ", member, ": ", e.what()));
  }
  // Any other exception left the catch above unhandled and propagates as it is.
}

BlasThreadsScope::BlasThreadsScope(int threads) {
  if (threads == kKeepBlasThreads) return;
  const int now = blas_threads();
  if (now > 0 && now != threads && set_blas_threads(threads)) previous_ = now;
}

BlasThreadsScope::~BlasThreadsScope() {
  if (previous_ > 0) set_blas_threads(previous_);
}

namespace {
std::mutex nested_mutex;
int nested_scopes = 0;     // scopes alive
int nested_previous = -1;  // max-active-levels before the first of them
}  // namespace

SerialNestedRegions::SerialNestedRegions() {
#ifdef SLA_HAVE_OPENMP
  std::lock_guard<std::mutex> lock(nested_mutex);
  if (nested_scopes++ == 0) {
    nested_previous = omp_get_max_active_levels();
    if (nested_previous > 1) omp_set_max_active_levels(1);
  }
#endif
}

SerialNestedRegions::~SerialNestedRegions() {
#ifdef SLA_HAVE_OPENMP
  std::lock_guard<std::mutex> lock(nested_mutex);
  if (--nested_scopes == 0 && nested_previous > 1) omp_set_max_active_levels(nested_previous);
#endif
}

int batch_threads(int threads) {
  if (threads > 0) return threads;
#ifdef SLA_HAVE_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace sla::detail
