#pragma once
// The centre CA's revocation lists in use, re-read when their file changes, so that a
// certificate revoked while the server runs (`pki crl DIR --revoke NAME`, then the new file
// installed) is refused from the next handshake on, without a restart. A newer list is added to
// each TLS context beside the old one: OpenSSL uses, of two lists by the same CA, the one with
// the later thisUpdate.
//
// Thread-safety: Attach before Start; the rest may be called from any thread.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace teleread {

class CertificateExpiry;

// Verifies the peer certificate of an established TLS connection `ssl` (an SSL*) again, against
// its context's trust store as it is now (revocation lists added since the handshake) and the
// current time, so that revocation and expiry also end sessions that are already open, resumed
// ones included. nullopt while it is still valid, else why not.
std::optional<std::string> PeerCertificateProblem(void* ssl);

// Called once a revocation list file was added to a TLS context (AddRevocationList), after it
// is: every connection's remembered check (PeerCertificateCheck) is redone.
void TrustStoreChanged();

// PeerCertificateProblem for one connection, its passes remembered: the check is a chain
// verification per request otherwise. Verified again once a revocation list was added to any
// context, at the notAfter of the certificate or its CA, and at least every second (a list's
// nextUpdate passing). A failure is never remembered.
//
// Thread-safety: one connection's, used by one thread at a time.
class PeerCertificateCheck {
 public:
  std::optional<std::string> Problem(void* ssl);

 private:
  uint64_t generation_ = 0;
  bool valid_ = false;                             // false: to be verified
  std::chrono::steady_clock::time_point recheck_;  // the one-second bound: not moved by clock changes
  int64_t not_after_ms_ = 0;                       // wall clock: certificates expire by it
};

class RevocationLists {
 public:
  // `expiry` (outliving this) is told each list's nextUpdate under its name.
  RevocationLists(CertificateExpiry& expiry, std::chrono::seconds interval);
  ~RevocationLists();  // stops the thread
  RevocationLists(const RevocationLists&) = delete;
  RevocationLists& operator=(const RevocationLists&) = delete;

  // `ssl_ctx` (an SSL_CTX*, outliving this) already holds the list at `path`, of the CA in
  // the file `ca`; later versions of the file go to it too.
  void Attach(const std::string& name, const std::filesystem::path& path, const std::filesystem::path& ca,
              void* ssl_ctx);
  // Looks every `interval` for changed files.
  void Start();
  void Stop();
  // Adds each changed list to its contexts now; how many files were re-read.
  int Refresh();

 private:
  struct Watched {
    std::vector<std::string> names;
    std::filesystem::path path;
    std::vector<std::pair<std::filesystem::path, void*>> contexts;  // the CA each context trusts
    std::filesystem::file_time_type mtime{};
    uintmax_t size = 0;
  };
  CertificateExpiry& expiry_;
  const std::chrono::seconds interval_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Watched> watched_;  // guarded by mu_
  bool stopping_ = false;         // guarded by mu_
  std::thread thread_;
};

}  // namespace teleread
