#include "ringtgt/common/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace ringtgt::common {

namespace {

bool write_all(int fd, std::string_view text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

std::filesystem::path folder_of(const std::filesystem::path& path) {
  return path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
}

}  // namespace

bool fsync_dir(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  errno = err;
  return ok;
}

void write_file_atomically(const std::filesystem::path& path, std::string_view text,
                           mode_t new_file_mode) {
  const std::filesystem::path dir = folder_of(path);
  // A unique name: two writers of one path never share a temporary file.
  std::string tmp = (dir / ("." + path.filename().string() + ".XXXXXX")).string();
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) {
    const int err = errno;
    throw std::runtime_error("cannot create a temporary file in " + dir.string() + ": " +
                             std::strerror(err));
  }
  auto fail = [&](const char* what) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw std::runtime_error(std::string(what) + " " + path.string() + ": " + std::strerror(err));
  };
  struct stat old {};
  const mode_t mode = ::stat(path.c_str(), &old) == 0 ? (old.st_mode & 07777) : new_file_mode;
  if (::fchmod(fd, mode) != 0) fail("cannot chmod the temporary file for");
  if (!write_all(fd, text)) fail("cannot write the temporary file for");
  if (::fsync(fd) != 0) fail("cannot fsync the temporary file for");
  const int closed = ::close(fd);
  fd = -1;
  if (closed != 0) fail("cannot close the temporary file for");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("cannot rename the temporary file onto");
  if (!fsync_dir(dir)) {
    const int err = errno;
    throw std::runtime_error("cannot fsync the folder of " + path.string() + ": " +
                             std::strerror(err));
  }
}

}  // namespace ringtgt::common
