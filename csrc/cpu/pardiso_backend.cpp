// PARDISO (Intel MKL): supernodal LL^T, Bunch-Kaufman LDL^T and LU with static pivoting, parallel with
// OpenMP. MKL is never linked: libmkl_rt is loaded at run time (load_pardiso) and only the entry points
// used here are looked up, with prototypes of our own. Works in double or complex<double> (the 64-bit
// integer interface, pardiso_64); float32 / complex64 callers are converted on the way in and out.
//
// Matrix types: real SPD 2, real symmetric indefinite -2, real unsymmetric 11, complex Hermitian PD 4,
// complex Hermitian indefinite -4, complex unsymmetric 13. Phases: 11 analysis (fill-reducing ordering and
// symbolic factorization; with the weighted matching and scaling of the unsymmetric and indefinite types
// it reads the values), 22 numeric factorization, 33 solve, 0 release the factors, -1 release everything.
// iparm is indexed from 0 here (the documentation counts from 1).
#include <dlfcn.h>

#include <atomic>
#include <climits>
#include <cmath>
#include <complex>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#ifdef SLA_HAVE_OPENMP
#include <omp.h>
#endif

#include "backends.hpp"
#include "convert.hpp"
#include "selinv.hpp"
#include "sla/dynlib.hpp"
#include "sla/errors.hpp"
#include "sla/interrupt.hpp"

