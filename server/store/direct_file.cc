#include "server/store/direct_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <utility>

#include "common/write_all.h"

namespace teleread {
namespace {

std::atomic<size_t> g_live_buffers{0};

void FreeBuffer(void* buffer) {
  if (buffer == nullptr) return;
  std::free(buffer);
  g_live_buffers.fetch_sub(1, std::memory_order_relaxed);
}

struct CachedBuffer {
  char* buffer = nullptr;
  ~CachedBuffer() { FreeBuffer(buffer); }
};
thread_local CachedBuffer t_cached;

}  // namespace

char* DirectFile::TakeBuffer() {
  if (char* kept = std::exchange(t_cached.buffer, nullptr)) return kept;
  char* fresh = static_cast<char*>(std::aligned_alloc(kAlign, kChunk));
  if (fresh != nullptr) g_live_buffers.fetch_add(1, std::memory_order_relaxed);
  return fresh;
}

void DirectFile::KeepBuffer(void* buffer) {
  if (t_cached.buffer == nullptr) {
    t_cached.buffer = static_cast<char*>(buffer);
  } else {
    FreeBuffer(buffer);
  }
}

void DirectFile::ReleaseCachedBuffer() { FreeBuffer(std::exchange(t_cached.buffer, nullptr)); }

size_t DirectFile::LiveBuffers() { return g_live_buffers.load(std::memory_order_relaxed); }

size_t DirectFile::CachedBytes() { return t_cached.buffer != nullptr ? kChunk : 0; }

DirectFile::~DirectFile() {
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

int DirectFile::Begin(int fd, uint64_t offset, uint64_t room, bool direct, size_t head) {
  owned_ = false;
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
      if (int err = in_head_ ? WriteHead() : WriteBuffer(); err != 0) return err;
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
  if (err == 0 && buffer_ && used_ > 0) {
    if (in_head_) {
      err = PWriteAll(fd_, std::string_view(buffer_.get(), used_), base_ + written_);
    } else if (!owned_ && direct_) {
      err = WritePadded();
    } else {
      err = WriteBuffer();
    }
  }
  buffer_.reset();  // the thread's next file may take it now
  const int fd = std::exchange(fd_, -1);
  if (fd >= 0 && owned_ && ::close(fd) != 0 && err == 0) err = errno;
  return Fail(err);
}

}  // namespace teleread
