// Who may do what over the reading API, and what the audit trail then holds: member hospital
// certificates on the centre's endpoints, the audit rows of view, download, claim, reassign and
// refusal (read from the audit table, not inferred from status codes), and oversized requests.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "server/pki/pki.h"
#include "tests/support/server_fixture.h"

using namespace teleread;
using namespace teleread::test;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

class AccessFixture {
 public:
  explicit AccessFixture(ServerOptions options = {}) : server_(dir_.path() / "server", std::move(options)) {
    server_.Start();
    PushSampleConsortium(server_, dir_.path() / "samples", 2);
    for (const json& item : WaitForWorklist(server_, 6)) {
      if (item["member"] == "zhuozhou" && item["modalities"] == "CT") ct_ = item["study_instance_uid"];
    }
    REQUIRE_FALSE(ct_.empty());
  }

  // The actions recorded for this study, as "actor action detail".
  std::vector<std::string> Audited(const std::string& study) {
    std::vector<std::string> out;
    for (const AuditRow& r : AuditTrail(server_.storage())) {
      if (r.study_instance_uid == study)
        out.push_back(r.actor + " " + r.action + (r.detail.empty() ? "" : " " + r.detail));
    }
    return out;
  }

 protected:
  ScratchDir dir_;
  TestServer server_;
  std::string ct_;
};

}  // namespace

TEST_CASE_METHOD(AccessFixture,
                 "a member hospital's certificate opens only its reports, not even its own study's images",
                 "[https][member]") {
  IssueCert(server_.pki(), "member", "ZZ_PACS");
  const json study = server_.Call("wang.li", "GET", "/api/v1/studies/" + ct_).Json();
  const std::string sop = study["series"][0]["instances"][0]["sop_instance_uid"];
  const std::string base = "/api/v1/studies/" + ct_;
  // Zhuozhou sent this study; its certificate still reads none of the centre's views of it.
  for (const auto& [method, path] :
       std::vector<std::pair<std::string, std::string>>{{"GET", base},
                                                        {"GET", base + "/instances/" + sop},
                                                        {"GET", base + "/archive"},
                                                        {"GET", base + "/priors"},
                                                        {"POST", base + "/claim"},
                                                        {"GET", "/api/v1/worklist"},
                                                        {"GET", "/api/v1/deliveries"}}) {
    HttpReply r = server_.Call("ZZ_PACS", method, path);
    INFO(method << " " << path << ": " << r.body);
    CHECK(r.status == 403);
    CHECK_THAT(r.body, Catch::Contains("a member hospital may only list and download its reports"));
  }
  CHECK(server_.Call("wang.li", "GET", "/api/v1/studies/" + ct_).Json()["task"]["state"] == "waiting");
  // Its own reports' list works (empty: none yet).
  HttpReply reports = server_.Call("ZZ_PACS", "GET", base + "/reports");
  CHECK(reports.status == 200);
  CHECK(reports.Json()["items"].empty());
}

