// Bindings of the Matrix Market reader and writer. Parsed arrays are handed to NumPy without a copy.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <complex>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common.hpp"
#include "sla/mtx.hpp"

namespace sla::bind {
namespace {

// Move `v` to the heap and expose it as a 1-D NumPy array that owns it through a capsule.
template <class T>
nb::object to_numpy(std::vector<T>&& v) {
  auto* heap = new std::vector<T>(std::move(v));
  nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  if (heap->empty()) heap->reserve(1);  // a valid data pointer even for an empty array
  const size_t n = heap->size();
  return nb::cast(nb::ndarray<nb::numpy, T, nb::ndim<1>>(heap->data(), {n}, owner));
}

// A file name as the bytes the OS uses: `bytes` as they are (what os.fsencode gives, so any name
// works, UTF-8 or not), `str` encoded as os.fsencode would (the file system encoding, surrogateescape).
std::string path_from_bytes(const nb::bytes& path) {
  std::string p(path.c_str(), path.size());
  if (p.find('\0') != std::string::npos) fail(ErrorKind::InvalidArgument, "path: contains a NUL byte");
  return p;
}

std::string path_from_str(const nb::str& path) {
  nb::object encoded = nb::steal(PyUnicode_EncodeFSDefault(path.ptr()));
  if (!encoded.is_valid()) throw nb::python_error();
  return path_from_bytes(nb::borrow<nb::bytes>(encoded));
}

nb::dict mtx_read_py(const std::string& path) {
  MtxData d;
  {
    nb::gil_scoped_release release;
    d = read_mtx(path);
  }
  nb::dict out;
  out["n_rows"] = d.n_rows;
  out["n_cols"] = d.n_cols;
  out["format"] = d.format;
  out["field"] = d.field;
  out["symmetry"] = d.symmetry;
  out["row"] = to_numpy(std::move(d.row));
  out["col"] = to_numpy(std::move(d.col));
  if (d.field == "complex")
    out["values"] = to_numpy(std::move(d.cvalues));
  else
    out["values"] = to_numpy(std::move(d.values));
  return out;
}

void mtx_write_py(const std::string& path, index_t n_rows, index_t n_cols, const Array& row, const Array& col,
                  const std::optional<Array>& values, const std::string& field, const std::string& symmetry,
                  const std::string& comment) {
  check_array(row, "row", 1);
  check_array(col, "col", 1);
  if (!is_int64(row) || !is_int64(col)) fail(ErrorKind::InvalidArgument, "row, col: dtype must be int64");
  const size_t nnz = row.shape(0);
  if (col.shape(0) != nnz)
    fail(ErrorKind::InvalidArgument, "col: ", col.shape(0), " entries, but row has ", nnz);
  const double* real = nullptr;
  const std::complex<double>* cplx = nullptr;
  const bool needs_values = field == "real" || field == "integer" || field == "complex";
  if (needs_values) {
    if (!values) fail(ErrorKind::InvalidArgument, "values: required for the '", field, "' field");
    check_array(*values, "values", 1);
    if (values->shape(0) != nnz)
      fail(ErrorKind::InvalidArgument, "values: ", values->shape(0), " entries, but row has ", nnz);
    if (field == "complex") {
      if (values->dtype() != nb::dtype<std::complex<double>>())
        fail(ErrorKind::InvalidArgument, "values: dtype must be complex128 for the 'complex' field");
      cplx = static_cast<const std::complex<double>*>(values->data());
    } else {
      if (values->dtype() != nb::dtype<double>())
        fail(ErrorKind::InvalidArgument, "values: dtype must be float64 for the '", field, "' field");
      real = static_cast<const double*>(values->data());
    }
  }
  const auto* rp = static_cast<const index_t*>(row.data());
  const auto* cp = static_cast<const index_t*>(col.data());
  nb::gil_scoped_release release;
  write_mtx(path, n_rows, n_cols, rp, cp, static_cast<index_t>(nnz), real, cplx, field, symmetry, comment);
}

}  // namespace

void bind_mtx(nb::module_& m) {
  m.def(
      "mtx_read", [](const nb::bytes& path) { return mtx_read_py(path_from_bytes(path)); }, nb::arg("path"),
      "Read a Matrix Market file as expanded 0-based COO: a dict with n_rows, n_cols, format, field, "
      "symmetry, row, col (int64) and values (float64, or complex128 for the complex field). path is the "
      "file name as bytes (os.fsencode(name)); a str is encoded the same way.");
  m.def("mtx_read", [](const nb::str& path) { return mtx_read_py(path_from_str(path)); }, nb::arg("path"));
  m.def(
      "mtx_write",
      [](const nb::bytes& path, index_t n_rows, index_t n_cols, const Array& row, const Array& col,
         const std::optional<Array>& values, const std::string& field, const std::string& symmetry,
         const std::string& comment) {
        mtx_write_py(path_from_bytes(path), n_rows, n_cols, row, col, values, field, symmetry, comment);
      },
      nb::arg("path"), nb::arg("n_rows"), nb::arg("n_cols"), nb::arg("row"), nb::arg("col"), nb::arg("values").none(),
      nb::arg("field"), nb::arg("symmetry"), nb::arg("comment"),
      "Write 0-based COO entries in Matrix Market coordinate format. For a non-general symmetry pass "
      "only the lower triangle; values is None for the pattern field. path is the file name as bytes "
      "(os.fsencode(name)); a str is encoded the same way.");
  m.def(
      "mtx_write",
      [](const nb::str& path, index_t n_rows, index_t n_cols, const Array& row, const Array& col,
         const std::optional<Array>& values, const std::string& field, const std::string& symmetry,
         const std::string& comment) {
        mtx_write_py(path_from_str(path), n_rows, n_cols, row, col, values, field, symmetry, comment);
      },
      nb::arg("path"), nb::arg("n_rows"), nb::arg("n_cols"), nb::arg("row"), nb::arg("col"), nb::arg("values").none(),
      nb::arg("field"), nb::arg("symmetry"), nb::arg("comment"));
}

}  // namespace sla::bind
