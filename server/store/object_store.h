#pragma once
// Files under the storage root: objects/ holds one file per SOP instance, named from a hash of
// its SOP Instance UID; tmp/ holds objects being received. An object reaches its final name
// only whole and fsync'd, and never replaces a file already there.
//
// Thread-safety: all methods may be called concurrently.
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "common/status.h"

namespace teleread {

// Removes a temporary file when it goes out of scope; harmless once it was renamed or removed.
class TempFileGuard {
 public:
  explicit TempFileGuard(std::filesystem::path path) : path_(std::move(path)) {}
  ~TempFileGuard();
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;

 private:
  std::filesystem::path path_;
};

class ObjectStore {
 public:
  explicit ObjectStore(std::filesystem::path root);

  // Creates objects/ with its fan-out directories, and tmp/, if needed.
  Status Prepare();

  // A fresh, unused path under tmp/ for an object being received.
  std::filesystem::path NewTempPath() const;

  // "objects/ab/<64 hex>.dcm" for a SOP Instance UID: 256 directories, created by Prepare
  // (ext4's hashed directories stay fast at the ~40,000 entries each of ten million objects).
  static std::string RelativePathFor(const std::string& sop_instance_uid);
  std::filesystem::path Absolute(const std::string& relative_path) const { return root_ / relative_path; }

  enum class Placed { kNew, kExisting };
  // fsyncs `temp`, then links it to `relative_path` and fsyncs the directory. When a file is
  // already there the temp file is left for the caller to compare and remove (kExisting).
  Result<Placed> Place(const std::filesystem::path& temp, const std::string& relative_path);

  // Removes leftovers of interrupted receptions; returns how many.
  int RemoveTempFiles();

  // Calls fn(relative_path) for every stored object file.
  Status ForEachObject(const std::function<void(const std::string&)>& fn) const;

  // Free bytes for unprivileged writers on the storage file system.
  Result<uint64_t> FreeBytes() const;

 private:
  Status EnsureDirectory(const std::filesystem::path& dir);

  std::filesystem::path root_;
  mutable std::atomic<uint64_t> temp_counter_{0};  // names only
};

// fsync on a path (a file or a directory).
Status SyncPath(const std::filesystem::path& path);

}  // namespace teleread
