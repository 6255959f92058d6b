#include "tests/support/server_fixture.h"

#include "tests/support/stored.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <exception>
#include <regex>
#include <thread>

#include "samples/synthetic.h"
#include "server/store/object_store.h"
#include "server/store/sqlite.h"

namespace teleread::test {
namespace {

std::string LogTail(const std::string& log, size_t n) { return log.size() > n ? log.substr(log.size() - n) : log; }

}  // namespace

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
  set("small_object_bytes", std::to_string(o.small_object_bytes));
  set("segment_mb", std::to_string(o.segment_mb));
  for (const auto& [pattern, replacement] : o.edits) {
    std::regex re(pattern, std::regex::multiline);
    REQUIRE(std::regex_search(text, re));
    text = std::regex_replace(text, re, replacement, std::regex_constants::format_first_only);
  }
  if (o.plain_centre_workstation) {
    text += "\n[[centre.plain_callers]]\nae_title = \"LX_WS1\"\naddresses = [\"127.0.0.1\"]\n";
  }
  return text;
}

std::pair<std::string, std::string> ZhuozhouDeliveryPort(uint16_t port) {
  return {"^port = 11201$", "port = " + std::to_string(port)};
}

TestServer::TestServer(const std::filesystem::path& dir, ServerOptions options)
    : dir_(dir), storage_(dir / "storage"), config_path_(dir / "teleread.toml"), log_path_(dir / "server.log") {
  std::filesystem::create_directories(dir);
  // The centre CA and certificates for the HTTPS API, made by the server's own pki command.
  pki_ = dir / "pki";
  CopyCachedPki("centre", pki_, [](const std::filesystem::path& to) {
    auto pki = [&to](std::vector<std::string> args) {
      args.insert(args.begin(), {TELEREAD_SERVER_BIN, "pki"});
      args.insert(args.begin() + 3, to.string());
      CommandResult r = RunCommand(args);
      INFO(r.output);
      REQUIRE(r.exit_code == 0);
    };
    pki({"init"});
    pki({"issue", "--kind", "server", "--name", "teleread-server"});
    for (const char* who : {"wang.li", "zhao.min", "liu.xin"}) pki({"issue", "--kind", "radiologist", "--name", who});
    pki({"issue", "--kind", "admin", "--name", "ops"});
  });
  options.edits.push_back({"^certificate = .*$", "certificate = \"" + (pki_ / "teleread-server.pem").string() + "\""});
  options.edits.push_back({"^key = .*$", "key = \"" + (pki_ / "teleread-server.key").string() + "\""});
  options.edits.push_back({"^ca = .*$", "ca = \"" + (pki_ / "ca.pem").string() + "\""});
  options.edits.push_back({"^templates = .*$", "templates = \"" TELEREAD_SOURCE_DIR "/config/templates\""});
  WriteFile(config_path_, TestConfigText(options));
}

// Every server ends with SIGTERM and must exit 0, so that under ASan its leak check runs and
// counts on every path. While a failed REQUIRE unwinds, a second failure would only add noise.
TestServer::~TestServer() {
  if (!process_.running()) return;
  const int code = Stop(SIGTERM);
  if (std::uncaught_exceptions() > 0) return;
  INFO("server log (tail):\n" << LogTail(Log(), 4000));
  CHECK(code == 0);
}

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
  std::vector<std::string> argv = {
      "/usr/bin/curl", "-sS", "--max-time",    "30", "--cacert", (pki_ / "ca.pem").string(), "-X",
      method,          "-w",  "\n%{http_code}"};
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

std::string Sql(const std::filesystem::path& storage, const std::string& query) {
  // The running server may hold the write lock for a moment (a commit, a checkpoint): wait for it.
  CommandResult r =
      RunCommand({"/usr/bin/sqlite3", "-cmd", ".timeout 10000", (storage / "index.sqlite").string(), query});
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  return r.output;
}

void RefuseAuditEntries(const std::filesystem::path& storage, const std::vector<std::string>& actions) {
  std::string when;
  for (const std::string& a : actions) when += (when.empty() ? " WHEN NEW.action IN ('" : ", '") + a + "'";
  if (!when.empty()) when += ")";
  Sql(storage, "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log" + when +
                   " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;");
}

void AllowAuditEntries(const std::filesystem::path& storage) { Sql(storage, "DROP TRIGGER refuse_audit;"); }

