// CUDA Krylov kernels: CSR SpMV for several right-hand sides, and conjugate gradients with the SpMV fused
// with its dot product, the vector updates fused with theirs, and the Jacobi preconditioner applied inside
// them. The scalars of CG (alpha, beta, the residual) never leave the device during the iterations; the host
// reads the state every few iterations to decide whether to stop.
//
// Rows are handled by groups of lanes of one warp (4 lanes for short rows, a whole warp for long ones), each
// group summing its row with shuffles. Dot products are accumulated in double precision whatever the scalar
// type: one partial sum per block, added atomically.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda_util.cuh"
#include "sla/cuda.hpp"
#include "sla/errors.hpp"
#include "sla/interrupt.hpp"

namespace sla {
namespace {

constexpr int kThreads = 256;

template <class T>
__device__ inline T shuffle_down(T v, int delta, int width) {
  return __shfl_down_sync(0xffffffffu, v, delta, width);
}
__device__ inline cuFloatComplex shuffle_down(cuFloatComplex v, int delta, int width) {
  return make_cuFloatComplex(__shfl_down_sync(0xffffffffu, v.x, delta, width),
                             __shfl_down_sync(0xffffffffu, v.y, delta, width));
}
__device__ inline cuDoubleComplex shuffle_down(cuDoubleComplex v, int delta, int width) {
  return make_cuDoubleComplex(__shfl_down_sync(0xffffffffu, v.x, delta, width),
                              __shfl_down_sync(0xffffffffu, v.y, delta, width));
}

// Sum over the L lanes of a group (lane 0 of the group gets the total).
template <int L, class T>
__device__ inline T group_sum(T v) {
  for (int d = L / 2; d > 0; d /= 2) v = cuda::add_s(v, shuffle_down(v, d, L));
  return v;
}

// Add a per-thread double to *out: a warp sum, a block sum in shared memory, one atomic per block.
__device__ inline void block_add(double v, double* out) {
  __shared__ double partial[kThreads / 32];
  for (int d = 16; d > 0; d /= 2) v += __shfl_down_sync(0xffffffffu, v, d);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? partial[lane] : 0.0;
    for (int d = 16; d > 0; d /= 2) v += __shfl_down_sync(0xffffffffu, v, d);
    if (lane == 0) atomicAdd(out, v);
  }
}

// Y[r] = A X[r] for R right-hand sides (each a contiguous vector), a group of L lanes per row.
template <int L, int R, class T, class I>
__global__ void __launch_bounds__(kThreads)
    spmv_kernel(long long n_rows, long long n_cols, const I* __restrict__ indptr, const I* __restrict__ indices,
                const T* __restrict__ values, const T* __restrict__ x, T* __restrict__ y) {
  // The loop is uniform across a warp (every lane reaches the shuffles): a warp takes 32 / L rows at a time.
  const int lane = threadIdx.x % L;
  const long long step = static_cast<long long>(gridDim.x) * (kThreads / L);
  for (long long first = (blockIdx.x * static_cast<long long>(kThreads) + threadIdx.x) / 32 * (32 / L); first < n_rows;
       first += step) {
    const long long row = first + (threadIdx.x % 32) / L;
    T acc[R];
    for (int r = 0; r < R; ++r) acc[r] = cuda::zero_s<T>();
    if (row < n_rows) {
      for (long long k = indptr[row] + lane; k < indptr[row + 1]; k += L) {
        const T a = values[k];
        const long long c = indices[k];
        for (int r = 0; r < R; ++r) acc[r] = cuda::fma_s(acc[r], a, x[r * n_cols + c]);
      }
    }
    for (int r = 0; r < R; ++r) {
      const T s = group_sum<L>(acc[r]);
      if (lane == 0 && row < n_rows) y[r * n_rows + row] = s;
    }
  }
}

// The lanes per row: 4 for rows of up to about 12 entries on average (stencils, meshes), else a warp.
bool short_rows(const CudaCsr& A) { return A.n_rows == 0 || A.nnz <= 12 * A.n_rows; }

template <class T, class I>
void spmv_typed(const CudaCsr& A, const T* x, T* y, index_t nrhs, cudaStream_t stream) {
  const auto* p = static_cast<const I*>(A.indptr);
  const auto* j = static_cast<const I*>(A.indices);
  const auto* v = static_cast<const T*>(A.values);
  const bool narrow = short_rows(A);
  for (index_t r = 0; r < nrhs;) {
    const int R = nrhs - r >= 4 ? 4 : 1;
    const T* xr = x + r * A.n_cols;
    T* yr = y + r * A.n_rows;
    const unsigned grid = cuda::blocks_for(A.n_rows * (narrow ? 4 : 32), kThreads);
    if (narrow && R == 4)
      spmv_kernel<4, 4, T, I><<<grid, kThreads, 0, stream>>>(A.n_rows, A.n_cols, p, j, v, xr, yr);
    else if (narrow)
      spmv_kernel<4, 1, T, I><<<grid, kThreads, 0, stream>>>(A.n_rows, A.n_cols, p, j, v, xr, yr);
    else if (R == 4)
      spmv_kernel<32, 4, T, I><<<grid, kThreads, 0, stream>>>(A.n_rows, A.n_cols, p, j, v, xr, yr);
    else
      spmv_kernel<32, 1, T, I><<<grid, kThreads, 0, stream>>>(A.n_rows, A.n_cols, p, j, v, xr, yr);
    cuda::check_launch("spmv");
    r += R;
  }
}

// --- conjugate gradients -----------------------------------------------------------------------------------

// The scalars of the iteration, in a ring of kRing slots (iteration k uses slot k % kRing for p^H A p and
// r^H z, r^H r of its start; the third kernel of iteration k clears the slots iteration k + 1 accumulates).
constexpr int kRing = 4;
struct CgState {
  double pAp[kRing];
  double rz[kRing];
  double rr[kRing];
  double bb;         // ||b||^2
  double res2;       // ||r||^2 of the last finished iteration
  long long iters;   // iterations finished
  int status;        // 0 running, 1 converged, 2 breakdown (p^H A p not positive or not finite)
  int bad_diagonal;  // Jacobi: rows whose diagonal entry is missing or not positive
};

// dinv[i] = 1 / Re(a_ii) (Jacobi) or 1 (none); counts the rows without a positive diagonal.
template <class T, class I, class Rl>
__global__ void jacobi_kernel(long long n, const I* __restrict__ indptr, const I* __restrict__ indices,
                              const T* __restrict__ values, bool jacobi, Rl* __restrict__ dinv, CgState* st) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    if (!jacobi) {
      dinv[i] = Rl(1);
      continue;
    }
    double d = 0.0;
    for (long long k = indptr[i]; k < indptr[i + 1]; ++k)
      if (indices[k] == i) d = cuda::real_part(values[k]);
    if (d > 0.0 && isfinite(d)) {
      dinv[i] = static_cast<Rl>(1.0 / d);
    } else {
      dinv[i] = Rl(1);
      atomicAdd(&st->bad_diagonal, 1);
    }
  }
}