namespace sla {
namespace {

using mkl_int64 = long long;
static_assert(sizeof(mkl_int64) == sizeof(index_t), "pardiso_64 takes 64-bit integers like the core's index_t");

// The entry points, as declared in MKL's documentation (mkl_pardiso.h, mkl_service.h).
using pardiso64_fn = void (*)(void* pt, const mkl_int64* maxfct, const mkl_int64* mnum, const mkl_int64* mtype,
                              const mkl_int64* phase, const mkl_int64* n, const void* a, const mkl_int64* ia,
                              const mkl_int64* ja, mkl_int64* perm, const mkl_int64* nrhs, mkl_int64* iparm,
                              const mkl_int64* msglvl, void* b, void* x, mkl_int64* error);
using pardisoinit_fn = void (*)(void* pt, const int* mtype, int* iparm);  // MKL_INT is int (LP64 interface)
using int_int_fn = int (*)(int);
using version_fn = void (*)(char* buffer, int length);

struct MklApi {
  pardiso64_fn pardiso = nullptr;
  pardisoinit_fn init = nullptr;
  int_int_fn set_threads_local = nullptr;  // MKL_Set_Num_Threads_Local: returns the previous local count
};

// The loaded library: written once under g_mutex, then only read (g_loaded is the release/acquire flag).
std::mutex g_mutex;
std::atomic<bool> g_loaded{false};
MklApi g_api;
std::string g_description = "libmkl_rt has not been looked for yet";
std::atomic<int> g_threads{0};

// MKL's codes (mkl_service.h).
constexpr int kInterfaceLp64 = 0;
constexpr int kThreadingSequential = 1;

// Make the libraries of the process that export Fortran BLAS / LAPACK or OpenMP symbols global, before
// libmkl_rt adds its own (it loads its LP64 interface library with global scope): a symbol is looked up
// in the global scope in load order, so a library that binds dgemm_ lazily (CHOLMOD through the system
// BLAS) keeps the BLAS it was linked with, and MKL's GNU threading layer finds the process's OpenMP runtime.
bool promote_loaded_libraries() {
  bool have_gomp = false;
  for (const char* lib : {"libopenblas.so.0", "libopenblas.so", "libblas.so.3", "liblapack.so.3", "libgomp.so.1"}) {
    // The handle stays open: the library was in the process before and stays there.
    if (dlopen(lib, RTLD_LAZY | RTLD_NOLOAD | RTLD_GLOBAL) != nullptr && std::strcmp(lib, "libgomp.so.1") == 0)
      have_gomp = true;
  }
  return have_gomp;
}

// Try one path; on success fill g_api and return true, else append why to `tried`.
bool try_load(const std::string& path, std::string& tried) {
  void* h = dynlib::open(path, tried);
  if (h == nullptr) return false;
  std::string missing;
  MklApi api;
  int_int_fn set_interface = nullptr, set_threading = nullptr;
  version_fn version = nullptr;
  dynlib::lookup(h, "pardiso_64", api.pardiso, missing);
  dynlib::lookup(h, "pardisoinit", api.init, missing);
  dynlib::lookup(h, "MKL_Set_Num_Threads_Local", api.set_threads_local, missing);
  dynlib::lookup(h, "MKL_Set_Interface_Layer", set_interface, missing);
  dynlib::lookup(h, "MKL_Set_Threading_Layer", set_threading, missing);
  dynlib::lookup(h, "MKL_Get_Version_String", version, missing);
  if (!missing.empty()) {
    tried += "\n  " + path + ": loaded, but it lacks " + missing + " (not MKL's single dynamic library?)";
    dlclose(h);
    return false;
  }
  // The layers must be chosen before any other MKL call (they are ignored once MKL is initialised).
  // Sequential by default: on a busy machine (a shared 2-core box) MKL's OpenMP threads made PARDISO's
  // analysis 1.7x slower and its factorization no faster, measured with one and two threads.
  // MKL_THREADING_LAYER=GNU in the environment gives PARDISO threads from OpenMP, as many as
  // set_pardiso_threads says (torch.get_num_threads() from Python).
  set_interface(kInterfaceLp64);
  const bool gomp = promote_loaded_libraries();
  std::string layer = "sequential";
  if (const char* env = std::getenv("MKL_THREADING_LAYER")) {
    layer = std::string(env) + ", from MKL_THREADING_LAYER";
    const std::string name(env);
    if ((name == "GNU" || name == "gnu") && !gomp) {
      set_threading(kThreadingSequential);
      layer = "sequential: MKL_THREADING_LAYER=GNU but no GNU OpenMP runtime in the process";
    }
  } else {
    set_threading(kThreadingSequential);
  }
  char buffer[256] = {};
  version(buffer, static_cast<int>(sizeof(buffer)) - 1);
  g_api = api;
  g_description = std::string(buffer) + " (" + path + "; threading " + layer + ")";
  return true;
}

// Run `f` with MKL's thread count for this thread set from set_pardiso_threads (one thread inside an
// OpenMP parallel region: a batch runs its members in parallel), restored afterwards.
class ThreadsScope {
 public:
  ThreadsScope() {
    int n = g_threads.load(std::memory_order_relaxed);
#ifdef SLA_HAVE_OPENMP
    if (omp_in_parallel()) n = 1;
#endif
    if (n > 0) {
      previous_ = g_api.set_threads_local(n);
      active_ = true;
    }
  }
  ~ThreadsScope() {
    if (active_) g_api.set_threads_local(previous_);
  }
  ThreadsScope(const ThreadsScope&) = delete;
  ThreadsScope& operator=(const ThreadsScope&) = delete;

 private:
  int previous_ = 0;
  bool active_ = false;
};

}  // namespace

PardisoLibrary pardiso_library() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return {g_loaded.load(std::memory_order_relaxed), g_description};
}

PardisoLibrary load_pardiso(const std::vector<std::string>& candidates) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_loaded.load(std::memory_order_relaxed)) return {true, g_description};
  const bool ok =
      dynlib::search("TORCH_SLA_MKL_RT", "libmkl_rt", candidates, {"libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so"},
                     "Intel MKL's libmkl_rt was not found (install the 'mkl' wheel: pip install mkl, or set "
                     "TORCH_SLA_MKL_RT to the library's path).",
                     try_load, g_description);
  g_loaded.store(ok, std::memory_order_release);
  return {ok, g_description};
}

void set_pardiso_threads(int n) { g_threads.store(n < 0 ? 0 : n, std::memory_order_relaxed); }
int pardiso_threads() { return g_threads.load(std::memory_order_relaxed); }

