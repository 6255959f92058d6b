#pragma once
// A real teleread-server process on an ephemeral 127.0.0.1 port, configured from the sample
// consortium config with test-sized timings, and the DCMTK command-line tools around it.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/process.h"

namespace teleread::test {

struct ServerOptions {
  int quiet_period_seconds = 1;
  uint64_t min_free_disk_mb = 0;
  int max_associations = 32;
  int dimse_timeout_seconds = 60;
  uint64_t small_object_bytes = 131072;  // 0: every object a file (or a segment's range)
  uint64_t segment_mb = 256;             // 0: larger objects are files of their own
  // Lets centre AE title LX_WS1 associate plain from 127.0.0.1, for tests not about who calls.
  bool plain_centre_workstation = true;
  // Further edits of the sample config: regular expression (multi-line) -> replacement.
  std::vector<std::pair<std::string, std::string>> edits;
};

// The config edit that moves Zhuozhou's delivery AE (ZZ_PACS, the sample's port 11201, also its
// C-MOVE destination) to `port`: a port from FreePort(), for a peer the test starts there.
std::pair<std::string, std::string> ZhuozhouDeliveryPort(uint16_t port);

// The sample config with `centre` keys replaced; the member hospitals stay as in the sample.
std::string TestConfigText(const ServerOptions& options);

// An HTTPS answer: its status (0 when there was none) and body.
struct HttpReply {
  int status = 0;
  std::string body;
  // The body as JSON; fails the test (showing the body) when it is not.
  nlohmann::json Json() const;
};

class TestServer {
 public:
  // State lives under dir/storage; the config is written to dir/teleread.toml.
  TestServer(const std::filesystem::path& dir, ServerOptions options = {});
  ~TestServer();

  // Starts the server and waits until it listens. Fails the test when it cannot.
  void Start();
  // SIGTERM (clean) or SIGKILL (crash); returns the exit code, -1 when killed.
  int Stop(int sig = 15);
  bool running() { return process_.running(); }
  int pid() const { return process_.pid(); }

  uint16_t port() const { return port_; }
  uint16_t https_port() const { return https_port_; }
  uint16_t tls_port() const { return tls_port_; }  // 0 without [dicom_tls]
  const std::filesystem::path& pki() const { return pki_; }
  // curl as `who` (a certificate name under pki(); empty: no client certificate). The output
  // ends with a line holding the HTTP status (000 when there was none).
  CommandResult Curl(const std::string& who, const std::string& method, const std::string& path,
                     const std::vector<std::string>& extra = {}) const;
  HttpReply Call(const std::string& who, const std::string& method, const std::string& path,
                 const std::vector<std::string>& extra = {}) const;
  std::string port_text() const { return std::to_string(port_); }
  const std::filesystem::path& storage() const { return storage_; }
  const std::filesystem::path& config_path() const { return config_path_; }
  std::string Log() const { return ReadFile(log_path_); }

  // `teleread-server status` against this server's storage.
  CommandResult Status() const;

