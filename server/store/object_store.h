#pragma once
// The stored objects, in two tiers chosen by size. Up to small_object_bytes an object is kept
// inside the index (table object_data, committed with its instance row; its path reads
// "index:<64 hex>"). Larger ones are files under the storage root: objects/ holds one file per
// SOP instance, named from a hash of its SOP Instance UID; tmp/ holds objects being received. A
// file reaches its final name only whole and fsync'd, and never replaces a file already there.
// Open reads either tier through an ObjectHandle.
//
// Thread-safety: all methods may be called concurrently.
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "server/store/object_handle.h"
#include "server/store/segments.h"

namespace teleread {

class Index;

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
  ~ObjectStore();
  ObjectStore(const ObjectStore&) = delete;
  ObjectStore& operator=(const ObjectStore&) = delete;

  // Objects of at most this many bytes (as stored: preamble and meta header included) are kept
  // in the index; 0: every object is a file. Set before the first object arrives.
  static constexpr uint64_t kDefaultSmallObjectBytes = 128 * 1024;
  void set_small_object_bytes(uint64_t bytes) { small_object_bytes_ = bytes; }
  uint64_t small_object_bytes() const { return small_object_bytes_; }
  // Received file-tier objects are written with O_DIRECT (server/store/direct_file.h); false:
  // through the page cache. Set before the first object arrives.
  void set_direct_io(bool on) { direct_io_ = on; }
  bool direct_io() const { return direct_io_; }
  // Received file-tier objects are appended to segment files under segments/ (segments.h) of
  // `segment_bytes` each; 0 (the default): one file per object. Called once, after Prepare and
  // before the first object arrives.
  Status UseSegments(uint64_t segment_bytes, bool prewrite, uint64_t keep_free_bytes);
  // Null without segments.
  SegmentPool* segments() const { return segments_.get(); }
  // The index that holds the small objects, for Open; set once before use, outlives this store.
  void UseIndex(const Index* index) { index_ = index; }

  // Creates objects/ with its fan-out directories, and tmp/, if needed.
  Status Prepare();
  // Takes the storage root for this process alone (flock on <root>/server.lock, held until the
  // store is destroyed): a second server on the same storage would cut and remove segments the
  // first one writes. After Prepare. Conflict when another process holds it.
  Status LockForServer();

  // A fresh, unused path under tmp/ for an object being received.
  std::filesystem::path NewTempPath() const;

  // "objects/ab/<64 hex>.dcm" for a SOP Instance UID: 256 directories, created by Prepare
  // (ext4's hashed directories stay fast at the ~40,000 entries each of ten million objects).
  static std::string RelativePathFor(const std::string& sop_instance_uid);
  std::filesystem::path Absolute(const std::string& relative_path) const { return root_ / relative_path; }
  // "index:<64 hex>": the path recorded for an object kept inside the index.
  static std::string InIndexPathFor(const std::string& sop_instance_uid);
  static bool InIndex(const std::string& relative_path) { return relative_path.rfind("index:", 0) == 0; }
  // "segments/<name>@<offset>+<length>": an object stored as a byte range of a segment file
  // under segments/ (store/README.md). Open reads it as an ObjectHandle::Range.
  static std::string InSegmentPathFor(const std::string& segment_name, uint64_t offset, uint64_t length);
  // InSegmentPathFor's parts back ("segments/<name>", offset, length); false for a malformed path.
  static bool ParseInSegmentPath(const std::string& relative_path, std::string* segment, uint64_t* offset,
                                 uint64_t* length);
  static bool InSegment(const std::string& relative_path) {
    return relative_path.rfind("segments/", 0) == 0 && relative_path.find('@') != std::string::npos;
  }

  // The object at an instance's recorded path, from either tier. NotFound when it is not there.
  Result<ObjectHandle> Open(const std::string& relative_path) const;

  enum class Placed { kNew, kExisting };
  // fsyncs `temp`, then links it to `relative_path` and fsyncs the directory. When a file is
  // already there the temp file is left for the caller to compare and remove (kExisting).
  Result<Placed> Place(const std::filesystem::path& temp, const std::string& relative_path);

  // Removes leftovers of interrupted receptions. A temp name that still names a placed object
  // whose link count is 1 is kept (removing it would free the object): Place's unlink of the
  // temp name was lost in a crash on a file system without a journal, and only fsck mends the
  // count. Such names are counted in `kept` and logged as errors.
  struct TempCleanup {
    int removed = 0;
    int kept = 0;
  };
  TempCleanup RemoveTempFiles();

  // Calls fn(relative_path) for every stored object file.
  Status ForEachObject(const std::function<void(const std::string&)>& fn) const;

  // Free bytes for unprivileged writers on the storage file system, counting the room segments
  // hold allocated (SegmentPool::UnusedAllocatedBytes) as free.
  Result<uint64_t> FreeBytes() const;

 private:
  Status EnsureDirectory(const std::filesystem::path& dir);

  std::filesystem::path root_;
  uint64_t small_object_bytes_ = kDefaultSmallObjectBytes;
  bool direct_io_ = true;
  const Index* index_ = nullptr;
  std::unique_ptr<SegmentPool> segments_;
  int lock_fd_ = -1;
  mutable std::atomic<uint64_t> temp_counter_{0};  // names only
};

// fsync on a path (a file or a directory).
Status SyncPath(const std::filesystem::path& path);

// Whether a temp file (`temp`) is the same inode as the object placed from it (`placed`, null when
// there is none) while its link count says one name: removing the temp name would free the object.
bool TempNameHoldsPlacedObject(const struct stat& temp, const struct stat* placed);

}  // namespace teleread
