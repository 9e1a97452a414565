// Typed errors of the C++ core. The bindings map each kind to one Python exception class, once.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace sla {

enum class ErrorKind {
  InvalidArgument,      // bad shapes, indices, sizes: Python ValueError
  SingularMatrix,       // structurally or numerically singular: SingularMatrixError
  NotPositiveDefinite,  // Cholesky on a matrix that is not SPD/HPD: NotPositiveDefiniteError
  Unavailable,          // backend or method not compiled in: BackendUnavailableError
  MatrixMarket,         // malformed Matrix Market file: MatrixMarketError
  Internal,             // a library reported an unexpected failure: RuntimeError
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

// Throw an sla::Error whose message is the concatenation of the arguments.
template <class... Args>
[[noreturn]] void fail(ErrorKind kind, const Args&... args) {
  throw Error(kind, detail::concat(args...));
}

}  // namespace sla
