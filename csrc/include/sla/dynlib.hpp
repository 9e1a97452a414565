// Libraries loaded at run time (dlopen) by the backends whose library is optional: PARDISO (libmkl_rt) and
// cuDSS (libcudss). The build never links them; each backend looks up its few entry points itself.
#pragma once

#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

namespace sla::dynlib {

// dlopen(path) with local symbol scope, resolving every symbol now. On failure nullptr, and a line
// "  path: why" is appended to `tried`.
void* open(const std::string& path, std::string& tried);

// dlsym(handle, name) converted to the function pointer type of `slot`; a missing name is appended to
// `missing` (comma-separated). Returns whether it was found.
template <class F>
bool lookup(void* handle, const char* name, F& slot, std::string& missing);

// The search every such backend makes, in this order:
// 1. when the environment variable `env_var` is set, its path alone ("none" or empty: the backend is
//    disabled);
// 2. else the `candidates` (paths the Python layer found, e.g. in the library's wheel), then the
//    `system_names` through the system loader's own search.
// `try_load(path, tried)` loads and checks one path (appending why to `tried` when it fails). Returns whether
// a library was loaded; when none was, `description` says why: what was tried, after `hint` (how to
// install the library) when nothing was set in the environment.
bool search(const char* env_var, const char* library, const std::vector<std::string>& candidates,
            std::initializer_list<const char*> system_names, const std::string& hint,
            const std::function<bool(const std::string&, std::string&)>& try_load, std::string& description);

// -- implementation --------------------------------------------------------------------------------------
void* symbol(void* handle, const char* name, std::string& missing);

template <class F>
bool lookup(void* handle, const char* name, F& slot, std::string& missing) {
  slot = reinterpret_cast<F>(symbol(handle, name, missing));
  return slot != nullptr;
}

}  // namespace sla::dynlib
