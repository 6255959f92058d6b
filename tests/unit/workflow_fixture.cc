#include "tests/unit/workflow_fixture.h"

#include <sqlite3.h>

#include <fstream>
#include <iterator>

#include "common/dicom.h"
#include "common/signing.h"
#include "samples/synthetic.h"
#include "server/pki/pki.h"
#include "tests/support/server_fixture.h"

namespace teleread::test {
namespace fs = std::filesystem;

SendResult ScriptedSender::Send(const DeliveryTarget& target, const OutgoingReport& report, bool may_hold,
                                const std::function<Status()>& begin) {
  Call call{target.ae_title, report.sop_instance_uid, may_hold, false};
  SendResult result;
  bool is_down = false;
  for (const std::string& ae : down) is_down |= ae == target.ae_title;
  if (is_down) {
    result.error = "association to " + target.ae_title + " refused";  // nothing begun: no association
  } else if (Status s = begin(); !s.ok()) {
    result.error = s.message();
  } else {
    call.begun = true;
    result.error = fail_with;
  }
  calls.push_back(call);
  return result;
}

WorkflowFixture::WorkflowFixture() {
  InitializeDicom();
  pki_dir_ = dir.path() / "pki";
  CopyCachedPki("workflow", pki_dir_, [](const fs::path& to) {
    REQUIRE(InitCertificateAuthority(to, kCentreOrganization).ok());
    for (auto [kind, name] : {std::pair{CertKind::kRadiologist, "wang.li"},
                              std::pair{CertKind::kRadiologist, "zhao.min"}, std::pair{CertKind::kAdmin, "chief"}}) {
      IssueRequest r;
      r.kind = kind;
      r.common_name = name;
      r.organization = kCentreOrganization;
      REQUIRE(IssueCertificate(to, r).ok());
    }
  });
  config = LoadConfig(fs::path(TELEREAD_SOURCE_DIR) / "config" / "teleread.toml");
  config.centre.storage = dir.path() / "storage";
  config.https.ca = pki_dir_ / "ca.pem";
  config.https.crl.clear();
  config.centre.min_free_disk_mb = 0;  // the full-disk case sets its own floor
  config.https.admins = {"chief"};
  config.reading.delivery_retry_seconds = 10;
  config.reading.delivery_retry_max_seconds = 40;
  config.reading.delivery_max_attempts = 5;
  auto clock = [this] { return now_ms; };
  store = std::make_unique<ObjectStore>(config.centre.storage);
  REQUIRE(store->Prepare().ok());
  Result<std::unique_ptr<Index>> opened = Index::Open(config.centre.storage / "index.sqlite");
  REQUIRE(opened.ok());
  index = std::move(opened.value());
  store->UseIndex(index.get());
  stores = std::make_unique<Stores>(*index, clock);
  ingest = std::make_unique<Ingest>(*store, *index, clock);
  worklist =
      std::make_unique<Worklist>(stores->tasks, stores->audit, int64_t{config.reading.lease_minutes} * 60'000, clock);
  desk = std::make_unique<ReportDesk>(config, stores->reports, *store, *ingest, clock, nullptr);
  outbox = std::make_unique<DeliveryOutbox>(config, stores->deliveries, *store, sender, clock);
  api = std::make_unique<ReadingApi>(config, *worklist, stores->reads, *store, std::vector<MetricsSource>{}, desk.get(),
                                     outbox.get());
}

WorkflowFixture::~WorkflowFixture() = default;

ReceivedStudy WorkflowFixture::Receive(const std::string& member, const std::string& patient_id,
                                       const std::string& modality, const std::string& priority, int instances) {
  samples::SeriesSpec spec;
  spec.patient_name = "Test^" + patient_id;
  spec.patient_id = patient_id;
  spec.accession_number = "A" + patient_id;
  spec.modality = modality;
  spec.priority = priority;
  spec.instances = instances;
  spec.rows = spec.columns = 16;
  Result<std::vector<fs::path>> files = samples::WriteSeries(spec, dir.path() / ("in" + std::to_string(written_++)));
  REQUIRE(files.ok());
  ReceivedStudy study;
  study.files = files.value();
  for (const fs::path& f : study.files) {
    Result<InstanceSummary> s = ReadInstanceSummary(f);
    REQUIRE(s.ok());
    study.study_instance_uid = s->study_instance_uid;
    study.evidence.push_back(InstanceRef{s->series_instance_uid, s->sop_class_uid, s->sop_instance_uid});
    const fs::path temp = store->NewTempPath();
    fs::copy_file(f, temp);
    StoreOutcome out = ingest->Store({temp, member + "_AE", member, s->sop_class_uid, s->sop_instance_uid, {}, {}});
    INFO(out.error_comment);
    REQUIRE(out.code == IngestCode::kStored);
  }
  return study;
}

void WorkflowFixture::Promote() {
  TaskPolicy policy;
  for (const Member& m : config.members) policy.member_default_priority.emplace_back(m.id, m.default_priority);
  REQUIRE(index->PromoteQuietStudies(now_ms, 0, policy).ok());
}

fs::path WorkflowFixture::SignedReport(const ReceivedStudy& study, const std::string& signer,
                                       const std::optional<InstanceRef>& predecessor,
                                       const std::function<void(const fs::path&)>& edit_unsigned) {
  ReportRequest r;
  r.content.findings = "右肺上叶见一直径约8mm磨玻璃结节。";
  r.content.impression = "Ground-glass nodule.";
  r.content.radiologist_id = signer;
  r.content.radiologist_name = signer;
  r.content.organization = kCentreOrganization;
  r.study_instance = study.files.front();
  r.evidence = study.evidence;
  r.predecessor = predecessor;
  const fs::path out = dir.path() / ("report-" + std::to_string(written_++) + ".dcm");
  const fs::path unsigned_sr = out.string() + ".unsigned";
  REQUIRE(WriteReport(r, unsigned_sr).ok());
  if (edit_unsigned) edit_unsigned(unsigned_sr);
  Status s = SignReportFile(unsigned_sr, out, pki_dir_ / (signer + ".pem"), pki_dir_ / (signer + ".key"));
  INFO(s.ToString());
  REQUIRE(s.ok());
  return out;
}

std::string WorkflowFixture::Bytes(const fs::path& file) const {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int64_t WorkflowFixture::Count(const std::string& table, const std::string& where) const {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2((config.centre.storage / "index.sqlite").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
          SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  const std::string sql = "SELECT COUNT(*) FROM " + table + " WHERE " + where;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &q, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(q) == SQLITE_ROW);
  const int64_t n = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  sqlite3_close(db);
  return n;
}

}  // namespace teleread::test