namespace detail {
namespace {

// PARDISO's matrix: CSR, one row per matrix row, column indices sorted in each row, every diagonal entry
// stored (an explicit zero where A has none; PARDISO requires them for the symmetric types). For the
// symmetric and Hermitian types, the upper triangle: row j holds A's lower-triangle column j mirrored,
// conjugated for a complex Hermitian matrix. src[k] is the CSR position in the caller's values of entry k,
// -1 for an inserted zero.
struct PardisoMatrix {
  std::vector<mkl_int64> ia, ja;
  std::vector<index_t> src;
  bool conjugate = false;
};

PardisoMatrix build_matrix(const CscPlan& plan, bool symmetric, bool complex) {
  const index_t n = plan.n;
  // Rows of PARDISO's matrix as (start, count) of a (col, src) list, before the diagonal is inserted.
  std::vector<index_t> rowptr(static_cast<size_t>(n) + 1, 0), cols, srcs;
  if (symmetric) {
    // The plan's lower-triangle column j, rows ascending, is the upper-triangle row j, columns ascending.
    rowptr.assign(plan.colptr.begin(), plan.colptr.end());
    cols.assign(plan.rowind.begin(), plan.rowind.end());
    srcs.assign(plan.perm.begin(), plan.perm.end());
  } else {
    // The plan is A in CSC: transpose it (a counting sort; columns come out ascending in each row).
    for (index_t r : plan.rowind) ++rowptr[r + 1];
    for (index_t r = 0; r < n; ++r) rowptr[r + 1] += rowptr[r];
    cols.resize(plan.rowind.size());
    srcs.resize(plan.rowind.size());
    std::vector<index_t> next(rowptr.begin(), rowptr.end() - 1);
    for (index_t c = 0; c < n; ++c)
      for (index_t q = plan.colptr[c]; q < plan.colptr[c + 1]; ++q) {
        const index_t dst = next[plan.rowind[q]]++;
        cols[dst] = c;
        srcs[dst] = plan.perm[q];
      }
  }
  PardisoMatrix m;
  m.conjugate = symmetric && complex;
  m.ia.resize(static_cast<size_t>(n) + 1);
  m.ja.reserve(cols.size() + static_cast<size_t>(n));
  m.src.reserve(cols.size() + static_cast<size_t>(n));
  for (index_t r = 0; r < n; ++r) {
    m.ia[r] = static_cast<mkl_int64>(m.ja.size());
    bool diagonal = false;
    for (index_t q = rowptr[r]; q < rowptr[r + 1]; ++q) {
      if (!diagonal && cols[q] >= r) {
        if (cols[q] != r) {
          m.ja.push_back(r);
          m.src.push_back(-1);
        }
        diagonal = true;
      }
      m.ja.push_back(cols[q]);
      m.src.push_back(srcs[q]);
    }
    if (!diagonal) {
      m.ja.push_back(r);
      m.src.push_back(-1);
    }
  }
  m.ia[n] = static_cast<mkl_int64>(m.ja.size());
  return m;
}

mkl_int64 matrix_type(Method method, bool complex) {
  switch (method) {
    case Method::Cholesky: return complex ? 4 : 2;
    case Method::LDL: return complex ? -4 : -2;
    case Method::LU: return complex ? 13 : 11;
  }
  return 11;
}

// One PARDISO handle: the 64 opaque pointers `pt` and the iparm of its analysis, released with phase -1.
// Each numeric factorization owns one handle while it lives (PARDISO keeps the factors in the handle); a
// handle whose factorization is gone goes back to its analysis's pool with its analysis kept (phase 0
// frees the factors), ready for the next factorization of the same pattern.
class Handle {
 public:
  Handle(const PardisoMatrix& m, mkl_int64 mtype, mkl_int64 ordering) : m_(m), mtype_(mtype) {
    int init_iparm[64] = {};
    const int mt = static_cast<int>(mtype);
    g_api.init(pt_, &mt, init_iparm);  // the documented defaults for this matrix type; zeroes pt
    for (int k = 0; k < 64; ++k) iparm_[k] = init_iparm[k];
    iparm_[0] = 1;         // the values below, not the defaults
    iparm_[1] = ordering;  // fill-reducing ordering: 0 minimum degree, 2 METIS, 3 parallel METIS
    iparm_[7] = 2;         // at most two steps of iterative refinement (PARDISO refines after perturbations)
    iparm_[9] = 13;        // pivots below 1e-13 ||A|| are perturbed (and the factorization reported singular)
    if (mtype == -2 || mtype == -4) {
      iparm_[10] = 1;  // scaling and symmetric weighted matching, recommended for indefinite matrices; they
      iparm_[12] = 1;  // make the analysis read the values
      iparm_[20] = 1;  // Bunch-Kaufman 1x1 and 2x2 pivots
    }
    iparm_[17] = -1;  // report the number of nonzeros in the factors
    iparm_[18] = -1;  // report the flops of the factorization
    iparm_[26] = 0;   // no matrix check: the core validated the pattern
    iparm_[27] = 0;   // double precision
    iparm_[34] = 1;   // zero-based indices
  }
  ~Handle() {
    if (analyzed_) {
      mkl_int64 error = 0;
      call(-1, nullptr, 0, nullptr, nullptr, error);
    }
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  // PARDISO for this handle's matrix; `error` receives its code. The caller holds the handle exclusively.
  void call(mkl_int64 phase, const void* values, mkl_int64 nrhs, void* b, void* x, mkl_int64& error) {
    const mkl_int64 one = 1, msglvl = 0, n = static_cast<mkl_int64>(m_.ia.size()) - 1;
    mkl_int64 perm = 0;
    ThreadsScope threads;
    g_api.pardiso(pt_, &one, &one, &mtype_, &phase, &n, values, m_.ia.data(), m_.ja.data(), &perm, &nrhs, iparm_,
                  &msglvl, b, x, &error);
  }

  mkl_int64* iparm() { return iparm_; }
  bool analyzed() const { return analyzed_; }
  void set_analyzed() { analyzed_ = true; }
  bool has_factor = false;

 private:
  void* pt_[64] = {};
  mkl_int64 iparm_[64] = {};
  const PardisoMatrix& m_;
  mkl_int64 mtype_;
  bool analyzed_ = false;
};

// The message of a PARDISO error code (the list of the documentation).
std::string error_text(mkl_int64 e) {
  switch (e) {
    case -1: return "input inconsistent";
    case -2: return "not enough memory";
    case -3: return "reordering problem";
    case -4: return "zero pivot, numerical factorization or iterative refinement problem";
    case -5: return "unclassified (internal) error";
    case -6: return "reordering failed";
    case -7: return "diagonal matrix is singular";
    case -8: return "32-bit integer overflow problem";
    case -9: return "not enough memory for out-of-core";
    case -10: return "error opening out-of-core files";
    case -11: return "read/write error with out-of-core files";
    case -12: return "pardiso_64 called from a 32-bit library";
    case -13: return "interrupted by the mkl_progress function";
    case -15: return "reordering failed (internal)";
  }
  return "unknown error";
}

class PardisoSymbolic;

// Statistics of an analysis, reported by PARDISO after phase 11.
struct AnalysisStats {
  double factor_nnz = -1.0;
  double mflops = -1.0;
  double memory_kb = -1.0;  // symbolic + numeric peak (iparm 15 and 17), kilobytes
};

class PardisoSymbolic final : public CpuSymbolic {
 public:
  PardisoSymbolic(Method method, ScalarType scalar, CscPlan plan, mkl_int64 ordering)
      : CpuSymbolic(scalar, std::move(plan)),
        method_(method),
        mtype_(matrix_type(method, is_complex(scalar))),
        ordering_(ordering),
        matrix_(build_matrix(plan_, method != Method::LU, is_complex(scalar))) {
    // The positive definite types analyse the pattern alone: do it now, so that the prediction of the factor
    // size is there before the first factorization. The others compute a matching from the values first.
    if (!reads_values()) {
      std::unique_ptr<Handle> h = make_handle();
      const std::vector<double> zeros(matrix_.ja.size() * (is_complex(scalar_) ? 2 : 1), 0.0);
      analyse(*h, zeros.data());
      give_back(std::move(h));
    }
  }
  ~PardisoSymbolic() override {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    pool_.clear();  // before the matrix the handles point to
  }
  PardisoSymbolic(const PardisoSymbolic&) = delete;
  PardisoSymbolic& operator=(const PardisoSymbolic&) = delete;

