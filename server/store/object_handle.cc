#include "server/store/object_handle.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace teleread {

ObjectHandle ObjectHandle::File(std::filesystem::path path) {
  ObjectHandle h;
  h.path_ = std::move(path);
  return h;
}

Result<ObjectHandle> ObjectHandle::Memory(std::string_view bytes) {
  ObjectHandle h;
  h.fd_ = ::memfd_create("teleread-object", MFD_CLOEXEC);
  if (h.fd_ < 0) return Status::FromErrno(errno, "memfd_create");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(h.fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::FromErrno(n < 0 ? errno : ENOSPC, "writing a memory file");
    done += static_cast<size_t>(n);
  }
  h.path_ = "/proc/self/fd/" + std::to_string(h.fd_);
  return h;
}

ObjectHandle::~ObjectHandle() {
  if (fd_ >= 0) ::close(fd_);
}

ObjectHandle::ObjectHandle(ObjectHandle&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)) {}

ObjectHandle& ObjectHandle::operator=(ObjectHandle&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

}  // namespace teleread
