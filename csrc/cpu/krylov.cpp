// Krylov solvers on the CPU: CG (block of k columns, fused kernels), BiCGStab, GMRES(m), MINRES.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "batch.hpp"
#include "krylov_kernels.hpp"
#include "sla/errors.hpp"
#include "sla/interrupt.hpp"

namespace sla {

void spmv(const CsrArrays& a, const void* x, void* y, index_t k, int threads) {
  detail::visit_csr(a, [&](auto t, auto ix) {
    using T = decltype(t);
    using I = decltype(ix);
    detail::spmv_kernel(detail::typed<T, I>(a), static_cast<const T*>(x), static_cast<T*>(y), k, threads);
  });
}

namespace detail {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

template <class T>
struct Vec {  // helpers on contiguous length-n vectors (one column)
  static double nrm2(const std::vector<T>& a, int th) {
    std::vector<double> s;
    const index_t n = static_cast<index_t>(a.size());
    column_sums(n, 1, th, s, [&](index_t i, index_t) { return abs2(a[i]); });
    return std::sqrt(s[0]);
  }
  static T dot(const std::vector<T>& a, const std::vector<T>& b) {  // conj(a) . b
    T s{};
    const index_t n = static_cast<index_t>(a.size());
    for (index_t i = 0; i < n; ++i) s += conj_(a[i]) * b[i];
    return s;
  }
};

template <class T, class I>
struct Ctx {
  Csr<T, I> A;
  const Preconditioner* M;
  Op mop;
  const KrylovOptions& o;
  const Progress& progress;
  index_t n;
  void matvec(const T* x, T* y, index_t k) const { spmv_kernel(A, x, y, k, o.threads); }
  void precond(const T* r, T* z, index_t k) const {
    if (M != nullptr) M->apply(r, z, k, mop);
    else std::copy(r, r + n * k, z);
  }
};

// Finish: the true residual of every column, and the overall verdict.
template <class T, class I>
void finish(const Ctx<T, I>& c, const T* b, const T* x, index_t k, KrylovResult& res) {
  std::vector<T> ax(static_cast<size_t>(c.n * k));
  c.matvec(x, ax.data(), k);
  std::vector<double> rr, bb;
  column_sums(c.n, k, c.o.threads, rr, [&](index_t i, index_t j) { return abs2(b[i * k + j] - ax[i * k + j]); });
  column_sums(c.n, k, c.o.threads, bb, [&](index_t i, index_t j) { return abs2(b[i * k + j]); });
  double worst = 0.0;
  bool ok = true, finite = true;
  for (index_t j = 0; j < k; ++j) {
    const double r = std::sqrt(rr[j]), bn = std::sqrt(bb[j]);
    if (!std::isfinite(r)) finite = false;
    worst = std::max(worst, bn > 0 ? r / bn : r);
    ok = ok && r <= 10.0 * std::max(c.o.rtol * bn, c.o.atol) + 1e-300;
  }
  res.residual = finite ? worst : std::numeric_limits<double>::quiet_NaN();
  if (!finite) {
    res.converged = false;
    res.reason = "nan";
  } else if (res.reason == "converged") {
    // The method stopped on its (recurrence) residual; accept a true residual within 10x of the target,
    // the usual drift of recurrences, and say so otherwise.
    res.converged = ok;
    if (!ok) res.reason = "inaccurate";
  } else {
    res.converged = false;
  }
}

// Preconditioned CG on k columns at once. Per iteration: q = A p with p^H q fused into the SpMV pass;
// x += a p, r -= a q (with |r|^2 when k = 1); z = M^{-1} r and r^H z; p = z + b p. One column with a
// Jacobi preconditioner takes the two-pass cg_jacobi_1 instead.
template <class T, class I>
void cg(const Ctx<T, I>& c, const T* b, T* x, index_t k, KrylovResult& res) {
  using R = real_t<T>;
  const index_t n = c.n, nk = n * k;
  const int th = c.o.threads;
  std::vector<T> r(nk), z(nk), p(nk), q(nk);
  c.matvec(x, q.data(), k);
#pragma omp parallel for schedule(static) num_threads(clamp_threads(th)) if (nk > 20000)
  for (index_t i = 0; i < nk; ++i) r[i] = b[i] - q[i];
  c.precond(r.data(), z.data(), k);
  p = z;
  std::vector<double> bn, rz, rr, pq;
  column_sums(n, k, th, bn, [&](index_t i, index_t j) { return abs2(b[i * k + j]); });
  column_sums(n, k, th, rz, [&](index_t i, index_t j) { return re_dot(r[i * k + j], z[i * k + j]); });
  column_sums(n, k, th, rr, [&](index_t i, index_t j) { return abs2(r[i * k + j]); });
  std::vector<double> tol2(k);
  std::vector<char> active(k, 1);
  std::vector<R> alpha(k), beta(k);
  for (index_t j = 0; j < k; ++j) {
    const double t = std::max(c.o.rtol * std::sqrt(bn[j]), c.o.atol);
    tol2[j] = t * t;
    if (rr[j] <= tol2[j]) active[j] = 0;
    if (bn[j] == 0.0) bn[j] = 1.0;
  }
  auto relres = [&]() {
    double w = 0.0;
    for (index_t j = 0; j < k; ++j) w = std::max(w, std::sqrt(rr[j] / bn[j]));
    return w;
  };
  index_t it = 0;
  for (; it < c.o.maxiter; ++it) {
    if (std::none_of(active.begin(), active.end(), [](char a) { return a != 0; })) break;
    poll_interrupt();
    // q = A p, pq = p^H q
    if (k == 1) {
      double s = 0.0;
      const Csr<T, I> A = c.A;
      const T* pp = p.data();
      T* qq = q.data();
#pragma omp parallel for schedule(static) reduction(+ : s) num_threads(clamp_threads(th)) if (n > 20000)
      for (index_t i = 0; i < n; ++i) {
        T acc{};
        for (I t = A.p[i]; t < A.p[i + 1]; ++t) acc += A.v[t] * pp[A.j[t]];
        qq[i] = acc;
        s += re_dot(pp[i], acc);
      }
      pq.assign(1, s);
    } else {
      c.matvec(p.data(), q.data(), k);
      column_sums(n, k, th, pq, [&](index_t i, index_t j) { return re_dot(p[i * k + j], q[i * k + j]); });
    }
    for (index_t j = 0; j < k; ++j) {
      if (!active[j]) {
        alpha[j] = R(0);
        continue;
      }
      if (!(pq[j] > 0.0)) {
        res.reason = std::isfinite(pq[j]) ? "indefinite" : "nan";
        res.iterations = it;
        return;
      }
      alpha[j] = static_cast<R>(rz[j] / pq[j]);
    }
    // x += a p; r -= a q; z = M^{-1} r; rz = r^H z; rr = |r|^2
    std::vector<double> rz_new, rr_new;
    if (k == 1) {
      // x += a p, r -= a q and |r|^2 in one pass; then z = M^{-1} r and r^H z.
      double s2 = 0.0;
      const R a = alpha[0];
#pragma omp parallel for schedule(static) reduction(+ : s2) num_threads(clamp_threads(th)) if (n > 20000)
      for (index_t i = 0; i < n; ++i) {
        x[i] += a * p[i];
        const T ri = r[i] - a * q[i];
        r[i] = ri;
        s2 += abs2(ri);
      }
      rr_new.assign(1, s2);
      c.precond(r.data(), z.data(), 1);
      column_sums(n, 1, th, rz_new, [&](index_t i, index_t) { return re_dot(r[i], z[i]); });
    } else {
#pragma omp parallel for schedule(static) num_threads(clamp_threads(th)) if (nk > 20000)
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < k; ++j) {
          const index_t e = i * k + j;
          x[e] += alpha[j] * p[e];
          r[e] -= alpha[j] * q[e];
        }
      c.precond(r.data(), z.data(), k);
      column_sums(n, k, th, rz_new, [&](index_t i, index_t j) { return re_dot(r[i * k + j], z[i * k + j]); });
      column_sums(n, k, th, rr_new, [&](index_t i, index_t j) { return abs2(r[i * k + j]); });
    }
    bool bad = false;
    for (index_t j = 0; j < k; ++j) {
      if (!active[j]) continue;
      if (!std::isfinite(rr_new[j]) || !std::isfinite(rz_new[j])) bad = true;
      beta[j] = static_cast<R>(rz_new[j] / rz[j]);
      rz[j] = rz_new[j];
      rr[j] = rr_new[j];
      if (rr[j] <= tol2[j]) active[j] = 0;
      if (active[j] && !(rz[j] > 0.0)) {  // M not positive definite
        res.reason = "indefinite";
        res.iterations = it + 1;
        return;
      }
    }
    if (bad) {
      res.reason = "nan";
      res.iterations = it + 1;
      return;
    }
    const double rel = relres();
    if (c.o.record_history) res.history.push_back(rel);
    if (c.progress) c.progress(it + 1, rel);
    // p = z + beta p (frozen columns keep p; their alpha is 0)
    if (k == 1) {
      if (active[0]) {
        const R bt = beta[0];
#pragma omp parallel for schedule(static) num_threads(clamp_threads(th)) if (n > 20000)
        for (index_t i = 0; i < n; ++i) p[i] = z[i] + bt * p[i];
      }
    } else {
#pragma omp parallel for schedule(static) num_threads(clamp_threads(th)) if (nk > 20000)
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < k; ++j)
          if (active[j]) p[i * k + j] = z[i * k + j] + beta[j] * p[i * k + j];
    }
  }
  res.iterations = it;
  res.reason = std::any_of(active.begin(), active.end(), [](char a) { return a != 0; }) ? "maxiter" : "converged";
}

