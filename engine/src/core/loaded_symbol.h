#pragma once
// Entry points of a library opened with dlopen: CUPTI and cuBLASLt are used through the copies
// LibTorch loaded, without linking against them.
#include <dlfcn.h>

#include <string>

namespace longlive {

// fn = the address of `symbol` in `library`; false where it has none, and then `missing` names
// the first symbol that was absent (later calls keep it).
template <typename F>
bool resolve_symbol(void* library, const char* symbol, F& fn, std::string& missing) {
  fn = reinterpret_cast<F>(dlsym(library, symbol));
  if (fn == nullptr && missing.empty()) missing = symbol;
  return fn != nullptr;
}

}  // namespace longlive