 private:
  std::filesystem::path dir_, storage_, config_path_, log_path_, pki_;
  ChildProcess process_;
  uint16_t port_ = 0;
  uint16_t https_port_ = 0;
  uint16_t tls_port_ = 0;
};

// Copies the PKI directory `name` into `to`, made by `make` once per build and reused: RSA-3072
// keys (the SR signature profiles are RSA-only) cost about 0.4 s of CPU each, more than most
// tests. Kept under the build's test-pki/, remade when the server binary is newer or the set is
// 12 hours old. Every TestServer starts from the "centre" set.
void CopyCachedPki(const std::string& name, const std::filesystem::path& to,
                   const std::function<void(const std::filesystem::path&)>& make);
// Issues a certificate with the server's own `pki issue` (kind: server, radiologist, admin,
// member), with further options such as {"--ip", "127.0.0.1"}; fails the test when it cannot.
void IssueCert(const std::filesystem::path& pki, const std::string& kind, const std::string& name,
               const std::vector<std::string>& extra = {});
// A `teleread` CLI profile for `who` (certificate and key under server.pki()), written to `out`.
std::filesystem::path WriteProfile(const TestServer& server, const std::string& who, const std::filesystem::path& out);
// Waits (generously) until `who`'s worklist holds `n` items; returns them. Fails the test if not.
nlohmann::json WaitForWorklist(const TestServer& server, size_t n, const std::string& who = "zhao.min");
// Waits until wang.li's worklist filtered by `query` (e.g. "member=zhuozhou&modality=CT") holds
// exactly one study; returns its Study Instance UID. Fails the test if not.
std::string WaitForOneStudy(const TestServer& server, const std::string& query);
// A Prometheus metric without labels from /metrics (read as the admin "ops").
long Metric(const TestServer& server, const std::string& name);

// echoscu / storescu as a member hospital would run them, Nagle off as a tuned PACS would.
// A full-disk test's server: its storage is the small volume mounted at `volume`, with no
// free-space floor so that the volume really fills up; started.
std::unique_ptr<TestServer> StartServerOnVolume(const std::filesystem::path& dir, const std::filesystem::path& volume,
                                                ServerOptions options = {});
// getscu -S as `calling_ae` for a whole study, into `out` (created); `extra`: more getscu options.
CommandResult GetStudy(const TestServer& server, const std::string& calling_ae, const std::string& study_uid,
                       const std::filesystem::path& out, const std::vector<std::string>& extra = {});
CommandResult Echo(const TestServer& server, const std::string& calling_ae, const std::string& called_ae = "LX_READ");
// Whether the server still runs after an answer: a crash while handling the last association
// would have ended the process, and a C-ECHO on a new one with it.
bool StillRunning(TestServer& server, const std::string& calling_ae = "ZZ_PACS");
// storescu -v: the output names each C-STORE response status (its exit code is 0 even when every
// C-STORE was refused; read StoreResponses instead).
CommandResult StoreFiles(const TestServer& server, const std::string& calling_ae,
                         const std::vector<std::string>& files_or_dirs, const std::vector<std::string>& extra = {});
// The status of each C-STORE response storescu -v printed, in order: "Success", or DCMTK's text
// for another status (e.g. "Unknown Status: 0x124").
std::vector<std::string> StoreResponses(const CommandResult& storescu);
// storescu -v to any port of the centre (the TLS port, say) with `extra` options (e.g. +tls ...).
CommandResult StoreTo(uint16_t port, const std::string& calling_ae, const std::vector<std::string>& files_or_dirs,
                      const std::vector<std::string>& extra = {});

// DICOM TLS in tests. The config's [dicom_tls] table with the server certificate under `pki`
// and `extra` keys (e.g. "port = 0"), to replace the sample config's "[reading]" line with.
std::string DicomTlsTable(const std::filesystem::path& pki, const std::string& extra);
// storescu's TLS options for certificate `name` under `pki`, trusting `ca`.
std::vector<std::string> TlsArgs(const std::filesystem::path& pki, const std::string& name,
                                 const std::filesystem::path& ca);
// storescu -v stored its object: it ran to the end and the centre answered Success.
bool Stored(const CommandResult& storescu);
// The association was refused before any C-STORE: by the centre (A-ASSOCIATE-RJ) or at the TLS
// handshake; never a refused C-STORE on an accepted association, nor a peer that is not there.
bool NotAssociated(const CommandResult& storescu);
// One file of member `ae`'s sample study, under WriteSampleConsortium's `samples`.
std::filesystem::path SampleOf(const std::filesystem::path& samples, const std::string& ae);

// The object paths the index lists, and the objects stored (files under storage/objects,
// "index:" paths whose bytes are in the index, segment ranges within their segment file): after any crash and restart
// the two sets are equal.
std::set<std::string> IndexedPaths(const std::filesystem::path& storage);
std::set<std::string> FilesUnder(const std::filesystem::path& storage);

// The sqlite3 shell's output of `query` on the index, waiting out the running server's write lock
// (a test's trigger, or a check of a table no helper reads).
std::string Sql(const std::filesystem::path& storage, const std::string& query);

// Makes the running server's index refuse audit entries (all of them, or those of `actions`) until
// AllowAuditEntries: a test that an audited request fails closed.
void RefuseAuditEntries(const std::filesystem::path& storage, const std::vector<std::string>& actions = {});
void AllowAuditEntries(const std::filesystem::path& storage);

// The audit trail as the index holds it, oldest first (read-only, while the server runs).
struct AuditRow {
  std::string actor, action, study_instance_uid, detail;
};
std::vector<AuditRow> AuditTrail(const std::filesystem::path& storage);
// Only the rows with this action.
std::vector<AuditRow> AuditTrail(const std::filesystem::path& storage, const std::string& action);

// The sample consortium written by the samples library: dir/<AE>/... per member.
std::filesystem::path WriteSampleConsortium(const std::filesystem::path& dir, int ct_slices = 4);
// Writes the sample consortium under `dir` and pushes it to `server` as the three members.
void PushSampleConsortium(const TestServer& server, const std::filesystem::path& dir, int ct_slices);

}  // namespace teleread::test
