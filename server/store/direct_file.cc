#include "server/store/direct_file.h"

#include <fcntl.h>
#include <linux/aio_abi.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string_view>
#include <utility>
#include <vector>

#include "common/log.h"
#include "common/write_all.h"

namespace teleread {
namespace {

std::atomic<size_t> g_live_buffers{0};

void FreeBuffer(void* buffer) {
  if (buffer == nullptr) return;
  std::free(buffer);
  g_live_buffers.fetch_sub(1, std::memory_order_relaxed);
}

struct CachedBuffers {
  char* buffers[2] = {nullptr, nullptr};
  ~CachedBuffers() {
    for (char* b : buffers) FreeBuffer(b);
  }
};
thread_local CachedBuffers t_cached;

// A buffer the kernel may still read (a write whose completion was never reaped): never freed
// nor reused, and kept reachable rather than leaked (the list itself is never destroyed, so
// that it still holds them when LeakSanitizer looks, after static destructors).
void Abandon(char* buffer) {
  if (buffer == nullptr) return;
  static std::mutex mu;
  static auto* abandoned = new std::vector<char*>;
  std::lock_guard<std::mutex> lock(mu);
  abandoned->push_back(buffer);
}

long KernelSubmit(unsigned long ctx, long n, iocb** list) { return ::syscall(SYS_io_submit, ctx, n, list); }
long KernelGetEvents(unsigned long ctx, long min_nr, long nr, io_event* events) {
  return ::syscall(SYS_io_getevents, ctx, min_nr, nr, events, nullptr);
}
long KernelSetup(unsigned nr, unsigned long* ctx) { return ::syscall(SYS_io_setup, nr, ctx); }
std::chrono::steady_clock::time_point SteadyNow() { return std::chrono::steady_clock::now(); }
constexpr AioCalls kKernelAio{&KernelSubmit, &KernelGetEvents, &KernelSetup, &SteadyNow};

// A test's stand-in where it gives one, else the kernel's call.
template <typename Fn>
Fn Pick(const AioCalls* calls, Fn AioCalls::*member) {
  return calls != nullptr && calls->*member != nullptr ? calls->*member : kKernelAio.*member;
}

}  // namespace

// The thread's Linux AIO context, made at its first asynchronous file (refused with EAGAIN: at
// its first one 10 s later) and used by one user at a time. io_destroy waits for what is still in
// flight; no user leaves anything in flight.
struct AioContext {
  aio_context_t ctx = 0;
  // io_setup fails when the system's aio-max-nr is reached: tried again after a while, not per object.
  std::chrono::steady_clock::time_point next_try{};
  const void* user = nullptr;  // a DirectFile or a PendingSync
  ~AioContext() {
    if (ctx != 0) ::syscall(SYS_io_destroy, ctx);
  }
};

namespace {

thread_local AioContext t_aio;

// The thread's context, free for a new user; null where the kernel has none for us (or it is
// in use). Released through the pointer: a user may end on another thread.
AioContext* TakeThreadAio(const void* user, const AioCalls* calls = nullptr) {
  const auto now = Pick(calls, &AioCalls::now);
  if (t_aio.ctx == 0 && now() >= t_aio.next_try) {
    if (Pick(calls, &AioCalls::setup)(4, &t_aio.ctx) != 0) {
      const int err = errno;
      t_aio.ctx = 0;
      // ENOSYS (a kernel without AIO) does not change; EAGAIN (aio-max-nr) may.
      t_aio.next_try = err == EAGAIN ? now() + std::chrono::seconds(10) : std::chrono::steady_clock::time_point::max();
      static std::atomic<bool> logged{false};
      if (!logged.exchange(true)) spdlog::warn("no Linux AIO (io_setup: {}): segment writes wait for the disk", err);
    }
  }
  if (t_aio.ctx == 0 || t_aio.user != nullptr) return nullptr;
  t_aio.user = user;
  return &t_aio;
}

void ReleaseAio(AioContext*& aio, const void* user) {
  if (aio != nullptr && aio->user == user) aio->user = nullptr;
  aio = nullptr;
}

// io_getevents failed with operations in flight (it cannot, short of a kernel fault): the context
// is given up for good, not destroyed, so that nothing it still runs is reaped as another's.
void Poison(AioContext*& aio) {
  aio->ctx = 0;
  aio->next_try = std::chrono::steady_clock::time_point::max();
  aio->user = nullptr;
  aio = nullptr;
}

}  // namespace

PendingSync::PendingSync(int fd) {
  if ((aio_ = TakeThreadAio(this)) != nullptr) {
    iocb cb{};
    cb.aio_lio_opcode = IOCB_CMD_FDSYNC;
    cb.aio_fildes = static_cast<uint32_t>(fd);
    iocb* list[1] = {&cb};
    if (::syscall(SYS_io_submit, aio_->ctx, 1, list) == 1) {
      async_ = pending_ = true;
      return;
    }
    ReleaseAio(aio_, this);
  }
  if (::fdatasync(fd) != 0) result_ = errno;
}

int PendingSync::Wait() {
  if (pending_) {
    io_event event{};
    long n;
    do {
      n = ::syscall(SYS_io_getevents, aio_->ctx, 1, 1, &event, nullptr);
    } while (n < 0 && errno == EINTR);
    pending_ = false;
    result_ = n != 1 ? EIO : event.res < 0 ? static_cast<int>(-event.res) : 0;
    if (n != 1) {
      Poison(aio_);
    } else {
      ReleaseAio(aio_, this);
    }
  }
  if (fail_for_test_ != 0) result_ = std::exchange(fail_for_test_, 0);
  if (on_wait_for_test_) on_wait_for_test_();
  return result_;
}

char* DirectFile::TakeBuffer() {
  for (char*& kept : t_cached.buffers) {
    if (kept != nullptr) return std::exchange(kept, nullptr);
  }
  char* fresh = static_cast<char*>(std::aligned_alloc(kAlign, kChunk));
  if (fresh != nullptr) g_live_buffers.fetch_add(1, std::memory_order_relaxed);
  return fresh;
}

void DirectFile::KeepBuffer(void* buffer) {
  for (char*& kept : t_cached.buffers) {
    if (kept == nullptr) {
      kept = static_cast<char*>(buffer);
      return;
    }
  }
  FreeBuffer(buffer);
}

void DirectFile::ReleaseCachedBuffer() {
  for (char*& kept : t_cached.buffers) FreeBuffer(std::exchange(kept, nullptr));
}

size_t DirectFile::LiveBuffers() { return g_live_buffers.load(std::memory_order_relaxed); }

size_t DirectFile::CachedBytes() {
  size_t n = 0;
  for (const char* kept : t_cached.buffers) n += kept != nullptr ? kChunk : 0;
  return n;
}

DirectFile::~DirectFile() {
  WaitAll();  // the kernel must not write from buffers freed under it
  ReleaseAio(aio_, this);
  if (fd_ >= 0 && owned_) ::close(fd_);
}

int DirectFile::Create(const std::filesystem::path& path, bool direct, size_t head) {
  // The buffer first: a failure leaves no file behind.
  if (direct) {
    buffer_ = {TakeBuffer(), &KeepBuffer};
    if (!buffer_) return Fail(ENOMEM);
  }
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd_ < 0) return Fail(errno);
  return Open(direct, head);
}

