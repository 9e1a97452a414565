// cuDSS (NVIDIA's sparse direct solver on the GPU): Cholesky, LDL^T and LU of CSR matrices in device memory.
//
// cuDSS is never linked: libcudss is loaded at run time (load_cudss) and the few entry points used here are
// declared below with our own prototypes and constants, checked against cuDSS 1.0's cudss.h and
// cudss_data_types.h; cuDSS before 1.0 is refused (its cudssMatrixCreateCsr had no separate offset type and
// it had no transposed solve). The data-type codes (cudaDataType_t) and library properties come from the CUDA
// toolkit's library_types.h, which the build has.
//
// Where the analysis lives: cuDSS keeps the reordering and symbolic factorization inside a cudssData object,
// next to the numeric factors of that object. An analysis here (CudssSymbolic) therefore keeps a pool of
// analysed cudssData objects ("Factors"): a factorization takes one (only the numeric factorization runs)
// and owns it while it lives; when it is destroyed its Factors go back to the pool for the next
// factorization of the pattern. The pool is per batch size: a uniform batch of B matrices sharing the
// pattern (CUDSS_CONFIG_UBATCH_SIZE = B) is one cudssData analysed for B. A factorization made while every
// pooled Factors is in use analyses a new one (analysis_count() counts them).
//
// Ordering between streams: a Factors object records an event on the stream of its last use when it returns
// to the pool, and the next user's stream waits for that event before using it.
//
// Adjoint solves: the factorization of a Hermitian method is its own adjoint (A^H = A); for LU the solve
// runs with CUDSS_CONFIG_SOLVE_MODE = conjugate transpose (complex) or transpose (real), on the same factors.
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <library_types.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "cuda_util.cuh"
#include "sla/cuda.hpp"
#include "sla/direct.hpp"
#include "sla/dynlib.hpp"
#include "sla/errors.hpp"

