// The DICOM TLS connection AcceptTls hands to DCMTK, over a real loopback TLS session: the
// request read during the handshake comes first, P-DATA headers travel in one record with their
// value, nothing held waits on the peer, data read ahead inside OpenSSL counts as waiting, and a
// failed write says EIO (DCMTK retries EINTR with another buffer, which OpenSSL refuses).
#include <catch2/catch.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmnet/dcmtrans.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "server/dicom/tls_accept.h"

using namespace teleread;

namespace {

struct CtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using Ctx = std::unique_ptr<SSL_CTX, CtxFree>;

// A server context with a fresh self-signed P-256 certificate; no client certificate asked.
Ctx ServerContext() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  REQUIRE(key != nullptr);
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("centre"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  REQUIRE(X509_sign(cert, key, EVP_sha256()) > 0);
  Ctx ctx(SSL_CTX_new(TLS_server_method()));
  REQUIRE(SSL_CTX_use_certificate(ctx.get(), cert) == 1);
  REQUIRE(SSL_CTX_use_PrivateKey(ctx.get(), key) == 1);
  X509_free(cert);
  EVP_PKEY_free(key);
  return ctx;
}

// A client and the server's accepted socket on 127.0.0.1.
void Connected(int* client, int* server) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(listener, 1) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  *client = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(::connect(*client, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  *server = ::accept(listener, nullptr, nullptr);
  REQUIRE(*server >= 0);
  ::close(listener);
  timeval five{5, 0};  // a missing flush fails the test instead of hanging it
  ::setsockopt(*client, SOL_SOCKET, SO_RCVTIMEO, &five, sizeof five);
}

std::string AssociateRq() {
  std::string body(68, 'a');
  std::string pdu("\x01\x00\x00\x00\x00\x44", 6);  // A-ASSOCIATE-RQ, 68 bytes follow
  return pdu + body;
}

std::string PDataHead(uint32_t value_bytes) {
  const uint32_t pdv = value_bytes + 2, pdu = pdv + 4;
  auto be32 = [](uint32_t v) {
    return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
                       static_cast<char>(v)};
  };
  return std::string("\x04\x00", 2) + be32(pdu) + be32(pdv) + std::string("\x01\x03", 2);
}

struct Session {
  Ctx server_ctx = ServerContext();
  Ctx client_ctx{SSL_CTX_new(TLS_client_method())};
  int client_fd = -1, server_fd = -1;
  SSL* client = nullptr;
  std::unique_ptr<DcmTransportConnection> conn;

