// The CUDA part of the core: device queries, the cuDSS direct backend and the CUDA Krylov kernels.
//
// With SLA_WITH_CUDA=ON (the default when CMake finds a CUDA toolkit) these come from csrc/cuda/*.cu, with
// the CUDA runtime linked statically: the library then loads on machines without the toolkit, without a
// driver and without a GPU, where cuda_device_count() is 0. With SLA_WITH_CUDA=OFF, csrc/cuda/cuda_off.cpp
// defines the same functions, which throw ErrorKind::Unavailable (cuda_compiled() returns false).
//
// Device arrays: every pointer given to a CUDA entry point below is device memory of the device named with
// it (the bindings check where each array lives). Work is queued on the calling thread's current stream
// (StreamScope; the Python layer passes torch.cuda.current_stream()), after what is already queued there;
// an entry point synchronises only where its result must reach the host (a factorization's verdict, a
// Krylov solve's convergence test every few iterations).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "sla/direct.hpp"
#include "sla/pattern.hpp"
#include "sla/types.hpp"

namespace sla {

// Whether the CUDA part was compiled into this build. Never throws.
bool cuda_compiled() noexcept;

// Number of CUDA devices the runtime sees (CUDA_VISIBLE_DEVICES applies); 0 when there is no driver or no
// GPU. Like torch.cuda.is_available(), the first call initialises the CUDA driver in this process.
// Throws Internal for a failure other than "no driver / no device", Unavailable without CUDA.
int cuda_device_count();

// Version of the CUDA runtime compiled in, "major.minor" (e.g. "13.0"). Throws Unavailable without CUDA.
std::string cuda_runtime_version();

// The stream CUDA work of this thread is queued on (nullptr: the legacy default stream). A binding sets it
// for the duration of one call; the CPU backends never read it.
namespace detail {
inline Stream& stream_slot() noexcept {
  thread_local Stream stream = nullptr;
  return stream;
}
}  // namespace detail
inline Stream current_stream() noexcept { return detail::stream_slot(); }
class StreamScope {
 public:
  explicit StreamScope(Stream s) noexcept : previous_(detail::stream_slot()) { detail::stream_slot() = s; }
  ~StreamScope() { detail::stream_slot() = previous_; }
  StreamScope(const StreamScope&) = delete;
  StreamScope& operator=(const StreamScope&) = delete;

 private:
  Stream previous_;
};

// --- cuDSS -----------------------------------------------------------------------------------------------
// cuDSS is never linked: libcudss is loaded at run time (load_cudss) and only the entry points used are
// looked up, with declarations of our own, so that neither the build nor a CPU-only install needs it.
struct CudssLibrary {
  bool loaded = false;
  // The library's path and version when loaded, else why it is not (every place tried, with the loader's
  // message for each).
  std::string description;
};
// Load libcudss (once per process; later calls return the first success, or try again after a failure).
// Where: the environment variable TORCH_SLA_CUDSS alone when it is set (a path; "none" or an empty value
// disables cuDSS), else each of `candidates` in turn (paths: the Python layer passes the lib folders of the
// nvidia-cudss-cu13 / -cu12 wheels it finds), then the dynamic loader's own search for libcudss.so.1 and
// libcudss.so.0. A library older than cuDSS 1.0 is refused (the adjoint of an LU solve needs the transposed
// solves that 1.0 added). Without CUDA compiled in: not loaded, and the description says so.
CudssLibrary load_cudss(const std::vector<std::string>& candidates);
CudssLibrary cudss_library();

// Symbolic analysis of a square CSR pattern (host memory, validated: a CsrPattern) for cuDSS on CUDA device
// `device`: Cholesky (SPD / HPD), LDL^T (symmetric / Hermitian; one triangle read, as the CPU backends) or
// LU. The pattern is copied to the device (int32 indices: at most 2^31 - 1 entries) and analysed once at
// once; every factorization takes a set of factors from a pool kept by the analysis (its own analysis
// already done: only the numeric factorization runs) and gives it back when it is destroyed. Values,
// right-hand sides and solutions of its factorizations are device memory of `device`; factorizations and
// solves run on current_stream(). Throws Unavailable (cuDSS not loaded), InvalidArgument (not square, an
// empty matrix, too many entries, `device` out of range).
std::shared_ptr<const Symbolic> analyze_cudss(Method method, ScalarType scalar, const CsrPattern& pattern,
                                              Device device, Ordering ordering = Ordering::Default);

// --- Krylov kernels --------------------------------------------------------------------------------------
// A CSR matrix in device memory: indptr / indices int32 (index32) or int64, values of `scalar`.
struct CudaCsr {
  index_t n_rows = 0, n_cols = 0, nnz = 0;
  const void* indptr = nullptr;
  const void* indices = nullptr;
  const void* values = nullptr;
  bool index32 = true;
  ScalarType scalar = ScalarType::Float64;
  Device device = Device::cuda(0);
};

// Y = A X for nrhs right-hand sides stored one after the other (X: nrhs x n_cols, Y: nrhs x n_rows, each
// vector contiguous): one pass over A for all of them, a group of lanes per row sized by the mean row length.
void cuda_spmv(const CudaCsr& A, const void* x, void* y, index_t nrhs);

// Preconditioned conjugate gradients for a Hermitian positive definite A (n x n), one right-hand side:
// the SpMV fused with the dot product p^H A p, the vector updates fused with the dot products r^H z and
// r^H r, the Jacobi preconditioner (1 / Re a_ii) applied inside them. The scalars stay on the device; the
// host reads the residual every `check_every` iterations (one synchronisation each) and stops when
// ||r|| <= max(rtol ||b||, atol). `x` holds the initial guess and receives the solution.
struct CudaCgResult {
  index_t iterations = 0;
  double residual = 0.0;  // final ||r|| / ||b|| (||r|| when b = 0), from the recurrence
  bool converged = false;
  std::string reason;           // "converged", "maxiter", "breakdown: ..." (p^H A p not positive: A is not HPD)
  std::vector<double> history;  // relative residual at every check (when asked for)
};
CudaCgResult cuda_cg(const CudaCsr& A, const void* b, void* x, double rtol, double atol, index_t maxiter, bool jacobi,
                     index_t check_every, bool record_history);

}  // namespace sla