namespace sla {
namespace {

// --- the cuDSS API: opaque handles, the constants used, and the entry points ---------------------------------
using cudss_handle = void*;
using cudss_config = void*;
using cudss_data = void*;
using cudss_matrix = void*;
using cudss_status = int;

constexpr cudss_status kSuccess = 0, kNotSupported = 4;
// cudssConfigParam_t
constexpr int kConfigReorderingAlg = 0, kConfigMatchingAlg = 3, kConfigSolveMode = 4, kConfigUbatchSize = 18;
// cudssDataParam_t
constexpr int kDataInfo = 0, kDataLuNnz = 1, kDataNpivots = 2, kDataDiag = 8;
// cudssPhase_t
constexpr int kPhaseAnalysis = 3, kPhaseFactorization = 4, kPhaseSolve = 1008;
// cudssMatrixType_t
constexpr int kTypeGeneral = 0, kTypeSymmetric = 1, kTypeHermitian = 2, kTypeSpd = 3, kTypeHpd = 4;
// cudssMatrixViewType_t, cudssIndexBase_t, cudssLayout_t
constexpr int kViewFull = 0, kViewLower = 1, kBaseZero = 0, kLayoutColMajor = 0;
// cudssReorderingAlg_t, cudssMatchingAlg_t, cudssSolveMode_t
constexpr int kReorderDefault = 0, kReorderAmd = 3, kReorderNestedDissection = 4;
constexpr int kMatchingNone = 0;
constexpr int kSolveNormal = 0, kSolveTranspose = 1, kSolveConjugateTranspose = 2;

struct CudssApi {
  cudss_status (*create)(cudss_handle*) = nullptr;
  cudss_status (*set_stream)(cudss_handle, cudaStream_t) = nullptr;
  cudss_status (*config_create)(cudss_config*) = nullptr;
  cudss_status (*config_destroy)(cudss_config) = nullptr;
  cudss_status (*config_set)(cudss_config, int, const void*, std::size_t) = nullptr;
  cudss_status (*data_create)(cudss_handle, cudss_data*) = nullptr;
  cudss_status (*data_destroy)(cudss_handle, cudss_data) = nullptr;
  cudss_status (*data_get)(cudss_handle, cudss_data, int, void*, std::size_t, std::size_t*) = nullptr;
  cudss_status (*execute)(cudss_handle, int, cudss_config, cudss_data, cudss_matrix, cudss_matrix,
                          cudss_matrix) = nullptr;
  cudss_status (*matrix_create_csr)(cudss_matrix*, std::int64_t, std::int64_t, std::int64_t, const void*, const void*,
                                    const void*, const void*, cudaDataType_t, cudaDataType_t, cudaDataType_t, int, int,
                                    int) = nullptr;
  cudss_status (*matrix_create_dn)(cudss_matrix*, std::int64_t, std::int64_t, std::int64_t, const void*, cudaDataType_t,
                                   int) = nullptr;
  cudss_status (*matrix_destroy)(cudss_matrix) = nullptr;
  cudss_status (*get_property)(libraryPropertyType, int*) = nullptr;
};

// The loaded library: written once under g_mutex, then only read (g_loaded is the release/acquire flag).
std::mutex g_mutex;
std::atomic<bool> g_loaded{false};
CudssApi g_api;
std::string g_description = "libcudss has not been looked for yet";

const char* status_name(cudss_status s) {
  switch (s) {
    case 0: return "CUDSS_STATUS_SUCCESS";
    case 1: return "CUDSS_STATUS_NOT_INITIALIZED";
    case 2: return "CUDSS_STATUS_ALLOC_FAILED (out of GPU memory?)";
    case 3: return "CUDSS_STATUS_INVALID_VALUE";
    case 4: return "CUDSS_STATUS_NOT_SUPPORTED";
    case 5: return "CUDSS_STATUS_EXECUTION_FAILED";
    case 6: return "CUDSS_STATUS_INTERNAL_ERROR";
    case 7: return "CUDSS_STATUS_IR_FAILED";
  }
  return "unknown cuDSS status";
}

void check_cudss(cudss_status s, const char* what) {
  if (s != kSuccess) fail(ErrorKind::Internal, "cuDSS ", what, " failed: ", status_name(s), " (", s, ")");
}

bool try_load(const std::string& path, std::string& tried) {
  void* h = dynlib::open(path, tried);
  if (h == nullptr) return false;
  std::string missing;
  CudssApi api;
  dynlib::lookup(h, "cudssCreate", api.create, missing);
  dynlib::lookup(h, "cudssSetStream", api.set_stream, missing);
  dynlib::lookup(h, "cudssConfigCreate", api.config_create, missing);
  dynlib::lookup(h, "cudssConfigDestroy", api.config_destroy, missing);
  dynlib::lookup(h, "cudssConfigSet", api.config_set, missing);
  dynlib::lookup(h, "cudssDataCreate", api.data_create, missing);
  dynlib::lookup(h, "cudssDataDestroy", api.data_destroy, missing);
  dynlib::lookup(h, "cudssDataGet", api.data_get, missing);
  dynlib::lookup(h, "cudssExecute", api.execute, missing);
  dynlib::lookup(h, "cudssMatrixCreateCsr", api.matrix_create_csr, missing);
  dynlib::lookup(h, "cudssMatrixCreateDn", api.matrix_create_dn, missing);
  dynlib::lookup(h, "cudssMatrixDestroy", api.matrix_destroy, missing);
  dynlib::lookup(h, "cudssGetProperty", api.get_property, missing);
  if (!missing.empty()) {
    tried += "\n  " + path + ": loaded, but it lacks " + missing + " (not cuDSS?)";
    dlclose(h);
    return false;
  }
  int major = -1, minor = -1, patch = -1;
  api.get_property(MAJOR_VERSION, &major);
  api.get_property(MINOR_VERSION, &minor);
  api.get_property(PATCH_LEVEL, &patch);
  const std::string version = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  if (major < 1) {
    tried += "\n  " + path + ": cuDSS " + version +
             " is older than 1.0, which torch_sla needs (transposed solves for the adjoint of LU; the 1.0 matrix "
             "API): pip install -U nvidia-cudss-cu13 (or -cu12)";
    dlclose(h);
    return false;
  }
  g_api = api;  // the handle stays open for the life of the process
  g_description = "cuDSS " + version + " (" + path + ")";
  return true;
}

cudaDataType_t value_type(ScalarType s) {
  switch (s) {
    case ScalarType::Float32: return CUDA_R_32F;
    case ScalarType::Float64: return CUDA_R_64F;
    case ScalarType::Complex64: return CUDA_C_32F;
    case ScalarType::Complex128: break;
  }
  return CUDA_C_64F;
}

// One cuDSS library handle per (device, scalar type), made on first use and kept for the life of the process
// (cuDSS 0.7 documents that a handle reused for another data type gives wrong results; destroying handles at
// exit would race the teardown of the CUDA context). Calls on one handle are serialised by its mutex.
struct Library {
  cudss_handle handle = nullptr;
  std::mutex mutex;
};

Library& library_for(int device, ScalarType scalar) {
  static std::mutex map_mutex;
  static std::map<std::pair<int, int>, std::unique_ptr<Library>> libs;
  std::lock_guard<std::mutex> lock(map_mutex);
  auto& slot = libs[{device, static_cast<int>(scalar)}];
  if (!slot) {
    auto lib = std::make_unique<Library>();
    cuda::DeviceGuard guard(device);
    check_cudss(g_api.create(&lib->handle), "cudssCreate");
    slot = std::move(lib);
  }
  return *slot;
}

// --- kernels -----------------------------------------------------------------------------------------------

// dst[b * m + k] = src[b * nnz + map[k]] for every member b < batch: the entries of the view (one triangle)
// gathered from the caller's CSR values.
template <class T>
__global__ void gather_view(const T* __restrict__ src, const std::int64_t* __restrict__ map, T* __restrict__ dst,
                            long long m, long long nnz, long long batch) {
  const long long total = m * batch;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long b = i / m, k = i - b * m;
    dst[i] = src[b * nnz + map[k]];
  }
}

// Per member b: [0] min |d|, [1] max |d| (as the bit patterns of non-negative doubles, which order like the
// integers), [2] non-finite pivots, [3] pivots whose real part is not positive.
struct DiagStats {
  unsigned long long min_bits, max_bits, non_finite, non_positive;
};

template <class T>
__global__ void diag_stats(const T* __restrict__ diag, long long n, DiagStats* __restrict__ out) {
  const long long b = blockIdx.y;
  DiagStats& s = out[b];
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const T d = diag[b * n + i];
    if (!cuda::is_finite(d)) {
      atomicAdd(&s.non_finite, 1ull);
      continue;
    }
    if (!(cuda::real_part(d) > 0.0)) atomicAdd(&s.non_positive, 1ull);
    const unsigned long long bits = static_cast<unsigned long long>(__double_as_longlong(cuda::magnitude(d)));
    atomicMin(&s.min_bits, bits);
    atomicMax(&s.max_bits, bits);
  }
}

// The smallest position (< count) of a non-finite value, in *out (left at ULLONG_MAX when there is none).
template <class T>
__global__ void find_non_finite(const T* __restrict__ v, long long count, unsigned long long* out) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<long long>(gridDim.x) * blockDim.x)
    if (!cuda::is_finite(v[i])) atomicMin(out, static_cast<unsigned long long>(i));
}

// Copy right-hand sides into / out of one member's slot of a batch-sized buffer.
void copy_async(void* dst, const void* src, std::size_t bytes, cudaStream_t stream) {
  if (bytes > 0) cuda::check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
}

// --- the analysis and its factors --------------------------------------------------------------------------

class CudssSymbolic;

