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

ObjectHandle ObjectHandle::Range(std::filesystem::path container, uint64_t offset, uint64_t length) {
  ObjectHandle h;
  h.path_ = std::move(container);
  h.ranged_ = true;
  h.offset_ = offset;
  h.length_ = length;
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
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      ranged_(other.ranged_),
      offset_(other.offset_),
      length_(other.length_) {}

ObjectHandle& ObjectHandle::operator=(ObjectHandle&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    ranged_ = other.ranged_;
    offset_ = other.offset_;
    length_ = other.length_;
  }
  return *this;
}

}  // namespace teleread
