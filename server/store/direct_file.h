#pragma once
// A file written once, front to back, with O_DIRECT: the bytes go from a reused, aligned buffer
// to the disk without passing through the page cache. On this VM a page-cache write spends most
// of its time faulting in fresh guest pages (copy_folio_from_iter_atomic: 25-28% of both cores in
// slow CT cells, 1% in fast ones), and the file's pages had to be written back before its fsync
// anyway. The head (Create's `head` bytes, kHead unless the writer keeps them in memory for the
// parse) goes the ordinary way, through the page cache, where the parse that follows reads it;
// then whole blocks with O_DIRECT; the last partial block (< kAlign) the
// ordinary way again: it lies past the end of the file, so nothing is read back and nothing is
// padded or cut. Where O_DIRECT is refused (by the file system or at a write) the rest of the
// file is written the ordinary way. Not thread-safe: one writer per file.
//
// Begin writes an object into a file that is not its own instead (a segment, store/segments.h):
// from an aligned offset, within a room, the file left open. There a direct last partial block is
// padded with zeros to kAlign and written with O_DIRECT too (the next object starts at the next
// aligned offset; size() stays the object's length), so that nothing of it passes the page cache.
//
// Begin's `in_place`: the room is allocated already (fallocate'd or pre-written), so a direct write
// there extends nothing and Linux runs it asynchronously (io_submit; an extending one would
// block in the call). Each whole chunk is then submitted and the caller fills a second buffer
// while the disk writes the first: an association's receiving no longer waits for its writes,
// ~0.2 ms per 256 KiB on this VM. Finish waits for every write it submitted (so does the
// destructor); an error seen then is the file's error. One such file per thread at a time (the
// thread's AIO context); a second one, or a kernel without AIO, writes synchronously (a thread
// refused a context for want of AIO slots asks again at its next file 10 s or more later).
//
// The buffers outlive the file: each thread keeps the last two it released for its next file, so
// that an association receiving object after object maps and faults them in once (mapping
// and faulting them in per object costs ~7% of the receiver's CPU on CT). ReleaseCachedBuffer
// frees them (a DICOM worker calls it when its association ends).
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string_view>

struct iocb;      // linux/aio_abi.h
struct io_event;  // linux/aio_abi.h

namespace teleread {

struct AioContext;  // a thread's Linux AIO context (direct_file.cc)

// A test's stand-ins for io_submit(2), io_getevents(2) (without a timeout), and for the thread's
// context io_setup(2) and the clock that spaces its retries; each null: the kernel's, steady_clock.
struct AioCalls {
  long (*submit)(unsigned long ctx, long n, iocb** list) = nullptr;
  long (*getevents)(unsigned long ctx, long min_nr, long nr, io_event* events) = nullptr;
  long (*setup)(unsigned nr, unsigned long* ctx) = nullptr;
  std::chrono::steady_clock::time_point (*now)() = nullptr;
};

class DirectFile {
 public:
  // Bytes per disk write: a multiple of the alignment; the buffer's size (RSS per receiving association).
  static constexpr size_t kChunk = 256 * 1024;
  static constexpr size_t kAlign = 4096;  // covers any logical block size up to a page
  // Read back at once by the parse (DCMTK reads 64 KiB at offset 128): kept in the page cache.
  static constexpr size_t kHead = 128 * 1024;
  // pwrite(2), or a test's stand-in that fails on cue: used for the O_DIRECT writes only.
  using WriteFn = ssize_t (*)(int fd, const void* data, size_t n, off_t offset);

  DirectFile() = default;
  ~DirectFile();
  DirectFile(const DirectFile&) = delete;
  DirectFile& operator=(const DirectFile&) = delete;