  // The client handshakes and sends `first` (an A-ASSOCIATE-RQ, then anything in the same record).
  explicit Session(const std::string& first) {
    ::signal(SIGPIPE, SIG_IGN);
    Connected(&client_fd, &server_fd);
    client = SSL_new(client_ctx.get());
    SSL_set_fd(client, client_fd);
    std::thread peer([&] {
      if (SSL_connect(client) == 1) SSL_write(client, first.data(), static_cast<int>(first.size()));
    });
    TlsPeer who;
    std::string error;
    conn =
        AcceptTls(server_ctx.get(), server_fd, std::chrono::steady_clock::now() + std::chrono::seconds(10), who, error);
    peer.join();
    INFO(error);
    REQUIRE(conn != nullptr);
  }
  ~Session() {
    conn.reset();  // the connection owns the server's socket and SSL, as DCMTK's do
    SSL_free(client);
    if (client_fd >= 0) ::close(client_fd);
  }
  // One SSL_read: at most one record's bytes.
  std::string Record() {
    std::string buf(64 * 1024, '\0');
    const int n = SSL_read(client, buf.data(), static_cast<int>(buf.size()));
    buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return buf;
  }
  std::string Read(size_t n) {
    std::string out(n, '\0');
    size_t got = 0;
    while (got < n) {
      const ssize_t r = conn->read(out.data() + got, n - got);
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    out.resize(got);
    return out;
  }
  ssize_t Write(const std::string& bytes) { return conn->write(const_cast<char*>(bytes.data()), bytes.size()); }
};

}  // namespace

TEST_CASE("DICOM TLS: the request read during the handshake comes first, then what followed it", "[dicom][tls]") {
  const std::string rq = AssociateRq();
  Session s(rq + "after");
  CHECK(s.Read(6) == rq.substr(0, 6));
  CHECK(s.Read(rq.size() - 6) == rq.substr(6));
  CHECK(s.Read(5) == "after");
}

TEST_CASE("DICOM TLS: a P-DATA PDU's headers and value travel in one record", "[dicom][tls]") {
  Session s(AssociateRq());
  s.Read(AssociateRq().size());
  const std::string value(1000, 'v');
  REQUIRE(s.Write(PDataHead(1000)) == 12);
  REQUIRE(s.Write(value) == 1000);
  CHECK(s.Record() == PDataHead(1000) + value);
  // A value too long for one record with its headers: the headers go first, on their own.
  const std::string big(20000, 'b');
  REQUIRE(s.Write(PDataHead(20000)) == 12);
  REQUIRE(s.Write(big) == 20000);
  CHECK(s.Record() == PDataHead(20000));
  std::string rest;
  while (rest.size() < big.size()) {
    const std::string r = s.Record();
    if (r.empty()) break;
    rest += r;
  }
  CHECK(rest == big);
}

TEST_CASE("DICOM TLS: held headers go out before a wait for input and at close", "[dicom][tls]") {
  Session s(AssociateRq());
  s.Read(AssociateRq().size());
  REQUIRE(s.Write(PDataHead(40)) == 12);
  CHECK_FALSE(s.conn->networkDataAvailable(0));
  CHECK(s.Record() == PDataHead(40));
  REQUIRE(s.Write(PDataHead(50)) == 12);
  s.conn->close();
  CHECK(s.Record() == PDataHead(50));
}

TEST_CASE("DICOM TLS: bytes OpenSSL read ahead count as data waiting", "[dicom][tls]") {
  const std::string rq = AssociateRq();
  Session s(rq);
  s.Read(rq.size());
  CHECK_FALSE(s.conn->networkDataAvailable(0));
  // Two PDUs in two records, both on the server's socket before it reads: reading the first
  // record takes the second into OpenSSL's read-ahead buffer, undecrypted, where SSL_pending
  // (which DCMTK asks) does not see it.
  const std::string first = PDataHead(4) + "abcd", second = PDataHead(4) + "efgh";
  REQUIRE(SSL_write(s.client, first.data(), static_cast<int>(first.size())) == 16);
  REQUIRE(SSL_write(s.client, second.data(), static_cast<int>(second.size())) == 16);
  int queued = 0;
  for (int i = 0; i < 5000 && queued < 2 * (16 + 22); ++i) {  // TLS 1.3: 22 bytes around each record
    ::ioctl(s.server_fd, FIONREAD, &queued);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  REQUIRE(queued >= 2 * (16 + 22));
  CHECK(s.Read(16) == first);
  int left = -1;
  ::ioctl(s.server_fd, FIONREAD, &left);
  CHECK(left == 0);
  CHECK(s.conn->networkDataAvailable(0));
  CHECK(s.Read(16) == second);
}

TEST_CASE("DICOM TLS: a write the peer can no longer take fails with EIO", "[dicom][tls]") {
  Session s(AssociateRq());
  s.Read(AssociateRq().size());
  SSL_free(s.client);
  s.client = nullptr;
  ::shutdown(s.client_fd, SHUT_RDWR);
  ::close(s.client_fd);
  s.client_fd = -1;
  const std::string value(4000, 'v');
  ssize_t result = 0;
  for (int i = 0; i < 200 && result >= 0; ++i) {  // the first writes may still be accepted locally
    if (s.Write(PDataHead(4000)) != 12) break;
    errno = 0;
    result = s.Write(value);
  }
  CHECK(result == -1);
  CHECK(errno == EIO);
}
