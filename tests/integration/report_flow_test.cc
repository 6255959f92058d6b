// Signed reports end to end: acceptance over HTTPS, every refusal, storage, delivery to a real
// member PACS (storescp) with retries and dead letters, retrieval by the member, amendments.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <regex>

#include "common/signing.h"
#include "server/pki/pki.h"
#include "server/store/sqlite.h"
#include "tests/support/orthanc.h"
#include "tests/support/reports.h"
#include "tests/support/server_fixture.h"

using namespace teleread;
using namespace teleread::test;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

ServerOptions Options(uint16_t zhuozhou_port, int max_attempts) {
  ServerOptions o;
  o.edits = {ZhuozhouDeliveryPort(zhuozhou_port),
             {"^delivery_retry_seconds = .*$", "delivery_retry_seconds = 1"},
             {"^delivery_retry_max_seconds = .*$", "delivery_retry_max_seconds = 2"},
             {"^delivery_timeout_seconds = .*$", "delivery_timeout_seconds = 5"},
             {"^delivery_max_attempts = .*$", "delivery_max_attempts = " + std::to_string(max_attempts)}};
  return o;
}

class ReportFixture {
 public:
  explicit ReportFixture(int max_attempts = 10)
      : pacs_(dir_.path() / "zz_pacs", "ZZ_PACS"),
        server_(dir_.path() / "server", Options(pacs_.port(), max_attempts)) {
    server_.Start();
    PushSampleConsortium(server_, samples(), 2);
    WaitForWorklist(server_, 6, "zhao.min");
    const json worklist = server_.Call("wang.li", "GET", "/api/v1/worklist").Json();
    for (const json& item : worklist["items"]) {
      if (item["member"] == "zhuozhou" && item["modalities"] == "CT") ct_ = item["study_instance_uid"];
      if (item["member"] == "zhuozhou" && item["modalities"] != "CT") cr_ = item["study_instance_uid"];
    }
    REQUIRE_FALSE(ct_.empty());
    REQUIRE_FALSE(cr_.empty());
  }

  fs::path samples() const { return dir_.path() / "samples"; }
  fs::path file(const std::string& name) const { return dir_.path() / name; }

  void Claim(const std::string& who, const std::string& study) {
    REQUIRE(server_.Call(who, "POST", "/api/v1/studies/" + study + "/claim").status == 200);
  }

  json Reports(const std::string& study) {
    HttpReply r = server_.Call("wang.li", "GET", "/api/v1/studies/" + study + "/reports");
    REQUIRE(r.status == 200);
    return r.Json()["items"];
  }

  json Task(const std::string& study) {
    return server_.Call("wang.li", "GET", "/api/v1/studies/" + study).Json()["task"];
  }

  bool Delivered(const std::string& study, size_t n) {
    json items = Reports(study);
    if (items.size() != n) return false;
    for (const json& i : items) {
      if (i["delivery"]["state"] != "delivered") return false;
      if (i["pdf"].is_null() || i["pdf"]["delivery"]["state"] != "delivered") return false;  // its PDF copy too
    }
    return true;
  }

  // Delivers a report of the other Zhuozhou study (CR) and returns its SOP Instance UID. Once it
  // is delivered, the outbox has run a round after everything before it was recorded: a report
  // wrongly due again would have been in that round, sent before it (due rows go in order of
  // their due time), and so received by now. An event to wait on instead of a quiet window.
  std::string DeliverAnother() {
    Claim("wang.li", cr_);
    const fs::path out = file("another.dcm");
    WriteSignedReport(FindSampleStudy(samples(), cr_), server_.pki(), "wang.li", out);
    HttpReply accepted = SubmitReport(server_, "wang.li", cr_, out);
    REQUIRE(accepted.status == 201);
    REQUIRE(WaitFor([&] { return Delivered(cr_, 1); }));
    return accepted.Json()["sop_instance_uid"];
  }

