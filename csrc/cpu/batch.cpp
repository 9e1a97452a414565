// Batches: the error that stops one, and the thread settings around one.
#include "batch.hpp"

#include <exception>

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

int batch_threads(int threads) {
  if (threads > 0) return threads;
#ifdef SLA_HAVE_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace sla::detail
