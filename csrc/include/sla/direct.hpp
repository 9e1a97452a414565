// Sparse direct solvers: the contract every backend implements.
//
//   auto sym = sla::analyze(Backend::SuiteSparse, Method::Cholesky, ScalarType::Float64, pattern);
//   auto f1  = sla::factorize(sym, values1);   // numeric factorization, reuses sym's ordering
//   auto f2  = sla::factorize(sym, values2);   // a batch shares one symbolic analysis
//   f1->solve(b, x, nrhs, Op::N);              // column-major b and x, n x nrhs
//
// Symbolic is immutable after analyze() and may be shared by any number of Numeric objects.
// No pointer passed in is kept past the call that received it.
#pragma once

#include <complex>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "sla/pattern.hpp"
#include "sla/types.hpp"

namespace sla {

// Cudss: NVIDIA cuDSS on a CUDA device, loaded at run time (sla/cuda.hpp: load_cudss, analyze_cudss).
enum class Backend { SuiteSparse, Eigen, Pardiso, Cudss };
enum class Method { Cholesky, LDL, LU };
// The fill-reducing ordering of the analysis: the backend's own choice (CHOLMOD: AMD, then METIS when AMD's
// fill is poor; UMFPACK: AMD or COLAMD by its strategy; Eigen: AMD, COLAMD for LU; PARDISO: METIS), minimum
// degree (AMD; PARDISO's own minimum degree), or METIS nested dissection (not with Eigen).
enum class Ordering { Default, AMD, NestedDissection };

const char* backend_name(Backend b);
const char* method_name(Method m);
const char* ordering_name(Ordering o);  // "default", "amd", "metis"
// SuiteSparse is compiled in only when it was found at build time; PARDISO is available once
// load_pardiso() has found Intel MKL's runtime library, cuDSS once load_cudss() has found libcudss (and the
// build has CUDA).
bool backend_available(Backend b);

// PARDISO (Intel MKL) is never linked: its runtime library, libmkl_rt, is loaded on demand.
struct PardisoLibrary {
  bool loaded = false;
  // The library's path and version when loaded, else why it is not (every place tried, with the loader's
  // message for each).
  std::string description;
};
// Load libmkl_rt (once per process; later calls return the first success, or try again after a failure).
// Where: the environment variable TORCH_SLA_MKL_RT alone when it is set (a path; "none" or an empty value
// disables PARDISO), else each of `candidates` in turn (paths), then the dynamic loader's own search for
// libmkl_rt.so.3, .so.2 and .so. Before loading it, the BLAS / LAPACK / OpenMP libraries already in the
// process are made global, so that the Fortran BLAS symbols libmkl_rt exports globally never replace the
// ones the other backends were linked with. MKL's threading layer is sequential unless MKL_THREADING_LAYER
// says otherwise (GNU: OpenMP threads from the process's runtime, as many as set_pardiso_threads says).
PardisoLibrary load_pardiso(const std::vector<std::string>& candidates);
PardisoLibrary pardiso_library();
// Threads for PARDISO's analysis, factorization and solve (0: MKL's default). Calls made inside an OpenMP
// parallel region (the members of a batch) run on one thread each.
void set_pardiso_threads(int n);
int pardiso_threads();

class Numeric;
class NumericBatch;

// The determinant of a factored matrix in log space: det(A) = sign * exp(logabs), computed in double
// precision whatever the scalar type. sign is +1 or -1 for a real matrix, a complex number of unit modulus
// for a complex one (as torch.linalg.slogdet); a factor with an exactly zero pivot gives sign 0 and
// logabs -inf.
struct SignLogDet {
  std::complex<double> sign{1.0, 0.0};
  double logabs = 0.0;
};

// Options of the numeric factorization.
struct FactorizeOptions {
  // Accept a matrix that is singular to working precision (a zero pivot, or a pivot ratio below eps)
  // when the library still produced a complete factor: UMFPACK always does (its zero pivots come with a
  // zero column of the remaining matrix, so A is singular); CHOLMOD LDL^T, which does not pivot, only
  // when the last pivot alone is zero (an earlier zero pivot stops it, though A may be regular). Such a
  // factor gives slogdet() (0, -inf) and its solve() and inverse_entries() throw SingularMatrix.
  // Structurally singular patterns, Cholesky of a matrix that is not positive definite, NaN/Inf pivots and
  // breakdowns that leave no complete factor still throw.
  bool allow_singular = false;
};

// The analysis of one pattern by one backend. How a backend stores it (the CPU backends: a CSC copy of
// the pattern and the library's symbolic data) is its own business; the contract is what follows.
class Symbolic {
 public:
  virtual ~Symbolic() = default;
  virtual Backend backend() const = 0;
  virtual Method method() const = 0;
  ScalarType scalar() const { return scalar_; }
  // Where the analysis and its factorizations live and run, and so where the values, right-hand sides and
  // solutions given to them must be. The CPU backends return Device::cpu(). A CUDA backend will also
  // order its work on a Stream (sla/types.hpp) that its factorize/solve entry points take from the caller.
  virtual Device device() const = 0;
  // The matrix is n x n.
  virtual index_t n() const = 0;
  // Number of CSR values that factorize() reads (the nnz of the analysed pattern).
  virtual index_t csr_nnz() const = 0;
  // Memory the numeric factors are predicted to take, in bytes, from the symbolic analysis alone
  // (-1 when the backend gives no prediction).
  virtual double predicted_factor_bytes() const { return -1.0; }
  // Floating-point operations and stored entries of the numeric factorization predicted by the analysis
  // (-1: no prediction; PARDISO's LU and LDL^T analyse with the values, at the first factorization).
  virtual double predicted_flops() const { return -1.0; }
  virtual double predicted_factor_nnz() const { return -1.0; }
  // The ordering this analysis was asked for.
  virtual Ordering ordering() const = 0;
  // Memory this analysis holds, in bytes: its copy of the pattern plus what the backend keeps between
  // factorizations (Eigen: the fill-reducing permutation; CHOLMOD: the symbolic factor, counted from its
  // array sizes, and the analysis's cholmod_common with its workspace; UMFPACK: its Symbolic object,
  // whose size UMFPACK reports). Numeric factorizations own their factors, not counted here.
  virtual std::size_t memory_bytes() const = 0;
  // Throw SingularMatrix when every factorization of this pattern is singular: a row or a column of the
  // factored matrix has no stored entry. sla::factorize calls it before the numeric factorization.
  virtual void check_structure() const = 0;
  // The position in the CSR values of the first NaN or infinite value that the factorization reads
  // (-1: none), so that a breakdown caused by one is reported as such.
  virtual index_t first_non_finite(const void* values) const = 0;
  // Numeric factorization sharing this analysis; `self` is the shared pointer that owns *this. The
  // backend alone: sla::factorize adds the checks and the verdict on the result. Several threads may
  // factorize with one analysis at once, each getting a Numeric of its own (factorize_batch does).
  // With options.allow_singular a backend returns a complete factor with a zero pivot instead of throwing.
  virtual std::unique_ptr<Numeric> factorize(const std::shared_ptr<const Symbolic>& self, const void* values,
                                             const FactorizeOptions& options) const = 0;
  // A backend that factors a whole batch sharing this analysis in one call (cuDSS's uniform batch) returns
  // it here, with every member checked as sla::factorize checks one matrix; nullptr (the default) makes
  // factorize_batch factor the members one by one.
  virtual std::unique_ptr<NumericBatch> factorize_uniform_batch(const std::shared_ptr<const Symbolic>& self,
                                                                const void* values, index_t batch,
                                                                const FactorizeOptions& options) const;
  // How many times the backend has run its analysis (ordering and symbolic factorization) for this
  // pattern: 1 for the CPU backends, which analyse once in analyze() (PARDISO's value-reading types: at
  // the first factorization). cuDSS keeps its analysis inside each set of factors, so a factorization
  // while every analysed set is still in use runs it again: the count shows when that happened.
  virtual index_t analysis_count() const { return 1; }