  // Creates `path` (O_EXCL). 0 or the errno (nothing created then). `head`: bytes written the
  // ordinary way first (0: O_DIRECT from the first byte).
  int Create(const std::filesystem::path& path, bool direct = true, size_t head = kHead);
  // Writes into `fd` (not owned: Finish leaves it open) from `offset`, at most `room` bytes (see
  // Fits). `offset` is a multiple of kAlign, and so is `room` plus the space Finish's trailer
  // takes. 0 or the errno.
  int Begin(int fd, uint64_t offset, uint64_t room, bool direct, size_t head, bool in_place = false);
  // Whether `n` more bytes fit in Begin's room (always, for a file of its own).
  bool Fits(uint64_t n) const { return n <= room_ - size_; }
  // 0 or the errno of the failed write (ENOSPC for a write of nothing). An error is final: every
  // later Append and Finish returns it.
  int Append(const void* data, size_t n);
  // Writes what is buffered, gives the buffer back and closes the file. 0 or the errno.
  // `trailer` (Begin's files): written after the object, ending at the next aligned offset, the
  // bytes between them zeros; size() stays the object's. Begin's room must leave space for it.
  int Finish(std::string_view trailer = {});
  bool direct() const { return direct_; }
  int fd() const { return fd_; }  // open from Create to Finish
  uint64_t size() const { return size_; }
  uint64_t direct_bytes() const { return direct_bytes_; }  // written with O_DIRECT (and completed)
  uint64_t async_writes() const { return async_writes_; }  // of them, submitted asynchronously
  // A stand-in for the synchronous writes: the file then writes synchronously only.
  void set_write_for_test(WriteFn write) { write_ = write; }
  // The next asynchronous write completes with this error instead of its result.
  void fail_next_async_write_for_test(int err) { async_fail_for_test_ = err; }
  // Stand-ins for the kernel's AIO calls (Begin's in_place writes): a test's queue that runs a
  // write only when its completion is asked for sees a buffer refilled before its write is done;
  // a refusing io_setup and a clock the test moves see when the thread's context is asked again.
  void set_aio_for_test(const AioCalls* calls) { aio_calls_ = calls; }
  const void* buffer_for_test() const { return buffer_.get(); }

  // Frees the calling thread's kept buffer, if any.
  static void ReleaseCachedBuffer();
  // Bytes the calling thread keeps for its next file: 0, kChunk or two of them.
  static size_t CachedBytes();
  // Buffers allocated and not yet freed, in the whole process (in use or kept): for /metrics.
  static size_t LiveBuffers();

 private:
  int Open(bool direct, size_t head);
  int WriteHead();
  int WriteBuffer();
  int WritePadded();
  int DropDirect();
  int Submit();
  int Reap();  // waits for one submitted write at least
  void WaitAll();
  int Fail(int err) { return error_ = err; }
  static char* TakeBuffer();
  static void KeepBuffer(void* buffer);  // the deleter: kept for the thread's next file, or freed

  int fd_ = -1;
  bool direct_ = false;
  int error_ = 0;
  WriteFn write_ = &::pwrite;
  bool owned_ = true;  // Create's file, closed by Finish; else Begin's
  uint64_t base_ = 0;  // file offset of the first byte
  uint64_t room_ = UINT64_MAX;
  std::unique_ptr<char, void (*)(void*)> buffer_{nullptr, nullptr};
  size_t head_ = kHead;   // bytes of the head phase, at most kChunk
  bool in_head_ = true;   // before WriteHead
  size_t used_ = 0;       // bytes in buffer_
  uint64_t size_ = 0;     // bytes appended
  uint64_t written_ = 0;  // bytes in the file
  uint64_t direct_bytes_ = 0;
  // Asynchronous writes (Begin's in_place): the spare buffer, and the writes in flight.
  bool async_ = false;
  AioContext* aio_ = nullptr;  // the thread's, from Begin to Finish
  std::unique_ptr<char, void (*)(void*)> spare_{nullptr, nullptr};
  struct InFlight {
    const char* buffer = nullptr;  // null: the slot is free
    size_t bytes = 0;
  };
  static constexpr int kInFlight = 2;  // one write per buffer
  InFlight in_flight_[kInFlight];
  uint64_t async_writes_ = 0;
  int async_fail_for_test_ = 0;
  const AioCalls* aio_calls_ = nullptr;  // null: the kernel's
};

// fdatasync(fd) run by the kernel while the caller goes on (Linux AIO's IOCB_CMD_FDSYNC, on the
// thread's AIO context once DirectFile's writes there are done): a segment object's sync runs
// while its data set is parsed. Wait gives the result; the destructor waits as well. Where the
// context is missing or in use, or the kernel refuses the command, the sync runs at once.
class PendingSync {
 public:
  explicit PendingSync(int fd);
  ~PendingSync() { Wait(); }
  PendingSync(const PendingSync&) = delete;
  PendingSync& operator=(const PendingSync&) = delete;
  int Wait();  // 0 or the errno; the same on every call
  bool started_async() const { return async_; }
  bool pending() const { return pending_; }  // started asynchronously and not waited for yet
  // Wait then gives `err` (once the sync itself is done).
  void fail_for_test(int err) { fail_for_test_ = err; }
  // Called by Wait as it returns.
  void on_wait_for_test(std::function<void()> fn) { on_wait_for_test_ = std::move(fn); }

 private:
  AioContext* aio_ = nullptr;  // while pending
  bool async_ = false;
  bool pending_ = false;
  int result_ = 0;
  int fail_for_test_ = 0;
  std::function<void()> on_wait_for_test_;
};

}  // namespace teleread
