// Internal: the entry points of each direct-solver backend. A backend that is not compiled in is
// replaced by a stub with the same names that throws ErrorKind::Unavailable.
#pragma once

#include <memory>

#include "cpu_symbolic.hpp"
#include "sla/direct.hpp"

namespace sla::detail {

bool suitesparse_compiled();
std::shared_ptr<const Symbolic> analyze_cholmod(Method method, ScalarType scalar, CscPlan plan,
                                                const AnalyzeOptions& options);
std::shared_ptr<const Symbolic> analyze_umfpack(ScalarType scalar, CscPlan plan);
std::shared_ptr<const Symbolic> analyze_eigen(Method method, ScalarType scalar, CscPlan plan);
std::shared_ptr<const Symbolic> analyze_pardiso(Method method, ScalarType scalar, CscPlan plan);

}  // namespace sla::detail
