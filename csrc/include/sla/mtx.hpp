// Matrix Market (.mtx) reading and writing: the coordinate and array formats of the NIST exchange format.
#pragma once

#include <complex>
#include <string>
#include <vector>

#include "sla/types.hpp"

namespace sla {

// A matrix read from a Matrix Market file, always expanded to general COO with 0-based indices.
//
// * Symmetric, skew-symmetric and hermitian files store one triangle; the other is filled in here
//   (a(j, i) = a(i, j), -a(i, j) or conj(a(i, j)) respectively). Diagonal entries are not duplicated.
// * Array (dense) files produce one entry per stored value, zeros included, so that nnz is the number
//   of positions of the matrix (n_rows * n_cols for a general one).
// * Entries keep the order of the file; a mirrored entry follows the entry it mirrors. Coordinate
//   files may repeat a position; such duplicates are returned as they are (the caller sums them).
// * `values` holds the real, integer and pattern (1.0) fields; `cvalues` the complex one. Exactly one
//   of the two is filled (both are empty for an empty matrix).
struct MtxData {
  index_t n_rows = 0;
  index_t n_cols = 0;
  std::string format;    // "coordinate" | "array"
  std::string field;     // "real" | "integer" | "complex" | "pattern"
  std::string symmetry;  // "general" | "symmetric" | "skew-symmetric" | "hermitian"
  std::vector<index_t> row, col;
  std::vector<double> values;
  std::vector<std::complex<double>> cvalues;

  index_t nnz() const { return static_cast<index_t>(row.size()); }
};

// Parse the Matrix Market file at `path`. The banner words are case-insensitive; text values such as
// "nan" and "inf" are accepted (finiteness is the caller's concern).
// Throws sla::Error(MatrixMarket) naming the file and the line for an unreadable path, a malformed
// banner or size line, an unknown or inconsistent format/field/symmetry, an index out of range, an
// entry in the upper triangle of a symmetric-like matrix, a nonzero diagonal entry of a
// skew-symmetric matrix, a non-real diagonal entry of a hermitian matrix, a bad number, a wrong
// number of values on a line, or an entry count that differs from the declared one.
MtxData read_mtx(const std::string& path);

// Write a matrix in coordinate format. Indices are 0-based; `nnz` entries are written as given.
// For a non-general `symmetry` the caller passes one triangle: every entry must satisfy row >= col
// (row > col for "skew-symmetric"), and the matrix must be square. `values` is required for the real
// and integer fields (integer values must be integral), `cvalues` for the complex field; the pattern
// field writes indices only and ignores both. Real numbers are written with 17 significant digits.
// Each line of `comment` becomes a comment line starting with '%'.
// Throws sla::Error(InvalidArgument) for bad arguments and sla::Error(MatrixMarket) when the file
// cannot be written.
void write_mtx(const std::string& path, index_t n_rows, index_t n_cols, const index_t* row, const index_t* col,
               index_t nnz, const double* values, const std::complex<double>* cvalues, const std::string& field,
               const std::string& symmetry, const std::string& comment);

}  // namespace sla
