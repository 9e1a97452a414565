// Internal: the few BLAS-3 / LAPACK routines of the supernodal selected inversion, for double and
// complex<double>, behind one set of names. The BLAS and LAPACK are those the SuiteSparse libraries link
// (Fortran interface, 32-bit integers); only the SuiteSparse backends include this header.
#pragma once

#include <complex>

extern "C" {
void dtrsm_(const char* side, const char* uplo, const char* transa, const char* diag, const int* m, const int* n,
            const double* alpha, const double* a, const int* lda, double* b, const int* ldb);
void ztrsm_(const char* side, const char* uplo, const char* transa, const char* diag, const int* m, const int* n,
            const void* alpha, const void* a, const int* lda, void* b, const int* ldb);
void dtrmm_(const char* side, const char* uplo, const char* transa, const char* diag, const int* m, const int* n,
            const double* alpha, const double* a, const int* lda, double* b, const int* ldb);
void ztrmm_(const char* side, const char* uplo, const char* transa, const char* diag, const int* m, const int* n,
            const void* alpha, const void* a, const int* lda, void* b, const int* ldb);
void dsymm_(const char* side, const char* uplo, const int* m, const int* n, const double* alpha, const double* a,
            const int* lda, const double* b, const int* ldb, const double* beta, double* c, const int* ldc);
void zhemm_(const char* side, const char* uplo, const int* m, const int* n, const void* alpha, const void* a,
            const int* lda, const void* b, const int* ldb, const void* beta, void* c, const int* ldc);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc);
void zgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const void* alpha,
            const void* a, const int* lda, const void* b, const int* ldb, const void* beta, void* c, const int* ldc);
void dpotri_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void zpotri_(const char* uplo, const int* n, void* a, const int* lda, int* info);
}

namespace sla::detail::blas {

using Z = std::complex<double>;

// B := alpha op(A)^{-1} B (side 'L') or alpha B op(A)^{-1} (side 'R'), A triangular.
inline void trsm(char side, char uplo, char trans, char diag, int m, int n, double alpha, const double* a, int lda,
                 double* b, int ldb) {
  dtrsm_(&side, &uplo, &trans, &diag, &m, &n, &alpha, a, &lda, b, &ldb);
}
inline void trsm(char side, char uplo, char trans, char diag, int m, int n, Z alpha, const Z* a, int lda, Z* b,
                 int ldb) {
  ztrsm_(&side, &uplo, &trans, &diag, &m, &n, &alpha, a, &lda, b, &ldb);
}
// B := alpha op(A) B, A triangular.
inline void trmm(char side, char uplo, char trans, char diag, int m, int n, double alpha, const double* a, int lda,
                 double* b, int ldb) {
  dtrmm_(&side, &uplo, &trans, &diag, &m, &n, &alpha, a, &lda, b, &ldb);
}
inline void trmm(char side, char uplo, char trans, char diag, int m, int n, Z alpha, const Z* a, int lda, Z* b,
                 int ldb) {
  ztrmm_(&side, &uplo, &trans, &diag, &m, &n, &alpha, a, &lda, b, &ldb);
}
// C := alpha A B + beta C, A symmetric (real) / Hermitian (complex), read from its `uplo` triangle.
inline void hemm(char side, char uplo, int m, int n, double alpha, const double* a, int lda, const double* b, int ldb,
                 double beta, double* c, int ldc) {
  dsymm_(&side, &uplo, &m, &n, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
inline void hemm(char side, char uplo, int m, int n, Z alpha, const Z* a, int lda, const Z* b, int ldb, Z beta, Z* c,
                 int ldc) {
  zhemm_(&side, &uplo, &m, &n, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
// C := alpha op(A) op(B) + beta C.
inline void gemm(char ta, char tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
                 int ldb, double beta, double* c, int ldc) {
  dgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
inline void gemm(char ta, char tb, int m, int n, int k, Z alpha, const Z* a, int lda, const Z* b, int ldb, Z beta,
                 Z* c, int ldc) {
  zgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}

// (L L^H)^{-1} from the Cholesky factor L held in the lower triangle of a, into that lower triangle.
// Returns LAPACK's info (0: done).
inline int potri(int n, double* a, int lda) {
  int info = 0;
  dpotri_("L", &n, a, &lda, &info);
  return info;
}
inline int potri(int n, Z* a, int lda) {
  int info = 0;
  zpotri_("L", &n, a, &lda, &info);
  return info;
}

// The conjugate transpose for the scalar type: 'T' for real, 'C' for complex.
inline char adjoint(double) { return 'T'; }
inline char adjoint(const Z&) { return 'C'; }

}  // namespace sla::detail::blas
