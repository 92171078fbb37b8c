#include "io/replace_file.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <system_error>

#include "longlive/error.h"

namespace longlive {

void replace_file(const std::filesystem::path& path, const char* what,
                  const std::function<void(std::ostream&)>& write) {
  const std::filesystem::path sibling =
      path.string() + fmt::format(".{}.tmp", static_cast<long>(::getpid()));
  {
    std::ofstream out(sibling, std::ios::binary | std::ios::trunc);
    if (!out)
      throw IoError(
          fmt::format("cannot write {} '{}': {}", what, path.string(), std::strerror(errno)));
    write(out);
    out.flush();
    if (!out) {
      out.close();
      ::unlink(sibling.c_str());
      throw IoError(fmt::format("writing {} '{}' failed (disk full?)", what, path.string()));
    }
  }
  std::error_code ec;
  std::filesystem::rename(sibling, path, ec);
  if (ec) {
    ::unlink(sibling.c_str());
    throw IoError(
        fmt::format("cannot move {} '{}' into place: {}", what, path.string(), ec.message()));
  }
}

}  // namespace longlive
