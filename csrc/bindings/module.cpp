// The one nanobind module, torch_sla._C. Every sla::Error is turned into a torch_sla exception here.
#include <nanobind/stl/string.h>

#include <Eigen/Core>
#include <string>

#include "common.hpp"
#include "sla/direct.hpp"

#ifdef SLA_HAVE_SUITESPARSE
#include <SuiteSparse_config.h>
#endif

namespace nb = nanobind;

namespace {

const char* python_class_for(sla::ErrorKind kind) {
  switch (kind) {
    case sla::ErrorKind::InvalidArgument: return "InvalidArgumentError";
    case sla::ErrorKind::SingularMatrix: return "SingularMatrixError";
    case sla::ErrorKind::NotPositiveDefinite: return "NotPositiveDefiniteError";
    case sla::ErrorKind::Unavailable: return "BackendUnavailableError";
    case sla::ErrorKind::MatrixMarket: return "MatrixMarketError";
    case sla::ErrorKind::Internal: return "TorchSlaError";
  }
  return "TorchSlaError";
}

nb::dict build_info() {
  nb::dict info;
  info["suitesparse"] = sla::backend_available(sla::Backend::SuiteSparse);
#ifdef SLA_HAVE_SUITESPARSE
  info["suitesparse_version"] = std::to_string(SUITESPARSE_MAIN_VERSION) + "." +
                                std::to_string(SUITESPARSE_SUB_VERSION) + "." +
                                std::to_string(SUITESPARSE_SUBSUB_VERSION);
#else
  info["suitesparse_version"] = nb::none();
#endif
  info["eigen_version"] = std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
                          std::to_string(EIGEN_MINOR_VERSION);
#ifdef SLA_HAVE_OPENMP
  info["openmp"] = true;
#else
  info["openmp"] = false;
#endif
#ifdef SLA_CUDA_TOOLKIT_FOUND
  info["cuda_toolkit_at_build"] = true;
#else
  info["cuda_toolkit_at_build"] = false;
#endif
  return info;
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "torch_sla C++ core (internal; use the torch_sla package)";
  // Factorizations may be kept alive until interpreter shutdown by autograd graphs or caches owned by
  // other modules; nanobind would report those as leaks although nothing is lost.
  nb::set_leak_warnings(false);
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const sla::Error& e) {
      nb::object errors = nb::module_::import_("torch_sla.errors");
      nb::object cls = errors.attr(python_class_for(e.kind()));
      PyErr_SetString(cls.ptr(), e.what());
    }
  });
  m.def("build_info", &build_info, "What this build of the core was compiled with.");
  m.def("set_blas_threads", &sla::set_blas_threads, nb::arg("n"),
        "Set the BLAS thread count (OpenBLAS); returns False when the BLAS has no such control.");
  sla::bind::bind_direct(m);
  sla::bind::bind_mtx(m);
  sla::bind::bind_krylov(m);
}