// Jacobi-preconditioned CG for one right-hand side in two passes per iteration (12 nnz + ~100 n bytes):
//   pass A:  p_new = D^{-1} r + beta p_old computed on the fly, q = A p_new, and p_new^H q;
//   pass B:  x += alpha p_new, r -= alpha q, with r^H D^{-1} r and |r|^2.
// Each row of pass A recomputes p_new at its neighbours from (D^{-1}, r, p_old), which no thread
// writes during the pass, so the fusion is race-free; p_old and p_new swap after the pass.
template <class T, class I>
void cg_jacobi_1(const Ctx<T, I>& c, const T* b, T* x, const std::vector<T>& dinv, KrylovResult& res) {
  using R = real_t<T>;
  const index_t n = c.n;
  const int th = c.o.threads;
  const Csr<T, I> A = c.A;
  const T* d = dinv.data();
  std::vector<T> r(n), p_old(n, T{}), p_new(n), q(n);
  c.matvec(x, q.data(), 1);
  double bn = 0.0, rz = 0.0, rr = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : bn, rz, rr) num_threads(clamp_threads(th)) if (n > 20000)
  for (index_t i = 0; i < n; ++i) {
    r[i] = b[i] - q[i];
    bn += abs2(b[i]);
    rz += re_dot(r[i], d[i] * r[i]);
    rr += abs2(r[i]);
  }
  const double tol = std::max(c.o.rtol * std::sqrt(bn), c.o.atol);
  const double tol2 = tol * tol;
  if (bn == 0.0) bn = 1.0;
  R beta = 0;
  index_t it = 0;
  bool done = rr <= tol2;
  for (; it < c.o.maxiter && !done; ++it) {
    poll_interrupt();
    double pq = 0.0;
    T* pn = p_new.data();
    const T* po = p_old.data();
    const T* rp = r.data();
    T* qq = q.data();
#pragma omp parallel for schedule(static) reduction(+ : pq) num_threads(clamp_threads(th)) if (n > 20000)
    for (index_t i = 0; i < n; ++i) {
      T acc{};
      for (I t = A.p[i]; t < A.p[i + 1]; ++t) {
        const index_t j = A.j[t];
        acc += A.v[t] * (d[j] * rp[j] + beta * po[j]);
      }
      const T pi = d[i] * rp[i] + beta * po[i];
      pn[i] = pi;
      qq[i] = acc;
      pq += re_dot(pi, acc);
    }
    if (!(pq > 0.0)) {
      res.reason = std::isfinite(pq) ? "indefinite" : "nan";
      res.iterations = it;
      return;
    }
    const R alpha = static_cast<R>(rz / pq);
    double rz_new = 0.0, rr_new = 0.0;
    T* rw = r.data();
#pragma omp parallel for schedule(static) reduction(+ : rz_new, rr_new) num_threads(clamp_threads(th)) if (n > 20000)
    for (index_t i = 0; i < n; ++i) {
      x[i] += alpha * pn[i];
      const T ri = rw[i] - alpha * qq[i];
      rw[i] = ri;
      rz_new += re_dot(ri, d[i] * ri);
      rr_new += abs2(ri);
    }
    if (!std::isfinite(rr_new) || !std::isfinite(rz_new)) {
      res.reason = "nan";
      res.iterations = it + 1;
      return;
    }
    beta = static_cast<R>(rz_new / rz);
    rz = rz_new;
    rr = rr_new;
    p_old.swap(p_new);
    const double rel = std::sqrt(rr / bn);
    if (c.o.record_history) res.history.push_back(rel);
    if (c.progress) c.progress(it + 1, rel);
    done = rr <= tol2;
    if (!done && !(rz > 0.0)) {
      res.reason = "indefinite";
      res.iterations = it + 1;
      return;
    }
  }
  res.iterations = it;
  res.reason = done ? "converged" : "maxiter";
}