// One analysed cudssData (for `batch` matrices), its configuration, the CSR descriptor of the matrix it
// factors (values in its own buffer: cuDSS may read them again after the factorization) and scratch dense
// descriptors for the phases that need a right-hand side.
struct Factors {
  Factors(const CudssSymbolic& sym, index_t batch);
  ~Factors() { release(); }
  void release() noexcept;
  Factors(const Factors&) = delete;
  Factors& operator=(const Factors&) = delete;

  cudss_handle handle;
  int device;
  index_t batch;
  cudss_config config = nullptr;
  cudss_data data = nullptr;
  cudss_matrix A = nullptr, x = nullptr, b = nullptr;
  cuda::DeviceBuffer values, scratch, diag;
  cuda::Event done;  // recorded on the stream of the last use when this goes back to the pool
  cudaStream_t last_stream = nullptr;
};

// The verdict on the factors of one member, read back from the device.
struct MemberVerdict {
  long long info = 0;     // cuDSS's error indicator (0: no error)
  long long npivots = 0;  // pivots cuDSS perturbed because they were below its (absolute) pivot epsilon
  bool have_diag = false;
  double min_abs = 0.0, max_abs = 0.0;
  unsigned long long non_finite = 0, non_positive = 0;
};

class CudssSymbolic final : public Symbolic {
 public:
  CudssSymbolic(Method method, ScalarType scalar, Device device, Ordering ordering, index_t n, index_t csr_nnz,
                const std::vector<std::int32_t>& rowptr, const std::vector<std::int32_t>& colind,
                const std::vector<std::int64_t>& map, std::string structure)
      : Symbolic(scalar),
        method_(method),
        device_(device),
        ordering_(ordering),
        n_(n),
        csr_nnz_(csr_nnz),
        m_(static_cast<index_t>(colind.size())),
        structure_(std::move(structure)),
        lib_(library_for(device.index, scalar)) {
    cuda::DeviceGuard guard(device.index);
    rowptr_ = cuda::DeviceBuffer(rowptr.size() * sizeof(std::int32_t));
    colind_ = cuda::DeviceBuffer(colind.size() * sizeof(std::int32_t));
    cuda::check(cudaMemcpy(rowptr_.get(), rowptr.data(), rowptr_.bytes(), cudaMemcpyHostToDevice), "cudaMemcpy");
    cuda::check(cudaMemcpy(colind_.get(), colind.data(), colind_.bytes(), cudaMemcpyHostToDevice), "cudaMemcpy");
    if (!map.empty()) {
      map_ = cuda::DeviceBuffer(map.size() * sizeof(std::int64_t));
      cuda::check(cudaMemcpy(map_.get(), map.data(), map_.bytes(), cudaMemcpyHostToDevice), "cudaMemcpy");
    }
  }
  ~CudssSymbolic() override {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    pool_.clear();
  }
  CudssSymbolic(const CudssSymbolic&) = delete;
  CudssSymbolic& operator=(const CudssSymbolic&) = delete;

  Backend backend() const override { return Backend::Cudss; }
  Method method() const override { return method_; }
  Device device() const override { return device_; }
  index_t n() const override { return n_; }
  index_t csr_nnz() const override { return csr_nnz_; }
  Ordering ordering() const override { return ordering_; }
  double predicted_factor_bytes() const override {
    const index_t nnz = lu_nnz_.load();
    return nnz < 0 ? -1.0 : static_cast<double>(nnz) * static_cast<double>(scalar_size(scalar_));
  }
  double predicted_factor_nnz() const override {
    const index_t nnz = lu_nnz_.load();
    return nnz < 0 ? -1.0 : static_cast<double>(nnz);
  }
  std::size_t memory_bytes() const override {
    return sizeof(*this) + rowptr_.bytes() + colind_.bytes() + map_.bytes() + structure_.capacity();
  }
  index_t analysis_count() const override { return analyses_.load(); }
  void check_structure() const override {
    if (!structure_.empty()) fail(ErrorKind::SingularMatrix, structure_);
  }
  index_t first_non_finite(const void* values) const override { return first_non_finite_in(values, csr_nnz_); }

  std::unique_ptr<Numeric> factorize(const std::shared_ptr<const Symbolic>& self, const void* values,
                                     const FactorizeOptions& options) const override;
  std::unique_ptr<NumericBatch> factorize_uniform_batch(const std::shared_ptr<const Symbolic>& self, const void* values,
                                                        index_t batch, const FactorizeOptions& options) const override;

