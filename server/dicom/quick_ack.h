// The plain-TCP connection DCMTK is handed for every accepted association (listener.cc).
#pragma once

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmnet/dcmtrans.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace teleread {

// Senders that leave Nagle on wait for our delayed ACK after every small PDU; acknowledging at
// once after each read removes that ~40 ms stall per object. The option does not stick.
// DCMTK reads a PDU's 6-byte header, then its body, each after a poll: what has arrived is read
// ahead instead. A small object's command and data PDUs then cost one read (and one
// acknowledgement) rather than four reads, four setsockopt and polls when the sender has Nagle
// off; with Nagle on it holds the data PDU until the command PDU is acknowledged, so two reads.
// Bodies at least as long as the buffer are read straight into DCMTK's.
class QuickAckConnection : public DcmTCPConnection {
 public:
  explicit QuickAckConnection(DcmNativeSocketType fd) : DcmTCPConnection(fd), fd_(fd) {}
  ssize_t read(void* buf, size_t nbyte) override {
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
    return begin_ != end_ || DcmTCPConnection::networkDataAvailable(timeout);
  }
  OFBool isTransparentConnection() override { return OFFalse; }

 private:
  ssize_t ReadSocket(void* buf, size_t nbyte) {
    const ssize_t n = DcmTCPConnection::read(buf, nbyte);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    return n;
  }

  DcmNativeSocketType fd_;
  char ahead_[32 * 1024];
  size_t begin_ = 0, end_ = 0;
};

}  // namespace teleread
