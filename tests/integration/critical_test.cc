// Critical results end to end: a critical report is delivered to the member's PACS (storescp)
// and notified to its HIS by webhook (a Python HTTPS receiver requiring the centre's client
// certificate), escalates while unacknowledged, and is acknowledged by name with the member's
// certificate through the API and the CLI; every step is audited.
#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>

#include "server/pki/pki.h"
#include "server/store/sqlite.h"
#include "tests/support/reports.h"
#include "tests/support/server_fixture.h"

using namespace teleread;
using namespace teleread::test;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::vector<json> Lines(const fs::path& file) {
  std::vector<json> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(json::parse(line));
  }
  return out;
}

std::vector<std::string> AuditActions(const fs::path& storage, const std::string& like) {
  auto db = Database::Open(storage / "index.sqlite", true);
  REQUIRE(db.ok());
  Statement q(db.value()->handle(), "SELECT action FROM audit_log WHERE action LIKE ?1 ORDER BY id");
  q.Bind(1, like);
  std::vector<std::string> out;
  for (Result<bool> row = q.Step(); row.ok() && row.value(); row = q.Step()) out.push_back(q.Text(0));
  return out;
}

}  // namespace

TEST_CASE("a critical result reaches the member by report and webhook, escalates, and is acknowledged by name",
          "[reports][critical]") {
  ScratchDir dir;
  MemberPacs pacs(dir.path() / "zz_pacs", "ZZ_PACS");
  const uint16_t hook_port = FreePort();
  ServerOptions o;
  o.edits = {{"^port = 11201$", "port = " + std::to_string(pacs.port())},
             {"^# critical_webhook = .*$",
              "critical_webhook = \"https://127.0.0.1:" + std::to_string(hook_port) + "/critical\""},
             {"^critical_ack_minutes = .*$", "critical_ack_minutes = 0"},  // escalates at once
             {"^delivery_retry_seconds = .*$", "delivery_retry_seconds = 1"}};
  TestServer server(dir.path() / "server", o);
  // The HIS: its server certificate (for 127.0.0.1) and ZZ_PACS's API certificate, from the centre CA.
  REQUIRE(
      IssueCertificate(server.pki(),
                       IssueRequest{CertKind::kMember, "zz-his", "Zhuozhou City Hospital", {}, {"127.0.0.1"}, 30, 0})
          .ok());
  REQUIRE(IssueCertificate(server.pki(),
                           IssueRequest{CertKind::kMember, "ZZ_PACS", "Zhuozhou City Hospital", {}, {}, 30, 0})
              .ok());
  const fs::path hooks = dir.path() / "webhooks.jsonl";
  ChildProcess his;
  ReleasePort(hook_port);  // the receiver binds it now
  his.Start({"/usr/bin/python3", std::string(TELEREAD_SOURCE_DIR) + "/tests/support/webhook_receiver.py",
             std::to_string(hook_port), hooks.string(), (server.pki() / "zz-his.pem").string(),
             (server.pki() / "zz-his.key").string(), (server.pki() / "ca.pem").string()},
            dir.path() / "his.log");
  server.Start();
  pacs.Start();
  PushSampleConsortium(server, dir.path() / "samples", 2);
  const std::string ct = WaitForOneStudy(server, "member=zhuozhou&modality=CT");
  REQUIRE(server.Call("wang.li", "POST", "/api/v1/studies/" + ct + "/claim").status == 200);
  const fs::path report = dir.path() / "critical.dcm";
  WriteSignedReport(FindSampleStudy(dir.path() / "samples", ct), server.pki(), "wang.li", report, std::nullopt,
                    "右肺动脉主干充盈缺损，考虑急性肺栓塞。", true, {}, true);
  // The signer's reminders are kept between answers: the acceptance must end them.
  REQUIRE(server.Call("wang.li", "GET", "/api/v1/worklist").Json()["critical_unacknowledged"].empty());
  HttpReply accepted = SubmitReport(server, "wang.li", ct, report);
  REQUIRE(accepted.status == 201);
  CHECK(accepted.Json()["critical"] == true);
  const std::string sop = accepted.Json()["sop_instance_uid"];
  CHECK(server.Call("wang.li", "GET", "/api/v1/worklist").Json()["critical_unacknowledged"].size() == 1);

  // Both channels: the report itself at the PACS, and one webhook notice with the centre's certificate.
  CHECK(WaitFor([&] { return pacs.Files().size() == 2; }));  // the SR and its PDF copy
  if (!WaitFor([&] { return Lines(hooks).size() == 1; })) FAIL(server.Log() + ReadFile(dir.path() / "his.log"));
  const json hook = Lines(hooks)[0];
  CHECK(hook["client_cn"] == "teleread-server");
  CHECK(hook["path"] == "/critical");
  CHECK(hook["body"]["event"] == "critical_result");
  CHECK(hook["body"]["report_sop_instance_uid"] == sop);
  CHECK(hook["body"]["study_instance_uid"] == ct);

  // Unacknowledged past critical_ack_minutes: escalated in the log, /metrics, the signer's worklist.
  CHECK(WaitFor([&] { return server.Log().find("is not acknowledged by zhuozhou") != std::string::npos; }));
  const std::string metrics = server.Call("ops", "GET", "/metrics").body;
  CHECK_THAT(metrics, Catch::Contains("teleread_critical_unacknowledged 1\n") &&
                          Catch::Contains("teleread_critical_escalated 1\n") &&
                          Catch::Contains("teleread_critical_unacknowledged_oldest_seconds "));
  const json open = server.Call("wang.li", "GET", "/api/v1/worklist").Json()["critical_unacknowledged"];
  REQUIRE(open.size() == 1);
  CHECK(open[0]["report_sop_instance_uid"] == sop);
  CHECK(open[0]["escalated"] == true);
  // The signer's worklist table (not only its JSON) reminds them.
  const fs::path wang = WriteProfile(server, "wang.li", dir.path() / "wang.li.toml");
  auto worklist_table = [&] { return RunCommand({TELEREAD_CLI_BIN, "--profile", wang.string(), "worklist"}); };
  CommandResult table = worklist_table();
  INFO(table.output);
  CHECK(table.exit_code == 0);
  CHECK_THAT(table.output, Catch::Contains("1 critical result(s) you signed are not yet acknowledged by the member") &&
                               Catch::Contains("report " + sop) && Catch::Contains("ESCALATED"));
  CHECK(server.Call("ops", "GET", "/api/v1/critical?state=unacknowledged").Json()["items"].size() == 1);
  CHECK(server.Call("zhao.min", "GET", "/api/v1/critical").Json()["items"].empty());  // not the signer
  CHECK(server.Call("ZZ_PACS", "GET", "/api/v1/critical").Json()["items"].size() == 1);

  // Only the member acknowledges, and only with a name.
  CHECK(server.Call("wang.li", "POST", "/api/v1/reports/" + sop + "/acknowledge", {"-d", R"({"by":"x"})"}).status ==
        403);
  CHECK(server.Call("ZZ_PACS", "POST", "/api/v1/reports/" + sop + "/acknowledge", {"-d", R"({"by":" "})"}).status ==
        400);
  WriteFile(dir.path() / "zz.toml", "server = \"https://127.0.0.1:" + std::to_string(server.https_port()) + "\"\n" +
                                        "certificate = \"" + (server.pki() / "ZZ_PACS.pem").string() + "\"\n" +
                                        "key = \"" + (server.pki() / "ZZ_PACS.key").string() + "\"\n" + "ca = \"" +
                                        (server.pki() / "ca.pem").string() + "\"\n");
  auto cli = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {TELEREAD_CLI_BIN, "--profile", (dir.path() / "zz.toml").string()});
    return RunCommand(args);
  };
  CommandResult listed = cli({"critical", "--state", "unacknowledged"});
  CHECK(listed.exit_code == 0);
  CHECK_THAT(listed.output, Catch::Contains("ESCALATED") && Catch::Contains(sop));
  // An acknowledgement whose audit entry cannot be written is refused (503) and records nothing.
  RefuseAuditEntries(server.storage(), {"critical-acknowledge"});
  CHECK(server.Call("ZZ_PACS", "POST", "/api/v1/reports/" + sop + "/acknowledge", {"-d", R"({"by":"x"})"}).status ==
        503);
  AllowAuditEntries(server.storage());
  CHECK(server.Call("ZZ_PACS", "GET", "/api/v1/critical?state=unacknowledged").Json()["items"].size() == 1);
  CommandResult ack = cli({"critical", "ack", sop, "--by", "李华 (ward 3 nurse)"});
  CHECK(ack.exit_code == 0);
  CHECK_THAT(ack.output, Catch::Contains("acknowledged by 李华"));
  CommandResult again = cli({"critical", "ack", sop, "--by", "someone else"});
  CHECK(again.exit_code == 1);
  CHECK_THAT(again.output,
             Catch::Contains("acknowledged already by 李华 (ward 3 nurse)") && Catch::Contains("HTTP 409"));

  const json done = server.Call("ZZ_PACS", "GET", "/api/v1/critical?state=acknowledged").Json()["items"];
  REQUIRE(done.size() == 1);
  CHECK(done[0]["acknowledged_by"] == "李华 (ward 3 nurse)");
  CHECK(done[0]["acknowledged_via"] == "zhuozhou");
  CHECK(done[0]["webhook"]["state"] == "delivered");
  CHECK(server.Call("wang.li", "GET", "/api/v1/worklist").Json()["critical_unacknowledged"].empty());
  CHECK_THAT(worklist_table().output, !Catch::Contains("critical result(s)"));
  CHECK_THAT(server.Call("ops", "GET", "/metrics").body,
             Catch::Contains("teleread_critical_unacknowledged 0\n") &&
                 Catch::Contains("teleread_turnaround_acknowledged_seconds_count 1\n"));
  CHECK(server.Call("wang.li", "GET", "/api/v1/studies/" + ct).Json()["task"]["acknowledged_ms"].is_number());
  std::vector<std::string> audited = AuditActions(server.storage(), "critical-%");
  REQUIRE(audited.size() == 4);
  CHECK(audited.front() == "critical-open");
  CHECK(audited.back() == "critical-acknowledge");
  std::sort(audited.begin() + 1, audited.end() - 1);  // notified and escalated in either order
  CHECK(audited[1] == "critical-escalate");
  CHECK(audited[2] == "critical-webhook");
  CHECK(Lines(hooks).size() == 1);  // notified once
  his.Stop(15);
}