  // The first position of a non-finite value among `count` device values, -1 when all are finite.
  index_t first_non_finite_in(const void* values, index_t count) const {
    if (count == 0 || values == nullptr) return -1;
    cuda::DeviceGuard guard(device_.index);
    const cudaStream_t stream = cuda::as_stream(current_stream());
    cuda::StreamBuffer slot(sizeof(unsigned long long), stream);
    cuda::check(cudaMemsetAsync(slot.as<void>(), 0xff, sizeof(unsigned long long), stream), "cudaMemsetAsync");
    cuda::visit_device_scalar(scalar_, [&](auto tag) {
      using T = typename decltype(tag)::type;
      find_non_finite<T><<<cuda::blocks_for(count, 256), 256, 0, stream>>>(static_cast<const T*>(values), count,
                                                                           slot.as<unsigned long long>());
    });
    cuda::check_launch("find_non_finite");
    unsigned long long pos = 0;
    cuda::check(cudaMemcpyAsync(&pos, slot.as<void>(), sizeof(pos), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
    cuda::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    return pos == ULLONG_MAX ? -1 : static_cast<index_t>(pos);
  }

  // A set of factors for `batch` matrices, analysed: from the pool, else a new one (analysed now on `stream`).
  std::unique_ptr<Factors> take(index_t batch, cudaStream_t stream) const {
    {
      std::lock_guard<std::mutex> lock(pool_mutex_);
      auto& free = pool_[batch];
      if (!free.empty()) {
        std::unique_ptr<Factors> f = std::move(free.back());
        free.pop_back();
        cuda::check(cudaStreamWaitEvent(stream, f->done.get(), 0), "cudaStreamWaitEvent");
        f->last_stream = stream;
        return f;
      }
    }
    auto f = std::make_unique<Factors>(*this, batch);
    {
      std::lock_guard<std::mutex> lock(lib_.mutex);
      check_cudss(g_api.set_stream(lib_.handle, stream), "cudssSetStream");
      check_cudss(g_api.execute(lib_.handle, kPhaseAnalysis, f->config, f->data, f->A, f->x, f->b), "analysis");
      if (lu_nnz_.load() < 0 && batch == 1) {
        std::int64_t nnz = -1;
        std::size_t written = 0;
        if (g_api.data_get(lib_.handle, f->data, kDataLuNnz, &nnz, sizeof(nnz), &written) == kSuccess && nnz >= 0)
          lu_nnz_.store(static_cast<index_t>(nnz));
      }
    }
    f->last_stream = stream;
    analyses_.fetch_add(1);
    return f;
  }

  // Give factors back: kept (at most kPool per batch size) for the next factorization, after the work queued
  // on their last stream.
  void give_back(std::unique_ptr<Factors> f) const {
    if (!f) return;
    try {
      cuda::DeviceGuard guard(device_.index);
      cuda::check(cudaEventRecord(f->done.get(), f->last_stream), "cudaEventRecord");
    } catch (const Error&) {
      return;  // the device is gone (process exit): release them
    }
    std::lock_guard<std::mutex> lock(pool_mutex_);
    auto& free = pool_[f->batch];
    if (free.size() < kPool) free.push_back(std::move(f));
  }

  // Copy (LU) or gather (one triangle) the values of `batch` members into the factors' buffer.
  void load_values(const Factors& f, const void* values, index_t batch, cudaStream_t stream) const {
    const std::size_t item = scalar_size(scalar_);
    if (map_.get() == nullptr) {
      copy_async(f.values.get(), values, static_cast<std::size_t>(batch * m_) * item, stream);
      return;
    }
    cuda::visit_device_scalar(scalar_, [&](auto tag) {
      using T = typename decltype(tag)::type;
      gather_view<T><<<cuda::blocks_for(batch * m_, 256), 256, 0, stream>>>(
          static_cast<const T*>(values), map_.as<std::int64_t>(), f.values.as<T>(), m_, csr_nnz_, batch);
    });
    cuda::check_launch("gather_view");
  }

  // Numeric factorization of the values in f's buffer, then the verdict of every member (one synchronisation).
  std::vector<MemberVerdict> factor(Factors& f, cudaStream_t stream) const {
    const index_t batch = f.batch;
    f.last_stream = stream;
    std::vector<MemberVerdict> out(static_cast<std::size_t>(batch));
    cuda::StreamBuffer stats(sizeof(DiagStats) * batch, stream);
    std::vector<DiagStats> host(static_cast<std::size_t>(batch));
    bool have_diag = false;
    {
      std::lock_guard<std::mutex> lock(lib_.mutex);
      check_cudss(g_api.set_stream(lib_.handle, stream), "cudssSetStream");
      check_cudss(g_api.execute(lib_.handle, kPhaseFactorization, f.config, f.data, f.A, f.x, f.b), "factorization");
      std::size_t written = 0;
      const std::size_t bytes = static_cast<std::size_t>(batch * n_) * scalar_size(scalar_);
      have_diag = g_api.data_get(lib_.handle, f.data, kDataDiag, f.diag.get(), bytes, &written) == kSuccess;
    }
    if (have_diag) {
      for (DiagStats& s : host) s = {ULLONG_MAX, 0ull, 0ull, 0ull};
      cuda::check(
          cudaMemcpyAsync(stats.as<void>(), host.data(), sizeof(DiagStats) * batch, cudaMemcpyHostToDevice, stream),
          "cudaMemcpyAsync");
      cuda::visit_device_scalar(scalar_, [&](auto tag) {
        using T = typename decltype(tag)::type;
        const dim3 grid(std::min(cuda::blocks_for(n_, 256), 1024u), static_cast<unsigned int>(batch));
        diag_stats<T><<<grid, 256, 0, stream>>>(f.diag.as<T>(), n_, stats.as<DiagStats>());
      });
      cuda::check_launch("diag_stats");
      cuda::check(
          cudaMemcpyAsync(host.data(), stats.as<void>(), sizeof(DiagStats) * batch, cudaMemcpyDeviceToHost, stream),
          "cudaMemcpyAsync");
    }
    cuda::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    // The error indicator and the perturbed pivots: one per member of a uniform batch where the library gives
    // them, else one for all.
    std::vector<long long> info, npivots;
    {
      std::lock_guard<std::mutex> lock(lib_.mutex);
      info = data_ints(f, kDataInfo, batch, true);
      npivots = data_ints(f, kDataNpivots, batch, false);
    }
    for (index_t i = 0; i < batch; ++i) {
      MemberVerdict& v = out[i];
      v.info = info[i];
      v.npivots = npivots[i];
      v.have_diag = have_diag;
      if (have_diag) {
        const DiagStats& s = host[i];
        v.non_finite = s.non_finite;
        v.non_positive = s.non_positive;
        v.min_abs = s.min_bits == ULLONG_MAX ? 0.0 : bits_to_double(s.min_bits);
        v.max_abs = bits_to_double(s.max_bits);
      }
    }
    return out;
  }

  // The pivot-ratio estimate of a member (see Numeric::rcond): min |d| / max |d| over the diagonal of the
  // factors cuDSS returns, NaN for a non-finite pivot, 0 when cuDSS reported an error or perturbed pivots;
  // 1 when the library gives no diagonal and reported nothing.
  double rcond_of(const MemberVerdict& v) const {
    if (v.info != 0 || v.npivots > 0) return 0.0;
    if (!v.have_diag) return 1.0;
    if (v.non_finite > 0) return std::numeric_limits<double>::quiet_NaN();
    if (n_ == 0) return 1.0;
    if (!(v.max_abs > 0.0)) return 0.0;
    // Not squared for Cholesky (as the CPU backends square L's diagonal): what cuDSS returns as the diagonal
    // of a Cholesky factorization is not documented as L's; tiny pivots are caught as perturbed pivots.
    return v.min_abs / v.max_abs;
  }

  // Throw what sla::factorize throws for one matrix when the verdict on a member is a failure (prefix:
  // "batch member i: " in a batch, else empty); the member's CSR values are `values` (device memory), read
  // only to tell NaN or Inf in A from a breakdown. Returns whether the factor is singular (kept only with
  // allow_singular: its solves then throw).
  bool judge(const MemberVerdict& v, const void* values, const FactorizeOptions& options,
             const std::string& prefix) const {
    const bool cholesky = method_ == Method::Cholesky;
    const bool stopped = v.info != 0 || v.npivots > 0;
    if (v.non_finite > 0 || (cholesky && (stopped || v.non_positive > 0))) {
      const index_t bad = first_non_finite_in(values, csr_nnz_);
      if (bad >= 0)
        fail(ErrorKind::SingularMatrix, prefix, "the ", method_name(method_),
             " factorization produced a non-finite pivot: A contains NaN or Inf (the first at position ", bad,
             " of its CSR values); check A for non-finite values");
      if (cholesky)
        fail(ErrorKind::NotPositiveDefinite, prefix,
             "A is not positive definite: cuDSS's Cholesky factorization met a pivot that is not positive (cuDSS "
             "info ",
             v.info, ", ", v.npivots,
             " perturbed pivot(s)). Use method='ldl' for symmetric indefinite or method='lu' for general matrices");
      fail(ErrorKind::SingularMatrix, prefix, "the ", method_name(method_),
           " factorization produced a non-finite pivot: A contains NaN or Inf, or the factorization overflowed; "
           "check A for non-finite or huge values (rescale A)");
    }
    if (stopped) {
      if (options.allow_singular) return true;
      fail(ErrorKind::SingularMatrix, prefix, "A is singular or nearly singular to working precision: cuDSS's ",
           method_name(method_), " factorization ",
           v.info != 0 ? detail::concat("stopped at a zero pivot (cuDSS info ", v.info, ")")
                       : detail::concat("had to perturb ", v.npivots, " pivot(s) below its pivot epsilon"),
           ". cuDSS compares pivots with an absolute threshold: scale A to entries of order one if it is tiny");
    }
    const double rc = rcond_of(v);
    if (!(rc >= eps())) {
      if (options.allow_singular) return true;
      fail(ErrorKind::SingularMatrix, prefix, "A is singular to working precision: the ", method_name(method_),
           " factorization's pivot ratio (reciprocal condition estimate) is ", rc, ", below machine epsilon ", eps());
    }
    return false;
  }

  // Solve with f's factors (member-major right-hand sides) under the library's lock.
  void solve_with(Factors& f, const void* b, void* x, index_t nrhs, Op op) const {
    if (n_ == 0 || nrhs == 0) return;
    cuda::DeviceGuard guard(device_.index);
    const cudaStream_t stream = cuda::as_stream(current_stream());
    const cudaDataType_t t = value_type(scalar_);
    cudss_matrix bm = nullptr, xm = nullptr;
    check_cudss(g_api.matrix_create_dn(&bm, n_, nrhs, n_, b, t, kLayoutColMajor), "cudssMatrixCreateDn");
    struct Release {
      cudss_matrix& m;
      ~Release() {
        if (m != nullptr) g_api.matrix_destroy(m);
      }
    } release_b{bm}, release_x{xm};
    check_cudss(g_api.matrix_create_dn(&xm, n_, nrhs, n_, x, t, kLayoutColMajor), "cudssMatrixCreateDn");
    // Only LU differs from its adjoint (the Hermitian methods factor A = A^H).
    const int mode = method_ != Method::LU || op == Op::N ? kSolveNormal
                     : is_complex(scalar_)                ? kSolveConjugateTranspose
                                                          : kSolveTranspose;
    std::lock_guard<std::mutex> lock(lib_.mutex);
    check_cudss(g_api.set_stream(lib_.handle, stream), "cudssSetStream");
    if (mode != kSolveNormal) {
      const cudss_status s = g_api.config_set(f.config, kConfigSolveMode, &mode, sizeof(mode));
      if (s == kNotSupported)
        fail(ErrorKind::Unavailable, "this cuDSS does not support the transposed solve of an LU factorization (",
             "the adjoint solve of backward): update cuDSS (nvidia-cudss-cu13 >= 1.0)");
      check_cudss(s, "cudssConfigSet(SOLVE_MODE)");
    }
    const cudss_status s = g_api.execute(lib_.handle, kPhaseSolve, f.config, f.data, f.A, xm, bm);
    if (mode != kSolveNormal) g_api.config_set(f.config, kConfigSolveMode, &kSolveNormal, sizeof(kSolveNormal));
    check_cudss(s, "solve");
    f.last_stream = stream;
  }

  double eps() const {
    const bool single = scalar_ == ScalarType::Float32 || scalar_ == ScalarType::Complex64;
    return single ? static_cast<double>(std::numeric_limits<float>::epsilon()) : std::numeric_limits<double>::epsilon();
  }
  index_t factor_nnz() const { return std::max<index_t>(lu_nnz_.load(), 0); }
  Library& library() const { return lib_; }
  int matrix_type() const {
    const bool cx = is_complex(scalar_);
    switch (method_) {
      case Method::Cholesky: return cx ? kTypeHpd : kTypeSpd;
      case Method::LDL: return cx ? kTypeHermitian : kTypeSymmetric;
      case Method::LU: break;
    }
    return kTypeGeneral;
  }
  int view() const { return method_ == Method::LU ? kViewFull : kViewLower; }
  int reordering() const {
    switch (ordering_) {
      case Ordering::AMD: return kReorderAmd;
      case Ordering::NestedDissection: return kReorderNestedDissection;
      case Ordering::Default: break;
    }
    return kReorderDefault;
  }
  index_t view_nnz() const { return m_; }
  const void* rowptr() const { return rowptr_.get(); }
  const void* colind() const { return colind_.get(); }

 private:
  // `count` integers of a data parameter (int32 or int64 as the library writes them; one value is given to
  // every member). Not available: zeros, or an error when `required`.
  std::vector<long long> data_ints(const Factors& f, int param, index_t count, bool required) const {
    std::vector<long long> out(static_cast<std::size_t>(count), 0);
    std::size_t bytes = 0;
    cudss_status s = g_api.data_get(lib_.handle, f.data, param, nullptr, 0, &bytes);
    if (s != kSuccess || bytes == 0 || bytes % 4 != 0) {
      if (required) check_cudss(s == kSuccess ? 3 : s, "cudssDataGet (size of a result)");
      return out;
    }
    std::vector<char> raw(bytes);
    s = g_api.data_get(lib_.handle, f.data, param, raw.data(), bytes, &bytes);
    if (s != kSuccess) {
      if (required) check_cudss(s, "cudssDataGet");
      return out;
    }
    // int32 unless there are exactly `count` 64-bit values (INFO is an int; NPIVOTS has the index type).
    const bool wide = bytes == 8 * static_cast<std::size_t>(count);
    const std::size_t k = wide ? bytes / 8 : bytes / 4;
    for (index_t i = 0; i < count; ++i) {
      const std::size_t j = k == static_cast<std::size_t>(count) ? static_cast<std::size_t>(i) : 0;
      if (wide) {
        std::int64_t v;
        std::memcpy(&v, raw.data() + 8 * j, 8);
        out[i] = v;
      } else {
        std::int32_t v;
        std::memcpy(&v, raw.data() + 4 * j, 4);
        out[i] = v;
      }
    }
    return out;
  }

  static double bits_to_double(unsigned long long bits) {
    double d;
    static_assert(sizeof(d) == sizeof(bits), "64-bit doubles");
    std::memcpy(&d, &bits, sizeof(d));
    return d;
  }

  static constexpr std::size_t kPool = 4;
  Method method_;
  Device device_;
  Ordering ordering_;
  index_t n_, csr_nnz_, m_;
  std::string structure_;  // why every factorization is singular (an empty row or column), or empty
  Library& lib_;
  cuda::DeviceBuffer rowptr_, colind_, map_;
  mutable std::atomic<index_t> lu_nnz_{-1};
  mutable std::atomic<index_t> analyses_{0};
  mutable std::mutex pool_mutex_;
  mutable std::map<index_t, std::vector<std::unique_ptr<Factors>>> pool_;  // last member: released first
};

Factors::Factors(const CudssSymbolic& sym, index_t b)
    : handle(sym.library().handle), device(sym.device().index), batch(b) {
  const std::size_t item = scalar_size(sym.scalar());
  const index_t n = sym.n();
  values = cuda::DeviceBuffer(static_cast<std::size_t>(b * sym.view_nnz()) * item);
  scratch = cuda::DeviceBuffer(static_cast<std::size_t>(2 * b * n) * item);
  diag = cuda::DeviceBuffer(static_cast<std::size_t>(b * n) * item);
  // The analysis reads the pattern alone (no matching), but give it defined values all the same.
  cuda::check(cudaMemset(values.get(), 0, values.bytes()), "cudaMemset");
  cuda::check(cudaMemset(scratch.get(), 0, scratch.bytes()), "cudaMemset");
  try {
    check_cudss(g_api.config_create(&config), "cudssConfigCreate");
    const int reorder = sym.reordering(), matching = kMatchingNone;
    check_cudss(g_api.config_set(config, kConfigReorderingAlg, &reorder, sizeof(reorder)),
                "cudssConfigSet(REORDERING_ALG)");
    // No matching: the analysis then depends on the pattern alone, so it is valid for any values of it.
    check_cudss(g_api.config_set(config, kConfigMatchingAlg, &matching, sizeof(matching)),
                "cudssConfigSet(MATCHING_ALG)");
    if (b > 1) {
      const int ub = static_cast<int>(b);
      check_cudss(g_api.config_set(config, kConfigUbatchSize, &ub, sizeof(ub)), "cudssConfigSet(UBATCH_SIZE)");
    }
    check_cudss(g_api.data_create(handle, &data), "cudssDataCreate");
    const cudaDataType_t t = value_type(sym.scalar());
    check_cudss(g_api.matrix_create_csr(&A, n, n, sym.view_nnz(), sym.rowptr(), nullptr, sym.colind(), values.get(),
                                        CUDA_R_32I, CUDA_R_32I, t, sym.matrix_type(), sym.view(), kBaseZero),
                "cudssMatrixCreateCsr");
    char* s = scratch.as<char>();
    check_cudss(g_api.matrix_create_dn(&x, n, 1, n, s, t, kLayoutColMajor), "cudssMatrixCreateDn");
    check_cudss(
        g_api.matrix_create_dn(&this->b, n, 1, n, s + static_cast<std::size_t>(b * n) * item, t, kLayoutColMajor),
        "cudssMatrixCreateDn");
  } catch (...) {
    release();
    throw;
  }
}

void Factors::release() noexcept {
  // After the work that uses them; errors ignored (the device may be gone at process exit).
  (void)cudaEventSynchronize(done.get());
  if (A != nullptr) g_api.matrix_destroy(A);
  if (x != nullptr) g_api.matrix_destroy(x);
  if (b != nullptr) g_api.matrix_destroy(b);
  if (data != nullptr) g_api.data_destroy(handle, data);
  if (config != nullptr) g_api.config_destroy(config);
  A = x = b = nullptr;
  data = nullptr;
  config = nullptr;
}

[[noreturn]] void fail_singular_solve() {
  fail(ErrorKind::SingularMatrix, "A is singular: its cuDSS factorization (kept with allow_singular) has a zero or ",
       "perturbed pivot, so it has no solve");
}

// The factorization of one matrix: owns its Factors while it lives.
class CudssNumeric final : public Numeric {
 public:
  CudssNumeric(std::shared_ptr<const Symbolic> sym, std::unique_ptr<Factors> f, double rcond, bool singular)
      : Numeric(std::move(sym)), factors_(std::move(f)), rcond_(rcond), singular_(singular) {}
  ~CudssNumeric() override { cudss().give_back(std::move(factors_)); }
  CudssNumeric(const CudssNumeric&) = delete;
  CudssNumeric& operator=(const CudssNumeric&) = delete;

  void solve(const void* b, void* x, index_t nrhs, Op op) const override {
    if (singular_) fail_singular_solve();
    std::lock_guard<std::mutex> lock(mutex_);
    cudss().solve_with(*factors_, b, x, nrhs, op);
  }
  double rcond() const override { return rcond_; }
  double eps() const override { return cudss().eps(); }
  index_t factor_nnz() const override { return cudss().factor_nnz(); }

 private:
  const CudssSymbolic& cudss() const { return static_cast<const CudssSymbolic&>(*sym_); }
  std::unique_ptr<Factors> factors_;
  mutable std::mutex mutex_;
  double rcond_;
  bool singular_;
};

// The factors of a uniform batch, solved together (the batch's joint solve) and member by member.
class CudssBatchFactors final : public JointBatchSolve {
 public:
  CudssBatchFactors(std::shared_ptr<const CudssSymbolic> sym, std::unique_ptr<Factors> f)
      : sym_(std::move(sym)), factors_(std::move(f)) {}
  ~CudssBatchFactors() override { sym_->give_back(std::move(factors_)); }
  void solve(const void* b, void* x, index_t nrhs, Op op) const override {
    std::lock_guard<std::mutex> lock(mutex_);
    sym_->solve_with(*factors_, b, x, nrhs, op);
  }
  // Member i alone: its right-hand sides in a batch-sized buffer (zero elsewhere), solved with the others.
  void solve_member(index_t i, const void* b, void* x, index_t nrhs, Op op) const {
    const index_t n = sym_->n();
    if (n == 0 || nrhs == 0) return;
    cuda::DeviceGuard guard(sym_->device().index);
    const cudaStream_t stream = cuda::as_stream(current_stream());
    const std::size_t block = static_cast<std::size_t>(nrhs * n) * scalar_size(sym_->scalar());
    const index_t batch = factors_->batch;
    cuda::StreamBuffer bb(block * batch, stream), xx(block * batch, stream);
    cuda::check(cudaMemsetAsync(bb.as<void>(), 0, block * batch, stream), "cudaMemsetAsync");
    copy_async(bb.as<char>() + block * i, b, block, stream);
    solve(bb.as<void>(), xx.as<void>(), nrhs, op);
    copy_async(x, xx.as<char>() + block * i, block, stream);
  }

 private:
  std::shared_ptr<const CudssSymbolic> sym_;
  std::unique_ptr<Factors> factors_;
  mutable std::mutex mutex_;
};

class CudssMember final : public Numeric {
 public:
  CudssMember(std::shared_ptr<const Symbolic> sym, std::shared_ptr<const CudssBatchFactors> batch, index_t i,
              double rcond, bool singular)
      : Numeric(std::move(sym)), batch_(std::move(batch)), i_(i), rcond_(rcond), singular_(singular) {}
  void solve(const void* b, void* x, index_t nrhs, Op op) const override {
    if (singular_) fail_singular_solve();
    batch_->solve_member(i_, b, x, nrhs, op);
  }
  double rcond() const override { return rcond_; }
  double eps() const override { return static_cast<const CudssSymbolic&>(*sym_).eps(); }
  index_t factor_nnz() const override { return static_cast<const CudssSymbolic&>(*sym_).factor_nnz(); }

 private:
  std::shared_ptr<const CudssBatchFactors> batch_;
  index_t i_;
  double rcond_;
  bool singular_;
};

std::unique_ptr<Numeric> CudssSymbolic::factorize(const std::shared_ptr<const Symbolic>& self, const void* values,
                                                  const FactorizeOptions& options) const {
  cuda::DeviceGuard guard(device_.index);
  const cudaStream_t stream = cuda::as_stream(current_stream());
  std::unique_ptr<Factors> f = take(1, stream);
  struct Return {  // on a failure the factors go back to the pool (their analysis stays usable)
    const CudssSymbolic& sym;
    std::unique_ptr<Factors>& f;
    ~Return() { sym.give_back(std::move(f)); }
  } on_exit{*this, f};
  load_values(*f, values, 1, stream);
  const MemberVerdict v = factor(*f, stream)[0];
  const bool singular = judge(v, values, options, "");
  return std::make_unique<CudssNumeric>(self, std::move(f), rcond_of(v), singular);
}

std::unique_ptr<NumericBatch> CudssSymbolic::factorize_uniform_batch(const std::shared_ptr<const Symbolic>& self,
                                                                     const void* values, index_t batch,
                                                                     const FactorizeOptions& options) const {
  if (batch < 2) return nullptr;
  if (batch > INT_MAX) fail(ErrorKind::InvalidArgument, "values: a batch of ", batch, " matrices is too large");
  cuda::DeviceGuard guard(device_.index);
  const cudaStream_t stream = cuda::as_stream(current_stream());
  std::unique_ptr<Factors> f = take(batch, stream);
  struct Return {
    const CudssSymbolic& sym;
    std::unique_ptr<Factors>& f;
    ~Return() { sym.give_back(std::move(f)); }
  } on_exit{*this, f};
  load_values(*f, values, batch, stream);
  const std::vector<MemberVerdict> verdicts = factor(*f, stream);
  const std::size_t stride = static_cast<std::size_t>(csr_nnz_) * scalar_size(scalar_);
  std::vector<char> singular(static_cast<std::size_t>(batch));
  for (index_t i = 0; i < batch; ++i)
    singular[i] = judge(verdicts[i], static_cast<const char*>(values) + stride * i, options,
                        "batch member " + std::to_string(i) + ": ");
  auto me = std::static_pointer_cast<const CudssSymbolic>(self);
  auto joint = std::make_shared<const CudssBatchFactors>(me, std::move(f));
  std::vector<std::shared_ptr<Numeric>> members;
  members.reserve(static_cast<std::size_t>(batch));
  for (index_t i = 0; i < batch; ++i)
    members.push_back(std::make_shared<CudssMember>(self, joint, i, rcond_of(verdicts[i]), singular[i] != 0));
  return std::make_unique<NumericBatch>(self, std::move(members), joint);
}

// The view cuDSS factors (int32): all of A for LU, its lower triangle (row >= col) for Cholesky / LDL^T with
// map[k] the CSR position of view entry k; and why every factorization is singular (empty row or column).
template <class I>
std::shared_ptr<const Symbolic> analyze_view(Method method, ScalarType scalar, const CsrView<I>& a, Device device,
                                             Ordering ordering) {
  const index_t n = a.n_rows, nnz = a.nnz();
  const bool lower = method != Method::LU;
  std::vector<std::int32_t> rowptr(static_cast<std::size_t>(n) + 1, 0), colind;
  std::vector<std::int64_t> map;
  std::vector<char> row_has(static_cast<std::size_t>(n), 0), col_has(static_cast<std::size_t>(n), 0);
  colind.reserve(static_cast<std::size_t>(lower ? nnz / 2 + n : nnz));
  if (lower) map.reserve(colind.capacity());
  for (index_t r = 0; r < n; ++r) {
    for (I q = a.indptr[r]; q < a.indptr[r + 1]; ++q) {
      const index_t c = static_cast<index_t>(a.indices[q]);
      if (lower && c > r) continue;
      colind.push_back(static_cast<std::int32_t>(c));
      if (lower) map.push_back(static_cast<std::int64_t>(q));
      row_has[r] = 1;
      col_has[c] = 1;
    }
    rowptr[r + 1] = static_cast<std::int32_t>(colind.size());
  }
  std::string structure;
  for (index_t j = 0; j < n && structure.empty(); ++j) {
    if (lower && !(row_has[j] || col_has[j]))
      structure = detail::concat(
          "A is structurally singular: row and column ", j,
          " have no stored entry in the lower triangle of A (row >= col), which is all that the ", method_name(method),
          " factorization reads (the upper triangle is taken as its mirror). Pass A with its "
          "lower triangle (or both)");
    else if (!lower && !row_has[j])
      structure =
          detail::concat("A is structurally singular: row ", j, " of the ", n, " x ", n, " matrix has no stored entry");
    else if (!lower && !col_has[j])
      structure = detail::concat("A is structurally singular: column ", j, " of the ", n, " x ", n,
                                 " matrix has no stored entry");
  }
  const bool regular = structure.empty();
  auto sym = std::make_shared<CudssSymbolic>(method, scalar, device, ordering, n, nnz, rowptr, colind, map,
                                             std::move(structure));
  // Analyse once now, so that the factor size is known before the first factorization (and the first
  // factorization of the pattern finds an analysed set of factors in the pool).
  if (regular) {
    cuda::DeviceGuard guard(device.index);
    const cudaStream_t stream = cuda::as_stream(current_stream());
    sym->give_back(sym->take(1, stream));
  }
  return sym;
}

}  // namespace

CudssLibrary cudss_library() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return {g_loaded.load(std::memory_order_relaxed), g_description};
}

