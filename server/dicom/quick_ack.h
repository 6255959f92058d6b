// The plain-TCP connection DCMTK is handed for every accepted association (listener.cc).
#pragma once

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmnet/dcmtrans.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace teleread {

constexpr size_t kPDataHead = 12;  // PDU type, reserved, length; PDV length, context, control

// Whether a write is the two headers of a P-DATA-TF PDU holding one PDV whose value DCMTK
// writes next (it writes the headers and the value separately).
inline bool HeadOfPData(const void* buf, size_t nbyte) {
  if (nbyte != kPDataHead) return false;
  const auto* b = static_cast<const unsigned char*>(buf);
  auto be32 = [b](size_t i) {
    return uint32_t{b[i]} << 24 | uint32_t{b[i + 1]} << 16 | uint32_t{b[i + 2]} << 8 | uint32_t{b[i + 3]};
  };
  return b[0] == 0x04 && be32(6) > 2 && be32(2) == be32(6) + 4;
}

// Senders that leave Nagle on wait for our delayed ACK after every small PDU; acknowledging at
// once after each read removes that ~40 ms stall per object. The option does not stick.
// DCMTK reads a PDU's 6-byte header, then its body, each after a poll: what has arrived is read
// ahead instead. A small object's command and data PDUs then cost one read (and one
// acknowledgement) rather than four reads, four setsockopt and polls when the sender has Nagle
// off; with Nagle on it holds the data PDU until the command PDU is acknowledged, so two reads.
// Bodies at least as long as the buffer are read straight into DCMTK's.
// DCMTK writes a P-DATA-TF PDU as two writes, its 12-byte PDU and PDV headers, then the value:
// the header is held and goes out with the value in one writev (one segment, one wake-up of the
// peer instead of two). DCMTK writes the value at once (the PDU is not complete without it);
// held bytes also go out before any wait for input and at close, so none can wait on the peer.
class QuickAckConnection : public DcmTCPConnection {
 public:
  using WritevFn = ssize_t (*)(int fd, const struct iovec* iov, int count);

  explicit QuickAckConnection(DcmNativeSocketType fd) : DcmTCPConnection(fd), fd_(fd) {}

  ssize_t write(void* buf, size_t nbyte) override {
    if (held_ == 0 && HeadOfPData(buf, nbyte)) {
      std::memcpy(head_, buf, nbyte);
      held_ = nbyte;
      return static_cast<ssize_t>(nbyte);
    }
    return WriteAll(buf, nbyte);
  }
  void set_writev_for_test(WritevFn writev) { writev_ = writev; }
  ssize_t read(void* buf, size_t nbyte) override {
    if (held_ != 0 && WriteAll(nullptr, 0) < 0) return -1;
    if (begin_ == end_) {
      if (nbyte >= sizeof ahead_) return ReadSocket(buf, nbyte);
      const ssize_t n = ReadSocket(ahead_, sizeof ahead_);
      if (n <= 0) return n;
      begin_ = 0;
      end_ = static_cast<size_t>(n);
    }
    const size_t n = std::min(nbyte, end_ - begin_);
    std::memcpy(buf, ahead_ + begin_, n);
    begin_ += n;
    return static_cast<ssize_t>(n);
  }
  // Bytes read ahead are data waiting, which the socket no longer shows.
  OFBool networkDataAvailable(int timeout) override {
    if (held_ != 0) WriteAll(nullptr, 0);  // a failure shows at the next read or write
    return begin_ != end_ || DcmTCPConnection::networkDataAvailable(timeout);
  }
  void close() override {
    if (held_ != 0) WriteAll(nullptr, 0);
    DcmTCPConnection::close();
  }
  OFBool isTransparentConnection() override { return OFFalse; }

 private:
  // Writes the held header, then `buf`, all of it (as a blocking write does): the bytes of
  // `buf` written, or -1 (the errno set).
  ssize_t WriteAll(void* buf, size_t nbyte) {
    struct iovec iov[2] = {{head_, held_}, {buf, nbyte}};
    int first = held_ != 0 ? 0 : 1;
    size_t left = held_ + nbyte;
    held_ = 0;
    while (left > 0) {
      const ssize_t w = writev_(fd_, iov + first, 2 - first);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return -1;
      left -= static_cast<size_t>(w);
      for (size_t done = static_cast<size_t>(w); done > 0 && first < 2;) {
        const size_t step = std::min(done, iov[first].iov_len);
        iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + step;
        iov[first].iov_len -= step;
        done -= step;
        if (iov[first].iov_len == 0) ++first;
      }
    }
    return static_cast<ssize_t>(nbyte);
  }

  ssize_t ReadSocket(void* buf, size_t nbyte) {
    const ssize_t n = DcmTCPConnection::read(buf, nbyte);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    return n;
  }

  DcmNativeSocketType fd_;
  WritevFn writev_ = &::writev;
  unsigned char head_[kPDataHead];
  size_t held_ = 0;
  char ahead_[32 * 1024];
  size_t begin_ = 0, end_ = 0;
};

}  // namespace teleread