  Backend backend() const override { return Backend::Pardiso; }
  Method method() const override { return method_; }
  // From PARDISO's report on its analysis: (factor nnz) x (value + index bytes). -1 before the first
  // analysis (the types whose analysis reads the values analyse at the first factorization).
  double predicted_factor_bytes() const override {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    if (stats_.factor_nnz < 0) return -1.0;
    return stats_.factor_nnz * ((is_complex(scalar_) ? 16.0 : 8.0) + 8.0);
  }
  double predicted_flops() const override {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    return stats_.mflops < 0 ? -1.0 : stats_.mflops * 1e6;
  }
  double predicted_factor_nnz() const override {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    return stats_.factor_nnz;
  }
  std::size_t memory_bytes() const override {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    const std::size_t own = (matrix_.ia.capacity() + matrix_.ja.capacity() + matrix_.src.capacity()) * 8;
    // A pooled handle keeps its analysis (PARDISO's symbolic data: about iparm 16, the permanent memory).
    const double kept = pool_.size() * std::max(0.0, permanent_kb_) * 1024.0;
    return CpuSymbolic::memory_bytes() + sizeof(*this) - sizeof(CpuSymbolic) + own + static_cast<std::size_t>(kept);
  }
  AnalysisStats stats() const {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    return stats_;
  }

