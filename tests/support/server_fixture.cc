#include "tests/support/server_fixture.h"

#include <catch2/catch.hpp>
#include <csignal>
#include <regex>
#include <thread>

#include "samples/synthetic.h"
#include "server/store/object_store.h"
#include "server/store/sqlite.h"

namespace teleread::test {

std::string TestConfigText(const ServerOptions& o) {
  std::string text = ReadFile(std::filesystem::path(TELEREAD_SOURCE_DIR) / "config" / "teleread.toml");
  auto set = [&text](const std::string& key, const std::string& value) {
    std::regex line("^" + key + " = .*$", std::regex::multiline);
    REQUIRE(std::regex_search(text, line));
    text = std::regex_replace(text, line, key + " = " + value, std::regex_constants::format_first_only);
  };
  set("quiet_period_seconds", std::to_string(o.quiet_period_seconds));
  set("min_free_disk_mb", std::to_string(o.min_free_disk_mb));
  set("max_associations", std::to_string(o.max_associations));
  set("dimse_timeout_seconds", std::to_string(o.dimse_timeout_seconds));
  for (const auto& [pattern, replacement] : o.edits) {
    std::regex re(pattern, std::regex::multiline);
    REQUIRE(std::regex_search(text, re));
    text = std::regex_replace(text, re, replacement, std::regex_constants::format_first_only);
  }
  return text;
}

TestServer::TestServer(const std::filesystem::path& dir, ServerOptions options)
    : dir_(dir), storage_(dir / "storage"), config_path_(dir / "teleread.toml"), log_path_(dir / "server.log") {
  std::filesystem::create_directories(dir);
  // The centre CA and certificates for the HTTPS API, made by the server's own pki command.
  pki_ = dir / "pki";
  auto pki = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {TELEREAD_SERVER_BIN, "pki"});
    CommandResult r = RunCommand(args);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
  };
  pki({"init", pki_.string()});
  pki({"issue", pki_.string(), "--kind", "server", "--name", "teleread-server"});
  for (const char* who : {"wang.li", "zhao.min", "liu.xin"}) pki({"issue", pki_.string(), "--kind", "radiologist", "--name", who});
  pki({"issue", pki_.string(), "--kind", "admin", "--name", "ops"});
  options.edits.push_back({"^certificate = .*$", "certificate = \"" + (pki_ / "teleread-server.pem").string() + "\""});
  options.edits.push_back({"^key = .*$", "key = \"" + (pki_ / "teleread-server.key").string() + "\""});
  options.edits.push_back({"^ca = .*$", "ca = \"" + (pki_ / "ca.pem").string() + "\""});
  options.edits.push_back({"^templates = .*$", "templates = \"" TELEREAD_SOURCE_DIR "/config/templates\""});
  WriteFile(config_path_, TestConfigText(options));
}

TestServer::~TestServer() { Stop(SIGKILL); }

void TestServer::Start() {
  std::string before = ReadFile(log_path_);
  process_.Start({TELEREAD_SERVER_BIN, "--config", config_path_.string(), "--storage", storage_.string(),
                  "--dicom-port", "0", "--http-port", "0", "--log-level", "debug"},
                 log_path_);
  static const std::regex listening(R"(DICOM listener \S+ on 127\.0\.0\.1:(\d+))");
  static const std::regex https(R"(HTTPS reading API on 127\.0\.0\.1:(\d+))");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string log = ReadFile(log_path_).substr(before.size());
    std::smatch m, h;
    if (std::regex_search(log, m, listening) && std::regex_search(log, h, https)) {
      port_ = static_cast<uint16_t>(std::stoi(m[1]));
      https_port_ = static_cast<uint16_t>(std::stoi(h[1]));
      static const std::regex tls(R"(DICOM TLS \(\S+\) on 127\.0\.0\.1:(\d+))");
      std::smatch t;
      tls_port_ = std::regex_search(log, t, tls) ? static_cast<uint16_t>(std::stoi(t[1])) : 0;
      return;
    }
    if (!process_.running()) FAIL("teleread-server exited during start-up:\n" << log);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL("teleread-server did not start listening within 30 s:\n" << Log());
}

int TestServer::Stop(int sig) { return process_.Stop(sig); }

CommandResult TestServer::Status() const {
  return RunCommand({TELEREAD_SERVER_BIN, "--config", config_path_.string(), "--storage", storage_.string(), "status"});
}

CommandResult TestServer::Curl(const std::string& who, const std::string& method, const std::string& path,
                               const std::vector<std::string>& extra) const {
  std::vector<std::string> argv = {"/usr/bin/curl", "-sS", "--max-time", "30", "--cacert", (pki_ / "ca.pem").string(),
                                   "-X", method, "-w", "\n%{http_code}"};
  if (!who.empty()) {
    argv.insert(argv.end(), {"--cert", (pki_ / (who + ".pem")).string(), "--key", (pki_ / (who + ".key")).string()});
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("https://127.0.0.1:" + std::to_string(https_port_) + path);
  return RunCommand(argv);
}

HttpReply TestServer::Call(const std::string& who, const std::string& method, const std::string& path,
                           const std::vector<std::string>& extra) const {
  CommandResult r = Curl(who, method, path, extra);
  HttpReply out;
  size_t nl = r.output.rfind('\n');
  out.body = nl == std::string::npos ? "" : r.output.substr(0, nl);
  out.status = std::atoi(r.output.substr(nl == std::string::npos ? 0 : nl + 1).c_str());
  return out;
}

nlohmann::json HttpReply::Json() const {
  INFO(body);
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

std::set<std::string> IndexedPaths(const std::filesystem::path& storage) {
  auto db = Database::Open(storage / "index.sqlite", true);
  REQUIRE(db.ok());
  Statement q(db.value()->handle(), "SELECT path FROM instances");
  std::set<std::string> paths;
  while (q.Step().value()) paths.insert(q.Text(0));
  return paths;
}

std::set<std::string> FilesUnder(const std::filesystem::path& storage) {
  std::set<std::string> paths;
  ObjectStore store(storage);
  REQUIRE(store.ForEachObject([&](const std::string& p) { paths.insert(p); }).ok());
  return paths;
}

CommandResult Echo(const TestServer& server, const std::string& calling_ae, const std::string& called_ae) {
  return RunCommand({ECHOSCU_BIN, "-aet", calling_ae, "-aec", called_ae, "127.0.0.1", server.port_text()});
}

CommandResult StoreFiles(const TestServer& server, const std::string& calling_ae,
                         const std::vector<std::string>& files_or_dirs, const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {STORESCU_BIN, "-aet", calling_ae, "-aec", "LX_READ", "+sd", "+r"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("127.0.0.1");
  argv.push_back(server.port_text());
  argv.insert(argv.end(), files_or_dirs.begin(), files_or_dirs.end());
  return RunCommand(argv, std::chrono::seconds(120));
}

std::filesystem::path WriteSampleConsortium(const std::filesystem::path& dir, int ct_slices) {
  auto written = samples::WriteConsortium(dir, ct_slices);
  REQUIRE(written.ok());
  return dir;
}

void PushSampleConsortium(const TestServer& server, const std::filesystem::path& dir, int ct_slices) {
  WriteSampleConsortium(dir, ct_slices);
  for (const char* ae : {"ZZ_PACS", "LS_PACS", "YX_PACS"}) {
    REQUIRE(StoreFiles(server, ae, {(dir / ae).string()}).exit_code == 0);
  }
}

}  // namespace teleread::test
