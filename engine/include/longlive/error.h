#pragma once
// One exception hierarchy for the whole engine. Every message is meant for a user: it names the
// file, tensor, field or value at fault and says what was expected.
#include <stdexcept>
#include <string>

namespace longlive {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A file could not be opened, read or written.
class IoError : public Error {
 public:
  using Error::Error;
};

// A file's bytes do not follow its format (safetensors header, zip checkpoint, JSON).
class FormatError : public Error {
 public:
  using Error::Error;
};

// A tensor is missing or has the wrong shape or dtype.
class WeightError : public Error {
 public:
  using Error::Error;
};

// A preset, option or argument has an invalid value.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// The device ran out of memory; the message says how much was asked for and what to try.
class OutOfMemoryError : public Error {
 public:
  using Error::Error;
};

}  // namespace longlive
