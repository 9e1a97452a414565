// The CUDA part of the core: what this build can say about CUDA on the machine it runs on.
//
// With SLA_WITH_CUDA=ON (the default when CMake finds a CUDA toolkit) these come from csrc/cuda/*.cu, with
// the CUDA runtime linked statically: the library then loads on machines without the toolkit, without a
// driver and without a GPU, where cuda_device_count() is 0. With SLA_WITH_CUDA=OFF, csrc/cuda/cuda_off.cpp
// defines the same functions, which throw ErrorKind::Unavailable (cuda_compiled() returns false).
#pragma once

#include <string>

namespace sla {

// Whether the CUDA part was compiled into this build. Never throws.
bool cuda_compiled() noexcept;

// Number of CUDA devices the runtime sees (CUDA_VISIBLE_DEVICES applies); 0 when there is no driver or no
// GPU. Like torch.cuda.is_available(), the first call initialises the CUDA driver in this process.
// Throws Internal for a failure other than "no driver / no device", Unavailable without CUDA.
int cuda_device_count();

// Version of the CUDA runtime compiled in, "major.minor" (e.g. "13.0"). Throws Unavailable without CUDA.
std::string cuda_runtime_version();

}  // namespace sla
