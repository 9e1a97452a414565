// Raw cuDSS calls on the 3-D Poisson matrix (7-point, m^3 rows, float64, SPD, lower triangle): the baseline
// of benchmarks/bench_gpu.py for torch_sla's cuDSS backend. Prints one line of JSON with the best of
// `repeats` runs of: a cold solve (analysis + factorization + solve), a factorization + solve with the
// analysis kept (new values of the same pattern), and a solve alone.
//   bench_cudss_raw <m> <repeats>
// Built with the C++ tests when CMake finds cuDSS's header and library (the nvidia-cudss wheel).
#include <cuda_runtime_api.h>
#include <cudss.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "bench_cudss_raw: %s failed\n", what);
    std::exit(1);
  }
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

int main(int argc, char** argv) {
  const int m = argc > 1 ? std::atoi(argv[1]) : 60;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 3;
  const int n = m * m * m;
  // Lower triangle of the 7-point Laplacian, rows in order, columns ascending.
  std::vector<int> rowptr(n + 1, 0), col;
  std::vector<double> val;
  for (int k = 0; k < m; ++k)
    for (int j = 0; j < m; ++j)
      for (int i = 0; i < m; ++i) {
        const int r = (k * m + j) * m + i;
        if (k > 0) col.push_back(r - m * m), val.push_back(-1.0);
        if (j > 0) col.push_back(r - m), val.push_back(-1.0);
        if (i > 0) col.push_back(r - 1), val.push_back(-1.0);
        col.push_back(r), val.push_back(6.0);
        rowptr[r + 1] = static_cast<int>(col.size());
      }
  const int nnz = static_cast<int>(col.size());
  int *d_rowptr = nullptr, *d_col = nullptr;
  double *d_val = nullptr, *d_b = nullptr, *d_x = nullptr;
  check(cudaMalloc(&d_rowptr, sizeof(int) * (n + 1)) == cudaSuccess, "cudaMalloc");
  check(cudaMalloc(&d_col, sizeof(int) * nnz) == cudaSuccess, "cudaMalloc");
  check(cudaMalloc(&d_val, sizeof(double) * nnz) == cudaSuccess, "cudaMalloc");
  check(cudaMalloc(&d_b, sizeof(double) * n) == cudaSuccess, "cudaMalloc");
  check(cudaMalloc(&d_x, sizeof(double) * n) == cudaSuccess, "cudaMalloc");
  cudaMemcpy(d_rowptr, rowptr.data(), sizeof(int) * (n + 1), cudaMemcpyHostToDevice);
  cudaMemcpy(d_col, col.data(), sizeof(int) * nnz, cudaMemcpyHostToDevice);
  cudaMemcpy(d_val, val.data(), sizeof(double) * nnz, cudaMemcpyHostToDevice);
  const std::vector<double> ones(n, 1.0);
  cudaMemcpy(d_b, ones.data(), sizeof(double) * n, cudaMemcpyHostToDevice);

  cudssHandle_t handle;
  check(cudssCreate(&handle) == CUDSS_STATUS_SUCCESS, "cudssCreate");
  cudssMatrix_t A, x, b;
  check(cudssMatrixCreateCsr(&A, n, n, nnz, d_rowptr, nullptr, d_col, d_val, CUDA_R_32I, CUDA_R_32I, CUDA_R_64F,
                             CUDSS_MTYPE_SPD, CUDSS_MVIEW_LOWER, CUDSS_BASE_ZERO) == CUDSS_STATUS_SUCCESS,
        "cudssMatrixCreateCsr");
  check(cudssMatrixCreateDn(&x, n, 1, n, d_x, CUDA_R_64F, CUDSS_LAYOUT_COL_MAJOR) == CUDSS_STATUS_SUCCESS, "Dn");
  check(cudssMatrixCreateDn(&b, n, 1, n, d_b, CUDA_R_64F, CUDSS_LAYOUT_COL_MAJOR) == CUDSS_STATUS_SUCCESS, "Dn");
  double cold = 1e30, refactor = 1e30, solve = 1e30, analysis = 1e30;
  for (int rep = 0; rep <= repeats; ++rep) {  // run 0 warms up (library initialisation)
    cudssConfig_t config;
    cudssData_t data;
    check(cudssConfigCreate(&config) == CUDSS_STATUS_SUCCESS, "cudssConfigCreate");
    check(cudssDataCreate(handle, &data) == CUDSS_STATUS_SUCCESS, "cudssDataCreate");
    cudaDeviceSynchronize();
    const double t0 = now();
    check(cudssExecute(handle, CUDSS_PHASE_ANALYSIS, config, data, A, x, b) == CUDSS_STATUS_SUCCESS, "analysis");
    cudaDeviceSynchronize();
    const double t1 = now();
    check(cudssExecute(handle, CUDSS_PHASE_FACTORIZATION, config, data, A, x, b) == CUDSS_STATUS_SUCCESS, "factor");
    check(cudssExecute(handle, CUDSS_PHASE_SOLVE, config, data, A, x, b) == CUDSS_STATUS_SUCCESS, "solve");
    cudaDeviceSynchronize();
    const double t2 = now();
    check(cudssExecute(handle, CUDSS_PHASE_FACTORIZATION, config, data, A, x, b) == CUDSS_STATUS_SUCCESS, "factor");
    check(cudssExecute(handle, CUDSS_PHASE_SOLVE, config, data, A, x, b) == CUDSS_STATUS_SUCCESS, "solve");
    cudaDeviceSynchronize();
    const double t3 = now();
    check(cudssExecute(handle, CUDSS_PHASE_SOLVE, config, data, A, x, b) == CUDSS_STATUS_SUCCESS, "solve");
    cudaDeviceSynchronize();
    const double t4 = now();
    if (rep > 0) {
      analysis = std::min(analysis, t1 - t0);
      cold = std::min(cold, t2 - t0);
      refactor = std::min(refactor, t3 - t2);
      solve = std::min(solve, t4 - t3);
    }
    cudssDataDestroy(handle, data);
    cudssConfigDestroy(config);
  }
  std::printf(
      "{\"n\": %d, \"nnz_lower\": %d, \"analysis_s\": %.6f, \"cold_s\": %.6f, \"factorize_solve_s\": %.6f, "
      "\"solve_s\": %.6f}\n",
      n, nnz, analysis, cold, refactor, solve);
  cudssMatrixDestroy(A);
  cudssMatrixDestroy(x);
  cudssMatrixDestroy(b);
  cudssDestroy(handle);
  cudaFree(d_rowptr);
  cudaFree(d_col);
  cudaFree(d_val);
  cudaFree(d_b);
  cudaFree(d_x);
  return 0;
}
