#include "server/dicom/socket_peek.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <vector>

namespace teleread {

Arrival PeekAssociateRequest(int fd) {
  constexpr size_t kMaxRequest = 1 << 20;
  std::vector<unsigned char> buf(6);
  size_t need = 6;
  for (;;) {
    ssize_t n = ::recv(fd, buf.data(), need, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return Arrival::kFailed;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? Arrival::kPartial : Arrival::kFailed;
    if (static_cast<size_t>(n) < need) return Arrival::kPartial;
    if (need > 6) return Arrival::kComplete;
    if (buf[0] != 0x01) return Arrival::kComplete;  // not an A-ASSOCIATE-RQ: let DCMTK refuse it properly
    size_t length = (size_t{buf[2]} << 24) | (size_t{buf[3]} << 16) | (size_t{buf[4]} << 8) | buf[5];
    if (length > kMaxRequest) return Arrival::kFailed;
    need = 6 + length;
    buf.resize(need);
  }
}

bool WaitForAssociateRequest(int fd, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    Arrival a = PeekAssociateRequest(fd);
    if (a != Arrival::kPartial) return a == Arrival::kComplete;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) return false;
  }
}

int PeekFirstByte(int fd, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    unsigned char byte = 0;
    ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 1) return byte;
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return -1;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return -1;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) return -1;
  }
}

void SetSocketTimeouts(int fd, int seconds) {
  timeval tv{seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

std::string PeerAddress(int fd) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  char text[INET6_ADDRSTRLEN] = "?";
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    if (a.ss_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&a)->sin_addr, text, sizeof text);
    } else if (a.ss_family == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&a)->sin6_addr, text, sizeof text);
    }
  }
  return text;
}

}  // namespace teleread
