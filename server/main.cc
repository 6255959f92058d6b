// teleread-server: reads arguments and config, wires the server, waits for a signal.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <iostream>

#include "common/config.h"
#include "common/log.h"
#include "common/text.h"
#include "common/version.h"
#include "server/pki/pki.h"
#include "server/server_app.h"
#include "server/store/sqlite.h"

using namespace teleread;

namespace {

int PrintStatus(const Config& config) {
  // Read-only first: a wrong --storage must fail, not leave a new empty index behind.
  if (Result<std::unique_ptr<Database>> existing = Database::Open(config.centre.storage / "index.sqlite", true);
      !existing.ok()) {
    std::cerr << "teleread-server: " << existing.status().message() << "\n";
    return 1;
  }
  Result<std::unique_ptr<Index>> index = OpenIndex(config.centre.storage);
  if (!index.ok()) {
    std::cerr << "teleread-server: " << index.status().ToString() << "\n";
    return 1;
  }
  Result<IndexCounts> counts = index.value()->Counts();
  Result<std::vector<StudyOverview>> studies = index.value()->ListStudies();
  if (!counts.ok() || !studies.ok()) {
    std::cerr << "teleread-server: cannot read the index\n";
    return 1;
  }
  const IndexCounts& c = counts.value();
  std::printf("%lld patients, %lld studies, %lld series, %lld instances (%.1f MB); %lld reading tasks, %lld waiting\n",
              (long long)c.patients, (long long)c.studies, (long long)c.series, (long long)c.instances,
              c.bytes / 1e6, (long long)c.tasks_total, (long long)c.tasks_waiting);
  std::printf("%-10s %-12s %-8s %-9s %-28s %-8s %6s %9s  %s\n", "MEMBER", "PATIENT ID", "DATE", "MODALITY",
              "DESCRIPTION", "PRIORITY", "SERIES", "INSTANCES", "TASK");
  for (const StudyOverview& s : studies.value()) {
    std::printf("%-10s %-12s %-8s %-9s %s %-8s %6lld %9lld  %s\n", s.member_id.c_str(), s.patient_id.c_str(),
                s.study_date.c_str(), s.modalities.c_str(), PadToWidth(s.study_description, 28).c_str(),
                s.priority.empty() ? "-" : s.priority.c_str(), (long long)s.num_series, (long long)s.num_instances,
                s.task_state.empty() ? "receiving" : s.task_state.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"TeleRead reading-centre server"};
  app.set_version_flag("--version", kVersion);
  std::string config_path;
  int dicom_port = -1;
  std::string storage;
  bool check_only = false;
  std::string log_level = "info";
  app.add_option("-c,--config", config_path, "Centre configuration (TOML)")->required()->check(CLI::ExistingFile);
  app.add_option("--dicom-port", dicom_port, "Override centre.dicom_port")->check(CLI::Range(0, 65535));
  app.add_option("--storage", storage, "Override centre.storage (objects and the SQLite index)");
  app.add_flag("--check-config", check_only, "Validate the configuration and exit");
  app.add_option("--log-level", log_level, "trace, debug, info, warn or error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  int http_port = -1;
  app.add_option("--http-port", http_port, "Override https.port (0: any free port)")->check(CLI::Range(0, 65535));
  CLI::App* status = app.add_subcommand("status", "Print what the index holds and exit");
  CLI::App* pki = app.add_subcommand("pki", "The centre's certificate authority");
  std::string pki_dir, pki_kind = "radiologist", pki_name, pki_org = "Lixian Regional Imaging Reading Centre";
  std::vector<std::string> pki_ips = {"127.0.0.1"}, pki_dns = {"localhost"};
  int pki_days = 825;
  CLI::App* pki_init = pki->add_subcommand("init", "Create the centre CA in DIR (ca.pem, ca.key)");
  pki_init->add_option("dir", pki_dir, "Directory for the CA")->required();
  pki_init->add_option("--organization", pki_org, "Organization in the CA's subject");
  CLI::App* pki_issue = pki->add_subcommand("issue", "Issue a certificate from the CA in DIR");
  pki_issue->add_option("dir", pki_dir, "Directory of the CA")->required();
  pki_issue->add_option("--kind", pki_kind, "server, radiologist, admin, member or workstation (a centre AE title)")
      ->check(CLI::IsMember({"server", "radiologist", "admin", "member", "workstation"}));
  pki_issue->add_option("--name", pki_name, "Common name: radiologist id, admin name, member AE, server name")
      ->required();
  pki_issue->add_option("--organization", pki_org, "Organization in the subject");
  pki_issue->add_option("--ip", pki_ips, "IP addresses for a server certificate (or a member PACS taking reports over TLS)");
  pki_issue->add_option("--dns", pki_dns, "DNS names for a server certificate (or a member PACS taking reports over TLS)");
  pki_issue->add_option("--days", pki_days, "Validity in days")->check(CLI::Range(1, 3650));
  std::string pki_revoke;
  int pki_crl_days = 365;
  CLI::App* pki_crl = pki->add_subcommand("crl", "Write DIR/crl.pem: the CA's revocation list, re-signed");
  pki_crl->add_option("dir", pki_dir, "Directory of the CA")->required();
  pki_crl->add_option("--revoke", pki_revoke, "Also revoke the certificate DIR/NAME.pem")->option_text("NAME");
  pki_crl->add_option("--days", pki_crl_days, "Days until the list expires and must be re-signed")
      ->check(CLI::Range(1, 3650));
  pki->require_subcommand(1);
  app.get_option("--config")->required(false);
  CLI11_PARSE(app, argc, argv);
  if (*pki) {
    // PKI commands need no config: they run before a server exists.
    if (*pki_init) {
      Status s = InitCertificateAuthority(pki_dir, pki_org);
      if (!s.ok()) {
        std::cerr << "teleread-server: " << s.ToString() << "\n";
        return 1;
      }
      std::cout << "created the CA in " << pki_dir << "\n";
      return 0;
    }
    if (*pki_crl) {
      Result<int> listed = WriteRevocationList(pki_dir, pki_revoke, pki_crl_days);
      if (!listed.ok()) {
        std::cerr << "teleread-server: " << listed.status().ToString() << "\n";
        return 1;
      }
      std::cout << (std::filesystem::path(pki_dir) / "crl.pem").string() << ": " << listed.value()
                << " revoked certificate(s), valid for " << pki_crl_days << " days\n";
      return 0;
    }
    IssueRequest r;
    r.kind = pki_kind == "server" ? CertKind::kServer
             : pki_kind == "admin" ? CertKind::kAdmin
             : pki_kind == "member" ? CertKind::kMember
             : pki_kind == "workstation" ? CertKind::kWorkstation
                                    : CertKind::kRadiologist;
    r.common_name = pki_name;
    r.organization = pki_org;
    // A member PACS that takes reports over DICOM TLS needs its address in its certificate.
    const bool peer = r.kind == CertKind::kMember || r.kind == CertKind::kWorkstation;
    if (r.kind == CertKind::kServer || (peer && pki_issue->count("--ip"))) {
      r.ip_addresses = pki_ips;
    }
    if (r.kind == CertKind::kServer || (peer && pki_issue->count("--dns"))) {
      r.dns_names = pki_dns;
    }
    r.valid_days = pki_days;
    Result<IssuedFiles> issued = IssueCertificate(pki_dir, r);
    if (!issued.ok()) {
      std::cerr << "teleread-server: " << issued.status().ToString() << "\n";
      return 1;
    }
    std::cout << issued->certificate.string() << "\n" << issued->key.string() << "\n";
    return 0;
  }
  if (config_path.empty()) {
    std::cerr << "teleread-server: --config is required\n";
    return 2;
  }

  Config config;
  try {
    config = LoadConfig(config_path);
  } catch (const ConfigError& e) {
    std::cerr << "teleread-server: invalid configuration: " << e.what() << "\n";
    return 2;
  }
  if (dicom_port >= 0) config.centre.dicom_port = static_cast<uint16_t>(dicom_port);
  if (http_port >= 0) config.https.port = static_cast<uint16_t>(http_port);
  if (!storage.empty()) config.centre.storage = std::filesystem::absolute(storage);
  const std::vector<std::string> warnings = ConfigWarnings(config);
  if (check_only) {
    for (const std::string& w : warnings) std::cerr << config_path << ": warning: " << w << "\n";
    std::cout << config_path << ": OK (" << config.members.size() << " members, " << config.radiologists.size()
              << " radiologists)\n";
    return 0;
  }
  SetUpLogging(log_level);
  if (*status) return PrintStatus(config);
  for (const std::string& w : warnings) spdlog::warn("config: {}", w);

  // Signals are taken by sigwait below, so block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // DCMTK reads this when it opens an outgoing association (C-MOVE, report delivery): Nagle off.
  ::setenv("TCP_NODELAY", "1", 0);

  ServerApp server(std::move(config));
  if (Status s = server.Start(); !s.ok()) {
    spdlog::error("cannot start: {}", s.ToString());
    return 1;
  }
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("signal {}: stopping", sig);
  server.Stop();
  return 0;
}
