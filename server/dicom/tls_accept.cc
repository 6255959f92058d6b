#include "server/dicom/tls_accept.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmtls/tlstrans.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "server/dicom/dicom_tls.h"
#include "server/dicom/quick_ack.h"
#include "server/pki/revocation.h"

namespace teleread {
namespace {

// A TLS connection whose handshake and A-ASSOCIATE-RQ we read ourselves, under a deadline and
// outside g_handoff_mu; DCMTK then reads the request from what we kept.
// OpenSSL reads ahead what has arrived (DCMTK asks for a PDU's 6-byte header, then its body:
// two reads per record otherwise), so data may wait inside OpenSSL where a poll does not see it.
// A P-DATA PDU's headers are held and sent in one record with a value of up to kCoalesceBytes
// (one record, one syscall, one wake-up of the peer instead of two), as QuickAckConnection does.
// A failed write of ours sets EIO: DCMTK retries an EINTR with its own buffer, which OpenSSL
// refuses after a failed write of another (SSL_R_BAD_WRITE_RETRY), and would then spin.
class PreparedTlsConnection : public DcmTLSConnection {
 public:
  PreparedTlsConnection(DcmNativeSocketType fd, SSL* ssl, std::string request)
      : DcmTLSConnection(fd, ssl), fd_(fd), ssl_(ssl), request_(std::move(request)) {
    SSL_set_read_ahead(ssl, 1);
  }
  OFCondition serverSideHandshake() override { return EC_Normal; }  // done already
  ssize_t write(void* buf, size_t nbyte) override {
    if (held_.empty() && HeadOfPData(buf, nbyte)) {
      held_.assign(static_cast<const char*>(buf), nbyte);
      return static_cast<ssize_t>(nbyte);
    }
    if (held_.empty()) return DcmTLSConnection::write(buf, nbyte);
    if (nbyte > kCoalesceBytes) {
      if (!SendHeld()) return -1;
      return DcmTLSConnection::write(buf, nbyte);
    }
    held_.append(static_cast<const char*>(buf), nbyte);
    if (!SendHeld()) return -1;
    return static_cast<ssize_t>(nbyte);
  }
  ssize_t read(void* buf, size_t nbyte) override {
    if (!SendHeld() || ssl_ == nullptr) return -1;
    if (pos_ < request_.size()) {
      const size_t n = std::min(nbyte, request_.size() - pos_);
      std::memcpy(buf, request_.data() + pos_, n);
      pos_ += n;
      return static_cast<ssize_t>(n);
    }
    // Served wholly from what OpenSSL read ahead: no socket read, nothing to acknowledge.
    BIO* socket = SSL_get_rbio(ssl_);
    const uint64_t before = BIO_number_read(socket);
    ssize_t n = DcmTLSConnection::read(buf, nbyte);
    if (BIO_number_read(socket) != before) {
      int one = 1;
      ::setsockopt(fd_, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }
    return n;
  }
  OFBool networkDataAvailable(int timeout) override {
    SendHeld();  // a failure shows at the next read or write
    if (ssl_ == nullptr) return OFFalse;
    return pos_ < request_.size() || SSL_has_pending(ssl_) == 1 || DcmTLSConnection::networkDataAvailable(timeout);
  }
  void close() override {
    SendHeld();
    DcmTLSConnection::close();  // frees the SSL object
    ssl_ = nullptr;
  }

 private:
  static constexpr size_t kCoalesceBytes = 16 * 1024 - kPDataHead;  // headers and value: one record

  bool SendHeld() {
    if (held_.empty()) return true;
    const size_t total = held_.size();
    const ssize_t n = ssl_ == nullptr ? -1 : DcmTLSConnection::write(held_.data(), total);
    held_.clear();
    if (n == static_cast<ssize_t>(total)) return true;
    errno = EIO;
    return false;
  }

  DcmNativeSocketType fd_;
  SSL* ssl_;  // owned by DcmTLSConnection; null once closed
  std::string request_;
  size_t pos_ = 0;
  std::string held_;  // P-DATA headers waiting for their value
};

// Waits for what OpenSSL asked for after `ret`; false on a real error or at the deadline.
bool WaitForTls(SSL* ssl, int fd, int ret, std::chrono::steady_clock::time_point deadline) {
  const int err = SSL_get_error(ssl, ret);
  const short events = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
  if (events == 0) return false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    return n > 0;
  }
}

std::string TlsFailure(SSL* ssl, bool timed_out) {
  if (timed_out) return "timed out";
  std::string why;
  if (unsigned long e = ERR_get_error(); e != 0) {
    const char* reason = ERR_reason_error_string(e);
    why = reason ? reason : "OpenSSL error " + std::to_string(e);
  } else {
    why = "connection closed";
  }
  const long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) why += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
  ERR_clear_error();
  return why;
}

SSL* HandshakeAndRequest(SSL_CTX* ctx, int fd, std::chrono::steady_clock::time_point deadline, std::string& request,
                         std::string& error) {
  constexpr size_t kMaxRequest = 1 << 20;
  SSL* ssl = SSL_new(ctx);
  if (!ssl || SSL_set_fd(ssl, fd) != 1) {
    SSL_free(ssl);
    error = "cannot create a TLS session";
    return nullptr;
  }
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  ERR_clear_error();
  bool ok = false;
  for (;;) {
    const int r = SSL_accept(ssl);
    if (r == 1) {
      ok = true;
      break;
    }
    if (!WaitForTls(ssl, fd, r, deadline)) {
      error = "TLS handshake failed: " + TlsFailure(ssl, std::chrono::steady_clock::now() >= deadline);
      break;
    }
  }
  size_t need = 6;
  while (ok && request.size() < need) {
    char buf[4096];
    const int r = SSL_read(ssl, buf, static_cast<int>(std::min(sizeof buf, need - request.size())));
    if (r > 0) {
      request.append(buf, static_cast<size_t>(r));
      if (need == 6 && request.size() == 6) {
        if (static_cast<unsigned char>(request[0]) != 0x01) break;  // DCMTK refuses it properly
        const auto* h = reinterpret_cast<const unsigned char*>(request.data());
        const size_t length = (size_t{h[2]} << 24) | (size_t{h[3]} << 16) | (size_t{h[4]} << 8) | h[5];
        if (length > kMaxRequest) {
          error = "association request too large";
          ok = false;
        }
        need = 6 + length;
      }
    } else if (!WaitForTls(ssl, fd, r, deadline)) {
      error = "no association request: " + TlsFailure(ssl, std::chrono::steady_clock::now() >= deadline);
      ok = false;
    }
  }
  ::fcntl(fd, F_SETFL, flags);
  if (!ok) {
    SSL_free(ssl);
    return nullptr;
  }
  return ssl;
}

}  // namespace

std::unique_ptr<DcmTransportConnection> AcceptTls(ssl_ctx_st* ctx, int fd,
                                                  std::chrono::steady_clock::time_point deadline, TlsPeer& peer,
                                                  std::string& error) {
  std::string request;
  SSL* ssl = HandshakeAndRequest(ctx, fd, deadline, request, error);
  if (!ssl) return nullptr;
  // A resumed session skips verification: its certificate may have been revoked or expired since.
  if (SSL_session_reused(ssl) && SSL_get0_peer_certificate(ssl)) {
    if (std::optional<std::string> problem = PeerCertificateProblem(ssl)) {
      error = "resumed TLS session refused: its certificate is no longer valid: " + *problem;
      SSL_free(ssl);
      return nullptr;
    }
  }
  peer = DescribeTlsPeer(ssl);
  return std::make_unique<PreparedTlsConnection>(fd, ssl, std::move(request));
}

}  // namespace teleread
