#include "server/store/object_store.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>

#include "common/dicom.h"
#include "common/log.h"
#include "server/store/index.h"

namespace teleread {

TempFileGuard::~TempFileGuard() {
  if (!path_.empty()) ::unlink(path_.c_str());  // none for an object received into memory
}
namespace fs = std::filesystem;

Status SyncPath(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open " + path.string());
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::FromErrno(err, "fsync " + path.string());
  return Status::Ok();
}

ObjectStore::ObjectStore(fs::path root) : root_(std::move(root)) {}

Status ObjectStore::EnsureDirectory(const fs::path& dir) {
  if (fs::is_directory(dir)) return Status::Ok();
  if (Status s = EnsureDirectory(dir.parent_path()); !s.ok()) return s;
  if (::mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) return Status::FromErrno(errno, "mkdir " + dir.string());
  // The new entry must survive a crash as well as the file that will go in it.
  return SyncPath(dir.parent_path());
}

ObjectStore::~ObjectStore() {
  segments_.reset();  // its preparer first: the lock covers every write
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

Status ObjectStore::LockForServer() {
  const fs::path path = root_ / "server.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return Status::FromErrno(errno, "open " + path.string());
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return Status::Conflict("another teleread-server uses the storage " + root_.string());
    }
    return Status::FromErrno(err, "lock " + path.string());
  }
  lock_fd_ = fd;
  return Status::Ok();
}

Status ObjectStore::Prepare() {
  if (Status s = EnsureDirectory(root_ / "objects"); !s.ok()) return s;
  if (Status s = EnsureDirectory(root_ / "tmp"); !s.ok()) return s;
  // The fan-out directories up front, so that storing an object never creates one (two more
  // fsyncs on the acknowledgement path).
  static const char kHex[] = "0123456789abcdef";
  bool created = false;
  for (int i = 0; i < 256; ++i) {
    const char name[] = {kHex[i >> 4], kHex[i & 15], '\0'};
    fs::path dir = root_ / "objects" / name;
    if (::mkdir(dir.c_str(), 0750) == 0) {
      created = true;
    } else if (errno != EEXIST) {
      return Status::FromErrno(errno, "mkdir " + dir.string());
    }
  }
  return created ? SyncPath(root_ / "objects") : Status::Ok();
}

Status ObjectStore::UseSegments(uint64_t segment_bytes, bool prewrite, uint64_t keep_free_bytes) {
  segments_.reset();
  if (segment_bytes == 0) return Status::Ok();
  auto pool = std::make_unique<SegmentPool>(root_ / "segments", segment_bytes, prewrite, keep_free_bytes);
  if (Status s = pool->Start(); !s.ok()) return s;
  segments_ = std::move(pool);
  return Status::Ok();
}

fs::path ObjectStore::NewTempPath() const {
  uint64_t n = temp_counter_.fetch_add(1);
  return root_ / "tmp" / (std::to_string(::getpid()) + "-" + std::to_string(n) + ".part");
}

namespace {

std::string HexDigest(const std::string& sop_instance_uid) {
  // Fetched once: EVP_sha256() makes every digest look the implementation up again (OpenSSL 3),
  // under the method store's locks, and the digest is taken for every received object.
  static EVP_MD* const fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(sop_instance_uid.data(), sop_instance_uid.size(), digest, &len, fetched ? fetched : EVP_sha256(), nullptr);
  static const char kHex[] = "0123456789abcdef";
  std::string hex(2 * len, '\0');
  for (unsigned int i = 0; i < len; ++i) {
    hex[2 * i] = kHex[digest[i] >> 4];
    hex[2 * i + 1] = kHex[digest[i] & 15];
  }
  return hex;
}

}  // namespace

std::string ObjectStore::RelativePathFor(const std::string& sop_instance_uid) {
  const std::string hex = HexDigest(sop_instance_uid);
  return "objects/" + hex.substr(0, 2) + "/" + hex + ".dcm";
}

std::string ObjectStore::InIndexPathFor(const std::string& sop_instance_uid) {
  return "index:" + HexDigest(sop_instance_uid);
}

std::string ObjectStore::InSegmentPathFor(const std::string& segment_name, uint64_t offset, uint64_t length) {
  return "segments/" + segment_name + "@" + std::to_string(offset) + "+" + std::to_string(length);
}

// "segments/<name>@<offset>+<length>" -> the segment's relative path, offset and length.
bool ObjectStore::ParseInSegmentPath(const std::string& relative_path, std::string* file, uint64_t* offset,
                                     uint64_t* length) {
  const size_t at = relative_path.rfind('@');
  const size_t plus = relative_path.find('+', at);
  if (at == std::string::npos || plus == std::string::npos) return false;
  const char* end = relative_path.data() + relative_path.size();
  auto number = [](const char* first, const char* last, uint64_t* out) {
    auto [p, ec] = std::from_chars(first, last, *out);
    return ec == std::errc() && p == last && first != last;
  };
  if (!number(relative_path.data() + at + 1, relative_path.data() + plus, offset) ||
      !number(relative_path.data() + plus + 1, end, length)) {
    return false;
  }
  *file = relative_path.substr(0, at);
  // No way out of segments/: one name, no "..".
  return file->find('/', 9) == std::string::npos && file->size() > 9 && *file != "segments/.." && *file != "segments/.";
}

