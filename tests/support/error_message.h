#pragma once
// The message of the exception of type E that `f` throws; a test failure (and "") when it throws
// none.
#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace longlive::test {

template <typename E>
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an exception";
  return {};
}

}  // namespace longlive::test