std::vector<AuditRow> AuditTrail(const std::filesystem::path& storage) {
  auto db = Database::Open(storage / "index.sqlite", true);
  REQUIRE(db.ok());
  Statement q(db.value()->handle(), "SELECT actor, action, study_instance_uid, detail FROM audit_log ORDER BY id");
  std::vector<AuditRow> rows;
  for (Result<bool> row = q.Step(); row.ok() && row.value(); row = q.Step()) {
    rows.push_back({q.Text(0), q.Text(1), q.Text(2), q.Text(3)});
  }
  return rows;
}

std::vector<AuditRow> AuditTrail(const std::filesystem::path& storage, const std::string& action) {
  std::vector<AuditRow> rows;
  for (AuditRow& r : AuditTrail(storage)) {
    if (r.action == action) rows.push_back(std::move(r));
  }
  return rows;
}

std::set<std::string> FilesUnder(const std::filesystem::path& storage) {
  std::set<std::string> paths;
  ObjectStore store(storage);
  REQUIRE(store.ForEachObject([&](const std::string& p) { paths.insert(p); }).ok());
  paths.merge(InIndexPaths(storage));
  paths.merge(InSegmentPaths(storage));
  return paths;
}

std::unique_ptr<TestServer> StartServerOnVolume(const std::filesystem::path& dir, const std::filesystem::path& volume,
                                                ServerOptions options) {
  options.min_free_disk_mb = 0;
  auto server = std::make_unique<TestServer>(dir, options);
  std::filesystem::remove_all(server->storage());
  std::filesystem::create_directory_symlink(volume, server->storage());
  server->Start();
  return server;
}

