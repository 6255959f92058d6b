#include "server/store/direct_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <utility>
#include <string_view>

#include "common/write_all.h"

namespace teleread {

DirectFile::~DirectFile() {
  if (fd_ >= 0) ::close(fd_);
}

int DirectFile::Create(const std::filesystem::path& path, bool direct) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd_ < 0) return errno;
  if (direct) {
    buffer_ = {static_cast<char*>(std::aligned_alloc(kAlign, kChunk)), &std::free};
    if (!buffer_) return ENOMEM;
  }
  return 0;
}

int DirectFile::WriteHead() {
  if (int err = WriteAll(fd_, std::string_view(buffer_.get(), used_)); err != 0) return err;
  offset_ += used_;
  used_ = 0;
  // EINVAL: a file system without O_DIRECT; the rest goes the ordinary way too.
  const int flags = ::fcntl(fd_, F_GETFL);
  direct_ = flags >= 0 && ::fcntl(fd_, F_SETFL, flags | O_DIRECT) == 0;
  if (!direct_) buffer_.reset();
  return 0;
}

int DirectFile::DropDirect() {
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags < 0 || ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) != 0) return errno;
  direct_ = false;
  return 0;
}

// Writes the buffer: with O_DIRECT whole blocks (the last one zero-padded; Finish cuts the
// padding); a write refused or cut short mid-block goes on the ordinary way from the last whole block.
int DirectFile::WriteBuffer() {
  size_t done = 0;
  if (direct_) {
    const size_t padded = (used_ + kAlign - 1) / kAlign * kAlign;
    std::memset(buffer_.get() + used_, 0, padded - used_);
    while (done < used_) {
      const ssize_t n = ::write(fd_, buffer_.get() + done, padded - done);
      if (n < 0 && errno == EINTR) continue;
      if (n > 0 && static_cast<size_t>(n) % kAlign == 0) {
        done += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno != EINVAL) return errno;
      if (n > 0 && done + static_cast<size_t>(n) >= used_) {  // only padding left out
        done = used_;
        break;
      }
      if (n > 0) done += static_cast<size_t>(n) / kAlign * kAlign;
      const auto at = static_cast<off_t>(offset_ + done);
      if (int err = DropDirect(); err != 0) return err;
      if (::ftruncate(fd_, at) != 0 || ::lseek(fd_, at, SEEK_SET) != at) return errno;
      break;
    }
    done = std::min(done, used_);
  }
  if (int err = WriteAll(fd_, std::string_view(buffer_.get() + done, used_ - done)); err != 0) return err;
  offset_ += used_;
  used_ = 0;
  return 0;
}

int DirectFile::Append(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  size_ += n;
  if (!buffer_) return WriteAll(fd_, std::string_view(p, n));
  while (n > 0 && buffer_) {
    const size_t fill = offset_ == 0 ? kHead : kChunk;
    const size_t take = std::min(n, fill - used_);
    std::memcpy(buffer_.get() + used_, p, take);
    used_ += take;
    p += take;
    n -= take;
    if (used_ == fill) {
      if (int err = offset_ == 0 ? WriteHead() : WriteBuffer(); err != 0) return err;
    }
  }
  return n > 0 ? WriteAll(fd_, std::string_view(p, n)) : 0;
}

int DirectFile::Finish() {
  int err = 0;
  if (buffer_ && used_ > 0) err = offset_ == 0 ? WriteAll(fd_, std::string_view(buffer_.get(), used_)) : WriteBuffer();
  // A padded last block leaves the file longer than its bytes.
  if (err == 0 && ::ftruncate(fd_, static_cast<off_t>(size_)) != 0) err = errno;
  if (::close(std::exchange(fd_, -1)) != 0 && err == 0) err = errno;
  return err;
}

}  // namespace teleread
