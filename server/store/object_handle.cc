#include "server/store/object_handle.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "common/write_all.h"

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
  if (const int err = WriteAll(h.fd_, bytes); err != 0) return Status::FromErrno(err, "writing a memory file");
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
