#pragma once
// A stored object opened for reading, whichever tier holds it: a file under objects/ is read
// where it lies; an object kept inside the index is put in an anonymous memory file (memfd) whose
// "/proc/self/fd/N" path DCMTK and Beast open like any file. The memory file lives as long as
// the handle: keep it until whoever reads the path has opened it. An object that is a byte range
// of a larger file (a segment: store/README.md) names that file, its offset and its length:
// readers read the range where it lies (ranged() says which kind a handle is).
//
// Thread-safety: a handle is used by one thread at a time; its path may be opened from any.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include "common/status.h"

namespace teleread {

class ObjectHandle {
 public:
  ObjectHandle() = default;
  static ObjectHandle File(std::filesystem::path path);
  // `length` bytes of `container` from `offset`.
  static ObjectHandle Range(std::filesystem::path container, uint64_t offset, uint64_t length);
  // The bytes copied into a new memory file.
  static Result<ObjectHandle> Memory(std::string_view bytes);
  ~ObjectHandle();
  ObjectHandle(ObjectHandle&& other) noexcept;
  ObjectHandle& operator=(ObjectHandle&& other) noexcept;
  ObjectHandle(const ObjectHandle&) = delete;
  ObjectHandle& operator=(const ObjectHandle&) = delete;

  // The object's file, or for a range the file that holds it.
  const std::filesystem::path& path() const { return path_; }
  bool in_memory() const { return fd_ >= 0; }
  bool ranged() const { return ranged_; }
  uint64_t offset() const { return offset_; }  // 0 unless ranged
  uint64_t length() const { return length_; }  // ranged only

 private:
  std::filesystem::path path_;
  int fd_ = -1;  // the memory file, else -1
  bool ranged_ = false;
  uint64_t offset_ = 0, length_ = 0;
};

}  // namespace teleread
