// Internal: typed CSR views and the OpenMP kernels shared by the Krylov solvers and preconditioners.
// Blocks are row-major n x k.
#pragma once

#include <cmath>
#include <complex>
#include <cstdint>
#include <type_traits>
#include <vector>

#ifdef SLA_HAVE_OPENMP
#include <omp.h>
#endif

#include "convert.hpp"
#include "sla/krylov.hpp"

namespace sla::detail {

template <class T> struct real_of { using type = T; };
template <class R> struct real_of<std::complex<R>> { using type = R; };
template <class T> using real_t = typename real_of<T>::type;

template <class T> inline T conj_(const T& v) {
  if constexpr (is_complex_t<T>::value) return std::conj(v);
  else return v;
}
template <class T> inline double abs2(const T& v) {
  if constexpr (is_complex_t<T>::value) return static_cast<double>(std::norm(v));
  else return static_cast<double>(v) * static_cast<double>(v);
}
// Real part of conj(a) * b, in double.
template <class T> inline double re_dot(const T& a, const T& b) {
  if constexpr (is_complex_t<T>::value)
    return static_cast<double>(a.real()) * b.real() + static_cast<double>(a.imag()) * b.imag();
  else return static_cast<double>(a) * static_cast<double>(b);
}

template <class T, class I>
struct Csr {
  index_t n_rows, n_cols;
  const I* p;
  const I* j;
  const T* v;
};

template <class T, class I>
Csr<T, I> typed(const CsrArrays& a) {
  return {a.n_rows, a.n_cols, static_cast<const I*>(a.indptr), static_cast<const I*>(a.indices),
          static_cast<const T*>(a.values)};
}

// Call f(T{}, I{}) for the scalar and index types of a.
template <class F>
decltype(auto) visit_csr(const CsrArrays& a, F&& f) {
  return visit_scalar(a.scalar, [&](auto t) -> decltype(auto) {
    if (a.index32) return f(t, std::int32_t{});
    return f(t, std::int64_t{});
  });
}

// Threads for a kernel's parallel loop: t (at least 1); 1 inside an active parallel region (a member of a
// batch running on an OpenMP thread), where a nested team would oversubscribe the cores whatever the
// runtime's nesting setting.
inline int clamp_threads(int t) {
#ifdef SLA_HAVE_OPENMP
  if (omp_in_parallel()) return 1;
#endif
  return t < 1 ? 1 : t;
}

// y = A x, k columns.
template <class T, class I>
void spmv_kernel(const Csr<T, I>& A, const T* x, T* y, index_t k, int threads) {
  const index_t n = A.n_rows;
  if (k == 1) {
#pragma omp parallel for schedule(static) num_threads(clamp_threads(threads)) if (n > 20000)
    for (index_t i = 0; i < n; ++i) {
      T s{};
      for (I q = A.p[i]; q < A.p[i + 1]; ++q) s += A.v[q] * x[A.j[q]];
      y[i] = s;
    }
    return;
  }
#pragma omp parallel for schedule(static) num_threads(clamp_threads(threads)) if (n * k > 20000)
  for (index_t i = 0; i < n; ++i) {
    T* yi = y + i * k;
    for (index_t c = 0; c < k; ++c) yi[c] = T{};
    for (I q = A.p[i]; q < A.p[i + 1]; ++q) {
      const T a = A.v[q];
      const T* xj = x + static_cast<index_t>(A.j[q]) * k;
      for (index_t c = 0; c < k; ++c) yi[c] += a * xj[c];
    }
  }
}

// Per-column reductions with OpenMP: out[c] = sum_i f(i, c), computed in double.
template <class F>
void column_sums(index_t n, index_t k, int threads, std::vector<double>& out, F&& f) {
  out.assign(static_cast<size_t>(k), 0.0);
  if (k == 1) {
    double s = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : s) num_threads(clamp_threads(threads)) if (n > 20000)
    for (index_t i = 0; i < n; ++i) s += f(i, index_t{0});
    out[0] = s;
    return;
  }
#pragma omp parallel num_threads(clamp_threads(threads)) if (n * k > 20000)
  {
    std::vector<double> local(static_cast<size_t>(k), 0.0);
#pragma omp for schedule(static)
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < k; ++c) local[c] += f(i, c);
#pragma omp critical
    for (index_t c = 0; c < k; ++c) out[c] += local[c];
  }
}

}  // namespace sla::detail

namespace sla::detail {
// The inverse diagonal when M is a Jacobi preconditioner of scalar type T (lets CG fuse z = D^{-1} r).
template <class T>
const std::vector<T>* jacobi_inv_diag(const Preconditioner* m);
}  // namespace sla::detail