Result<ObjectHandle> ObjectStore::Open(const std::string& relative_path) const {
  if (InSegment(relative_path)) {
    std::string file;
    uint64_t offset = 0, length = 0;
    if (!ParseInSegmentPath(relative_path, &file, &offset, &length)) {
      return Status::Corruption("malformed segment path: " + relative_path);
    }
    fs::path path = root_ / file;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) return Status::NotFound("segment file missing: " + path.string());
      return Status::FromErrno(errno, "cannot read segment file " + path.string());
    }
    if (!S_ISREG(st.st_mode)) return Status::IOError("segment file is not a regular file: " + path.string());
    if (offset > static_cast<uint64_t>(st.st_size) || length > static_cast<uint64_t>(st.st_size) - offset) {
      return Status::IOError("segment file " + path.string() + " ends before the object at " + relative_path);
    }
    return ObjectHandle::Range(std::move(path), offset, length);
  }
  if (!InIndex(relative_path)) {
    fs::path path = root_ / relative_path;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || ::access(path.c_str(), R_OK) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) return Status::NotFound("object file missing: " + path.string());
      return Status::FromErrno(errno, "cannot read object file " + path.string());
    }
    // Something else in its place (a directory opens, then every read fails): unreadable, not missing.
    if (!S_ISREG(st.st_mode)) return Status::IOError("object file is not a regular file: " + path.string());
    return ObjectHandle::File(std::move(path));
  }
  if (!index_) return Status::NotFound("no index to read " + relative_path + " from");
  Result<ObjectHandle> handle = Status::NotFound("no data in the index for " + relative_path);
  Status s = index_->ReadObjectData(relative_path, [&handle](std::string_view bytes) {
    handle = ObjectHandle::Memory(bytes);
    return handle.ok() ? Status::Ok() : handle.status();
  });
  if (!s.ok()) return s;
  return handle;
}

Result<ObjectStore::Placed> ObjectStore::Place(const fs::path& temp, const std::string& relative_path) {
  if (Status s = SyncPath(temp); !s.ok()) return s;
  fs::path final_path = root_ / relative_path;
  fs::path dir = final_path.parent_path();
  // link(), unlike rename(), refuses to replace: two senders racing with one UID cannot
  // overwrite each other's object.
  int rc = ::link(temp.c_str(), final_path.c_str());
  if (rc != 0 && errno == ENOENT) {  // a fan-out directory removed by hand
    if (Status s = EnsureDirectory(dir); !s.ok()) return s;
    rc = ::link(temp.c_str(), final_path.c_str());
  }
  if (rc != 0) {
    if (errno == EEXIST) return Placed::kExisting;
    return Status::FromErrno(errno, "link " + final_path.string());
  }
  ::unlink(temp.c_str());
  if (Status s = SyncPath(dir); !s.ok()) {
    // Refused, so not left under its name: a re-send would find it and index a file whose
    // entry was never made durable.
    ::unlink(final_path.c_str());
    return s;
  }
  return Placed::kNew;
}

bool TempNameHoldsPlacedObject(const struct stat& temp, const struct stat* placed) {
  return placed != nullptr && placed->st_dev == temp.st_dev && placed->st_ino == temp.st_ino && temp.st_nlink < 2;
}

ObjectStore::TempCleanup ObjectStore::RemoveTempFiles() {
  TempCleanup done;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(root_ / "tmp", ec)) {
    if (!e.is_regular_file()) continue;
    struct stat temp {};
    if (::lstat(e.path().c_str(), &temp) != 0) continue;
    // Only a whole object can have been placed: a cut-short reception does not parse.
    if (Result<InstanceSummary> summary = ReadInstanceSummary(e.path()); summary.ok()) {
      const fs::path placed_path = root_ / RelativePathFor(summary->sop_instance_uid);
      struct stat placed {};
      const bool exists = ::lstat(placed_path.c_str(), &placed) == 0;
      if (TempNameHoldsPlacedObject(temp, exists ? &placed : nullptr)) {
        ++done.kept;
        spdlog::error(
            "recovery: kept {}: it is a second name of {} whose link count is 1 (a crash on a file "
            "system without a journal); removing it would free the object: run fsck on {}",
            e.path().string(), placed_path.string(), root_.string());
        continue;
      }
    }
    if (fs::remove(e.path(), ec)) ++done.removed;
  }
  return done;
}

Status ObjectStore::ForEachObject(const std::function<void(const std::string&)>& fn) const {
  std::error_code ec;
  fs::recursive_directory_iterator it(root_ / "objects", ec), end;
  if (ec) return Status::IOError("cannot list " + (root_ / "objects").string() + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) return Status::IOError("cannot list objects: " + ec.message());
    if (it->is_regular_file() && it->path().extension() == ".dcm") {
      fn(it->path().lexically_relative(root_).string());
    }
  }
  return Status::Ok();
}

Result<uint64_t> ObjectStore::FreeBytes() const {
  struct statvfs st {};
  if (::statvfs(root_.c_str(), &st) != 0) return Status::FromErrno(errno, "statvfs " + root_.string());
  return static_cast<uint64_t>(st.f_bavail) * st.f_frsize + (segments_ ? segments_->UnusedAllocatedBytes() : 0);
}

}  // namespace teleread
