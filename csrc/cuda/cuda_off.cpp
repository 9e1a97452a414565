// Stand-in for csrc/cuda/*.cu in a build without CUDA (SLA_WITH_CUDA=OFF): the same functions, which say so.
#include <string>

#include "sla/cuda.hpp"
#include "sla/errors.hpp"

namespace sla {
namespace {

[[noreturn]] void fail_without_cuda(const char* what) {
  fail(ErrorKind::Unavailable, "torch_sla was built without CUDA (SLA_WITH_CUDA=OFF): ", what,
       " is not available; rebuild on a machine with a CUDA toolkit (CMake option SLA_WITH_CUDA=ON)");
}

}  // namespace

bool cuda_compiled() noexcept { return false; }

int cuda_device_count() { fail_without_cuda("cuda_device_count()"); }

std::string cuda_runtime_version() { fail_without_cuda("cuda_runtime_version()"); }

}  // namespace sla
