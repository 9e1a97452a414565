// The run-time library search shared by the optional backends (see sla/dynlib.hpp).
#include "sla/dynlib.hpp"

#include <dlfcn.h>

#include <cstdlib>

namespace sla::dynlib {

void* open(const std::string& path, std::string& tried) {
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    const char* err = dlerror();
    tried += "\n  " + path + ": " + (err != nullptr ? err : "not found");
  }
  return h;
}

void* symbol(void* handle, const char* name, std::string& missing) {
  void* p = dlsym(handle, name);
  if (p == nullptr) missing += std::string(missing.empty() ? "" : ", ") + name;
  return p;
}

bool search(const char* env_var, const char* library, const std::vector<std::string>& candidates,
            std::initializer_list<const char*> system_names, const std::string& hint,
            const std::function<bool(const std::string&, std::string&)>& try_load, std::string& description) {
  std::string tried;
  if (const char* env = std::getenv(env_var)) {
    const std::string path(env);
    if (path.empty() || path == "none") {
      description = std::string("disabled by the environment variable ") + env_var + "=" + path;
      return false;
    }
    if (try_load(path, tried)) return true;
    description = std::string(library) + " could not be loaded from " + env_var + ":" + tried;
    return false;
  }
  for (const std::string& c : candidates)
    if (!c.empty() && try_load(c, tried)) return true;
  for (const char* name : system_names)
    if (try_load(name, tried)) return true;
  description = hint + " Tried:" + tried;
  return false;
}

}  // namespace sla::dynlib