  // A signed report of the CT study by `who`, written to `name`.
  fs::path Report(const std::string& who, const std::string& name,
                  const std::optional<InstanceRef>& predecessor = std::nullopt) {
    fs::path out = file(name);
    WriteSignedReport(FindSampleStudy(samples(), ct_), server_.pki(), who, out, predecessor,
                      "Finding of " + name + ": 右肺上叶见一直径约8mm磨玻璃结节。");
    return out;
  }

 protected:
  ScratchDir dir_;
  MemberPacs pacs_;
  TestServer server_;
  std::string ct_, cr_;
};

int CountMatches(const std::string& output) {
  int n = 0;
  for (size_t p = output.find("Find Response:"); p != std::string::npos; p = output.find("Find Response:", p + 1)) {
    if (output.compare(output.find('(', p) + 1, 7, "Pending") == 0) ++n;
  }
  return n;
}

}  // namespace

TEST_CASE_METHOD(ReportFixture, "a signed report is accepted then delivered to the member and findable there",
                 "[reports]") {
  pacs_.Start();
  Claim("wang.li", ct_);
  fs::path report = Report("wang.li", "r1.dcm");
  HttpReply accepted = SubmitReport(server_, "wang.li", ct_, report);
  INFO(accepted.body);
  REQUIRE(accepted.status == 201);
  const std::string sop = accepted.Json()["sop_instance_uid"];
  CHECK(accepted.Json()["signer"] == "wang.li");

  REQUIRE(WaitFor([&] { return Delivered(ct_, 1); }));
  json task = Task(ct_);
  CHECK(task["state"] == "reported");
  CHECK(task["reported_by"] == "wang.li");
  CHECK(task["reported_ms"].get<int64_t>() > 0);
  CHECK(task["delivered_ms"].get<int64_t>() >= task["reported_ms"].get<int64_t>());

  // The member received it once, and its signature still verifies with the centre CA.
  REQUIRE(pacs_.Files().size() == 2);  // the SR and its PDF copy
  CHECK(pacs_.Received(sop) == 1);
  CommandResult verify =
      RunCommand({DCMSIGN_BIN, "--verify", "+cf", (server_.pki() / "ca.pem").string(), pacs_.FileOf(sop).string()});
  INFO(verify.output);
  CHECK(verify.exit_code == 0);

  // The same report again (a lost response): accepted, nothing new.
  HttpReply again = SubmitReport(server_, "wang.li", ct_, report);
  CHECK(again.status == 200);
  CHECK(Reports(ct_).size() == 1);

  // The member finds it by C-FIND, Modality SR at SERIES level; another member does not.
  auto find = [&](const std::string& ae) {
    return RunCommand({FINDSCU_BIN, "-v", "-S", "-aet", ae, "-aec", "LX_READ", "-k", "QueryRetrieveLevel=SERIES", "-k",
                       "StudyInstanceUID=" + ct_, "-k", "Modality=SR", "-k", "SeriesInstanceUID", "127.0.0.1",
                       server_.port_text()});
  };
  CHECK(CountMatches(find("ZZ_PACS").output) == 1);
  // No match for the other member, from a query that succeeded (not a refusal or a broken association).
  CommandResult other = find("LS_PACS");
  INFO(other.output);
  CHECK(CountMatches(other.output) == 0);
  CHECK_THAT(other.output, Catch::Contains("Received Final Find Response (Success)"));

  // ... and retrieves it by C-GET.
  fs::path got = file("got");
  fs::create_directories(got);
  CommandResult get = RunCommand({GETSCU_BIN, "-S", "-aet", "ZZ_PACS", "-aec", "LX_READ", "-k",
                                  "QueryRetrieveLevel=SERIES", "-k", "StudyInstanceUID=" + ct_, "-k",
                                  "SeriesInstanceUID=" + accepted.Json()["series_instance_uid"].get<std::string>(),
                                  "-od", got.string(), "127.0.0.1", server_.port_text()});
  INFO(get.output);
  CHECK(std::distance(fs::directory_iterator(got), fs::directory_iterator()) == 2);  // the SR and its PDF copy

  // The API serves the stored report byte for byte; a member sees only its own.
  CommandResult download = server_.Curl("wang.li", "GET", "/api/v1/reports/" + sop, {"-o", file("dl.dcm").string()});
  CHECK(ReadFile(file("dl.dcm")) == ReadFile(report));
  REQUIRE(IssueCertificate(
              server_.pki(),
              IssueRequest{CertKind::kMember, "ZZ_PACS", "Lixian Regional Imaging Reading Centre", {}, {}, 30, 0})
              .ok());
  REQUIRE(IssueCertificate(
              server_.pki(),
              IssueRequest{CertKind::kMember, "LS_PACS", "Lixian Regional Imaging Reading Centre", {}, {}, 30, 0})
              .ok());
  HttpReply mine = server_.Call("ZZ_PACS", "GET",
                                "/api/v1/reports?accession=" + Reports(ct_)[0]["accession_number"].get<std::string>());
  REQUIRE(mine.status == 200);
  CHECK(mine.Json()["items"].size() == 1);
  HttpReply others = server_.Call("LS_PACS", "GET", "/api/v1/studies/" + ct_ + "/reports");
  CHECK(others.status == 200);
  CHECK(others.Json()["items"].empty());
  CHECK(server_.Call("LS_PACS", "GET", "/api/v1/reports/" + sop).status == 404);
  CHECK(server_.Call("ZZ_PACS", "GET", "/api/v1/worklist").status == 403);
}