// ---- single-column methods (columns are solved one after another) ---------------------------------

template <class T, class I>
struct Col {
  const Ctx<T, I>& c;
  std::vector<T> tmp;
  explicit Col(const Ctx<T, I>& ctx) : c(ctx), tmp(ctx.n) {}
  void A(const std::vector<T>& x, std::vector<T>& y) const { c.matvec(x.data(), y.data(), 1); }
  void M(const std::vector<T>& r, std::vector<T>& z) const { c.precond(r.data(), z.data(), 1); }
};

struct ColResult {
  index_t iterations = 0;
  std::string reason = "maxiter";  // converged | maxiter | breakdown | indefinite | nan
};

// Right-preconditioned BiCGStab.
template <class T, class I>
ColResult bicgstab(const Ctx<T, I>& c, const std::vector<T>& b, std::vector<T>& x, double tol, double bnorm,
                   const std::function<void(index_t, double)>& report) {
  Col<T, I> op(c);
  const index_t n = c.n;
  std::vector<T> r(n), rhat(n), p(n), v(n), s(n), t(n), ph(n), sh(n);
  op.A(x, v);
  for (index_t i = 0; i < n; ++i) r[i] = b[i] - v[i];
  rhat = r;
  T rho_old(1), alpha(1), omega(1);
  std::fill(v.begin(), v.end(), T{});
  std::fill(p.begin(), p.end(), T{});
  double rn = Vec<T>::nrm2(r, c.o.threads);
  ColResult out;
  // A zero rho = rhat^H r or rhat^H v with r != 0 is a breakdown of the shadow residual, not of the
  // problem: restart from the current iterate with rhat = r. Only a breakdown right after a restart
  // (or omega = 0) is reported.
  bool fresh = true;
  auto restart = [&]() {
    rhat = r;
    rho_old = alpha = omega = T(1);
    std::fill(v.begin(), v.end(), T{});
    std::fill(p.begin(), p.end(), T{});
    fresh = true;
  };
  for (index_t it = 0; it < c.o.maxiter; ++it) {
    poll_interrupt();
    if (rn <= tol) {
      out.reason = "converged";
      return out;
    }
    T rho = Vec<T>::dot(rhat, r);
    if (rho == T(0) && !fresh) {
      restart();
      rho = Vec<T>::dot(rhat, r);
    }
    if (rho == T(0) || omega == T(0)) {
      out.reason = "breakdown";
      return out;
    }
    const T beta = (rho / rho_old) * (alpha / omega);
    for (index_t i = 0; i < n; ++i) p[i] = r[i] + beta * (p[i] - omega * v[i]);
    op.M(p, ph);
    op.A(ph, v);
    const T rv = Vec<T>::dot(rhat, v);
    if (rv == T(0)) {
      if (fresh) {
        out.reason = "breakdown";
        return out;
      }
      restart();
      continue;
    }
    fresh = false;
    alpha = rho / rv;
    for (index_t i = 0; i < n; ++i) s[i] = r[i] - alpha * v[i];
    const double sn = Vec<T>::nrm2(s, c.o.threads);
    if (sn <= tol) {
      for (index_t i = 0; i < n; ++i) x[i] += alpha * ph[i];
      out.iterations = it + 1;
      out.reason = "converged";
      report(it + 1, sn / bnorm);
      return out;
    }
    op.M(s, sh);
    op.A(sh, t);
    const double tt = std::real(Vec<T>::dot(t, t));
    if (tt == 0.0) {
      out.reason = "breakdown";
      return out;
    }
    omega = Vec<T>::dot(t, s) / static_cast<real_t<T>>(tt);
    for (index_t i = 0; i < n; ++i) {
      x[i] += alpha * ph[i] + omega * sh[i];
      r[i] = s[i] - omega * t[i];
    }
    rho_old = rho;
    rn = Vec<T>::nrm2(r, c.o.threads);
    out.iterations = it + 1;
    if (!std::isfinite(rn)) {
      out.reason = "nan";
      return out;
    }
    report(it + 1, rn / bnorm);
  }
  if (rn <= tol) out.reason = "converged";
  return out;
}