// r = b - r (r holds A x0 on entry, or is ignored when zero_x), p = dinv r, and the dots r^H z, r^H r, b^H b.
template <class T, class Rl>
__global__ void __launch_bounds__(kThreads)
    cg_start(long long n, const T* __restrict__ b, T* __restrict__ r, T* __restrict__ p, const Rl* __restrict__ dinv,
             bool zero_x, CgState* st) {
  double rz = 0.0, rr = 0.0, bb = 0.0;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const T bi = b[i];
    const T ri = zero_x ? bi : cuda::add_s(bi, cuda::scale(r[i], -1.0));
    const T zi = cuda::scale(ri, static_cast<double>(dinv[i]));
    r[i] = ri;
    p[i] = zi;
    rz += cuda::re_dot(ri, zi);
    rr += cuda::re_dot(ri, ri);
    bb += cuda::re_dot(bi, bi);
  }
  block_add(rz, &st->rz[0]);
  block_add(rr, &st->rr[0]);
  block_add(bb, &st->bb);
}

// q = A p and p^H q, a group of L lanes per row.
template <int L, class T, class I>
__global__ void __launch_bounds__(kThreads)
    cg_spmv_dot(long long n, const I* __restrict__ indptr, const I* __restrict__ indices, const T* __restrict__ values,
                const T* __restrict__ p, T* __restrict__ q, CgState* st, long long k) {
  if (st->status != 0) return;
  const int lane = threadIdx.x % L;
  const long long step = static_cast<long long>(gridDim.x) * (kThreads / L);
  double dot = 0.0;
  for (long long first = (blockIdx.x * static_cast<long long>(kThreads) + threadIdx.x) / 32 * (32 / L); first < n;
       first += step) {  // uniform across a warp, as in spmv_kernel
    const long long row = first + (threadIdx.x % 32) / L;
    T acc = cuda::zero_s<T>();
    if (row < n)
      for (long long j = indptr[row] + lane; j < indptr[row + 1]; j += L)
        acc = cuda::fma_s(acc, values[j], p[indices[j]]);
    acc = group_sum<L>(acc);
    if (lane == 0 && row < n) {
      q[row] = acc;
      dot += cuda::re_dot(p[row], acc);
    }
  }
  block_add(dot, &st->pAp[k % kRing]);
}

