// The one nanobind module, torch_sla._C. Every sla::Error is turned into a torch_sla exception here.
#include <nanobind/stl/string.h>

#include <Eigen/Core>
#include <cstring>
#include <string>
#include <thread>

#include "common.hpp"
#include "sla/cuda.hpp"
#include "sla/direct.hpp"
#include "sla/interrupt.hpp"
#include "sla/partition.hpp"

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

// The thread that imported the module, when it is Python's main thread. Python runs signal handlers in
// the main thread only (PyErr_CheckSignals does nothing in another), so other threads need not take
// the GIL to ask. Unknown (every thread asks) when the module was imported from another thread.
std::thread::id g_main_thread;
bool g_main_thread_known = false;

// The core's interrupt handler: run pending Python signal handlers; if one raised (KeyboardInterrupt for
// Ctrl-C, or whatever a user's handler raises), abort the computation with that exception. It unwinds
// the core and comes out of the binding call as the Python exception.
void check_python_signals() {
  if (g_main_thread_known && std::this_thread::get_id() != g_main_thread) return;
  nb::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) throw nb::python_error();
}

// Set the Python exception of class `cls` with `message` decoded as UTF-8; bytes that are not UTF-8
// (a Matrix Market header or a file name can hold any) become \xNN escapes, so that the exception
// keeps its class and text instead of turning into a UnicodeDecodeError.
void set_error(PyObject* cls, const char* message) {
  PyObject* text = PyUnicode_DecodeUTF8(message, static_cast<Py_ssize_t>(std::strlen(message)), "backslashreplace");
  if (text == nullptr) {  // only on memory exhaustion: keep the class at least
    PyErr_Clear();
    PyErr_SetNone(cls);
    return;
  }
  PyErr_SetObject(cls, text);
  Py_DECREF(text);
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
  info["metis"] = sla::metis_available();
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
  // The CUDA part (SLA_WITH_CUDA): whether it is compiled in, its runtime, and the GPUs it sees now. The count
  // initialises the CUDA driver, as torch.cuda.is_available() does; a failure is reported, not raised.
  info["cuda_compiled"] = sla::cuda_compiled();
  info["cuda_runtime_version"] = nb::none();
  info["cuda_architectures"] = nb::none();
  info["cuda_device_count"] = 0;
  if (sla::cuda_compiled()) {
#ifdef SLA_CUDA_ARCHITECTURES
    info["cuda_architectures"] = SLA_CUDA_ARCHITECTURES;
#endif
    try {
      info["cuda_runtime_version"] = sla::cuda_runtime_version();
      info["cuda_device_count"] = sla::cuda_device_count();
    } catch (const sla::Error& e) {
      info["cuda_error"] = std::string(e.what());
    }
  }
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
      set_error(cls.ptr(), e.what());
    }
  });
  nb::module_ threading = nb::module_::import_("threading");
  if (threading.attr("current_thread")().is(threading.attr("main_thread")())) {
    g_main_thread = std::this_thread::get_id();
    g_main_thread_known = true;
  }
  // Long computations of the core poll this handler (at most every 50 ms), so Ctrl-C interrupts them.
  sla::set_interrupt_handler(&check_python_signals);
  m.def("build_info", &build_info, "What this build of the core was compiled with.");
  m.def("cuda_device_count", &sla::cuda_device_count,
        "Number of CUDA devices the CUDA runtime compiled into torch_sla sees; 0 without a driver or a GPU. "
        "Raises BackendUnavailableError when torch_sla was built without CUDA.");
  m.def("cuda_runtime_version", &sla::cuda_runtime_version,
        "Version of the CUDA runtime compiled into torch_sla, 'major.minor'. Raises BackendUnavailableError "
        "when torch_sla was built without CUDA.");
  m.def("set_blas_threads", &sla::set_blas_threads, nb::arg("n"),
        "Set the BLAS thread count (OpenBLAS); returns False when the BLAS has no such control.");
  sla::bind::bind_pattern(m);
  sla::bind::bind_direct(m);
  sla::bind::bind_mtx(m);
  sla::bind::bind_krylov(m);
  sla::bind::bind_blocks(m);
  sla::bind::bind_partition(m);
  sla::bind::bind_cuda(m);
}
