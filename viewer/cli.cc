#include "viewer/cli.h"

#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <iostream>

namespace teleread::viewer {

const Profile* Session::LoadedProfile() {
  if (!profile_) {
    Result<Profile> p = LoadProfile(profile_path);
    if (!p.ok()) {
      Fail(p.status().message() + " (write a profile or pass --profile FILE)");
      return nullptr;
    }
    profile_ = p.value();
  }
  return &*profile_;
}

ApiClient* Session::Api() {
  if (!api_) {
    const Profile* p = LoadedProfile();
    if (!p) return nullptr;
    api_ = std::make_unique<ApiClient>(*p);
  }
  return api_.get();
}

int Fail(const std::string& message) {
  std::cerr << "teleread: " << message << "\n";
  return 1;
}

std::optional<json> CallJson(ApiClient& api, const std::string& method, const std::string& target,
                             const std::string& body, const std::string& content_type) {
  Result<ApiResponse> r = api.Call(method, target, body, content_type);
  if (!r.ok()) {
    Fail(r.status().message() + " (check the server address and the certificates in your profile)");
    return std::nullopt;
  }
  json parsed = json::parse(r->body, nullptr, false);
  if (r->status / 100 != 2) {
    std::string why = parsed.is_object() && parsed.contains("error") ? parsed["error"].get<std::string>() : r->body;
    Fail(why + " (HTTP " + std::to_string(r->status) + ")");
    return std::nullopt;
  }
  return parsed;
}

std::string ClockText(int64_t ms) {
  if (ms <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  char out[32];
  std::strftime(out, sizeof out, "%m-%d %H:%M", std::localtime(&t));
  return out;
}

const char* Ansi(const char* code) {
  static const bool tty = ::isatty(STDOUT_FILENO) == 1 && std::getenv("NO_COLOR") == nullptr;
  return tty ? code : "";
}

std::string DefaultProfilePath() {
  const char* home = std::getenv("HOME");
  return (std::filesystem::path(home ? home : ".") / ".config" / "teleread" / "profile.toml").string();
}

std::filesystem::path DefaultCacheDir() {
  // XDG: a relative $XDG_CACHE_HOME is invalid and ignored.
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && xdg[0] == '/') {
    return std::filesystem::path(xdg) / "teleread";
  }
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home ? home : ".") / ".cache" / "teleread";
}

}  // namespace teleread::viewer