 protected:
  explicit Symbolic(ScalarType scalar) : scalar_(scalar) {}
  ScalarType scalar_;
};

class Numeric {
 public:
  virtual ~Numeric() = default;
  // Solve op(A) X = B for nrhs right-hand sides stored column-major (each column contiguous, length n).
  // b and x have the Symbolic's scalar type; they may not overlap.
  virtual void solve(const void* b, void* x, index_t nrhs, Op op) const = 0;
  // Pivot-ratio estimate of the reciprocal condition number (min |pivot| / max |pivot|; squared for
  // LL^T), cheap and library-specific; 0 when a pivot is exactly zero, NaN when a pivot is NaN or
  // infinite, 1 for a 0 x 0 matrix.
  virtual double rcond() const = 0;
  // Unit roundoff of the precision the factors are computed in.
  virtual double eps() const = 0;
  // Number of stored entries in the factors (fill).
  virtual index_t factor_nnz() const = 0;
  // Sign and log-modulus of det(A), from the pivots of the factorization, the row scaling and the parity
  // of the permutations: never overflows, (0, -inf) when a pivot is exactly zero. Throws Unavailable
  // where a backend cannot give it.
  virtual SignLogDet slogdet() const;
  // Selected inversion: out[k] = (A^{-1})[rows[k], cols[k]] for k < m, in A's own (unpermuted, unscaled)
  // indexing. `out` has the Symbolic's scalar type; rows and cols are 0-based. The positions that can be
  // asked for are those of the filled pattern of the factors in the factorization's ordering (L + L^T;
  // for LU, the Cholesky fill of the symmetrized pattern of P A Q + L + U, a closed superset of (L + U)^T),
  // which contains every stored position of A and its transpose. Z = A^{-1} is computed on that whole
  // pattern, whatever m: with a supernodal CHOLMOD LL^T factor by dense blocks (BLAS-3, about twice the
  // factorization's flops); elsewhere (simplicial factors, UMFPACK's LU) by scalar loops, several times
  // the factorization. Throws InvalidArgument (an index out of range, or a position outside the filled
  // pattern: the message names the first), SingularMatrix (a zero pivot), Unavailable (a backend without
  // selected inversion: Eigen's SparseLU).
  virtual void inverse_entries(const index_t* rows, const index_t* cols, index_t m, void* out) const;
  // Where the factors live: the device of the analysis.
  Device device() const { return sym_->device(); }
  const std::shared_ptr<const Symbolic>& symbolic() const { return sym_; }

