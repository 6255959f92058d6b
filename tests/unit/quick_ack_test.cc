// QuickAckConnection reads ahead: what it holds must count as data waiting, and bytes come out
// in order whichever way they are read (through the buffer or straight into the caller's).
#include <catch2/catch.hpp>

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

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
