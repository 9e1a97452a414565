// The CUDA part of the build: present and safe on a machine without a driver or a GPU (SLA_WITH_CUDA=ON),
// or absent and saying so (SLA_WITH_CUDA=OFF).
#include <gtest/gtest.h>

#include <cctype>
#include <string>

#include "sla/cuda.hpp"
#include "sla/errors.hpp"

namespace {

#ifdef SLA_WITH_CUDA
TEST(Cuda, CompiledInAndSafeWithoutAGpu) {
  EXPECT_TRUE(sla::cuda_compiled());
  // No driver or no GPU gives 0, never an abort; a second call gives the same answer.
  const int count = sla::cuda_device_count();
  EXPECT_GE(count, 0);
  EXPECT_EQ(sla::cuda_device_count(), count);
  const std::string version = sla::cuda_runtime_version();
  ASSERT_FALSE(version.empty());
  EXPECT_TRUE(std::isdigit(static_cast<unsigned char>(version[0]))) << version;
  EXPECT_NE(version.find('.'), std::string::npos) << version;
}
#else
TEST(Cuda, AbsentAndSaysSo) {
  EXPECT_FALSE(sla::cuda_compiled());
  for (auto call : {+[] { sla::cuda_device_count(); }, +[] { sla::cuda_runtime_version(); }}) {
    try {
      call();
      ADD_FAILURE() << "no error";
    } catch (const sla::Error& e) {
      EXPECT_EQ(e.kind(), sla::ErrorKind::Unavailable);
      EXPECT_NE(std::string(e.what()).find("torch_sla was built without CUDA (SLA_WITH_CUDA=OFF)"), std::string::npos)
          << e.what();
    }
  }
}
#endif

}  // namespace