// Givens rotation (cs real, sn complex) zeroing b in (a, b).
template <class T>
void givens(const T& a, const T& b, real_t<T>& cs, T& sn, T& r) {
  using std::abs;
  const real_t<T> aa = abs(a), bb = abs(b);
  if (bb == 0) {
    cs = 1;
    sn = T(0);
    r = a;
    return;
  }
  if (aa == 0) {
    cs = 0;
    sn = conj_(b) / bb;
    r = T(bb);
    return;
  }
  const real_t<T> nrm = std::hypot(aa, bb);
  cs = aa / nrm;
  const T alpha = a / aa;
  sn = alpha * conj_(b) / nrm;
  r = alpha * nrm;
}

// Restarted GMRES(m), right preconditioning, modified Gram-Schmidt.
template <class T, class I>
ColResult gmres(const Ctx<T, I>& c, const std::vector<T>& b, std::vector<T>& x, double tol, double bnorm,
                const std::function<void(index_t, double)>& report) {
  using R = real_t<T>;
  Col<T, I> op(c);
  const index_t n = c.n;
  const int m = std::max(1, c.o.restart);
  std::vector<std::vector<T>> V(m + 1, std::vector<T>(n)), Z(m, std::vector<T>(n));
  std::vector<T> H(static_cast<size_t>((m + 1) * m)), g(m + 1), sn(m), w(n), ax(n);
  std::vector<R> cs(m);
  ColResult out;
  index_t total = 0;
  while (total < c.o.maxiter) {
    op.A(x, ax);
    for (index_t i = 0; i < n; ++i) V[0][i] = b[i] - ax[i];
    const double beta = Vec<T>::nrm2(V[0], c.o.threads);
    if (!std::isfinite(beta)) {
      out.reason = "nan";
      return out;
    }
    if (beta <= tol) {
      out.reason = "converged";
      return out;
    }
    for (auto& v : V[0]) v /= static_cast<R>(beta);
    std::fill(g.begin(), g.end(), T{});
    g[0] = static_cast<R>(beta);
    int j = 0;
    double res = beta;
    bool singular = false;  // a zero pivot of the rotated Hessenberg matrix
    for (; j < m && total < c.o.maxiter; ++j) {
      poll_interrupt();
      op.M(V[j], Z[j]);
      op.A(Z[j], w);
      for (int i = 0; i <= j; ++i) {
        const T h = Vec<T>::dot(V[i], w);
        H[i * m + j] = h;
        for (index_t q = 0; q < n; ++q) w[q] -= h * V[i][q];
      }
      const double hn = Vec<T>::nrm2(w, c.o.threads);
      H[(j + 1) * m + j] = static_cast<R>(hn);
      if (hn > 0)
        for (index_t q = 0; q < n; ++q) V[j + 1][q] = w[q] / static_cast<R>(hn);
      for (int i = 0; i < j; ++i) {  // apply previous rotations to column j
        const T h1 = H[i * m + j], h2 = H[(i + 1) * m + j];
        H[i * m + j] = cs[i] * h1 + sn[i] * h2;
        H[(i + 1) * m + j] = -conj_(sn[i]) * h1 + cs[i] * h2;
      }
      T rr;
      givens(H[j * m + j], H[(j + 1) * m + j], cs[j], sn[j], rr);
      if (rr == T(0)) {
        // Column j is zero after the rotations: A M^{-1} v_j has no component outside what is already
        // spanned (A is singular on the Krylov space, e.g. a matrix without entries). The first j columns
        // still give the best iterate there; the residual cannot be reduced further.
        singular = true;
        ++total;
        break;
      }
      H[j * m + j] = rr;
      H[(j + 1) * m + j] = T{};
      g[j + 1] = -conj_(sn[j]) * g[j];
      g[j] = cs[j] * g[j];
      res = std::abs(g[j + 1]);
      ++total;
      if (!std::isfinite(res)) {
        out.reason = "nan";
        out.iterations = total;
        return out;
      }
      report(total, res / bnorm);
      if (res <= tol || hn == 0) {
        ++j;
        break;
      }
    }
    // Solve the j x j triangular system and update x += Z y.
    std::vector<T> y(j);
    for (int i = j - 1; i >= 0; --i) {
      T s = g[i];
      for (int l = i + 1; l < j; ++l) s -= H[i * m + l] * y[l];
      y[i] = s / H[i * m + i];
    }
    for (int i = 0; i < j; ++i)
      for (index_t q = 0; q < n; ++q) x[q] += y[i] * Z[i][q];
    out.iterations = total;
    if (singular) {
      out.reason = "breakdown";
      return out;
    }
    if (res <= tol) {
      // Confirm with the true residual at the top of the loop (cheap) unless out of iterations.
      op.A(x, ax);
      for (index_t i = 0; i < n; ++i) w[i] = b[i] - ax[i];
      if (Vec<T>::nrm2(w, c.o.threads) <= tol * 1.0000001) {
        out.reason = "converged";
        return out;
      }
    }
  }
  return out;
}

