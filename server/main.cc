// teleread-server: reads arguments and config, wires the server, waits for a signal.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/config.h"
#include "common/log.h"
#include "common/text.h"
#include "common/version.h"
#include "server/pki/pki.h"
#include "server/server_app.h"
#include "server/store/audit_log.h"
#include "server/store/export.h"
#include "server/store/object_store.h"
#include "server/store/segment_trailer.h"

using namespace teleread;

namespace {

int PrintStatus(const Config& config) {
  // A wrong --storage must fail, not leave a new empty index behind.
  Result<std::unique_ptr<Index>> index = Index::OpenExisting(config.centre.storage / "index.sqlite");
  if (!index.ok()) {
    const Status::Code code = index.status().code();
    std::cerr << "teleread-server: "
              << (code == Status::Code::kNotFound || code == Status::Code::kInvalidArgument ? index.status().message()
                                                                                            : index.status().ToString())
              << "\n";
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
              (long long)c.patients, (long long)c.studies, (long long)c.series, (long long)c.instances, c.bytes / 1e6,
              (long long)c.tasks_total, (long long)c.tasks_waiting);
  std::printf("objects: %lld kept in the index, %lld in segment files, %lld files of their own\n",
              (long long)c.in_index, (long long)c.in_segments, (long long)(c.instances - c.in_index - c.in_segments));
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

// Beside a running server or on a stopped one's storage: reads only.
int VerifySegments(const Config& config) {
  Result<std::unique_ptr<Index>> index = Index::OpenExisting(config.centre.storage / "index.sqlite");
  if (!index.ok()) {
    std::cerr << "teleread-server: " << index.status().message() << "\n";
    return 2;
  }
  const std::filesystem::path segments = config.centre.storage / "segments";
  Result<std::string> key = SegmentTrailerKey(segments, false);
  int64_t whole = 0, damaged = 0, untrailed = 0, total = 0;
  Status walked = index.value()->ForEachSegmentPath([&](const std::string& path) {
    ++total;
    std::string file;
    uint64_t offset = 0, length = 0;
    Result<TrailerCheck> check = Status::Corruption("malformed path");
    if (key.ok() && ObjectStore::ParseInSegmentPath(path, &file, &offset, &length)) {
      check = CheckSegmentObject(config.centre.storage / file, offset, length, SegmentPool::kAlign, key.value());
    } else if (!key.ok()) {
      check = TrailerCheck::kNoTrailer;
    }
    if (check.ok() && check.value() == TrailerCheck::kWhole) {
      ++whole;
    } else if (check.ok() && check.value() == TrailerCheck::kNoTrailer) {
      ++untrailed;
    } else {
      ++damaged;
      std::cout << "DAMAGED " << path << (check.ok() ? "" : ": " + check.status().message()) << "\n";
    }
  });
  if (!walked.ok()) {
    std::cerr << "teleread-server: " << walked.message() << "\n";
    return 2;
  }
  std::cout << total << " object(s) in segments: " << whole << " whole, " << damaged << " damaged, " << untrailed
            << " without a trailer" << (key.ok() ? "" : " (no segments/trailer.key)") << "\n";
  return damaged > 0 ? 1 : 0;
}

int VerifyAudit(const Config& config) {
  Result<AuditVerdict> v = VerifyAuditTrail(config.centre.storage / "index.sqlite");
  if (!v.ok()) {
    std::cerr << "teleread-server: " << v.status().message() << "\n";
    return 2;
  }
  if (v->first_broken_id) {
    std::cout << "audit trail BROKEN at entry " << v->first_broken_id << ": " << v->problem << "\n";
    return 1;
  }
  std::cout << "audit trail intact: " << v->entries << " entries";
  if (v->unchained) std::cout << " (" << v->unchained << " written before the chain began, not covered)";
  std::cout << "; head entry " << v->head.id << " " << v->head.hash << "\n";
  return 0;
}

// One JSON object per line, with the fields of an ATNA audit message (RFC 3881 / DICOM PS3.15
// A.5) a SIEM maps: event time, event (action), active participant (actor), participant object
// (the study), plus the chain hashes so that the export can be checked on its own.
int ExportAudit(const Config& config) {
  Status s = ForEachAuditEntry(config.centre.storage / "index.sqlite", [&config](const StoredAuditEntry& e) {
    char when[64];
    const std::time_t secs = static_cast<std::time_t>(e.at_ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    std::snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(e.at_ms % 1000));
    nlohmann::json line = {{"id", e.id},
                           {"EventDateTime", when},
                           {"EventID", e.entry.action},
                           {"ActiveParticipant", e.entry.actor},
                           {"ParticipantObjectID", e.entry.study_instance_uid},
                           {"detail", e.entry.detail},
                           {"source", config.centre.ae_title},
                           {"prev_hash", e.prev_hash},
                           {"hash", e.hash}};
    std::cout << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  });
  if (!s.ok()) {
    std::cerr << "teleread-server: " << s.message() << "\n";
    return 2;
  }
  return 0;
}

// Works on a stopped server's data and beside a running one (a read-only index connection).
int ExportCommand(const ExportRequest& req) {
  if (req.study_instance_uids.empty() && req.member_id.empty()) {
    std::cerr << "teleread-server: export: name a study (Study Instance UID) or --member\n";
    return 2;
  }
  Result<ExportReport> done = ExportStudies(req);
  if (!done.ok()) {
    std::cerr << "teleread-server: export: " << done.status().message() << "\n";
    return 1;
  }
  std::cout << "exported " << done->studies << " stud" << (done->studies == 1 ? "y" : "ies") << ", " << done->files
            << " file(s), " << done->bytes << " bytes to " << req.output_dir.string() << "\n";
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
  CLI::App* verify_segments = app.add_subcommand(
      "verify-segments", "Check every object in a segment against its trailer's hash; exit 1 if any is damaged");
  CLI::App* audit = app.add_subcommand("audit", "The hash-chained audit trail");
  CLI::App* audit_verify = audit->add_subcommand("verify", "Walk the chain; exit 1 naming the first broken entry");
  CLI::App* audit_export = audit->add_subcommand("export", "Write every entry as a JSON line (for a SIEM)");
  audit->require_subcommand(1);
  CLI::App* exporter =
      app.add_subcommand("export", "Write stored studies as plain DICOM files, byte for byte as stored");
  ExportRequest export_req;
  std::string export_dir;
  CLI::Option* export_study =
      exporter->add_option("study", export_req.study_instance_uids, "Study Instance UID(s) to export");
  exporter->add_option("--member", export_req.member_id, "Every study of this member (its id in the config)")
      ->excludes(export_study);
  exporter->add_option("-o,--output", export_dir, "Directory for <study>/<series>/<sop>.dcm")->required();
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
  pki_issue->add_option("--ip", pki_ips,
                        "IP addresses for a server certificate (or a member PACS taking reports over TLS)");
  pki_issue->add_option("--dns", pki_dns,
                        "DNS names for a server certificate (or a member PACS taking reports over TLS)");
  pki_issue->add_option("--days", pki_days, "Validity in days")->check(CLI::Range(1, 3650));
  bool pki_rsa = false;
  pki_issue->add_flag("--rsa", pki_rsa, "An RSA key for a server certificate ([dicom_tls] legacy_certificate)");
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
    r.kind = pki_kind == "server"        ? CertKind::kServer
             : pki_kind == "admin"       ? CertKind::kAdmin
             : pki_kind == "member"      ? CertKind::kMember
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
    r.rsa = pki_rsa;
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
  if (*verify_segments) return VerifySegments(config);
  if (*audit_verify) return VerifyAudit(config);
  if (*audit_export) return ExportAudit(config);
  if (*exporter) {
    export_req.storage_root = config.centre.storage;
    export_req.output_dir = export_dir;
    return ExportCommand(export_req);
  }
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
