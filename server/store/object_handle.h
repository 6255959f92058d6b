#pragma once
// A stored object opened for reading, whichever tier holds it: a file under objects/ is read
// where it lies; an object kept inside the index is put in an anonymous memory file (memfd) whose
// "/proc/self/fd/N" path DCMTK and Beast open like any file. The memory file lives as long as
// the handle: keep it until whoever reads the path has opened it.
//
// Thread-safety: a handle is used by one thread at a time; its path may be opened from any.
#include <cstddef>
#include <filesystem>
#include <string_view>

#include "common/status.h"

namespace teleread {

class ObjectHandle {
 public:
  ObjectHandle() = default;
  static ObjectHandle File(std::filesystem::path path);
  // The bytes copied into a new memory file.
  static Result<ObjectHandle> Memory(std::string_view bytes);
  ~ObjectHandle();
  ObjectHandle(ObjectHandle&& other) noexcept;
  ObjectHandle& operator=(ObjectHandle&& other) noexcept;
  ObjectHandle(const ObjectHandle&) = delete;
  ObjectHandle& operator=(const ObjectHandle&) = delete;

  const std::filesystem::path& path() const { return path_; }
  bool in_memory() const { return fd_ >= 0; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;  // the memory file, else -1
};

}  // namespace teleread