  std::unique_ptr<Numeric> factorize(const std::shared_ptr<const Symbolic>& self, const void* values,
                                     const FactorizeOptions& options) const override;

  // A handle of this analysis (analysed, or fresh when the pool is empty).
  std::unique_ptr<Handle> take() const {
    {
      std::lock_guard<std::mutex> lock(pool_mutex_);
      if (!pool_.empty()) {
        std::unique_ptr<Handle> h = std::move(pool_.back());
        pool_.pop_back();
        return h;
      }
    }
    return make_handle();
  }
  // Return a handle whose factorization is no longer needed: its factors are freed, its analysis kept for
  // the next factorization (at most kPool handles; the others are released).
  void give_back(std::unique_ptr<Handle> h) const {
    if (!h) return;
    if (h->has_factor) {
      mkl_int64 error = 0;
      h->call(0, nullptr, 0, nullptr, nullptr, error);
      h->has_factor = false;
    }
    if (!h->analyzed()) return;
    std::lock_guard<std::mutex> lock(pool_mutex_);
    if (pool_.size() < kPool) pool_.push_back(std::move(h));
  }

  // Phase 11 on a handle with `values` (PARDISO's layout, working type).
  void analyse(Handle& h, const void* values) const {
    poll_interrupt();
    mkl_int64 error = 0;
    h.call(11, values, 0, nullptr, nullptr, error);
    if (error != 0) fail_error("analysis", error);
    h.set_analyzed();
    std::lock_guard<std::mutex> lock(pool_mutex_);
    if (stats_.factor_nnz < 0) {
      stats_.factor_nnz = static_cast<double>(h.iparm()[17]);
      stats_.mflops = static_cast<double>(h.iparm()[18]);
      stats_.memory_kb = static_cast<double>(std::max(h.iparm()[14], h.iparm()[15] + h.iparm()[16]));
      permanent_kb_ = static_cast<double>(h.iparm()[15]);
    }
  }

  [[noreturn]] static void fail_error(const char* what, mkl_int64 error) {
    fail(ErrorKind::Internal, "PARDISO ", what, " failed: error ", error, " (", error_text(error), ")");
  }

  bool reads_values() const { return mtype_ != 2 && mtype_ != 4; }
  mkl_int64 mtype() const { return mtype_; }
  const PardisoMatrix& matrix() const { return matrix_; }

 private:
  std::unique_ptr<Handle> make_handle() const { return std::make_unique<Handle>(matrix_, mtype_, ordering_); }

