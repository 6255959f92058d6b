#include "server/store/segments.h"

#include "server/store/segment_trailer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "common/log.h"
#include "server/store/object_store.h"

namespace teleread {
namespace fs = std::filesystem;

namespace {

constexpr size_t kZeroChunk = 1 << 20;
constexpr decltype(statfs::f_type) kExt4Magic = 0xEF53, kXfsMagic = 0x58465342;
// A segment given back with less room goes no further: a spilling object brings up to
// small_object_bytes (128 KiB by default) at once.
constexpr uint64_t kKeepRoom = 256 * 1024;

// "20261206T122233": a new name per process start, sortable by when its segments were made.
std::string StartStamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%S", &tm);
  return std::string(buf) + "-" + std::to_string(::getpid());
}

// Zeros over the whole file, written with O_DIRECT where the file system takes it.
int Prewrite(int fd, uint64_t bytes) {
  void* zeros = std::aligned_alloc(SegmentPool::kAlign, kZeroChunk);
  if (zeros == nullptr) return ENOMEM;
  std::memset(zeros, 0, kZeroChunk);
  const int flags = ::fcntl(fd, F_GETFL);
  const bool direct = flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_DIRECT) == 0;
  int err = 0;
  for (uint64_t at = 0; at < bytes && err == 0;) {
    const ssize_t n =
        ::pwrite(fd, zeros, static_cast<size_t>(std::min<uint64_t>(kZeroChunk, bytes - at)), static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) err = n < 0 ? errno : ENOSPC;
    if (n > 0) at += static_cast<uint64_t>(n);
  }
  std::free(zeros);
  if (direct) ::fcntl(fd, F_SETFL, flags);
  return err;
}

}  // namespace

Segment::~Segment() {
  if (fd >= 0) ::close(fd);
}

SegmentPool::SegmentPool(fs::path dir, uint64_t segment_bytes, bool prewrite, uint64_t keep_free_bytes)
    : dir_(std::move(dir)),
      segment_bytes_((segment_bytes + kAlign - 1) / kAlign * kAlign),
      prewrite_(prewrite),
      keep_free_bytes_(keep_free_bytes),
      name_prefix_(StartStamp()) {}

SegmentPool::~SegmentPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wanted_.notify_all();
  if (preparer_.joinable()) preparer_.join();
  // Nothing is written any more: an allocated tail past the last object holds nothing.
  for (auto& s : partly_used_) Retire(std::move(s));
  {
    std::lock_guard<std::mutex> lock(mu_);
    allocated_.clear();  // the ready ones go next, and no lease is left
  }
  bool removed = false;
  for (auto& s : ready_) removed |= ::unlink((dir_ / s->name).c_str()) == 0;
  if (removed) (void)SyncPath(dir_);
}

Status SegmentPool::Start() {
  std::error_code ec;
  if (!fs::is_directory(dir_)) {
    if (::mkdir(dir_.c_str(), 0750) != 0 && errno != EEXIST) return Status::FromErrno(errno, "mkdir " + dir_.string());
    if (Status s = SyncPath(dir_.parent_path()); !s.ok()) return s;
  }
  Result<std::string> key = SegmentTrailerKey(dir_, true);
  if (!key.ok()) return key.status();
  trailer_key_ = std::move(key.value());
  // A segment whose preparation a crash cut short, or one made ready and never written (a
  // growing one still empty): no row can name them.
  for (const fs::directory_entry& e : fs::directory_iterator(dir_, ec)) {
    const bool empty = e.path().extension() == ".seg" && e.is_regular_file(ec) && e.file_size(ec) == 0 && !ec;
    if (e.path().extension() == ".prep" || empty) fs::remove(e.path(), ec);
  }
  // A flush covers a pre-written segment's direct overwrites where they need no metadata and
  // reach the device at once: ext4 and XFS (not copy-on-write file systems, nor tmpfs, which
  // takes O_DIRECT and caches anyway), on the device of the index (the storage root).
  struct stat segments {
  }, root{};
  struct statfs fs {};
  // Not elsewhere: tmpfs would hold a whole segment in memory, a copy-on-write one gains nothing.
  allocate_ = ::statfs(dir_.c_str(), &fs) == 0 && (fs.f_type == kExt4Magic || fs.f_type == kXfsMagic);
  sync_shared_ = allocate_ && ::stat(dir_.c_str(), &segments) == 0 && ::stat(dir_.parent_path().c_str(), &root) == 0 &&
                 segments.st_dev == root.st_dev;
  preparer_ = std::thread([this] { Prepare(); });
  return Status::Ok();
}

std::string SegmentPool::NewName() { return name_prefix_ + "-" + std::to_string(++counter_) + ".seg"; }

