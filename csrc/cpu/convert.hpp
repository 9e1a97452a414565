// Internal helpers: move values between the caller's scalar type and a backend's working type.
#pragma once

#include <complex>
#include <vector>

#include "sla/errors.hpp"
#include "sla/types.hpp"

namespace sla::detail {

template <class T> struct is_complex_t : std::false_type {};
template <class R> struct is_complex_t<std::complex<R>> : std::true_type {};

// Call f(T{}) with T the C++ type of scalar type s.
template <class F>
decltype(auto) visit_scalar(ScalarType s, F&& f) {
  switch (s) {
    case ScalarType::Float32: return f(float{});
    case ScalarType::Float64: return f(double{});
    case ScalarType::Complex64: return f(std::complex<float>{});
    case ScalarType::Complex128: return f(std::complex<double>{});
  }
  fail(ErrorKind::InvalidArgument, "unknown scalar type");
}

template <class Out, class In>
Out cast_scalar(const In& v) {
  if constexpr (is_complex_t<Out>::value) {
    return Out(v);
  } else {
    static_assert(!is_complex_t<In>::value, "complex -> real conversion is never implicit");
    return static_cast<Out>(v);
  }
}

// out[k] = in[perm[k]] converted to Out; `in` holds values of scalar type s.
template <class Out>
void gather_values(ScalarType s, const void* in, const std::vector<index_t>& perm, Out* out) {
  visit_scalar(s, [&](auto tag) {
    using In = decltype(tag);
    if constexpr (is_complex_t<In>::value && !is_complex_t<Out>::value) {
      fail(ErrorKind::InvalidArgument, "complex values given to a real factorization");
    } else {
      const In* src = static_cast<const In*>(in);
      const index_t m = static_cast<index_t>(perm.size());
      for (index_t k = 0; k < m; ++k) out[k] = cast_scalar<Out>(src[perm[k]]);
    }
  });
}

// Dense copies with conversion between the caller's scalar type s and the working type W.
template <class W>
void load_dense(ScalarType s, const void* in, index_t count, W* out) {
  visit_scalar(s, [&](auto tag) {
    using In = decltype(tag);
    if constexpr (is_complex_t<In>::value && !is_complex_t<W>::value) {
      fail(ErrorKind::InvalidArgument, "complex right-hand side given to a real factorization");
    } else {
      const In* src = static_cast<const In*>(in);
      for (index_t k = 0; k < count; ++k) out[k] = cast_scalar<W>(src[k]);
    }
  });
}

template <class W>
void store_dense(ScalarType s, const W* in, index_t count, void* out) {
  visit_scalar(s, [&](auto tag) {
    using Out = decltype(tag);
    if constexpr (is_complex_t<W>::value && !is_complex_t<Out>::value) {
      fail(ErrorKind::InvalidArgument, "complex solution stored into a real array");
    } else if constexpr (is_complex_t<Out>::value) {
      Out* dst = static_cast<Out*>(out);
      for (index_t k = 0; k < count; ++k) dst[k] = Out(in[k]);
    } else {
      Out* dst = static_cast<Out*>(out);
      for (index_t k = 0; k < count; ++k) dst[k] = static_cast<Out>(in[k]);
    }
  });
}

}  // namespace sla::detail
