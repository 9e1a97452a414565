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

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "sla/types.hpp"

namespace sla {

enum class Backend { SuiteSparse, Eigen };
enum class Method { Cholesky, LDL, LU };

const char* backend_name(Backend b);
const char* method_name(Method m);
bool backend_available(Backend b);  // SuiteSparse is compiled in only when it was found at build time

// A matrix's pattern converted once to the column-major layout that the libraries want.
// perm[k] is the CSR position of the k-th stored CSC entry; for Cholesky/LDL only the lower triangle
// (row >= col) is kept, which the libraries read as a symmetric/Hermitian matrix.
struct CscPlan {
  index_t n = 0;
  std::vector<index_t> colptr;  // n + 1
  std::vector<index_t> rowind;  // colptr[n]
  std::vector<index_t> perm;    // colptr[n], positions into the CSR values
  index_t csr_nnz = 0;          // number of CSR values the caller passes to factorize()
  // The first row and the first column of the factored matrix without any stored entry (-1: none), which
  // make it structurally singular. With lower_only the factored matrix is tril(A) + tril(A)^H, whose row j
  // and column j are both empty when tril(A) has nothing in row j or column j: both are set to that j.
  index_t empty_row = -1;
  index_t empty_col = -1;
};

class Numeric;

class Symbolic {
 public:
  virtual ~Symbolic() = default;
  virtual Backend backend() const = 0;
  virtual Method method() const = 0;
  ScalarType scalar() const { return scalar_; }
  const CscPlan& plan() const { return plan_; }
  index_t n() const { return plan_.n; }
  // Memory the numeric factors are predicted to take, in bytes, from the symbolic analysis alone
  // (-1 when the backend gives no prediction).
  virtual double predicted_factor_bytes() const { return -1.0; }
  // Memory this analysis holds, in bytes: the CSC plan plus what the backend keeps between factorizations
  // (Eigen: the fill-reducing permutation; CHOLMOD: the symbolic factor, counted from its array sizes, and
  // the cholmod_common with its workspace, Xwork estimated; UMFPACK: its Symbolic object, whose size
  // UMFPACK reports). Numeric factorizations own their factors, which are not counted here.
  virtual std::size_t memory_bytes() const;
  // Numeric factorization sharing this analysis; `self` is the shared pointer that owns *this.
  virtual std::unique_ptr<Numeric> factorize(const std::shared_ptr<const Symbolic>& self,
                                             const void* values) const = 0;

 protected:
  Symbolic(ScalarType scalar, CscPlan plan) : scalar_(scalar), plan_(std::move(plan)) {}
  ScalarType scalar_;
  CscPlan plan_;
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
  const std::shared_ptr<const Symbolic>& symbolic() const { return sym_; }

 protected:
  explicit Numeric(std::shared_ptr<const Symbolic> sym) : sym_(std::move(sym)) {}
  std::shared_ptr<const Symbolic> sym_;
};

// Symbolic analysis of a square CSR pattern (validated here). Throws InvalidArgument / Unavailable.
// A 0 x 0 pattern gives an analysis whose factorizations are trivial (solve does nothing).
template <class I>
std::shared_ptr<const Symbolic> analyze(Backend backend, Method method, ScalarType scalar,
                                        const CsrView<I>& pattern);

// Numeric factorization of CSR values (length pattern nnz, the Symbolic's scalar type; may be null when
// the pattern has no entries).
// Throws NotPositiveDefinite (Cholesky), SingularMatrix (a row or column without any stored entry, a zero
// pivot, a NaN or infinite pivot, or rcond() below eps(): the matrix is singular to working precision),
// InvalidArgument.
std::unique_ptr<Numeric> factorize(const std::shared_ptr<const Symbolic>& sym, const void* values);

// Number of threads the BLAS under the libraries may use (OpenBLAS when it is the loaded BLAS).
// Returns false when the loaded BLAS offers no such control.
bool set_blas_threads(int n);

// Build the CSC plan of a validated square CSR pattern (exposed for tests).
template <class I>
CscPlan make_csc_plan(const CsrView<I>& pattern, bool lower_only);

}  // namespace sla