TEST_CASE_METHOD(ReportFixture, "a report whose SR the member sent by C-STORE first still gets its PDF copy, delivered",
                 "[reports][pdf]") {
  pacs_.Start();
  Claim("wang.li", ct_);
  const fs::path report = Report("wang.li", "r1.dcm");
  // The member's PACS sends the signed SR before the radiologist's workstation submits it.
  CommandResult sent = RunCommand(
      {STORESCU_BIN, "-aet", "ZZ_PACS", "-aec", "LX_READ", "127.0.0.1", server_.port_text(), report.string()});
  INFO(sent.output);
  REQUIRE(sent.exit_code == 0);

  HttpReply accepted = SubmitReport(server_, "wang.li", ct_, report);
  INFO(accepted.body);
  REQUIRE(accepted.status == 201);
  const std::string sop = accepted.Json()["sop_instance_uid"];
  REQUIRE(accepted.Json()["pdf_sop_instance_uid"].is_string());
  const std::string pdf = accepted.Json()["pdf_sop_instance_uid"];
  // The copy is there: named in the report's row, its bytes served, delivered with the SR.
  CHECK(Reports(ct_)[0]["pdf"]["sop_instance_uid"] == pdf);
  CommandResult bytes =
      server_.Curl("wang.li", "GET", "/api/v1/reports/" + sop + "/pdf", {"-o", file("c.pdf").string()});
  CHECK_THAT(bytes.output, Catch::EndsWith("200"));
  CHECK(ReadFile(file("c.pdf")).rfind("%PDF-", 0) == 0);
  REQUIRE(WaitFor([&] { return Delivered(ct_, 1); }));
  CHECK(pacs_.Received(pdf) == 1);
  CHECK_THAT(server_.Log(), Catch::Contains("PDF copy " + pdf + " of report " + sop + ": "));

  // Sent again over the API: the same acceptance, its time and copy, nothing new.
  HttpReply again = SubmitReport(server_, "wang.li", ct_, report);
  CHECK(again.status == 200);
  CHECK(again.Json()["pdf_sop_instance_uid"] == pdf);
  CHECK(again.Json()["accepted_ms"] == accepted.Json()["accepted_ms"]);
  CHECK(Reports(ct_).size() == 1);
}

