// Stand-in for csrc/cuda/*.cu in a build without CUDA (SLA_WITH_CUDA=OFF): the same functions, which say so.
#include <string>
#include <vector>

#include "sla/cuda.hpp"
#include "sla/errors.hpp"

namespace sla {
namespace {

const char* const kWithoutCuda = "torch_sla was built without CUDA (SLA_WITH_CUDA=OFF)";

[[noreturn]] void fail_without_cuda(const char* what) {
  fail(ErrorKind::Unavailable, kWithoutCuda, ": ", what,
       " is not available; rebuild on a machine with a CUDA toolkit (CMake option SLA_WITH_CUDA=ON)");
}

}  // namespace

bool cuda_compiled() noexcept { return false; }

int cuda_device_count() { fail_without_cuda("cuda_device_count()"); }

std::string cuda_runtime_version() { fail_without_cuda("cuda_runtime_version()"); }

CudssLibrary load_cudss(const std::vector<std::string>&) { return cudss_library(); }

CudssLibrary cudss_library() {
  return {false, std::string(kWithoutCuda) + ": the cuDSS backend needs the CUDA part of the core"};
}

std::shared_ptr<const Symbolic> analyze_cudss(Method, ScalarType, const CsrPattern&, Device, Ordering) {
  fail_without_cuda("the cuDSS backend");
}

void cuda_spmv(const CudaCsr&, const void*, void*, index_t) { fail_without_cuda("cuda_spmv()"); }

CudaCgResult cuda_cg(const CudaCsr&, const void*, void*, double, double, index_t, bool, index_t, bool) {
  fail_without_cuda("cuda_cg()");
}

}  // namespace sla