// alpha = r^H z / p^H A p; x += alpha p, r -= alpha q; the dots r^H z (z = dinv r) and r^H r of the new r.
template <class T, class Rl>
__global__ void __launch_bounds__(kThreads)
    cg_update(long long n, T* __restrict__ x, T* __restrict__ r, const T* __restrict__ p, const T* __restrict__ q,
              const Rl* __restrict__ dinv, CgState* st, long long k) {
  if (st->status != 0) return;
  const double pAp = st->pAp[k % kRing];
  if (!(pAp > 0.0) || !isfinite(pAp)) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
      st->status = 2;
      st->iters = k;
    }
    return;
  }
  const double alpha = st->rz[k % kRing] / pAp;
  double rz = 0.0, rr = 0.0;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    x[i] = cuda::add_s(x[i], cuda::scale(p[i], alpha));
    const T ri = cuda::add_s(r[i], cuda::scale(q[i], -alpha));
    r[i] = ri;
    rz += static_cast<double>(dinv[i]) * cuda::re_dot(ri, ri);
    rr += cuda::re_dot(ri, ri);
  }
  block_add(rz, &st->rz[(k + 1) % kRing]);
  block_add(rr, &st->rr[(k + 1) % kRing]);
}

// Converged (r^H r <= tol2)? Else beta = new r^H z / old r^H z and p = dinv r + beta p. Block 0 records the
// iteration and clears the ring slots of the next one.
template <class T, class Rl>
__global__ void __launch_bounds__(kThreads)
    cg_direction(long long n, const T* __restrict__ r, T* __restrict__ p, const Rl* __restrict__ dinv, CgState* st,
                 long long k, double tol2) {
  if (st->status != 0) return;
  const double rr = st->rr[(k + 1) % kRing];
  const bool done = rr <= tol2;
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    st->iters = k + 1;
    st->res2 = rr;
    if (done) st->status = 1;
    if (!isfinite(rr)) st->status = 2;
  }
  if (done || !isfinite(rr)) return;
  const double beta = st->rz[(k + 1) % kRing] / st->rz[k % kRing];
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x)
    p[i] = cuda::add_s(cuda::scale(r[i], static_cast<double>(dinv[i])), cuda::scale(p[i], beta));
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    st->pAp[(k + 1) % kRing] = 0.0;
    st->rz[(k + 2) % kRing] = 0.0;
    st->rr[(k + 2) % kRing] = 0.0;
  }
}