int DirectFile::Begin(int fd, uint64_t offset, uint64_t room, bool direct, size_t head, bool in_place) {
  owned_ = false;
  if (in_place && direct && write_ == &::pwrite) {
    aio_ = TakeThreadAio(this, aio_calls_);
    async_ = aio_ != nullptr;
  }
  fd_ = fd;
  base_ = offset;
  room_ = room;
  if (direct) {
    buffer_ = {TakeBuffer(), &KeepBuffer};
    if (!buffer_) return Fail(ENOMEM);
  }
  // The last object may have left the flag set.
  if (!direct || head > 0) {
    const int flags = ::fcntl(fd_, F_GETFL);
    if (flags < 0 || ((flags & O_DIRECT) != 0 && ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) != 0)) return Fail(errno);
  }
  return Open(direct, head);
}

int DirectFile::Open(bool direct, size_t head) {
  head_ = std::min(head, kChunk);
  return direct && head_ == 0 ? WriteHead() : 0;
}

int DirectFile::WriteHead() {
  if (int err = PWriteAll(fd_, std::string_view(buffer_.get(), used_), base_ + written_); err != 0) return Fail(err);
  written_ += used_;
  used_ = 0;
  in_head_ = false;
  // EINVAL: a file system without O_DIRECT; the rest goes the ordinary way too.
  const int flags = ::fcntl(fd_, F_GETFL);
  direct_ = flags >= 0 && ::fcntl(fd_, F_SETFL, flags | O_DIRECT) == 0;
  if (!direct_) buffer_.reset();
  return 0;
}