TEST_CASE_METHOD(ReportFixture, "bad reports are refused with the reason and nothing is stored", "[reports]") {
  pacs_.Start();
  Claim("wang.li", ct_);
  const json before = server_.Call("wang.li", "GET", "/api/v1/studies/" + ct_).Json()["series"];
  auto refused = [&](const std::string& who, const fs::path& report, int status, const std::string& reason,
                     const std::string& study = "") {
    HttpReply r = SubmitReport(server_, who, study.empty() ? ct_ : study, report);
    INFO(r.body);
    CHECK(r.status == status);
    CHECK_THAT(r.body, Catch::Contains(reason));
  };

  fs::path good = Report("wang.li", "good.dcm");
  std::string bytes = ReadFile(good);
  bytes[bytes.size() - 700] ^= 0x01;  // inside the content, far from the meta header
  WriteFile(file("tampered.dcm"), bytes);
  refused("wang.li", file("tampered.dcm"), 422, "signature check failed");

  REQUIRE(InitCertificateAuthority(file("foreign"), "Elsewhere").ok());
  REQUIRE(IssueCertificate(file("foreign"), IssueRequest{CertKind::kRadiologist, "wang.li", "Elsewhere", {}, {}, 30, 0})
              .ok());
  fs::path foreign = file("foreign.dcm");
  WriteSignedReport(FindSampleStudy(samples(), ct_), file("foreign"), "wang.li", foreign);
  refused("wang.li", foreign, 422, "not trusted");

  REQUIRE(
      IssueCertificate(
          server_.pki(),
          IssueRequest{CertKind::kRadiologist, "old.doctor", "Lixian Regional Imaging Reading Centre", {}, {}, 5, -10})
          .ok());
  fs::path expired = file("expired.dcm");
  WriteSignedReport(FindSampleStudy(samples(), ct_), server_.pki(), "old.doctor", expired, std::nullopt, "x", false);
  refused("wang.li", expired, 422, "expired");

  // Signed by zhao.min, uploaded by wang.li; and zhao.min, who holds no claim.
  fs::path zhao = Report("zhao.min", "zhao.dcm");
  refused("wang.li", zhao, 403, "signed by zhao.min, not by you");
  refused("zhao.min", zhao, 409, "claimed by wang.li");
  // A report of one study sent to another; an unclaimed study.
  refused("wang.li", good, 400, "the report is for study", cr_);
  fs::path cr_report = file("cr.dcm");
  WriteSignedReport(FindSampleStudy(samples(), cr_), server_.pki(), "wang.li", cr_report);
  refused("wang.li", cr_report, 409, "not claimed", cr_);
  refused("wang.li", FindSampleStudy(samples(), ct_).files.front(), 400, "not a Basic or Enhanced Text SR");
  refused("ops", good, 403, "signed and submitted by radiologists");

  CHECK(Reports(ct_).empty());
  CHECK(server_.Call("wang.li", "GET", "/api/v1/studies/" + ct_).Json()["series"] == before);
  CHECK(Task(ct_)["state"] == "claimed");
  CHECK(pacs_.Files().empty());

  // The good one still goes through afterwards.
  CHECK(SubmitReport(server_, "wang.li", ct_, good).status == 201);
}

TEST_CASE_METHOD(ReportFixture, "a member that is down gets its report exactly once when it is back", "[reports]") {
  Claim("wang.li", ct_);
  HttpReply accepted = SubmitReport(server_, "wang.li", ct_, Report("wang.li", "r.dcm"));
  REQUIRE(accepted.status == 201);
  const std::string sop = accepted.Json()["sop_instance_uid"];
  REQUIRE(WaitFor([&] { return Reports(ct_)[0]["delivery"]["attempts"].get<int>() >= 2; }));
  json pending = server_.Call("ops", "GET", "/api/v1/deliveries?state=pending").Json()["items"];
  REQUIRE(pending.size() == 2);  // the SR and its PDF copy
  for (const json& row : pending) {
    if (row["sop_instance_uid"] == sop) {
      CHECK_THAT(row["last_error"].get<std::string>(), Catch::Contains("association"));
    } else {
      CHECK(row["attempts"] == 0);  // the copy waits for its SR
    }
  }

  // A crash while it waits loses nothing.
  server_.Stop(9);
  server_.Start();
  pacs_.Start();
  REQUIRE(WaitFor([&] { return Delivered(ct_, 1); }));
  const std::string another = DeliverAnother();  // a later round, in which a second transfer would show
  CHECK(pacs_.Received(sop) == 1);
  CHECK(pacs_.Received(another) == 1);
  CHECK(pacs_.Files().size() == 4);  // two SRs and their PDF copies
  CHECK(server_.Call("ops", "GET", "/api/v1/deliveries?state=delivered").Json()["items"].size() == 4);
}