// Preconditioned MINRES (Paige-Saunders) for Hermitian A and Hermitian positive definite M: one run from
// the current x, for at most `budget` iterations, numbered from first_it + 1 in reports. Stops with
// "restart" when the recurrence's residual estimate met tol but the true residual did not (the caller
// restarts from the current x).
template <class T, class I>
ColResult minres_run(const Ctx<T, I>& c, const std::vector<T>& b, std::vector<T>& x, double tol, double bnorm,
                     index_t budget, index_t first_it, const std::function<void(index_t, double)>& report) {
  using R = real_t<T>;
  Col<T, I> op(c);
  const index_t n = c.n;
  std::vector<T> r1(n), r2(n), y(n), v(n), w(n), w1(n), w2(n), ax(n);
  op.A(x, ax);
  for (index_t i = 0; i < n; ++i) r1[i] = b[i] - ax[i];
  op.M(r1, y);
  double beta1 = std::real(Vec<T>::dot(r1, y));
  ColResult out;
  if (beta1 < 0) {
    out.reason = "indefinite";
    return out;
  }
  if (beta1 == 0) {
    out.reason = "converged";
    return out;
  }
  beta1 = std::sqrt(beta1);
  r2 = r1;
  double oldb = 0, beta = beta1, dbar = 0, epsln = 0, phibar = beta1, cs = -1, sn = 0;
  std::fill(w.begin(), w.end(), T{});
  std::fill(w2.begin(), w2.end(), T{});
  const double rnorm0 = Vec<T>::nrm2(r1, c.o.threads);
  double rnorm = rnorm0;
  for (index_t it = 0; it < budget; ++it) {
    poll_interrupt();
    const R s = static_cast<R>(1.0 / beta);
    for (index_t i = 0; i < n; ++i) v[i] = s * y[i];
    op.A(v, y);
    if (it > 0)
      for (index_t i = 0; i < n; ++i) y[i] -= static_cast<R>(beta / oldb) * r1[i];
    const double alfa = std::real(Vec<T>::dot(v, y));
    for (index_t i = 0; i < n; ++i) y[i] -= static_cast<R>(alfa / beta) * r2[i];
    r1 = r2;
    r2 = y;
    op.M(r2, y);
    oldb = beta;
    const double bb = std::real(Vec<T>::dot(r2, y));
    out.iterations = it + 1;
    if (bb < 0) {
      out.reason = "indefinite";  // the preconditioner is not positive definite
      return out;
    }
    beta = std::sqrt(bb);
    const double oldeps = epsln;
    const double delta = cs * dbar + sn * alfa;
    const double gbar = sn * dbar - cs * alfa;
    epsln = sn * beta;
    dbar = -cs * beta;
    const double gamma_raw = std::hypot(gbar, beta);
    if (gamma_raw == 0.0) {
      // The new column of the Lanczos tridiagonal is zero below the rotated part: A is singular on the
      // Krylov space (A v = 0, e.g. a matrix without entries), and no step reduces the residual.
      out.reason = std::isfinite(alfa) ? "breakdown" : "nan";
      return out;
    }
    const double gamma = std::max(gamma_raw, std::numeric_limits<double>::min());
    cs = gbar / gamma;
    sn = beta / gamma;
    const double phi = cs * phibar;
    phibar = sn * phibar;
    const R dn = static_cast<R>(1.0 / gamma);
    w1 = w2;
    w2 = w;
    for (index_t i = 0; i < n; ++i) {
      w[i] = (v[i] - static_cast<R>(oldeps) * w1[i] - static_cast<R>(delta) * w2[i]) * dn;
      x[i] += static_cast<R>(phi) * w[i];
    }
    // phibar estimates the M^{-1}-norm of the residual; scale it to the 2-norm through the initial ratio.
    rnorm = phibar * (rnorm0 / beta1);
    if (!std::isfinite(rnorm)) {
      out.reason = "nan";
      return out;
    }
    report(first_it + it + 1, rnorm / bnorm);
    if (rnorm <= tol || beta == 0.0) {
      op.A(x, ax);
      for (index_t i = 0; i < n; ++i) v[i] = b[i] - ax[i];
      const double tr = Vec<T>::nrm2(v, c.o.threads);
      if (tr <= tol * 1.0000001) {
        out.reason = "converged";
        return out;
      }
      // beta = 0: the Krylov space is invariant and x is the best it holds, yet the residual is too large
      // (A singular and b not in its range). Otherwise the estimate was optimistic: restart.
      out.reason = rnorm <= tol ? "restart" : "breakdown";
      return out;
    }
  }
  return out;
}

