// Krylov solvers and preconditioners for CSR matrices on the CPU (OpenMP).
//
// Arrays of right-hand sides are row-major n x k (the k values of row i are contiguous), so one pass over
// A serves all k columns. Columns are independent systems; a converged column stops changing.
// Scalars: float, double, complex<float>, complex<double>. Indices: int32 (preferred: half the index
// traffic) or int64. No pointer passed in is kept past the call.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sla/pattern.hpp"
#include "sla/types.hpp"

namespace sla {

// y = A x for row-major n x k blocks (y has n_rows rows, x n_cols rows), OpenMP over rows.
void spmv(const CsrArrays& a, const void* x, void* y, index_t k, int threads);

enum class PrecondKind { Jacobi, SSOR, IC0, ILU0 };

// z = M^{-1} r (op N) or z = M^{-H} r (op H) for row-major n x k blocks.
class Preconditioner {
 public:
  virtual ~Preconditioner() = default;
  virtual void apply(const void* r, void* z, index_t k, Op op) const = 0;
  virtual std::string name() const = 0;
  ScalarType scalar() const { return scalar_; }
  index_t n() const { return n_; }

 protected:
  Preconditioner(ScalarType s, index_t n) : scalar_(s), n_(n) {}
  ScalarType scalar_;
  index_t n_;
};

// Build a preconditioner from a square CSR matrix (copied). SSOR uses `omega` in (0, 2).
// IC(0) needs a Hermitian matrix (its lower triangle is used) and breaks down on a non-positive pivot;
// ILU(0) breaks down on a zero pivot: both throw NotPositiveDefinite / SingularMatrix naming the row.
std::unique_ptr<Preconditioner> make_preconditioner(PrecondKind kind, const CsrArrays& a, double omega, int threads);

enum class KrylovMethod { CG, BiCGStab, GMRES, MINRES };

struct KrylovOptions {
  double rtol = 1e-8;
  double atol = 0.0;
  index_t maxiter = 1000;
  int restart = 30;        // GMRES(restart)
  int threads = 1;         // OpenMP threads
  bool record_history = false;
};

struct KrylovResult {
  index_t iterations = 0;             // max over columns
  double residual = 0.0;              // max over columns of ||b - A x|| / ||b|| (true residual, at the end)
  bool converged = false;             // every column met ||r|| <= max(rtol ||b||, atol)
  std::string reason;                 // converged | maxiter | indefinite | breakdown | nan
  std::vector<double> history;        // max relative residual per iteration (record_history)
};

// Called as progress(iteration, max relative residual) after every iteration; may throw to abort.
using Progress = std::function<void(index_t, double)>;

// Solve A X = B (row-major n x k); X holds the initial guess on entry and the solution on exit.
// M may be null. precond_op = H applies M^{-H} (for adjoint solves with a preconditioner of A).
KrylovResult krylov_solve(KrylovMethod method, const CsrArrays& a, const void* b, void* x, index_t k,
                          const Preconditioner* M, Op precond_op, const KrylovOptions& opts,
                          const Progress& progress);

// Solve A_i X_i = B_i for a batch of `batch` square matrices sharing `pattern`: values holds batch x nnz
// values of type `scalar` (member after member), b and x hold batch blocks of row-major n x k values
// (member i's block starts at element i * n * k; x holds the initial guesses on entry). M is empty (no
// preconditioner) or has one entry per member (null: none for that member). Every member is solved as
// krylov_solve() would with the same options, except for the threads: with batch >= opts.threads the
// members run in parallel on opts.threads OpenMP threads, each single-threaded inside; otherwise they run
// one after the other with opts.threads threads inside. Results are those of krylov_solve() called member
// by member with those thread counts, bit for bit (with one thread per member: the same as a loop of
// krylov_solve() with threads = 1). There is no progress callback: members of a batch report only at the
// end. Errors are those of krylov_solve() for the first member that failed, the message starting
// "batch member i: " (i 0-based); an exception thrown by the interrupt handler (or by a preconditioner)
// comes out unchanged.
std::vector<KrylovResult> krylov_solve_batch(KrylovMethod method, const CsrPattern& pattern, const void* values,
                                             ScalarType scalar, index_t batch, const void* b, void* x, index_t k,
                                             const std::vector<const Preconditioner*>& M, Op precond_op,
                                             const KrylovOptions& opts);

}  // namespace sla