 protected:
  explicit Numeric(std::shared_ptr<const Symbolic> sym) : sym_(std::move(sym)) {}
  std::shared_ptr<const Symbolic> sym_;
};

// Options of the symbolic analysis.
struct AnalyzeOptions {
  // The threads the numeric factorizations of this analysis will have (0: as many as the BLAS is given). A
  // backend may pick its algorithm by it: CHOLMOD takes its supernodal (BLAS-3) factorization for a larger
  // work per entry of the factor when one thread factorizes (a batch of blocks in parallel), since on one
  // thread its small dense kernels gain less over the simplicial loops: measured with one BLAS thread, the
  // simplicial factorization is the faster up to about 20,000 rows of a 2D mesh and 1,000 of a 3D grid,
  // where CHOLMOD's default switch (40 flops per entry) already takes the supernodal one.
  int threads = 0;
};

// Symbolic analysis of a square CSR pattern, which must be valid (validate_csr: the bindings check it
// first). Throws InvalidArgument (not square) / Unavailable (backend not compiled in).
// A 0 x 0 pattern gives an analysis whose factorizations are trivial (solve does nothing).
template <class I>
std::shared_ptr<const Symbolic> analyze(Backend backend, Method method, ScalarType scalar, const CsrView<I>& pattern,
                                        Ordering ordering = Ordering::Default, const AnalyzeOptions& options = {});
// The same for a CsrPattern, validated when it was made.
std::shared_ptr<const Symbolic> analyze(Backend backend, Method method, ScalarType scalar, const CsrPattern& pattern,
                                        Ordering ordering = Ordering::Default);

// Numeric factorization of CSR values (length pattern nnz, the Symbolic's scalar type; may be null when
// the pattern has no entries).
// Throws NotPositiveDefinite (Cholesky), SingularMatrix (a row or column without any stored entry, a zero
// pivot, a NaN or infinite pivot, or rcond() below eps(): the matrix is singular to working precision;
// see FactorizeOptions::allow_singular for the cases it accepts), InvalidArgument.
std::unique_ptr<Numeric> factorize(const std::shared_ptr<const Symbolic>& sym, const void* values,
                                   const FactorizeOptions& options = {});

// The solve of a whole batch at once, for a backend whose batch factors live together (cuDSS's uniform batch).
class JointBatchSolve {
 public:
  virtual ~JointBatchSolve() = default;
  // NumericBatch::solve's contract, for every member in one call.
  virtual void solve(const void* b, void* x, index_t nrhs, Op op) const = 0;
};

// Numeric factorizations of a batch of matrices that share one pattern (and one analysis).
class NumericBatch {
 public:
  NumericBatch(std::shared_ptr<const Symbolic> sym, std::vector<std::shared_ptr<Numeric>> members,
               std::shared_ptr<const JointBatchSolve> joint = nullptr)
      : sym_(std::move(sym)), members_(std::move(members)), joint_(std::move(joint)) {}
  index_t size() const { return static_cast<index_t>(members_.size()); }
  // Member i, 0 <= i < size(): a Numeric of its own, which outlives the batch if kept.
  const std::shared_ptr<Numeric>& operator[](index_t i) const { return members_[static_cast<std::size_t>(i)]; }
  const std::shared_ptr<const Symbolic>& symbolic() const { return sym_; }
  Device device() const { return sym_->device(); }
  // Stored entries in the factors of all members together.
  index_t factor_nnz() const;
  // Solve op(A_i) X_i = B_i for every member i, on up to `threads` threads (0: OpenMP's default), members
  // in parallel. b and x hold size() blocks one after the other, each nrhs right-hand sides of length n
  // stored column-major as Numeric::solve takes them: member i's block starts at element i * nrhs * n.
  // Errors: those of Numeric::solve, prefixed by "batch member i: " (see factorize_batch). A batch with a
  // joint solve (a device backend's uniform batch) solves every member in one call instead; `threads` is
  // then not used.
  void solve(const void* b, void* x, index_t nrhs, Op op, int threads) const;

