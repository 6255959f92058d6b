// QuickAckConnection reads ahead: what it holds must count as data waiting, and bytes come out
// in order whichever way they are read (through the buffer or straight into the caller's).
#include <catch2/catch.hpp>

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "server/dicom/quick_ack.h"

using namespace teleread;

namespace {

std::string ReadAll(QuickAckConnection& conn, size_t n) {
  std::string out(n, '\0');
  size_t got = 0;
  while (got < n) {
    const ssize_t r = conn.read(out.data() + got, n - got);
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  out.resize(got);
  return out;
}

// Writes from a thread while the test reads: bytes that do not fit the socket's buffer wait
// for the reader instead of hanging the test.
class Writer {
 public:
  Writer(int fd, std::string bytes)
      : thread_([fd, bytes = std::move(bytes)] {
          for (size_t done = 0; done < bytes.size();) {
            const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
            if (w <= 0) return;
            done += static_cast<size_t>(w);
          }
        }) {}
  ~Writer() { thread_.join(); }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

 private:
  std::thread thread_;
};

// How many bytes are queued on `fd` once `n` are, or after 5 s: so that one read can take them all.
size_t Queued(int fd, size_t n) {
  int queued = 0;
  for (int i = 0; i < 5000; ++i) {
    if (::ioctl(fd, FIONREAD, &queued) == 0 && static_cast<size_t>(queued) >= n) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return static_cast<size_t>(queued);
}

}  // namespace

TEST_CASE("a read-ahead connection counts what it holds as data waiting and keeps the byte order", "[dicom][net]") {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  QuickAckConnection conn(fds[0]);  // closes fds[0]
  const std::string small = "HEADER" + std::string(200, 'c') + "HEADER" + std::string(9000, 'd');
  const std::string big(100 * 1024, 'b');
  {
    Writer writer(fds[1], small);
    CHECK(Queued(fds[0], small.size()) == small.size());
    CHECK(ReadAll(conn, 6) == "HEADER");
    // The rest was read with the header: the socket is empty, the connection is not. DCMTK polls
    // before it reads; told "nothing waiting" it would wait out its timeout.
    CHECK(conn.networkDataAvailable(0));
    CHECK(ReadAll(conn, small.size() - 6) == small.substr(6));
  }
  CHECK_FALSE(conn.networkDataAvailable(0));
  // A body larger than the buffer: read straight through, after what was buffered.
  const std::string tail = "HEADER" + big;
  {
    Writer writer(fds[1], tail.substr(0, 1006));
    CHECK(Queued(fds[0], 1006) == 1006);
    CHECK(ReadAll(conn, 6) == "HEADER");
  }
  {
    Writer writer(fds[1], tail.substr(1006));
    CHECK(ReadAll(conn, big.size()) == big);
  }
  CHECK_FALSE(conn.networkDataAvailable(0));
  CHECK_FALSE(conn.isTransparentConnection());
  ::close(fds[1]);
  char byte;
  CHECK(conn.read(&byte, 1) == 0);  // the peer's close still reads as end of stream
}

namespace {

std::vector<std::string> g_writes;  // what each writev sent, for the test below

ssize_t RecordWritev(int, const struct iovec* iov, int count) {
  std::string sent;
  for (int i = 0; i < count; ++i) sent.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
  g_writes.push_back(sent);
  return static_cast<ssize_t>(sent.size());
}

// A P-DATA-TF PDU's two headers for one PDV with a value of `value_bytes`.
std::string PDataHead(uint32_t value_bytes) {
  const uint32_t pdv = value_bytes + 2, pdu = pdv + 4;
  return std::string{0x04,
                     0x00,
                     char(pdu >> 24),
                     char(pdu >> 16),
                     char(pdu >> 8),
                     char(pdu),
                     char(pdv >> 24),
                     char(pdv >> 16),
                     char(pdv >> 8),
                     char(pdv),
                     0x01,
                     0x03};
}

}  // namespace

TEST_CASE("a P-DATA PDU's headers go out with its value in one write", "[dicom][net]") {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  QuickAckConnection conn(fds[0]);  // closes fds[0]
  ::close(fds[1]);
  conn.set_writev_for_test(&RecordWritev);
  g_writes.clear();
  std::string head = PDataHead(150), value(150, 'v');
  CHECK(conn.write(head.data(), head.size()) == 12);
  CHECK(g_writes.empty());  // held
  CHECK(conn.write(value.data(), value.size()) == 150);
  REQUIRE(g_writes.size() == 1);
  CHECK(g_writes[0] == head + value);
  // Anything else goes straight out: another PDU type, a PDV without a value, a length that
  // does not describe one PDV, a write of another size.
  std::string associate_ac = PDataHead(150);
  associate_ac[0] = 0x02;
  std::string empty_pdv = PDataHead(0);
  std::string two_pdvs = PDataHead(150);
  two_pdvs[5] = static_cast<char>(two_pdvs[5] + 10);
  for (std::string* w : {&associate_ac, &empty_pdv, &two_pdvs, &value}) {
    g_writes.clear();
    CHECK(conn.write(w->data(), w->size()) == static_cast<ssize_t>(w->size()));
    REQUIRE(g_writes.size() == 1);
    CHECK(g_writes[0] == *w);
  }
  // Held bytes never wait for the peer: out before a poll for input, a read, or the close.
  g_writes.clear();
  REQUIRE(conn.write(head.data(), head.size()) == 12);
  CHECK(conn.networkDataAvailable(0));  // the peer has closed: its end of stream is waiting
  REQUIRE(g_writes.size() == 1);
  CHECK(g_writes[0] == head);
  REQUIRE(conn.write(head.data(), head.size()) == 12);
  char byte = 0;
  CHECK(conn.read(&byte, 1) == 0);  // the peer closed: end of stream, after the held bytes went
  REQUIRE(g_writes.size() == 2);
  CHECK(g_writes[1] == head);
  REQUIRE(conn.write(head.data(), head.size()) == 12);
  conn.close();
  REQUIRE(g_writes.size() == 3);
  CHECK(g_writes[2] == head);
}

namespace {

int g_interrupt_once = 0;

// Takes at most 5 bytes per call, after failing once with EINTR.
ssize_t TrickleWritev(int, const struct iovec* iov, int count) {
  if (g_interrupt_once-- > 0) {
    errno = EINTR;
    return -1;
  }
  std::string sent;
  for (int i = 0; i < count && sent.size() < 5; ++i) {
    sent.append(static_cast<const char*>(iov[i].iov_base), std::min<size_t>(iov[i].iov_len, 5 - sent.size()));
  }
  if (g_writes.empty()) g_writes.emplace_back();
  g_writes[0] += sent;
  return static_cast<ssize_t>(sent.size());
}

}  // namespace

TEST_CASE("short and interrupted writes still send the headers and the value whole, in order", "[dicom][net]") {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  QuickAckConnection conn(fds[0]);  // closes fds[0]
  ::close(fds[1]);
  conn.set_writev_for_test(&TrickleWritev);
  g_writes.clear();
  g_interrupt_once = 1;
  const std::string head = PDataHead(23), value(23, 'x');
  REQUIRE(conn.write(const_cast<char*>(head.data()), head.size()) == 12);
  CHECK(conn.write(const_cast<char*>(value.data()), value.size()) == 23);
  REQUIRE(g_writes.size() == 1);
  CHECK(g_writes[0] == head + value);
}

TEST_CASE("held headers reach the peer before their value, in order, over a real socket", "[dicom][net]") {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  QuickAckConnection conn(fds[0]);  // closes fds[0]
  std::string expected;
  for (uint32_t n : {150u, 9000u, 40000u}) {
    std::string head = PDataHead(n), value(n, static_cast<char>('a' + n % 26));
    REQUIRE(conn.write(head.data(), head.size()) == 12);
    REQUIRE(conn.write(value.data(), value.size()) == static_cast<ssize_t>(n));
    expected += head + value;
  }
  std::string got(expected.size(), '\0');
  size_t done = 0;
  while (done < got.size()) {
    const ssize_t r = ::read(fds[1], got.data() + done, got.size() - done);
    if (r <= 0) break;
    done += static_cast<size_t>(r);
  }
  ::close(fds[1]);
  CHECK(done == expected.size());
  CHECK(got == expected);
}