// MINRES, restarted from the current iterate when its residual estimate drifts from the true residual.
template <class T, class I>
ColResult minres(const Ctx<T, I>& c, const std::vector<T>& b, std::vector<T>& x, double tol, double bnorm,
                 const std::function<void(index_t, double)>& report) {
  index_t used = 0;
  while (true) {
    ColResult run = minres_run(c, b, x, tol, bnorm, c.o.maxiter - used, used, report);
    used += run.iterations;
    run.iterations = used;
    if (run.reason != "restart") return run;
    if (used >= c.o.maxiter) {
      run.reason = "maxiter";
      return run;
    }
  }
}

template <class T, class I>
KrylovResult solve_typed(KrylovMethod method, const CsrArrays& a, const void* bv, void* xv, index_t k,
                         const Preconditioner* M, Op mop, const KrylovOptions& o, const Progress& progress) {
  const T* b = static_cast<const T*>(bv);
  T* x = static_cast<T*>(xv);
  Ctx<T, I> c{typed<T, I>(a), M, mop, o, progress, a.n_rows};
  KrylovResult res;
  const std::vector<T>* dinv = jacobi_inv_diag<T>(M);
  if (method == KrylovMethod::CG && k == 1 && dinv != nullptr && mop == Op::N) {
    cg_jacobi_1(c, b, x, *dinv, res);
  } else if (method == KrylovMethod::CG) {
    cg(c, b, x, k, res);
  } else {
    std::vector<T> bj(c.n), xj(c.n);
    std::vector<double> last(k, 0.0);
    for (index_t j = 0; j < k; ++j) {
      for (index_t i = 0; i < c.n; ++i) {
        bj[i] = b[i * k + j];
        xj[i] = x[i * k + j];
      }
      const double bn = Vec<T>::nrm2(bj, o.threads);
      const double tol = std::max(o.rtol * bn, o.atol);
      const double bnorm = bn > 0 ? bn : 1.0;
      auto report = [&](index_t it, double rel) {
        last[j] = rel;
        const double worst = *std::max_element(last.begin(), last.end());
        if (o.record_history) {
          if (static_cast<index_t>(res.history.size()) < it) res.history.resize(it, 0.0);
          res.history[it - 1] = std::max(res.history[it - 1], rel);
        }
        if (progress) progress(it, worst);
      };
      ColResult cr;
      if (method == KrylovMethod::BiCGStab) cr = bicgstab(c, bj, xj, tol, bnorm, report);
      else if (method == KrylovMethod::GMRES) cr = gmres(c, bj, xj, tol, bnorm, report);
      else cr = minres(c, bj, xj, tol, bnorm, report);
      for (index_t i = 0; i < c.n; ++i) x[i * k + j] = xj[i];
      res.iterations = std::max(res.iterations, cr.iterations);
      if (res.reason.empty() || res.reason == "converged") res.reason = cr.reason;
    }
  }
  finish(c, b, x, k, res);
  return res;
}

}  // namespace
}  // namespace detail

