#pragma once
// Segment files: where received file-tier objects are appended (store/README.md), so that storing
// one creates no file, links no name and fsyncs no directory: its bytes go at the end of the
// segment its association holds, and one fdatasync makes them durable before its index row names
// them ("segments/<name>@<offset>+<length>"); in a pre-written segment on the index's device not
// even that: the index commit's own sync does (Segment::durable_with_index).
//
// A segment is written by one association at a time (a Lease), object after object from aligned
// offsets, up to segment_bytes; a lease given back with room left is handed to the next taker.
// New segments are made ready by a background thread: created as "<name>.prep", allocated whole
// (fallocate, on ext4 and XFS) or pre-written with zeros and fdatasync'd when `prewrite` is on (an
// overwrite of written blocks then needs no metadata in its fdatasync), renamed and the directory
// fsync'd. Each process writes only
// segments it made: one an earlier process left is never written again, so no row can point
// into space that is being reused. Space an object took whose row was never written (a
// refusal, a crash before the row) stays unused; nothing names it.
//
// Thread-safety: SegmentPool's methods may be called concurrently; a Lease belongs to one thread.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"

namespace teleread {

struct Segment {
  std::string name;  // under segments/
  int fd = -1;       // open for writing while the process runs
  uint64_t capacity = 0;
  // The first byte no object of this process uses; a multiple of kAlign. Written by its lease's
  // thread only; atomic for SegmentPool::UnusedAllocatedBytes.
  std::atomic<uint64_t> next{0};
  // Pre-written, on the index's device: an object written here wholly with O_DIRECT is durable
  // once the index's next commit has synced (its fsync flushes the device's write cache, and
  // the object's blocks need no metadata), so it needs no fdatasync of its own.
  bool durable_with_index = false;
  // Its whole capacity allocated (fallocate'd, or pre-written): writes into it extend nothing, so
  // direct ones run asynchronously (DirectFile::Begin's in_place). Its size is its capacity until
  // it is given back full or retired, when what no object used is cut off.
  bool in_place = false;
  ~Segment();
};

class SegmentPool {
 public:
  static constexpr uint64_t kAlign = 4096;
  // `dir`: the segments/ directory. `keep_free_bytes`: no segment is made that would leave the
  // file system with less (the file tier's ENOSPC answer takes over).
  SegmentPool(std::filesystem::path dir, uint64_t segment_bytes, bool prewrite, uint64_t keep_free_bytes);
  ~SegmentPool();  // stops the preparer; segments' unused tails are cut off
  SegmentPool(const SegmentPool&) = delete;
  SegmentPool& operator=(const SegmentPool&) = delete;

  // Creates the directory, removes leftover ".prep" files, starts the preparer.
  Status Start();

  // A segment to append to: one given back with room, else a ready one (waiting up to `wait` for
  // the preparer). Null when none could be made (a full disk): the object goes to the file tier.
  std::unique_ptr<Segment> Take(std::chrono::milliseconds wait);
  // Given back by a lease: kept for the next taker while it has room left.
  void Give(std::unique_ptr<Segment> segment);
  // Written no more (it could not take an object): its unused pre-written tail is cut off.
  void Retire(std::unique_ptr<Segment> segment);

  const std::filesystem::path& dir() const { return dir_; }
  // Space allocated to segments (in_place) that no object uses yet, ready, leased or given back:
  // counted as used by the file system, free for objects that go there.
  uint64_t UnusedAllocatedBytes() const;
  // What seals each object's trailer (segment_trailer.h): loaded, or made, by Start.
  const std::string& trailer_key() const { return trailer_key_; }

  // One association's segment: taken at its first spilled object, given back when it ends.
  class Lease {
   public:
    explicit Lease(SegmentPool* pool) : pool_(pool) {}
    ~Lease() { Release(); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    // The segment to write the next object into (taken if needed); null: none (use a file).
    Segment* Get();
    // The segment cannot take the object being written, which goes to a file: the next Get takes
    // another one.
    void Retire();
    void Release();
    const std::filesystem::path& dir() const { return pool_->dir(); }
    const std::string& trailer_key() const { return pool_->trailer_key(); }

   private:
    SegmentPool* pool_;
    std::unique_ptr<Segment> segment_;
  };

 private:
  void Prepare();
  void Cut(std::unique_ptr<Segment> segment);  // its unused tail, and it leaves allocated_ (mu_ held)
  Result<std::unique_ptr<Segment>> MakeSegment();
  std::string NewName();

  const std::filesystem::path dir_;
  const uint64_t segment_bytes_;
  const bool prewrite_;
  const uint64_t keep_free_bytes_;
  const std::string name_prefix_;
  bool sync_shared_ = false;  // pre-written segments' objects need no fdatasync (Start)
  bool allocate_ = false;     // fallocate takes whole segments here: ext4 or XFS (Start)
  std::string trailer_key_;

  mutable std::mutex mu_;
  std::condition_variable wanted_, ready_cv_;
  std::deque<std::unique_ptr<Segment>> partly_used_;
  std::deque<std::unique_ptr<Segment>> ready_;
  std::vector<const Segment*> allocated_;  // every in_place segment not cut yet, wherever it is
  int waiting_ = 0;                        // takers waiting for the preparer
  bool failed_ = false;                    // the last attempt to make one failed: takers do not wait
  bool stop_ = false;
  uint64_t made_ = 0;
  uint64_t counter_ = 0;
  std::thread preparer_;
};

}  // namespace teleread