// The state a crash between the member's success status and our commit of "delivered" leaves:
// the row pending again, its attempt begun.
void Undeliver(const fs::path& storage) {
  auto db = Database::Open(storage / "index.sqlite", false);
  REQUIRE(db.ok());
  REQUIRE(db.value()->Exec("UPDATE deliveries SET state = 'pending', delivered_ms = 0, next_attempt_ms = 0").ok());
}

TEST_CASE_METHOD(ReportFixture,
                 "after an interrupted delivery the member is asked first: no second transfer of a report it holds",
                 "[reports][orthanc]") {
  OrthancPacs orthanc(dir_.path() / "orthanc", "ZZ_PACS", pacs_.port());
  orthanc.Start();
  Claim("wang.li", ct_);
  HttpReply accepted = SubmitReport(server_, "wang.li", ct_, Report("wang.li", "r.dcm"));
  REQUIRE(accepted.status == 201);
  const std::string sop = accepted.Json()["sop_instance_uid"];
  REQUIRE(WaitFor([&] { return Delivered(ct_, 1); }));
  CHECK(orthanc.Received(sop) == 1);
  CHECK(Reports(ct_)[0]["delivery"]["attempts"] == 1);

  SECTION("the member holds it: recorded as delivered, not sent again") {
    REQUIRE(server_.Stop() == 0);
    Undeliver(server_.storage());
    server_.Start();
    REQUIRE(WaitFor([&] { return Delivered(ct_, 1); }));
    CHECK(orthanc.Received(sop) == 1);
    CHECK_THAT(server_.Log(), Catch::Contains("was already held by zhuozhou"));
    auto db = Database::Open(server_.storage() / "index.sqlite", true);
    REQUIRE(db.ok());
    Statement q(db.value()->handle(), "SELECT detail FROM audit_log WHERE action = 'deliver' ORDER BY id");
    std::vector<std::string> details;
    for (Result<bool> row = q.Step(); row.ok() && row.value(); row = q.Step()) details.push_back(q.Text(0));
    REQUIRE(details.size() == 4);  // the SR and its PDF copy, each delivered then found held
    CHECK_THAT(details[2], Catch::Contains("already held after an earlier attempt"));
    CHECK_THAT(details[3], Catch::Contains("already held after an earlier attempt") && Catch::Contains("PDF copy of"));
  }
  SECTION("the member lost it: sent again, and held once") {
    REQUIRE(server_.Stop() == 0);
    Undeliver(server_.storage());
    REQUIRE(orthanc.Rest({"/instances/" + orthanc.InstanceId(sop), "-X", "DELETE"}).exit_code == 0);
    REQUIRE(orthanc.InstanceId(sop).empty());
    server_.Start();
    REQUIRE(WaitFor([&] { return Delivered(ct_, 1); }));
    CHECK(orthanc.Received(sop) == 2);
    CHECK_FALSE(orthanc.InstanceId(sop).empty());
    // Its PDF copy was not lost, and is not sent again; the SR is.
    CHECK_THAT(server_.Log(), !Catch::Contains("] report " + sop + " was already held"));
  }
  SECTION("a member that cannot answer C-FIND gets it again") {
    orthanc.Stop();
    pacs_.Start();  // storescp: C-STORE only
    REQUIRE(server_.Stop() == 0);
    Undeliver(server_.storage());
    server_.Start();
    REQUIRE(WaitFor([&] { return Delivered(ct_, 1); }));
    CHECK(pacs_.Received(sop) == 1);
    CHECK_THAT(server_.Log(), Catch::Contains("an earlier attempt may have reached it, but it cannot say"));
  }
}