CudssLibrary load_cudss(const std::vector<std::string>& candidates) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_loaded.load(std::memory_order_relaxed)) return {true, g_description};
  const bool ok = dynlib::search(
      "TORCH_SLA_CUDSS", "libcudss", candidates, {"libcudss.so.1", "libcudss.so.0"},
      "NVIDIA cuDSS's libcudss (1.0 or newer) could not be loaded (install the wheel matching torch's CUDA: pip "
      "install nvidia-cudss-cu13, or nvidia-cudss-cu12; or set TORCH_SLA_CUDSS to the library's path).",
      try_load, g_description);
  g_loaded.store(ok, std::memory_order_release);
  return {ok, g_description};
}

std::shared_ptr<const Symbolic> analyze_cudss(Method method, ScalarType scalar, const CsrPattern& pattern,
                                              Device device, Ordering ordering) {
  if (!g_loaded.load(std::memory_order_acquire))
    fail(ErrorKind::Unavailable, "backend 'cudss' is not available: ", cudss_library().description);
  if (device.is_cpu()) fail(ErrorKind::InvalidArgument, "device: backend 'cudss' runs on a CUDA device, not the CPU");
  const int count = cuda_device_count();
  if (device.index < 0 || device.index >= count)
    fail(ErrorKind::InvalidArgument, "device: cuda:", device.index, " does not exist (", count,
         " CUDA device(s) visible)");
  if (pattern.n_rows() != pattern.n_cols())
    fail(ErrorKind::InvalidArgument, "A: a direct solve needs a square matrix, got shape (", pattern.n_rows(), ", ",
         pattern.n_cols(), ")");
  if (pattern.n_rows() == 0)
    fail(ErrorKind::InvalidArgument, "A: backend 'cudss' has nothing to factor in a 0 x 0 matrix");
  if (pattern.nnz() > INT32_MAX || pattern.n_rows() > INT32_MAX)
    fail(ErrorKind::InvalidArgument, "A: backend 'cudss' takes 32-bit indices: at most 2^31 - 1 rows and entries, got ",
         pattern.n_rows(), " rows and ", pattern.nnz(), " entries");
  if (pattern.index32()) return analyze_view(method, scalar, pattern.view<std::int32_t>(), device, ordering);
  return analyze_view(method, scalar, pattern.view<std::int64_t>(), device, ordering);
}

}  // namespace sla