Result<std::unique_ptr<Segment>> SegmentPool::MakeSegment() {
  struct statvfs st {};
  if (::statvfs(dir_.c_str(), &st) != 0) return Status::FromErrno(errno, "statvfs " + dir_.string());
  const uint64_t free = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  if (free < keep_free_bytes_ + segment_bytes_) return Status::NoSpace("too little free space for a segment");
  std::string name;
  {
    std::lock_guard<std::mutex> lock(mu_);
    name = NewName();
  }
  fs::path prep = dir_ / (name + ".prep");
  auto segment = std::make_unique<Segment>();
  segment->name = name;
  segment->capacity = segment_bytes_;
  for (int tries = 0; (segment->fd = ::open(prep.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640)) < 0; ++tries) {
    if (errno != EEXIST || tries > 100) return Status::FromErrno(errno, "create " + prep.string());
    std::lock_guard<std::mutex> lock(mu_);
    name = NewName();
    prep = dir_ / (name + ".prep");
  }
  int err = 0;
  if (prewrite_) {
    err = Prewrite(segment->fd, segment_bytes_);
    if (err == 0 && ::fdatasync(segment->fd) != 0) err = errno;
    segment->durable_with_index = sync_shared_;
    // Asynchronous direct writes only where a refusal at completion cannot happen (ext4, XFS).
    segment->in_place = err == 0 && allocate_;
  } else if (allocate_) {
    // ENOSPC: not made (the file tier's answer takes over); another refusal: a growing segment.
    int r;
    while ((r = ::fallocate(segment->fd, 0, 0, static_cast<off_t>(segment_bytes_))) != 0 && errno == EINTR) {
    }
    if (r == 0) {
      segment->in_place = true;
    } else if (errno == ENOSPC) {
      err = ENOSPC;
    }
  }
  // Never over a segment of an earlier process (the same second and pid after a restart, a clock
  // set back): its rows name its bytes. Another name then.
  while (err == 0 && ::renameat2(AT_FDCWD, prep.c_str(), AT_FDCWD, (dir_ / name).c_str(), RENAME_NOREPLACE) != 0) {
    if (errno != EEXIST) {
      err = errno;
      break;
    }
    std::lock_guard<std::mutex> lock(mu_);
    name = NewName();
  }
  segment->name = name;
  if (err != 0) {
    ::unlink(prep.c_str());
    return Status::FromErrno(err, "prepare segment " + prep.string());
  }
  // Its name must be durable before a row names it.
  if (Status s = SyncPath(dir_); !s.ok()) {
    ::unlink((dir_ / name).c_str());
    return s;
  }
  return segment;
}

void SegmentPool::Prepare() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    // One ready ahead of the next taker (from the first one on; from the start when pre-written,
    // which takes a while), and one for each taker waiting.
    wanted_.wait(
        lock, [this] { return stop_ || ((made_ > 0 || waiting_ > 0 || prewrite_) && ready_.size() < 1u + waiting_); });
    if (stop_) return;
    lock.unlock();
    Result<std::unique_ptr<Segment>> made = MakeSegment();
    lock.lock();
    if (made.ok()) {
      ++made_;
      failed_ = false;
      if (made.value()->in_place) allocated_.push_back(made.value().get());
      ready_.push_back(std::move(made.value()));
    } else {
      failed_ = true;
      spdlog::warn("no new segment: {}; objects go to files meanwhile", made.status().ToString());
    }
    ready_cv_.notify_all();
    if (!made.ok()) {
      // Tried again when a taker asks, at most every few seconds.
      wanted_.wait_for(lock, std::chrono::seconds(5), [this] { return stop_; });
      if (stop_) return;
      failed_ = false;
      wanted_.wait(lock, [this] { return stop_ || waiting_ > 0; });
    }
  }
}

std::unique_ptr<Segment> SegmentPool::Take(std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock(mu_);
  std::unique_ptr<Segment> taken;
  if (!partly_used_.empty()) {
    taken = std::move(partly_used_.front());
    partly_used_.pop_front();
    return taken;
  }
  if (ready_.empty() && !failed_) {
    ++waiting_;
    wanted_.notify_all();
    ready_cv_.wait_for(lock, wait, [this] { return stop_ || failed_ || !ready_.empty(); });
    --waiting_;
  }
  if (ready_.empty()) return nullptr;
  taken = std::move(ready_.front());
  ready_.pop_front();
  wanted_.notify_all();  // the next one
  return taken;
}

void SegmentPool::Give(std::unique_ptr<Segment> segment) {
  if (!segment) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (segment->next + kKeepRoom <= segment->capacity) {
    partly_used_.push_back(std::move(segment));
    return;
  }
  Cut(std::move(segment));
}

void SegmentPool::Retire(std::unique_ptr<Segment> segment) {
  if (!segment) return;
  std::lock_guard<std::mutex> lock(mu_);
  Cut(std::move(segment));
}

void SegmentPool::Cut(std::unique_ptr<Segment> segment) {
  // No one writes it any more: an allocated tail past its last object holds nothing. (Lost in a
  // crash, the cut only leaves that tail in place: the next start's scan cuts it.)
  if (!segment->in_place) return;
  (void)::ftruncate(segment->fd, static_cast<off_t>(segment->next.load()));
  allocated_.erase(std::remove(allocated_.begin(), allocated_.end(), segment.get()), allocated_.end());
}

uint64_t SegmentPool::UnusedAllocatedBytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t unused = 0;
  for (const Segment* s : allocated_) unused += s->capacity - std::min(s->capacity, s->next.load());
  return unused;
}

Segment* SegmentPool::Lease::Get() {
  if (!segment_ && pool_) segment_ = pool_->Take(std::chrono::seconds(2));
  return segment_.get();
}

void SegmentPool::Lease::Retire() {
  if (pool_) pool_->Retire(std::move(segment_));
  segment_.reset();
}

void SegmentPool::Lease::Release() {
  if (pool_ && segment_) pool_->Give(std::move(segment_));
  segment_.reset();
}

}  // namespace teleread
