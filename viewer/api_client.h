#pragma once
// The workstation's side of the reading API: one HTTPS connection with the radiologist's
// client certificate, verifying the server against the centre CA. Blocking: a CLI does one
// thing at a time.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"

namespace teleread::viewer {

struct Profile {
  std::string host = "127.0.0.1";
  std::string port = "8443";
  std::filesystem::path certificate, key, ca;
};

// ~/.config/teleread/profile.toml, or `path`: server = "https://host:port", certificate, key, ca
// (relative paths against the profile's directory).
Result<Profile> LoadProfile(const std::filesystem::path& path);

struct ApiResponse {
  int status = 0;
  std::string body;
};

class ApiClient {
 public:
  explicit ApiClient(Profile profile);
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  // A transport failure (refused connection, TLS) is an IOError naming what to check.
  Result<ApiResponse> Call(const std::string& method, const std::string& target, const std::string& body = "",
                           const std::string& content_type = "");

  // GET `target` streamed to `out` (created or truncated) without holding it in memory; on a
  // 2xx answer the body is in `out` and ApiResponse::body is empty. On any other status
  // nothing is written to `out` and body holds the server's answer. `progress` (optional) is
  // called with the bytes received so far after each piece. A transport failure is an IOError
  // and a local write failure an IOError or NoSpace naming `out`; either way `out` may hold
  // part of the body, and the connection is dropped (the next call reconnects).
  Result<ApiResponse> Download(const std::string& target, const std::filesystem::path& out,
                               const std::function<void(uint64_t bytes)>& progress = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace teleread::viewer