TEST_CASE_METHOD(AccessFixture, "views downloads claims reassignments and refusals are in the audit table",
                 "[https][audit]") {
  const json study = server_.Call("wang.li", "GET", "/api/v1/studies/" + ct_).Json();
  const std::string sop = study["series"][0]["instances"][0]["sop_instance_uid"];
  REQUIRE(server_
              .Curl("wang.li", "GET", "/api/v1/studies/" + ct_ + "/instances/" + sop,
                    {"-o", (dir_.path() / "one.dcm").string()})
              .output == "\n200");
  REQUIRE(
      server_.Curl("wang.li", "GET", "/api/v1/studies/" + ct_ + "/archive", {"-o", (dir_.path() / "all.tar").string()})
          .output == "\n200");
  REQUIRE(server_.Call("wang.li", "POST", "/api/v1/studies/" + ct_ + "/claim").status == 200);
  // A reassignment or release whose entry cannot be written is refused (503) and changes nothing.
  RefuseAuditEntries(server_.storage(), {"reassign", "release"});
  CHECK(server_.Call("ops", "POST", "/api/v1/studies/" + ct_ + "/reassign?to=zhao.min").status == 503);
  CHECK(server_.Call("wang.li", "POST", "/api/v1/studies/" + ct_ + "/release").status == 503);
  AllowAuditEntries(server_.storage());
  const json held = server_.Call("wang.li", "GET", "/api/v1/studies/" + ct_).Json()["task"];
  CHECK(held["state"] == "claimed");
  CHECK(held["claimed_by"] == "wang.li");
  REQUIRE(server_.Call("ops", "POST", "/api/v1/studies/" + ct_ + "/reassign?to=zhao.min").status == 200);
  REQUIRE(server_.Call("zhao.min", "POST", "/api/v1/studies/" + ct_ + "/release").status == 200);
  // Refused: a certificate of our CA for nobody configured, and a member on a centre endpoint.
  IssueCert(server_.pki(), "radiologist", "mallory");
  REQUIRE(server_.Call("mallory", "GET", "/api/v1/studies/" + ct_).status == 403);

  const std::vector<std::string> expected = {"wang.li view",
                                             "wang.li download " + sop,
                                             "wang.li download whole study",
                                             "wang.li claim",
                                             "wang.li view",
                                             "ops reassign zhao.min",
                                             "zhao.min release"};
  CHECK(Audited(ct_) == expected);
  const std::vector<AuditRow> refused = AuditTrail(server_.storage(), "refused");
  REQUIRE(refused.size() == 1);
  CHECK_THAT(refused[0].actor, Catch::Contains("CN=mallory"));
  CHECK(refused[0].detail == "GET /api/v1/studies/" + ct_);
}

namespace {
class SmallBodyFixture : public AccessFixture {
 public:
  SmallBodyFixture() : AccessFixture(Options()) {}
  static ServerOptions Options() {
    ServerOptions o;
    o.edits = {{"^max_body_mb = .*$", "max_body_mb = 1"}};
    return o;
  }
};
}  // namespace

TEST_CASE_METHOD(SmallBodyFixture, "a request body over max_body_mb is answered 413 and stores nothing", "[https]") {
  REQUIRE(server_.Call("wang.li", "POST", "/api/v1/studies/" + ct_ + "/claim").status == 200);
  const fs::path big = dir_.path() / "big.dcm";
  WriteFile(big, std::string(2 * 1024 * 1024, 'x'));
  HttpReply r = server_.Call("wang.li", "POST", "/api/v1/studies/" + ct_ + "/reports",
                             {"-H", "Content-Type: application/dicom", "--data-binary", "@" + big.string()});
  INFO(r.body);
  CHECK(r.status == 413);
  CHECK_THAT(r.body, Catch::Contains("request too large"));
  HttpReply reports = server_.Call("wang.li", "GET", "/api/v1/studies/" + ct_ + "/reports");
  REQUIRE(reports.status == 200);
  CHECK(reports.Json()["items"].empty());
  // The server still answers afterwards.
  CHECK(server_.Call("wang.li", "GET", "/healthz").status == 200);
}

TEST_CASE_METHOD(AccessFixture, "HTTPS refuses TLS below 1.2 and accepts 1.2", "[https]") {
  // openssl s_client at security level 0, so that the client itself would offer TLS 1.1: the
  // refusal must come from the server.
  auto handshake = [&](const std::string& version) {
    return RunCommand(
        {"/usr/bin/openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(server_.https_port()), version,
         "-cipher", "DEFAULT@SECLEVEL=0", "-cert", (server_.pki() / "wang.li.pem").string(), "-key",
         (server_.pki() / "wang.li.key").string(), "-CAfile", (server_.pki() / "ca.pem").string()},
        std::chrono::seconds(30));
  };
  CommandResult old = handshake("-tls1_1");
  INFO(old.output);
  CHECK(old.exit_code != 0);
  CHECK_THAT(old.output, Catch::Contains("alert protocol version"));
  CHECK_THAT(old.output, Catch::Contains("Cipher is (NONE)"));  // no session was agreed
  CommandResult current = handshake("-tls1_2");
  INFO(current.output);
  CHECK_THAT(current.output, Catch::Contains("Protocol  : TLSv1.2"));
  CHECK_THAT(current.output, !Catch::Contains("Cipher is (NONE)"));
}
