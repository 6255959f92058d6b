#pragma once
// The reading workflow wired as the server wires it, on a temp index and without any socket:
// Ingest, Worklist, ReportDesk, DeliveryOutbox (with a ReportSender the test drives) and
// ReadingApi, all on one clock the test sets. For tests/unit/*workflow*_test.cc.
#include <catch2/catch.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/report.h"
#include "server/http/reading_api.h"
#include "server/reading/ingest.h"
#include "server/reading/outbox.h"
#include "server/reading/report_desk.h"
#include "server/reading/worklist.h"
#include "server/store/stores.h"
#include "tests/support/process.h"

namespace teleread::test {

inline constexpr char kCentreOrganization[] = "Lixian Regional Imaging Reading Centre";

// The client certificate the HTTPS server would have verified for `cn` of the centre's `ou`.
inline PeerCertificate CentreCertificate(const std::string& cn, const std::string& ou) {
  return {"CN=" + cn + ",OU=" + ou + ",O=" + kCentreOrganization, cn, ou};
}

// One counter from the API's /metrics, read as `as`.
inline int64_t Metric(ReadingApi& api, const std::string& name, const PeerCertificate& as) {
  const std::string metrics = api.Handle(HttpRequest{"GET", "/metrics", "", ""}, as).body;
  const size_t at = metrics.find("\n" + name + " ");
  REQUIRE(at != std::string::npos);
  return std::stoll(metrics.substr(at + name.size() + 2));
}

// Sends nothing: records each call and answers as told.
class ScriptedSender : public ReportSender {
 public:
  struct Call {
    std::string member_ae;
    std::string sop_instance_uid;
    bool may_hold = false;
    bool begun = false;  // `begin` succeeded before the answer
  };
  std::string fail_with;          // empty: the member stores it
  std::vector<std::string> down;  // AE titles that fail whatever fail_with says
  std::vector<Call> calls;

  SendResult Send(const DeliveryTarget& target, const OutgoingReport& report, bool may_hold,
                  const std::function<Status()>& begin) override;
};

// One study as received: its files and the UIDs a report names.
struct ReceivedStudy {
  std::string study_instance_uid;
  std::vector<std::filesystem::path> files;
  std::vector<InstanceRef> evidence;
};

class WorkflowFixture {
 public:
  WorkflowFixture();
  ~WorkflowFixture();

  // Writes a series with `spec`'s fields (see samples::SeriesSpec), stores it as `member` would
  // send it, and returns it. Not yet a task: Promote() makes every received study one.
  ReceivedStudy Receive(const std::string& member, const std::string& patient_id, const std::string& modality,
                        const std::string& priority = "", int instances = 1);
  void Promote();
  // A signed report of `study` by `signer` (a certificate of pki_dir()), written to a new file.
  // `edit_unsigned` changes the SR before it is signed.
  std::filesystem::path SignedReport(const ReceivedStudy& study, const std::string& signer,
                                     const std::optional<InstanceRef>& predecessor = std::nullopt,
                                     const std::function<void(const std::filesystem::path&)>& edit_unsigned = {});
  std::string Bytes(const std::filesystem::path& file) const;

  // Rows of a table, counted with the test's own read connection.
  int64_t Count(const std::string& table, const std::string& where = "1") const;

  const std::filesystem::path& pki_dir() const { return pki_dir_; }

  ScratchDir dir{"teleread-workflow"};
  int64_t now_ms = 1'800'000'000'000;
  Config config;
  std::unique_ptr<ObjectStore> store;
  std::unique_ptr<Index> index;
  std::unique_ptr<Stores> stores;
  std::unique_ptr<Ingest> ingest;
  std::unique_ptr<Worklist> worklist;
  std::unique_ptr<ReportDesk> desk;
  ScriptedSender sender;
  std::unique_ptr<DeliveryOutbox> outbox;
  std::unique_ptr<ReadingApi> api;

 private:
  std::filesystem::path pki_dir_;
  int written_ = 0;
};

}  // namespace teleread::test
