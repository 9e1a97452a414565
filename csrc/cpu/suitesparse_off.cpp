// Stand-in for the SuiteSparse backends when the build did not find SuiteSparse.
#include "backends.hpp"
#include "sla/errors.hpp"

namespace sla::detail {

bool suitesparse_compiled() { return false; }

std::shared_ptr<const Symbolic> analyze_cholmod(Method, ScalarType, CscPlan, const AnalyzeOptions&) {
  fail(ErrorKind::Unavailable, "backend 'suitesparse' (CHOLMOD) is not compiled into this build");
}

std::shared_ptr<const Symbolic> analyze_umfpack(ScalarType, CscPlan) {
  fail(ErrorKind::Unavailable, "backend 'suitesparse' (UMFPACK) is not compiled into this build");
}

}  // namespace sla::detail
