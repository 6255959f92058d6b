// QuickAckConnection reads ahead: what it holds must count as data waiting, and bytes come out
// in order whichever way they are read (through the buffer or straight into the caller's).
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <string>

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

}  // namespace

TEST_CASE("a read-ahead connection counts what it holds as data waiting and keeps the byte order", "[dicom][net]") {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  QuickAckConnection conn(fds[0]);  // closes fds[0]
  const std::string small = "HEADER" + std::string(200, 'c') + "HEADER" + std::string(9000, 'd');
  const std::string big(100 * 1024, 'b');
  REQUIRE(::write(fds[1], small.data(), small.size()) == static_cast<ssize_t>(small.size()));
  CHECK(ReadAll(conn, 6) == "HEADER");
  // The rest was read with the header: the socket is empty, the connection is not. DCMTK polls
  // before it reads; told "nothing waiting" it would wait out its timeout.
  CHECK(conn.networkDataAvailable(0));
  CHECK(ReadAll(conn, small.size() - 6) == small.substr(6));
  CHECK_FALSE(conn.networkDataAvailable(0));
  // A body larger than the buffer: read straight through, after what was buffered.
  const std::string tail = "HEADER" + big;
  REQUIRE(::write(fds[1], tail.data(), 6 + 1000) == 1006);
  CHECK(ReadAll(conn, 6) == "HEADER");
  REQUIRE(::write(fds[1], tail.data() + 1006, tail.size() - 1006) == static_cast<ssize_t>(tail.size() - 1006));
  CHECK(ReadAll(conn, big.size()) == big);
  CHECK_FALSE(conn.networkDataAvailable(0));
  CHECK_FALSE(conn.isTransparentConnection());
  ::close(fds[1]);
  char byte;
  CHECK(conn.read(&byte, 1) == 0);  // the peer's close still reads as end of stream
}