template <class T, class Rl, class I>
CudaCgResult cg_typed(const CudaCsr& A, const T* b, T* x, double rtol, double atol, index_t maxiter, bool jacobi,
                      index_t check_every, bool record_history, cudaStream_t stream) {
  const long long n = A.n_rows;
  const auto* ip = static_cast<const I*>(A.indptr);
  const auto* ix = static_cast<const I*>(A.indices);
  const auto* v = static_cast<const T*>(A.values);
  const std::size_t vec = static_cast<std::size_t>(n) * sizeof(T);
  cuda::StreamBuffer r(vec, stream), p(vec, stream), q(vec, stream), dinv(n * sizeof(Rl), stream);
  cuda::StreamBuffer state(sizeof(CgState), stream);
  CgState* st = state.as<CgState>();
  cuda::check(cudaMemsetAsync(st, 0, sizeof(CgState), stream), "cudaMemsetAsync");
  const unsigned grid = cuda::blocks_for(n, kThreads);
  jacobi_kernel<T, I, Rl><<<grid, kThreads, 0, stream>>>(n, ip, ix, v, jacobi, dinv.as<Rl>(), st);
  cuda::check_launch("cg: jacobi");
  // r = A x0 first (x holds the initial guess); cg_start turns it into b - A x0.
  spmv_typed<T, I>(A, x, r.as<T>(), 1, stream);
  cg_start<T, Rl><<<grid, kThreads, 0, stream>>>(n, b, r.as<T>(), p.as<T>(), dinv.as<Rl>(), false, st);
  cuda::check_launch("cg: start");
  CgState host{};
  auto read_state = [&] {
    cuda::check(cudaMemcpyAsync(&host, st, sizeof(CgState), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
    cuda::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  };
  read_state();
  CudaCgResult out;
  if (jacobi && host.bad_diagonal > 0)
    fail(ErrorKind::InvalidArgument, "preconditioner: 'jacobi' needs a positive real diagonal, but ", host.bad_diagonal,
         " row(s) of A have a diagonal entry that is missing or not positive (CG needs A Hermitian positive "
         "definite); use preconditioner='none'");
  const double bnorm = std::sqrt(host.bb);
  const double tol = std::max(rtol * bnorm, atol);
  const double tol2 = tol * tol;
  const double scale = bnorm > 0.0 ? bnorm : 1.0;
  double rr = host.rr[0];
  if (record_history) out.history.push_back(std::sqrt(rr) / scale);
  if (rr <= tol2) {
    out.converged = true;
    out.reason = "converged";
    out.residual = std::sqrt(rr) / scale;
    return out;
  }
  const bool narrow = short_rows(A);
  const unsigned spmv_grid = cuda::blocks_for(n * (narrow ? 4 : 32), kThreads);
  const index_t chunk = std::max<index_t>(1, check_every);
  for (long long k = 0; k < maxiter;) {
    const long long stop = std::min<long long>(maxiter, k + chunk);
    for (; k < stop; ++k) {
      if (narrow)
        cg_spmv_dot<4, T, I><<<spmv_grid, kThreads, 0, stream>>>(n, ip, ix, v, p.as<T>(), q.as<T>(), st, k);
      else
        cg_spmv_dot<32, T, I><<<spmv_grid, kThreads, 0, stream>>>(n, ip, ix, v, p.as<T>(), q.as<T>(), st, k);
      cg_update<T, Rl><<<grid, kThreads, 0, stream>>>(n, x, r.as<T>(), p.as<T>(), q.as<T>(), dinv.as<Rl>(), st, k);
      cg_direction<T, Rl><<<grid, kThreads, 0, stream>>>(n, r.as<T>(), p.as<T>(), dinv.as<Rl>(), st, k, tol2);
    }
    cuda::check_launch("cg: iteration");
    read_state();
    if (record_history) out.history.push_back(std::sqrt(host.res2) / scale);
    if (host.status != 0) break;
    poll_interrupt();
  }
  out.iterations = host.iters;
  out.residual = std::sqrt(host.res2) / scale;
  if (host.status == 1) {
    out.converged = true;
    out.reason = "converged";
  } else if (host.status == 2) {
    out.reason =
        "breakdown: p^H A p is not positive or not finite (A is not Hermitian positive definite, or the "
        "iteration overflowed)";
  } else {
    out.reason = "maxiter";
  }
  return out;
}

void check_csr(const CudaCsr& A, const char* what) {
  if (A.device.is_cpu()) fail(ErrorKind::InvalidArgument, what, ": the CUDA kernels take device memory");
  if (A.n_rows < 0 || A.n_cols < 0 || A.nnz < 0) fail(ErrorKind::InvalidArgument, what, ": negative size");
}

}  // namespace

void cuda_spmv(const CudaCsr& A, const void* x, void* y, index_t nrhs) {
  check_csr(A, "A");
  if (nrhs < 0) fail(ErrorKind::InvalidArgument, "x: negative number of right-hand sides");
  if (A.n_rows == 0 || nrhs == 0) return;
  cuda::DeviceGuard guard(A.device.index);
  const cudaStream_t stream = cuda::as_stream(current_stream());
  if (A.n_cols == 0 || A.nnz == 0) {
    cuda::check(cudaMemsetAsync(y, 0, static_cast<std::size_t>(A.n_rows * nrhs) * scalar_size(A.scalar), stream),
                "cudaMemsetAsync");
    return;
  }
  cuda::visit_device_scalar(A.scalar, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (A.index32)
      spmv_typed<T, std::int32_t>(A, static_cast<const T*>(x), static_cast<T*>(y), nrhs, stream);
    else
      spmv_typed<T, std::int64_t>(A, static_cast<const T*>(x), static_cast<T*>(y), nrhs, stream);
  });
}

CudaCgResult cuda_cg(const CudaCsr& A, const void* b, void* x, double rtol, double atol, index_t maxiter, bool jacobi,
                     index_t check_every, bool record_history) {
  check_csr(A, "A");
  if (A.n_rows != A.n_cols)
    fail(ErrorKind::InvalidArgument, "A: CG needs a square matrix, got (", A.n_rows, ", ", A.n_cols, ")");
  if (!(rtol >= 0.0) || !(atol >= 0.0)) fail(ErrorKind::InvalidArgument, "rtol, atol: must be non-negative");
  if (maxiter < 0) fail(ErrorKind::InvalidArgument, "maxiter: must be non-negative, got ", maxiter);
  if (A.n_rows == 0) {
    CudaCgResult out;
    out.converged = true;
    out.reason = "converged";
    return out;
  }
  cuda::DeviceGuard guard(A.device.index);
  const cudaStream_t stream = cuda::as_stream(current_stream());
  return cuda::visit_device_scalar(A.scalar, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Rl = typename decltype(tag)::real;
    if (A.index32)
      return cg_typed<T, Rl, std::int32_t>(A, static_cast<const T*>(b), static_cast<T*>(x), rtol, atol, maxiter, jacobi,
                                           check_every, record_history, stream);
    return cg_typed<T, Rl, std::int64_t>(A, static_cast<const T*>(b), static_cast<T*>(x), rtol, atol, maxiter, jacobi,
                                         check_every, record_history, stream);
  });
}

}  // namespace sla