KrylovResult krylov_solve(KrylovMethod method, const CsrArrays& a, const void* b, void* x, index_t k,
                          const Preconditioner* M, Op precond_op, const KrylovOptions& opts,
                          const Progress& progress) {
  if (a.n_rows != a.n_cols)
    fail(ErrorKind::InvalidArgument, "A: Krylov solvers need a square matrix, got (", a.n_rows, ", ", a.n_cols, ")");
  if (!(opts.rtol >= 0.0) || !(opts.atol >= 0.0) || (opts.rtol == 0.0 && opts.atol == 0.0))
    fail(ErrorKind::InvalidArgument, "rtol: need rtol > 0 or atol > 0, got rtol=", opts.rtol, ", atol=", opts.atol);
  if (opts.maxiter <= 0) fail(ErrorKind::InvalidArgument, "maxiter: must be positive, got ", opts.maxiter);
  if (k < 0) fail(ErrorKind::InvalidArgument, "b: negative number of right-hand sides ", k);
  if (method == KrylovMethod::GMRES && opts.restart <= 0)
    fail(ErrorKind::InvalidArgument, "restart: must be positive, got ", opts.restart);
  if (M != nullptr && (M->scalar() != a.scalar || M->n() != a.n_rows))
    fail(ErrorKind::InvalidArgument, "preconditioner: built for another matrix size or dtype");
  if (k == 0 || a.n_rows == 0) {
    // No right-hand side, or systems of size 0: every column there is solved exactly, by nothing.
    KrylovResult res;
    res.converged = true;
    res.reason = "converged";
    return res;
  }
  return detail::visit_csr(a, [&](auto t, auto ix) {
    using T = decltype(t);
    using I = decltype(ix);
    return detail::solve_typed<T, I>(method, a, b, x, k, M, precond_op, opts, progress);
  });
}