TEST_CASE_METHOD(ReportFixture,
                 "an outbox that cannot record its attempts waits a round between them and delivers once it can",
                 "[reports]") {
  // A trigger stands in for a full or read-only index: every change to a delivery row fails.
  auto Index = [&] {
    auto db = Database::Open(server_.storage() / "index.sqlite", false);
    REQUIRE(db.ok());
    return std::move(db.value());
  };
  REQUIRE(Index()
              ->Exec("CREATE TRIGGER unwritable BEFORE UPDATE ON deliveries BEGIN "
                     "SELECT RAISE(ABORT, 'the index cannot be written'); END")
              .ok());
  pacs_.Start();
  Claim("wang.li", ct_);
  HttpReply accepted = SubmitReport(server_, "wang.li", ct_, Report("wang.li", "r.dcm"));
  REQUIRE(accepted.status == 201);
  const std::string sop = accepted.Json()["sop_instance_uid"];
  // When each failure was logged, in ms of the day.
  auto Failures = [&] {
    static const std::regex line(R"((\d\d):(\d\d):(\d\d)\.(\d{3}) [^\n]*cannot record the outcome)");
    const std::string log = server_.Log();
    std::vector<int64_t> at;
    for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator(); ++it) {
      const std::smatch& m = *it;
      at.push_back(((std::stoll(m[1]) * 60 + std::stoll(m[2])) * 60 + std::stoll(m[3])) * 1000 + std::stoll(m[4]));
    }
    return at;
  };
  REQUIRE(WaitFor([&] { return Failures().size() >= 3; }, 60));
  // A round (1 s) between attempts, not association after association as fast as the member
  // answers (3,633 attempts in 3 s without the pause). A lower bound on each gap: a loaded machine
  // can only widen it.
  const std::vector<int64_t> at = Failures();
  for (size_t i = 1; i < at.size(); ++i) {
    const int64_t gap = (at[i] - at[i - 1] + 86'400'000) % 86'400'000;  // across midnight too
    INFO("gap " << i << ": " << gap << " ms");
    CHECK(gap >= 500);
  }
  CHECK_THAT(server_.Log(), Catch::Contains("cannot record the attempt"));
  CHECK(pacs_.Files().empty());  // nothing is sent before its attempt is on record
  CHECK(Reports(ct_)[0]["delivery"]["state"] == "pending");

  REQUIRE(Index()->Exec("DROP TRIGGER unwritable").ok());
  REQUIRE(WaitFor([&] { return Delivered(ct_, 1); }));
  CHECK(pacs_.Received(sop) == 1);
  CHECK(pacs_.Files().size() == 2);
}

namespace {
class DeadLetterFixture : public ReportFixture {
 public:
  DeadLetterFixture() : ReportFixture(2) {}
};
}  // namespace

TEST_CASE_METHOD(DeadLetterFixture, "after the last attempt a report waits as a dead letter until an admin retries it",
                 "[reports]") {
  Claim("wang.li", ct_);
  HttpReply accepted = SubmitReport(server_, "wang.li", ct_, Report("wang.li", "r.dcm"));
  REQUIRE(accepted.status == 201);
  const std::string sop = accepted.Json()["sop_instance_uid"];
  REQUIRE(WaitFor([&] { return Reports(ct_)[0]["delivery"]["state"] == "dead"; }));
  CHECK_THAT(server_.Log(), Catch::Contains("dead-lettered"));
  CHECK_THAT(server_.Call("ops", "GET", "/metrics").body,
             Catch::Contains("teleread_report_deliveries{state=\"dead\"} 1"));
  json dead = server_.Call("ops", "GET", "/api/v1/deliveries?state=dead").Json()["items"];
  REQUIRE(dead.size() == 1);
  CHECK(dead[0]["attempts"] == 2);
  // Its PDF copy is never sent without the signed SR: it waits, untried.
  json waiting = server_.Call("ops", "GET", "/api/v1/deliveries?state=pending").Json()["items"];
  REQUIRE(waiting.size() == 1);
  CHECK(waiting[0]["attempts"] == 0);

  pacs_.Start();
  const std::string another = DeliverAnother();  // a round with the member up
  CHECK(pacs_.Received(sop) == 0);               // dead means no more attempts on its own
  CHECK(pacs_.Received(another) == 1);
  CHECK(pacs_.Files().size() == 2);  // the other report and its PDF copy
  const std::string retry = "/api/v1/deliveries/" + std::to_string(dead[0]["id"].get<int64_t>()) + "/retry";
  CHECK(server_.Call("wang.li", "POST", retry).status == 403);
  // A retry whose audit entry cannot be written is refused (503) and leaves the letter dead.
  RefuseAuditEntries(server_.storage(), {"retry-delivery"});
  CHECK(server_.Call("ops", "POST", retry).status == 503);
  AllowAuditEntries(server_.storage());
  CHECK(server_.Call("ops", "GET", "/api/v1/deliveries?state=dead").Json()["items"].size() == dead.size());
  CHECK(server_.Call("ops", "POST", retry).status == 200);
  REQUIRE(WaitFor([&] { return Delivered(ct_, 1); }));
  CHECK(pacs_.Received(sop) == 1);
  CHECK(pacs_.Files().size() == 4);
  CHECK(server_.Call("ops", "POST", retry).status == 409);
}

