// The CUDA part of the build: present and safe on a machine without a driver or a GPU (SLA_WITH_CUDA=ON),
// or absent and saying so (SLA_WITH_CUDA=OFF). With a GPU: the SpMV and CG kernels against host arithmetic,
// and cuDSS (when libcudss can be loaded) on tiny hand-checkable systems.
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "sla/cuda.hpp"
#include "sla/direct.hpp"
#include "sla/errors.hpp"
#include "sla/pattern.hpp"

#ifdef SLA_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace {

using sla::index_t;

TEST(Cuda, StreamScopeNestsAndRestores) {
  EXPECT_EQ(sla::current_stream(), nullptr);
  int a = 0, b = 0;
  {
    sla::StreamScope outer(&a);
    EXPECT_EQ(sla::current_stream(), &a);
    {
      sla::StreamScope inner(&b);
      EXPECT_EQ(sla::current_stream(), &b);
    }
    EXPECT_EQ(sla::current_stream(), &a);
  }
  EXPECT_EQ(sla::current_stream(), nullptr);
}

TEST(Cuda, GenericAnalyzeSendsCudssToItsOwnEntryPoint) {
  const std::vector<std::int64_t> p{0, 1, 2}, j{0, 1};
  try {
    sla::analyze(sla::Backend::Cudss, sla::Method::LU, sla::ScalarType::Float64,
                 sla::CsrView<std::int64_t>{2, 2, p.data(), j.data()});
    ADD_FAILURE() << "no error";
  } catch (const sla::Error& e) {
    EXPECT_EQ(e.kind(), sla::ErrorKind::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("analyze_cudss"), std::string::npos) << e.what();
  }
  EXPECT_EQ(std::string(sla::backend_name(sla::Backend::Cudss)), "cudss");
}

#ifdef SLA_WITH_CUDA
TEST(Cuda, CompiledInAndSafeWithoutAGpu) {
  EXPECT_TRUE(sla::cuda_compiled());
  // No driver or no GPU gives 0, never an abort; a second call gives the same answer.
  const int count = sla::cuda_device_count();
  EXPECT_GE(count, 0);
  EXPECT_EQ(sla::cuda_device_count(), count);
  const std::string version = sla::cuda_runtime_version();
  ASSERT_FALSE(version.empty());
  EXPECT_TRUE(std::isdigit(static_cast<unsigned char>(version[0]))) << version;
  EXPECT_NE(version.find('.'), std::string::npos) << version;
}

TEST(Cuda, CudssLoaderSaysWhereItLooked) {
  if (sla::cudss_library().loaded) GTEST_SKIP() << "cuDSS is loaded in this process";
  const sla::CudssLibrary lib = sla::load_cudss({"/nonexistent/libcudss.so.1"});
  if (lib.loaded) GTEST_SKIP() << "cuDSS found by the dynamic loader: " << lib.description;
  EXPECT_NE(lib.description.find("/nonexistent/libcudss.so.1"), std::string::npos) << lib.description;
  EXPECT_FALSE(sla::backend_available(sla::Backend::Cudss));
}