std::vector<KrylovResult> krylov_solve_batch(KrylovMethod method, const CsrPattern& pattern, const void* values,
                                             ScalarType scalar, index_t batch, const void* b, void* x, index_t k,
                                             const std::vector<const Preconditioner*>& M, Op precond_op,
                                             const KrylovOptions& opts) {
  if (batch < 0) fail(ErrorKind::InvalidArgument, "values: negative batch size ", batch);
  if (pattern.n_rows() != pattern.n_cols())
    fail(ErrorKind::InvalidArgument, "A: Krylov solvers need a square matrix, got (", pattern.n_rows(), ", ",
         pattern.n_cols(), ")");
  if (!M.empty() && static_cast<index_t>(M.size()) != batch)
    fail(ErrorKind::InvalidArgument, "preconds: ", M.size(), " preconditioners for ", batch, " members");
  for (std::size_t i = 0; i < M.size(); ++i)
    if (M[i] != nullptr && (M[i]->scalar() != scalar || M[i]->n() != pattern.n_rows()))
      fail(ErrorKind::InvalidArgument, "preconds[", i, "]: built for another matrix size or dtype (", M[i]->n(), ", ",
           scalar_name(M[i]->scalar()), "), expected (", pattern.n_rows(), ", ", scalar_name(scalar), ")");
  const int threads = opts.threads < 1 ? 1 : opts.threads;
  const bool parallel = threads > 1 && batch >= threads;
  KrylovOptions member = opts;
  member.threads = parallel ? 1 : threads;
  const std::size_t size = scalar_size(scalar);
  const std::size_t values_stride = static_cast<std::size_t>(pattern.nnz()) * size;
  const std::size_t block_stride = static_cast<std::size_t>(pattern.n_rows() * k) * size;
  const auto* vv = static_cast<const char*>(values);
  const auto* bb = static_cast<const char*>(b);
  auto* xx = static_cast<char*>(x);
  std::vector<KrylovResult> results(static_cast<std::size_t>(batch));
  detail::for_each_member(batch, parallel ? threads : 1, [&](index_t i) {
    const CsrArrays a = pattern.with_values(vv + i * values_stride, scalar);
    const Preconditioner* m = M.empty() ? nullptr : M[static_cast<std::size_t>(i)];
    results[static_cast<std::size_t>(i)] =
        krylov_solve(method, a, bb + i * block_stride, xx + i * block_stride, k, m, precond_op, member, nullptr);
  });
  return results;
}

}  // namespace sla