int DirectFile::DropDirect() {
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags < 0 || ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) != 0) return Fail(errno);
  direct_ = false;
  return 0;
}

// Writes the buffer: its whole blocks with O_DIRECT, the rest (Finish's last partial block, or
// what follows a direct write refused or cut short) the ordinary way, from where the file ends.
int DirectFile::WriteBuffer() {
  const size_t whole = used_ / kAlign * kAlign;
  size_t done = 0;
  while (direct_ && done < whole) {
    const ssize_t n = write_(fd_, buffer_.get() + done, whole - done, static_cast<off_t>(base_ + written_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EINVAL) return Fail(errno);
    if (n > 0) {  // the bytes written are in place, aligned or not
      done += static_cast<size_t>(n);
      direct_bytes_ += static_cast<uint64_t>(n);
      if (static_cast<size_t>(n) % kAlign == 0) continue;
    }
    // EINVAL, nothing written, or an unaligned cut: the file position follows what was written.
    if (int err = DropDirect(); err != 0) return err;
  }
  if (done < used_) {
    if (direct_ && DropDirect() != 0) return error_;
    if (int err = PWriteAll(fd_, std::string_view(buffer_.get() + done, used_ - done), base_ + written_ + done);
        err != 0) {
      return Fail(err);
    }
  }
  written_ += used_;
  used_ = 0;
  if (!direct_) buffer_.reset();  // from here on, the ordinary way
  return 0;
}

// The last partial block inside a segment: zeros to the block's end (the segment's space is aligned), one
// direct write, and the object's size unchanged.
int DirectFile::WritePadded() {
  const size_t real = used_;
  const size_t padded = (used_ + kAlign - 1) / kAlign * kAlign;
  std::memset(buffer_.get() + used_, 0, padded - used_);
  used_ = padded;
  const int err = WriteBuffer();
  if (err == 0) written_ -= padded - real;
  return err;
}

// The full buffer, submitted; the caller fills the spare meanwhile (once the disk is done with
// it). Where the kernel refuses a submission, the synchronous path writes the rest of this file.
int DirectFile::Submit() {
  if (!spare_) spare_ = {TakeBuffer(), &KeepBuffer};
  InFlight* slot = nullptr;
  for (InFlight& f : in_flight_) {
    if (f.buffer == nullptr) slot = &f;
  }
  iocb cb{};
  cb.aio_data = slot != nullptr ? static_cast<uint64_t>(slot - in_flight_) : 0;
  cb.aio_lio_opcode = IOCB_CMD_PWRITE;
  cb.aio_fildes = static_cast<uint32_t>(fd_);
  cb.aio_buf = reinterpret_cast<uintptr_t>(buffer_.get());
  cb.aio_nbytes = used_;
  cb.aio_offset = static_cast<int64_t>(base_ + written_);
  iocb* list[1] = {&cb};
  if (!spare_ || slot == nullptr || Pick(aio_calls_, &AioCalls::submit)(aio_->ctx, 1, list) != 1) {
    async_ = false;
    WaitAll();
    return error_ != 0 ? error_ : WriteBuffer();
  }
  *slot = {buffer_.get(), used_};
  ++async_writes_;
  written_ += used_;
  used_ = 0;
  std::swap(buffer_, spare_);
  // The buffer to fill next may be the one still being written.
  for (;;) {
    bool busy = false;
    for (const InFlight& f : in_flight_) busy |= f.buffer == buffer_.get();
    if (!busy) return 0;
    if (int err = Reap(); err != 0) return err;
  }
}

int DirectFile::Reap() {
  io_event events[kInFlight];
  long n;
  do {
    n = Pick(aio_calls_, &AioCalls::getevents)(aio_->ctx, 1, kInFlight, events);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    // Cannot happen with writes in flight. The file fails; its buffers are never used again
    // (the kernel may still read them), nor is the context.
    const int err = n < 0 ? errno : EIO;
    Poison(aio_);
    async_ = false;
    Abandon(buffer_.release());
    Abandon(spare_.release());
    for (InFlight& f : in_flight_) f = {};
    return Fail(err);
  }
  for (long i = 0; i < n; ++i) {
    InFlight& f = in_flight_[events[i].data % kInFlight];
    int64_t res = events[i].res;
    if (async_fail_for_test_ != 0) res = -std::exchange(async_fail_for_test_, 0);
    if (res == static_cast<int64_t>(f.bytes)) {
      direct_bytes_ += f.bytes;
    } else if (error_ == 0) {
      // A short write into allocated room has no cause but a failing device.
      error_ = res < 0 ? static_cast<int>(-res) : EIO;
    }
    f = {};
  }
  return error_;
}

void DirectFile::WaitAll() {
  for (;;) {
    bool any = false;
    for (const InFlight& f : in_flight_) any |= f.buffer != nullptr;
    if (!any) return;
    Reap();
  }
}

int DirectFile::Append(const void* data, size_t n) {
  if (error_ != 0) return error_;
  const char* p = static_cast<const char*>(data);
  size_ += n;
  while (n > 0 && buffer_) {
    const size_t fill = in_head_ ? head_ : kChunk;
    const size_t take = std::min(n, fill - used_);
    std::memcpy(buffer_.get() + used_, p, take);
    used_ += take;
    p += take;
    n -= take;
    if (used_ == fill) {
      if (int err = in_head_ ? WriteHead() : async_ && direct_ ? Submit() : WriteBuffer(); err != 0) return err;
    }
  }
  if (n == 0) return 0;
  if (int err = PWriteAll(fd_, std::string_view(p, n), base_ + written_); err != 0) return Fail(err);
  written_ += n;
  return 0;
}

int DirectFile::Finish(std::string_view trailer) {
  if (!trailer.empty() && error_ == 0) {
    static const char kZeros[kAlign] = {};
    const uint64_t object = size_;
    const uint64_t slot_end = (size_ + trailer.size() + kAlign - 1) / kAlign * kAlign;
    if (Append(kZeros, static_cast<size_t>(slot_end - size_ - trailer.size())) == 0) {
      Append(trailer.data(), trailer.size());
    }
    size_ = object;
  }
  int err = error_;
  // The last part goes synchronously, from the buffer no write in flight uses (Submit).
  if (err == 0 && buffer_ && used_ > 0) {
    if (in_head_) {
      err = PWriteAll(fd_, std::string_view(buffer_.get(), used_), base_ + written_);
    } else if (!owned_ && direct_) {
      err = WritePadded();
    } else {
      err = WriteBuffer();
    }
  }
  WaitAll();
  if (err == 0) err = error_;
  ReleaseAio(aio_, this);
  buffer_.reset();  // the thread's next file may take them now
  spare_.reset();
  const int fd = std::exchange(fd_, -1);
  if (fd >= 0 && owned_ && ::close(fd) != 0 && err == 0) err = errno;
  return Fail(err);
}

}  // namespace teleread