 private:
  std::shared_ptr<const Symbolic> sym_;
  std::vector<std::shared_ptr<Numeric>> members_;
  std::shared_ptr<const JointBatchSolve> joint_;
};

// Factorize `batch` matrices sharing the analysis `sym`: values holds batch x sym->csr_nnz() values, member
// after member (C order). Members are factorized in parallel on up to `threads` OpenMP threads (0: OpenMP's
// default), each as sla::factorize would, with the BLAS single-threaded meanwhile when more than one member
// runs at once. Equal, bit for bit, to a loop of factorize(). Errors are those of factorize() for the
// first member that failed, the message starting "batch member i: " (i 0-based); an exception thrown by
// the interrupt handler comes out unchanged. The members hold no pointer into `values`. A backend with a
// uniform-batch factorization (Symbolic::factorize_uniform_batch: cuDSS) factors the whole batch at once.
NumericBatch factorize_batch(const std::shared_ptr<const Symbolic>& sym, const void* values, index_t batch, int threads,
                             const FactorizeOptions& options = {});

// Number of threads the BLAS under the libraries may use (OpenBLAS when it is the loaded BLAS).
// Returns false when the loaded BLAS offers no such control.
bool set_blas_threads(int n);
// The BLAS thread count, or -1 when the loaded BLAS offers no such control.
int blas_threads();

}  // namespace sla