// A device copy of a host vector, freed at the end of the test.
template <class T>
struct Dev {
  explicit Dev(const std::vector<T>& h) : n(h.size()) {
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&p), sizeof(T) * (n ? n : 1)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(p, h.data(), sizeof(T) * n, cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~Dev() { cudaFree(p); }
  std::vector<T> host() const {
    std::vector<T> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), p, sizeof(T) * n, cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
  T* p = nullptr;
  std::size_t n;
};

// The 1-D Laplacian tridiag(-1, 2, -1) of order n, CSR.
struct Lap1d {
  explicit Lap1d(int n) {
    ptr.push_back(0);
    for (int i = 0; i < n; ++i) {
      if (i > 0) col.push_back(i - 1), val.push_back(-1.0);
      col.push_back(i), val.push_back(2.0);
      if (i + 1 < n) col.push_back(i + 1), val.push_back(-1.0);
      ptr.push_back(static_cast<std::int32_t>(col.size()));
    }
  }
  std::vector<std::int32_t> ptr, col;
  std::vector<double> val;
};

#define SKIP_WITHOUT_GPU() \
  if (sla::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"

TEST(CudaKernels, SpmvOfSeveralRightHandSides) {
  SKIP_WITHOUT_GPU();
  const int n = 7;
  Lap1d a(n);
  std::vector<double> x(5 * n);
  for (int i = 0; i < 5 * n; ++i) x[i] = 0.5 * i - 3.0;
  Dev<std::int32_t> p(a.ptr), c(a.col);
  Dev<double> v(a.val), dx(x), dy(std::vector<double>(5 * n, 0.0));
  sla::CudaCsr A{
      n, n, static_cast<index_t>(a.col.size()), p.p, c.p, v.p, true, sla::ScalarType::Float64, sla::Device::cuda(0)};
  sla::cuda_spmv(A, dx.p, dy.p, 5);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<double> y = dy.host();
  for (int r = 0; r < 5; ++r)
    for (int i = 0; i < n; ++i) {
      double e = 2 * x[r * n + i];
      if (i > 0) e -= x[r * n + i - 1];
      if (i + 1 < n) e -= x[r * n + i + 1];
      EXPECT_DOUBLE_EQ(y[r * n + i], e) << "rhs " << r << " row " << i;
    }
}

TEST(CudaKernels, ConjugateGradientsSolvesTheLaplacian) {
  SKIP_WITHOUT_GPU();
  const int n = 50;
  Lap1d a(n);
  Dev<std::int32_t> p(a.ptr), c(a.col);
  Dev<double> v(a.val), b(std::vector<double>(n, 1.0)), x(std::vector<double>(n, 0.0));
  sla::CudaCsr A{
      n, n, static_cast<index_t>(a.col.size()), p.p, c.p, v.p, true, sla::ScalarType::Float64, sla::Device::cuda(0)};
  const sla::CudaCgResult r = sla::cuda_cg(A, b.p, x.p, 1e-12, 0.0, 200, true, 3, true);
  EXPECT_TRUE(r.converged) << r.reason;
  EXPECT_LE(r.iterations, 2 * n);  // n steps in exact arithmetic, a few more with rounding
  EXPECT_LE(r.residual, 1e-12);
  EXPECT_FALSE(r.history.empty());
  const std::vector<double> xs = x.host();
  for (int i = 0; i < n; ++i) EXPECT_NEAR(xs[i], 0.5 * (i + 1) * (n - i), 1e-8) << i;  // exact solution
  // -A is negative definite: a breakdown, reported
  std::vector<double> neg(a.val);
  for (double& e : neg) e = -e;
  Dev<double> vn(neg), x2(std::vector<double>(n, 0.0));
  A.values = vn.p;
  const sla::CudaCgResult bad = sla::cuda_cg(A, b.p, x2.p, 1e-12, 0.0, 200, false, 1, false);
  EXPECT_FALSE(bad.converged);
  EXPECT_NE(bad.reason.find("breakdown"), std::string::npos) << bad.reason;
}

// cuDSS on tiny systems, when libcudss loads (TORCH_SLA_CUDSS or the dynamic loader's search).
TEST(Cudss, SolvesTransposedSolvesAndReportsNotPositiveDefinite) {
  SKIP_WITHOUT_GPU();
  if (!sla::load_cudss({}).loaded) GTEST_SKIP() << "cuDSS not found: " << sla::cudss_library().description;
  // A = [[4, 1, 0], [2, 5, 1], [0, 3, 6]]
  const std::vector<std::int64_t> ptr{0, 2, 5, 7}, col{0, 1, 0, 1, 2, 1, 2};
  const std::vector<double> val{4, 1, 2, 5, 1, 3, 6};
  const sla::CsrPattern pat =
      sla::CsrPattern::copy_of(sla::CsrView<std::int64_t>{3, 3, ptr.data(), col.data()}, 4, 7, "A");
  auto sym = sla::analyze_cudss(sla::Method::LU, sla::ScalarType::Float64, pat, sla::Device::cuda(0));
  EXPECT_EQ(sym->analysis_count(), 1);
  Dev<double> v(val), b(std::vector<double>{1, 2, 3}), x(std::vector<double>(3, 0.0));
  {
    auto num = sla::factorize(sym, v.p);
    num->solve(b.p, x.p, 1, sla::Op::N);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<double> xs = x.host();
    EXPECT_NEAR(4 * xs[0] + xs[1], 1, 1e-12);
    EXPECT_NEAR(2 * xs[0] + 5 * xs[1] + xs[2], 2, 1e-12);
    EXPECT_NEAR(3 * xs[1] + 6 * xs[2], 3, 1e-12);
    num->solve(b.p, x.p, 1, sla::Op::H);  // A^T x = b
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    xs = x.host();
    EXPECT_NEAR(4 * xs[0] + 2 * xs[1], 1, 1e-12);
    EXPECT_NEAR(xs[0] + 5 * xs[1] + 3 * xs[2], 2, 1e-12);
    EXPECT_NEAR(xs[1] + 6 * xs[2], 3, 1e-12);
  }
  auto again = sla::factorize(sym, v.p);  // the first one's factors came back to the pool: no new analysis
  EXPECT_EQ(sym->analysis_count(), 1);
  // [[1, 2], [2, 1]] is indefinite
  const std::vector<std::int64_t> p2{0, 2, 4}, c2{0, 1, 0, 1};
  const sla::CsrPattern pat2 =
      sla::CsrPattern::copy_of(sla::CsrView<std::int64_t>{2, 2, p2.data(), c2.data()}, 3, 4, "A");
  auto chol = sla::analyze_cudss(sla::Method::Cholesky, sla::ScalarType::Float64, pat2, sla::Device::cuda(0));
  Dev<double> v2(std::vector<double>{1, 2, 2, 1});
  try {
    sla::factorize(chol, v2.p);
    ADD_FAILURE() << "no error";
  } catch (const sla::Error& e) {
    EXPECT_EQ(e.kind(), sla::ErrorKind::NotPositiveDefinite) << e.what();
  }
}
#else
TEST(Cuda, AbsentAndSaysSo) {
  EXPECT_FALSE(sla::cuda_compiled());
  for (auto call : {+[] { sla::cuda_device_count(); }, +[] { sla::cuda_runtime_version(); },
                    +[] { sla::cuda_spmv(sla::CudaCsr{}, nullptr, nullptr, 1); }}) {
    try {
      call();
      ADD_FAILURE() << "no error";
    } catch (const sla::Error& e) {
      EXPECT_EQ(e.kind(), sla::ErrorKind::Unavailable);
      EXPECT_NE(std::string(e.what()).find("torch_sla was built without CUDA (SLA_WITH_CUDA=OFF)"), std::string::npos)
          << e.what();
    }
  }
  const sla::CudssLibrary lib = sla::load_cudss({});
  EXPECT_FALSE(lib.loaded);
  EXPECT_NE(lib.description.find("SLA_WITH_CUDA=OFF"), std::string::npos) << lib.description;
}
#endif

}  // namespace
