// Smoothed-aggregation algebraic multigrid (AMG) for real CSR matrices on the CPU (OpenMP).
//
// Setup: strength of connection (|a_ij| >= theta sqrt(|a_ii a_jj|); for block systems, of the blocks'
// Frobenius norms), greedy aggregation of the strong graph, a tentative prolongator from k near-null-space
// vectors (the constant when none is given; k > 1: a QR factorization of the vectors on each aggregate,
// one coarse unknown per independent vector), smoothed by one damped Jacobi step (omega = 4 / (3
// rho(D^{-1} A)), rho by Lanczos), optionally truncated (small entries of each row dropped, the row
// rescaled to interpolate the near-null space as before), Galerkin coarse operators R A P with R = P^T
// (row-parallel SpGEMM), sparsified (an entry weak for both of its rows, between two rows that share a
// strong neighbour, is added to the diagonal instead, weighted so that the product with the near-null
// space is unchanged), until a level has at most `max_coarse` rows; that level is factorized by a direct
// backend (sla::analyze / sla::factorize, LU). Truncation and sparsification apply with one near-null-space
// vector (k = 1) only: a diagonal correction cannot keep the products with several.
//
// The hierarchy is a Preconditioner: apply() runs one V or W cycle (zero initial guess) with damped
// Jacobi, Chebyshev or symmetric Gauss-Seidel smoothing. Pre- and post-smoothing are adjoint to each
// other, so the cycle is symmetric for a symmetric A (usable with CG and MINRES). Op H applies the exact
// transpose of the cycle (the same cycle on the transposed levels) for adjoint solves.
//
// Values-only setup: make_amg(..., reuse) keeps reuse's aggregates and every sparsity pattern (SpGEMM
// patterns, the truncated and sparsified patterns, the coarse symbolic analysis) and recomputes only the
// numbers, for new values on the same pattern; its spectral radius estimates start from reuse's
// eigenvector estimates (fewer Lanczos steps).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sla/krylov.hpp"

namespace sla {

enum class AmgCycle { V, W };
enum class AmgSmoother { Jacobi, Chebyshev, SGS };

struct AmgOptions {
  double strength = 0.02;  // theta in [0, 1)
  // P's truncation: drop |p_ij| < truncation max_j |p_ij| from each row of P, in [0, 1); 0: none. The
  // default drops what smoothing spreads along an anisotropy's weak direction (keeping the coarse
  // operators sparse) and nothing on isotropic problems; larger values cost iterations there.
  double truncation = 0.01;
  // Sparsified coarse operators: drop c_ij (to the diagonal) when |c_ij| < coarse_drop min(|c_ii|, |c_jj|)
  // and rows i and j have a common strong neighbour, in [0, 1); 0: exact Galerkin operators.
  double coarse_drop = 0.02;
  AmgCycle cycle = AmgCycle::V;
  AmgSmoother smoother = AmgSmoother::SGS;
  int sweeps = 1;            // pre- and post-smoothing sweeps (>= 1)
  int degree = 2;            // Chebyshev polynomial degree (>= 1)
  index_t max_coarse = 500;  // direct solve at or below this many rows (>= 1)
  int max_levels = 25;       // >= 1
  // The near-null space: n x near_nullspace_columns values of A's scalar type, row-major; null: the
  // constant vector (one column).
  const void* near_nullspace = nullptr;
  int near_nullspace_columns = 1;  // 1 .. 64
  // Rows in consecutive blocks of block_size (the unknowns of one node of a block system): level 0's
  // strength of connection and aggregates are those of the blocks (Frobenius norms of the blocks of A).
  // The next levels' blocks are the columns of one aggregate (one per independent near-null vector).
  index_t block_size = 1;
  // Levels of at least this many rows run their loops on `threads` threads, smaller ones on one: there a
  // parallel loop's synchronization costs more than its work (far more on a loaded machine).
  index_t parallel_rows = 50000;
  int threads = 1;
};

// A borrowed CSR matrix of the hierarchy: row pointers int64, columns int32, values of the scalar type.
struct AmgCsr {
  index_t n_rows = 0, n_cols = 0;
  const std::int64_t* indptr = nullptr;
  const std::int32_t* indices = nullptr;
  const void* values = nullptr;
  index_t nnz() const { return n_rows == 0 ? 0 : indptr[n_rows]; }
};

class AmgPreconditioner : public Preconditioner {
 public:
  // Number of levels (the last one is solved directly).
  virtual int num_levels() const = 0;
  // Level l's matrix: 'A' (its operator), 'T' (A^T, only when A is not symmetric: else n_rows = 0),
  // 'P' (prolongator to level l from l + 1) and 'R' (restriction, P^T); P and R exist for l < last.
  virtual AmgCsr matrix(int l, char which) const = 0;
  // Level l's inverse diagonal (n values of the scalar type).
  virtual const void* inv_diag(int l) const = 0;
  // Level l's near-null space: n x near_nullspace_columns() values of the scalar type, row-major (level 0:
  // the one given, or the constant; level l + 1: the coefficients of level l's in the columns of P's
  // tentative prolongator, T B_{l+1} = B_l).
  virtual const void* near_nullspace(int l) const = 0;
  virtual int near_nullspace_columns() const = 0;
  // The estimate of rho(D^{-1} A) on level l (used for the Jacobi weight and the Chebyshev interval).
  virtual double spectral_radius(int l) const = 0;
  virtual const AmgOptions& options() const = 0;
  virtual bool symmetric() const = 0;
  double operator_complexity() const;  // sum of nnz over levels / nnz of level 0
  double grid_complexity() const;      // sum of rows over levels / rows of level 0
  virtual double setup_seconds() const = 0;
  // A profile: the seconds each level took to set up (the last one's with its factorization), and those
  // each level's own work took in all cycles so far (smoothing, residual, restriction, prolongation;
  // the last level's: its direct solves).
  virtual std::vector<double> setup_level_seconds() const = 0;
  virtual std::vector<double> cycle_level_seconds() const = 0;
  virtual bool values_only() const = 0;  // built by a values-only setup
  // A table of the levels (rows, nnz, nnz per row) and the complexities.
  std::string describe() const;

 protected:
  using Preconditioner::Preconditioner;
};

// Build the hierarchy of a square real CSR matrix (copied). Every diagonal entry must be stored and
// nonzero and every row must have an entry. With `reuse` (a hierarchy of a matrix with the same pattern
// and scalar type; the options of `reuse` then apply, except the near-null space and threads), only the
// numerical parts are recomputed. Throws InvalidArgument (a complex or non-square matrix, bad options,
// a pattern that differs from reuse's) and SingularMatrix (a zero diagonal or an empty row).
// same_strength_only: reuse only when the strong connections of level 0 are those of `reuse` (else a full
// setup: values_only() tells which was done).
std::unique_ptr<AmgPreconditioner> make_amg(const CsrArrays& a, const AmgOptions& options,
                                            const AmgPreconditioner* reuse = nullptr, bool same_strength_only = false);

}  // namespace sla