TEST_CASE_METHOD(ReportFixture, "amendments chain to the report they revise and are delivered like it", "[reports]") {
  pacs_.Start();
  Claim("wang.li", ct_);
  fs::path first = Report("wang.li", "first.dcm");
  REQUIRE(SubmitReport(server_, "wang.li", ct_, first).status == 201);
  // Still "reported": a second original is refused, an amendment by a stranger too.
  CHECK(SubmitReport(server_, "wang.li", ct_, Report("wang.li", "second.dcm")).status == 409);
  fs::path by_zhao = Report("zhao.min", "zhao.dcm", ReportRef(first));
  CHECK(SubmitReport(server_, "zhao.min", ct_, by_zhao).status == 403);

  fs::path amend1 = Report("wang.li", "amend1.dcm", ReportRef(first));
  HttpReply a1 = SubmitReport(server_, "wang.li", ct_, amend1);
  INFO(a1.body);
  REQUIRE(a1.status == 201);
  CHECK(a1.Json()["amends"] == ReportRef(first).sop_instance_uid);
  CHECK(Task(ct_)["state"] == "amended");
  // The original may not be amended twice: the chain has one head.
  CHECK(SubmitReport(server_, "wang.li", ct_, Report("wang.li", "fork.dcm", ReportRef(first))).status == 409);

  // An admin hands the amendment to zhao.min.
  REQUIRE(server_.Call("ops", "POST", "/api/v1/studies/" + ct_ + "/reassign?to=zhao.min").status == 200);
  fs::path amend2 = Report("zhao.min", "amend2.dcm", ReportRef(amend1));
  HttpReply a2 = SubmitReport(server_, "zhao.min", ct_, amend2);
  INFO(a2.body);
  REQUIRE(a2.status == 201);
  CHECK(Task(ct_)["state"] == "amended");
  CHECK(Task(ct_)["claimed_by"].is_null());

  REQUIRE(WaitFor([&] { return Delivered(ct_, 3); }));
  json items = Reports(ct_);
  CHECK(items[0]["amended_by"] == ReportRef(amend1).sop_instance_uid);
  CHECK(items[1]["amends"] == ReportRef(first).sop_instance_uid);
  CHECK(items[1]["amended_by"] == ReportRef(amend2).sop_instance_uid);
  CHECK(items[2]["signer"] == "zhao.min");
  CHECK(items[2]["amended_by"].is_null());
  CHECK(pacs_.Files().size() == 6);  // one receipt each (three SRs, three PDF copies), no re-send
  for (const json& i : items) CHECK(pacs_.Received(i["sop_instance_uid"].get<std::string>()) == 1);
  // Both stay retrievable.
  for (const json& i : items) {
    CHECK(server_.Call("wang.li", "GET", "/api/v1/reports/" + i["sop_instance_uid"].get<std::string>()).status == 200);
  }
}