CommandResult GetStudy(const TestServer& server, const std::string& calling_ae, const std::string& study_uid,
                       const std::filesystem::path& out, const std::vector<std::string>& extra) {
  std::filesystem::create_directories(out);
  std::vector<std::string> argv = {GETSCU_BIN, "-S", "-aet", calling_ae, "-aec", "LX_READ", "-od", out.string()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.insert(argv.end(), {"-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=" + study_uid, "127.0.0.1",
                           server.port_text()});
  return RunCommand(argv);
}

CommandResult Echo(const TestServer& server, const std::string& calling_ae, const std::string& called_ae) {
  return RunCommand({ECHOSCU_BIN, "-aet", calling_ae, "-aec", called_ae, "127.0.0.1", server.port_text()});
}

bool StillRunning(TestServer& server, const std::string& calling_ae) {
  return Echo(server, calling_ae).exit_code == 0 && server.running();
}

CommandResult StoreTo(uint16_t port, const std::string& calling_ae, const std::vector<std::string>& files_or_dirs,
                      const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {STORESCU_BIN, "-v", "-aet", calling_ae, "-aec", "LX_READ", "+sd", "+r"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("127.0.0.1");
  argv.push_back(std::to_string(port));
  argv.insert(argv.end(), files_or_dirs.begin(), files_or_dirs.end());
  return RunCommand(argv, std::chrono::seconds(120));
}

CommandResult StoreFiles(const TestServer& server, const std::string& calling_ae,
                         const std::vector<std::string>& files_or_dirs, const std::vector<std::string>& extra) {
  return StoreTo(server.port(), calling_ae, files_or_dirs, extra);
}

std::string DicomTlsTable(const std::filesystem::path& pki, const std::string& extra) {
  return "[dicom_tls]\ncertificate = \"" + (pki / "teleread-server.pem").string() + "\"\nkey = \"" +
         (pki / "teleread-server.key").string() + "\"\nca = \"" + (pki / "ca.pem").string() + "\"\n" + extra +
         "\n\n[reading]";
}

std::vector<std::string> TlsArgs(const std::filesystem::path& pki, const std::string& name,
                                 const std::filesystem::path& ca) {
  return {"+tls", (pki / (name + ".key")).string(), (pki / (name + ".pem")).string(), "-pw", "+cf", ca.string()};
}

bool Stored(const CommandResult& r) {
  return r.exit_code == 0 && r.output.find("Received Store Response (Success)") != std::string::npos;
}

bool NotAssociated(const CommandResult& r) {
  return r.exit_code != 0 && r.output.find("Store Response") == std::string::npos &&
         (r.output.find("Association Rejected") != std::string::npos || r.output.find("TLS") != std::string::npos ||
          r.output.find("Peer aborted") != std::string::npos ||
          // TLS 1.3: the client's handshake is over before the server has checked its certificate,
          // so a refused certificate shows as a reset of the association request.
          r.output.find("Connection reset by peer") != std::string::npos) &&
         r.output.find("Connection refused") == std::string::npos;
}

std::filesystem::path SampleOf(const std::filesystem::path& samples, const std::string& ae) {
  for (const auto& e : std::filesystem::recursive_directory_iterator(samples / ae)) {
    if (e.is_regular_file()) return e.path();
  }
  FAIL("no sample file for " << ae);
  return {};
}

void CopyCachedPki(const std::string& name, const std::filesystem::path& to,
                   const std::function<void(const std::filesystem::path&)>& make) {
  namespace fs = std::filesystem;
  const fs::path cache = fs::path(TELEREAD_TEST_PKI_CACHE) / name;
  const fs::path stamp = cache / "complete";
  fs::create_directories(cache.parent_path());
  const int lock = ::open((cache.string() + ".lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  REQUIRE(lock >= 0);
  struct Unlock {  // closing releases the lock, also when a REQUIRE below throws
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{lock};
  REQUIRE(::flock(lock, LOCK_EX) == 0);
  std::error_code ec;
  const auto made = fs::last_write_time(stamp, ec);
  if (ec || made < fs::last_write_time(TELEREAD_SERVER_BIN) ||
      fs::file_time_type::clock::now() - made > std::chrono::hours(12)) {
    fs::remove_all(cache);
    make(cache);
    WriteFile(stamp, "");
  }
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(cache)) {
    if (e.path() != stamp) fs::copy(e.path(), to / e.path().filename(), fs::copy_options::recursive);
  }
}

void IssueCert(const std::filesystem::path& pki, const std::string& kind, const std::string& name,
               const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {TELEREAD_SERVER_BIN, "pki", "issue", pki.string(), "--kind", kind, "--name", name};
  argv.insert(argv.end(), extra.begin(), extra.end());
  CommandResult r = RunCommand(argv);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
}

std::filesystem::path WriteProfile(const TestServer& server, const std::string& who, const std::filesystem::path& out) {
  WriteFile(out, "server = \"https://127.0.0.1:" + std::to_string(server.https_port()) + "\"\n" + "certificate = \"" +
                     (server.pki() / (who + ".pem")).string() + "\"\n" + "key = \"" +
                     (server.pki() / (who + ".key")).string() + "\"\n" + "ca = \"" +
                     (server.pki() / "ca.pem").string() + "\"\n");
  return out;
}

nlohmann::json WaitForWorklist(const TestServer& server, size_t n, const std::string& who) {
  nlohmann::json items;
  const bool held = WaitFor(
      [&] {
        HttpReply r = server.Call(who, "GET", "/api/v1/worklist");
        if (r.status != 200) return false;
        nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
        if (j.is_discarded()) return false;
        items = j["items"];
        return items.size() == n;
      },
      60);
  INFO("worklist of " << who << ": " << items.dump());
  REQUIRE(held);
  return items;
}

std::string WaitForOneStudy(const TestServer& server, const std::string& query) {
  nlohmann::json items;
  REQUIRE(WaitFor([&] {
    HttpReply r = server.Call("wang.li", "GET", "/api/v1/worklist?" + query);
    if (r.status == 200) items = r.Json()["items"];
    return r.status == 200 && items.size() == 1;
  }));
  return items[0]["study_instance_uid"];
}

long Metric(const TestServer& server, const std::string& name) {
  HttpReply r = server.Call("ops", "GET", "/metrics");
  REQUIRE(r.status == 200);
  std::smatch m;
  INFO(r.body);
  REQUIRE(std::regex_search(r.body, m, std::regex("(^|\n)" + name + " (-?\\d+)")));
  return std::stol(m[2]);
}

std::vector<std::string> StoreResponses(const CommandResult& storescu) {
  static const std::regex response(R"(Received Store Response \(([^)\n]*)\))");
  std::vector<std::string> out;
  for (auto it = std::sregex_iterator(storescu.output.begin(), storescu.output.end(), response);
       it != std::sregex_iterator(); ++it) {
    out.push_back((*it)[1]);
  }
  return out;
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