  static constexpr std::size_t kPool = 4;
  Method method_;
  mkl_int64 mtype_;
  mkl_int64 ordering_;
  PardisoMatrix matrix_;
  mutable std::mutex pool_mutex_;
  mutable AnalysisStats stats_;
  mutable double permanent_kb_ = -1.0;
  mutable std::vector<std::unique_ptr<Handle>> pool_;  // last member: released first
};

template <class W>
class PardisoNumeric final : public Numeric {
 public:
  PardisoNumeric(std::shared_ptr<const Symbolic> sym, std::unique_ptr<Handle> handle, std::vector<W> values,
                 bool zero_pivot, index_t factor_nnz, index_t positive, index_t negative)
      : Numeric(std::move(sym)),
        values_(std::move(values)),
        handle_(std::move(handle)),
        zero_pivot_(zero_pivot),
        factor_nnz_(factor_nnz),
        positive_(positive),
        negative_(negative) {}
  ~PardisoNumeric() override { symbolic().give_back(std::move(handle_)); }
  PardisoNumeric(const PardisoNumeric&) = delete;
  PardisoNumeric& operator=(const PardisoNumeric&) = delete;

  void solve(const void* b, void* x, index_t nrhs, Op op) const override {
    const index_t n = sym_->n();
    if (zero_pivot_) fail_zero_pivot("the solve");
    if (n == 0 || nrhs == 0) return;
    const ScalarType s = sym_->scalar();
    std::vector<W> bw(static_cast<size_t>(n * nrhs)), xw(static_cast<size_t>(n * nrhs));
    load_dense<W>(s, b, n * nrhs, bw.data());
    const PardisoSymbolic& sym = symbolic();
    const bool unsymmetric = sym.method() == Method::LU;
    std::lock_guard<std::mutex> lock(mutex_);
    // iparm 12: 0 solves A x = b, 1 the conjugate transposed system, 2 the transposed one (the same for a
    // real matrix). A symmetric or Hermitian matrix is its own adjoint.
    handle_->iparm()[11] = op == Op::N || !unsymmetric ? 0 : (is_complex_t<W>::value ? 1 : 2);
    mkl_int64 error = 0;
    poll_interrupt();
    handle_->call(33, values_.data(), static_cast<mkl_int64>(nrhs), bw.data(), xw.data(), error);
    handle_->iparm()[11] = 0;
    if (error != 0) fail(ErrorKind::Internal, "PARDISO solve failed: error ", error, " (", error_text(error), ")");
    bool finite_b = true, finite_x = true;
    for (const W& v : bw) finite_b = finite_b && std::isfinite(std::abs(v));
    for (const W& v : xw) finite_x = finite_x && std::isfinite(std::abs(v));
    if (finite_b && !finite_x)
      fail(ErrorKind::SingularMatrix, "the PARDISO solve produced non-finite values from a finite right-hand side: ",
           "the factorization overflowed (rescale A) or A is singular");
    store_dense<W>(s, xw.data(), n * nrhs, x);
  }

  double rcond() const override { return zero_pivot_ ? 0.0 : 1.0; }
  double eps() const override { return std::numeric_limits<double>::epsilon(); }
  index_t factor_nnz() const override { return factor_nnz_; }

  // The numbers of positive and negative eigenvalues (LDL^T of a real symmetric or complex Hermitian matrix).
  index_t positive_eigenvalues() const { return positive_; }
  index_t negative_eigenvalues() const { return negative_; }

 private:
  const PardisoSymbolic& symbolic() const { return static_cast<const PardisoSymbolic&>(*sym_); }

  std::vector<W> values_;  // PARDISO reads A during the iterative refinement of a solve
  std::unique_ptr<Handle> handle_;
  mutable std::mutex mutex_;  // PARDISO's solve writes into the handle
  bool zero_pivot_;
  index_t factor_nnz_;
  index_t positive_, negative_;
};

template <class W>
std::unique_ptr<Numeric> factorize_as(const PardisoSymbolic& sym, const std::shared_ptr<const Symbolic>& self,
                                      const void* values, const FactorizeOptions& options) {
  // NaN or Inf would run through PARDISO unnoticed (it reports no pivots): refuse them here;
  // sla::factorize names the first one.
  if (sym.first_non_finite(values) >= 0)
    fail(ErrorKind::SingularMatrix, "A contains NaN or Inf: the factorization cannot proceed");
  const PardisoMatrix& m = sym.matrix();
  std::vector<W> vals(m.src.size());
  {
    std::vector<index_t> perm(m.src.size());
    // gather_values reads positions; inserted diagonal zeros read position 0 and are zeroed below.
    for (size_t k = 0; k < m.src.size(); ++k) perm[k] = m.src[k] < 0 ? 0 : m.src[k];
    if (sym.csr_nnz() > 0) gather_values<W>(sym.scalar(), values, perm, vals.data());
    for (size_t k = 0; k < m.src.size(); ++k) {
      if (m.src[k] < 0) vals[k] = W(0);
      if constexpr (is_complex_t<W>::value) {
        if (m.conjugate) vals[k] = std::conj(vals[k]);
      }
    }
  }
  std::unique_ptr<Handle> h = sym.take();
  // On any failure below, the handle goes back to the pool (its analysis stays usable).
  struct Return {
    const PardisoSymbolic& sym;
    std::unique_ptr<Handle>& h;
    ~Return() { sym.give_back(std::move(h)); }
  } on_exit{sym, h};
  const bool reused = h->analyzed();
  if (!reused) sym.analyse(*h, vals.data());
  auto numeric = [&](mkl_int64& error) {
    poll_interrupt();
    error = 0;
    h->call(22, vals.data(), 0, nullptr, nullptr, error);
    h->has_factor = true;
  };
  mkl_int64 error = 0;
  numeric(error);
  // A reused analysis carries the matching and scaling of earlier values; with values far from those a
  // factorization may need perturbed pivots that a fresh matching avoids: analyse these values, try again.
  if (reused && sym.reads_values() && (error == -4 || h->iparm()[13] > 0)) {
    sym.analyse(*h, vals.data());
    numeric(error);
  }
  const bool definite = sym.mtype() == 2 || sym.mtype() == 4;
  if (error == -4 && definite)
    fail(ErrorKind::NotPositiveDefinite, "A is not positive definite: PARDISO's Cholesky factorization met a ",
         "pivot that is not positive. Use method='ldl' for symmetric indefinite or method='lu' for general matrices");
  if (error == -4 || error == -7)
    fail(ErrorKind::SingularMatrix, "A is singular: PARDISO's ", method_name(sym.method()),
         " factorization found a zero pivot (", error_text(error), ")");
  if (error != 0) sym.fail_error("factorization", error);
  const mkl_int64 perturbed = h->iparm()[13];
  if (perturbed > 0 && !options.allow_singular)
    fail(ErrorKind::SingularMatrix, "A is singular or nearly singular to working precision: PARDISO's ",
         method_name(sym.method()), " factorization had to perturb ", perturbed,
         " pivot(s) smaller than 1e-13 ||A|| (its pivoting is restricted to supernodes). backend='suitesparse' ",
         "(UMFPACK's LU with partial pivoting) tells a singular matrix from an ill-conditioned one");
  const index_t nnz = static_cast<index_t>(h->iparm()[17]);
  const index_t pos = static_cast<index_t>(h->iparm()[21]), neg = static_cast<index_t>(h->iparm()[22]);
  return std::make_unique<PardisoNumeric<W>>(self, std::move(h), std::move(vals), perturbed > 0, nnz, pos, neg);
}

std::unique_ptr<Numeric> PardisoSymbolic::factorize(const std::shared_ptr<const Symbolic>& self, const void* values,
                                                    const FactorizeOptions& options) const {
  if (is_complex(scalar_)) return factorize_as<std::complex<double>>(*this, self, values, options);
  return factorize_as<double>(*this, self, values, options);
}

}  // namespace

std::shared_ptr<const Symbolic> analyze_pardiso(Method method, ScalarType scalar, CscPlan plan) {
  if (!g_loaded.load(std::memory_order_acquire))
    fail(ErrorKind::Unavailable, "backend 'pardiso' is not available: ", pardiso_library().description);
  const mkl_int64 ordering = plan.ordering == Ordering::AMD ? 0 : 2;  // PARDISO's minimum degree, or METIS
  return std::make_shared<PardisoSymbolic>(method, scalar, std::move(plan), ordering);
}

}  // namespace detail
}  // namespace sla
