// The reading API over real HTTPS with client certificates (curl), against the real server.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <thread>

#include "samples/synthetic.h"
#include "tests/support/server_fixture.h"

using namespace teleread;
using namespace teleread::test;
using json = nlohmann::json;

namespace {

using Reply = HttpReply;

Reply Call(const TestServer& s, const std::string& who, const std::string& method, const std::string& path) {
  return s.Call(who, method, path);
}

json Body(const Reply& r) { return r.Json(); }

class ApiFixture {
 public:
  ApiFixture() : server_(dir_.path() / "server") {
    server_.Start();
    PushSampleConsortium(server_, dir_.path() / "samples", 4);
    WaitForWorklist(server_, 6, "zhao.min");
  }

 protected:
  ScratchDir dir_;
  TestServer server_;
};

}  // namespace

TEST_CASE_METHOD(ApiFixture, "the worklist comes by priority then due time with study summaries", "[https]") {
  json items = Body(Call(server_, "zhao.min", "GET", "/api/v1/worklist"))["items"];
  REQUIRE(items.size() == 6);
  CHECK(items[0]["priority"] == "STAT");
  CHECK(items[0]["description"] == "胸部CT平扫");
  CHECK(items[0]["member"] == "zhuozhou");
  CHECK(items[1]["priority"] == "HIGH");
  CHECK(items[2]["priority"] == "HIGH");
  for (size_t i = 3; i < items.size(); ++i) CHECK(items[i]["priority"] == "ROUTINE");
  for (const json& row : items) {
    CHECK(row["state"] == "waiting");
    CHECK(row["due_ms"].get<int64_t>() > row["complete_ms"].get<int64_t>());
    CHECK(row["overdue"] == false);
  }
  // STAT is due an hour after completion (sla_minutes_stat = 60).
  CHECK(items[0]["due_ms"].get<int64_t>() - items[0]["complete_ms"].get<int64_t>() == 3'600'000);
  CHECK(Body(Call(server_, "wang.li", "GET", "/api/v1/worklist?modality=MR"))["items"].size() == 1);
  CHECK(Body(Call(server_, "zhao.min", "GET", "/api/v1/worklist?member=yixian"))["items"].size() == 2);
  CHECK(Body(Call(server_, "zhao.min", "GET", "/api/v1/worklist?limit=2&offset=5"))["items"].size() == 1);
  CHECK(Call(server_, "wang.li", "GET", "/api/v1/worklist?state=bogus").status == 400);
}

TEST_CASE_METHOD(ApiFixture, "of 20 simultaneous claims exactly one succeeds", "[https][claim]") {
  const std::string uid = Body(Call(server_, "wang.li", "GET", "/api/v1/worklist"))["items"][0]["study_instance_uid"];
  std::vector<Reply> replies(20);
  std::vector<std::thread> threads;
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&, i] {
      replies[i] = Call(server_, i % 2 ? "wang.li" : "zhao.min", "POST", "/api/v1/studies/" + uid + "/claim");
    });
  }
  for (auto& t : threads) t.join();
  int ok = 0, conflict = 0;
  std::string winner;
  for (const Reply& r : replies) {
    if (r.status == 200) {
      ++ok;
      winner = Body(r)["claimed_by"];
    }
  }
  // The winner's own repeats succeed too (a claim is idempotent for its holder); the other's all fail.
  for (const Reply& r : replies) {
    if (r.status == 409) {
      ++conflict;
      CHECK(Body(r)["claimed_by"] == winner);
    }
  }
  CHECK(ok == 10);
  CHECK(conflict == 10);
  const std::string loser = winner == "wang.li" ? "zhao.min" : "wang.li";
  CHECK(Call(server_, loser, "POST", "/api/v1/studies/" + uid + "/release").status == 409);
  CHECK(Call(server_, winner, "POST", "/api/v1/studies/" + uid + "/renew").status == 200);
  json mine = Body(Call(server_, winner, "GET", "/api/v1/worklist?mine=1"))["items"];
  REQUIRE(mine.size() == 1);
  CHECK(mine[0]["state"] == "claimed");
  CHECK(Call(server_, winner, "POST", "/api/v1/studies/" + uid + "/release").status == 200);
  CHECK(Call(server_, loser, "POST", "/api/v1/studies/" + uid + "/claim").status == 200);
  // Only an admin reassigns.
  CHECK(Call(server_, winner, "POST", "/api/v1/studies/" + uid + "/reassign?to=" + winner).status == 403);
  Reply moved = Call(server_, "ops", "POST", "/api/v1/studies/" + uid + "/reassign?to=" + winner);
  CHECK(moved.status == 200);
  CHECK(Body(moved)["claimed_by"] == winner);
}

TEST_CASE_METHOD(ApiFixture, "study detail and instance download and priors", "[https]") {
  json items = Body(Call(server_, "wang.li", "GET", "/api/v1/worklist?member=zhuozhou&modality=CT"))["items"];
  REQUIRE(items.size() == 1);
  const std::string uid = items[0]["study_instance_uid"];
  json study = Body(Call(server_, "wang.li", "GET", "/api/v1/studies/" + uid));
  REQUIRE(study["series"].size() == 1);
  json instance = study["series"][0]["instances"][0];
  CHECK(study["series"][0]["instance_count"] == 4);
  CHECK(study["task"]["priority"] == "STAT");
  std::filesystem::path out = dir_.path() / "download.dcm";
  CommandResult r = server_.Curl(
      "wang.li", "GET", "/api/v1/studies/" + uid + "/instances/" + instance["sop_instance_uid"].get<std::string>(),
      {"-o", out.string()});
  CHECK(r.output == "\n200");
  CHECK(std::filesystem::file_size(out) == instance["size_bytes"].get<uint64_t>());
  CHECK(ReadFile(out).substr(128, 4) == "DICM");
  CHECK(Call(server_, "wang.li", "GET", "/api/v1/studies/" + uid + "/instances/1.2.3.4").status == 404);
  // The whole study as one streamed tar: every instance, bit for bit.
  std::filesystem::path tar = dir_.path() / "study.tar";
  CHECK(server_.Curl("wang.li", "GET", "/api/v1/studies/" + uid + "/archive", {"-o", tar.string()}).output == "\n200");
  std::filesystem::path unpacked = dir_.path() / "unpacked";
  std::filesystem::create_directories(unpacked);
  REQUIRE(RunCommand({"/bin/tar", "-xf", tar.string(), "-C", unpacked.string()}).exit_code == 0);
  size_t files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(unpacked)) {
    if (!e.is_regular_file()) continue;
    ++files;
    CHECK(ReadFile(e.path()).substr(128, 4) == "DICM");
  }
  CHECK(files == 4);
  std::string first;
  for (const auto& e : std::filesystem::recursive_directory_iterator(unpacked)) {
    if (e.is_regular_file() &&
        e.path().stem().string() == instance["sop_instance_uid"].get<std::string>().substr(std::max<size_t>(
                                        0, instance["sop_instance_uid"].get<std::string>().size() - 40))) {
      first = ReadFile(e.path());
    }
  }
  CHECK(first == ReadFile(out));
  // The same patient at Yixian, known by the shared national ID: a prior across members.
  json priors = Body(Call(server_, "wang.li", "GET", "/api/v1/studies/" + uid + "/priors"))["priors"];
  REQUIRE(priors.size() >= 1);
  bool yixian = false;
  for (const json& p : priors) yixian |= p["member"] == "yixian";
  CHECK(yixian);
}

TEST_CASE_METHOD(ApiFixture, "certificates outside the consortium get nowhere and are audited", "[https][tls]") {
  // No client certificate: the TLS handshake fails (a TLS error from curl, not "could not connect":
  // status 0 alone would also be a server that is not listening).
  CommandResult anonymous = server_.Curl("", "GET", "/healthz");
  INFO(anonymous.output);
  CHECK_THAT(anonymous.output, Catch::EndsWith("000"));
  CHECK(anonymous.exit_code != 7);  // CURLE_COULDNT_CONNECT
  CHECK_THAT(anonymous.output, Catch::Contains("SSL") || Catch::Contains("TLS") || Catch::Contains("alert"));
  CHECK(Call(server_, "wang.li", "GET", "/healthz").status == 200);  // the same port, with a certificate
  // A certificate from another CA: refused at the handshake.
  ScratchDir other;
  REQUIRE(RunCommand({TELEREAD_SERVER_BIN, "pki", "init", (other.path() / "ca").string()}).exit_code == 0);
  REQUIRE(RunCommand({TELEREAD_SERVER_BIN, "pki", "issue", (other.path() / "ca").string(), "--kind", "radiologist",
                      "--name", "wang.li"})
              .exit_code == 0);
  CommandResult foreign = RunCommand({"/usr/bin/curl", "-sS", "--cacert", (server_.pki() / "ca.pem").string(), "--cert",
                                      (other.path() / "ca" / "wang.li.pem").string(), "--key",
                                      (other.path() / "ca" / "wang.li.key").string(), "-w", "\n%{http_code}",
                                      "https://127.0.0.1:" + std::to_string(server_.https_port()) + "/healthz"});
  INFO(foreign.output);
  CHECK_THAT(foreign.output, Catch::EndsWith("000"));
  CHECK(foreign.exit_code != 7);
  // Our CA, but nobody configured: 403, and the refusal is in the audit trail and the log.
  REQUIRE(RunCommand({TELEREAD_SERVER_BIN, "pki", "issue", server_.pki().string(), "--kind", "radiologist", "--name",
                      "mallory"})
              .exit_code == 0);
  Reply mallory = Call(server_, "mallory", "GET", "/api/v1/worklist");
  CHECK(mallory.status == 403);
  CHECK_THAT(mallory.body, Catch::Contains("does not belong to a configured radiologist"));
  CHECK_THAT(server_.Log(), Catch::Contains("is no radiologist or admin here"));
  std::vector<AuditRow> refused = AuditTrail(server_.storage(), "refused");
  REQUIRE(refused.size() == 1);
  CHECK_THAT(refused[0].actor, Catch::Contains("CN=mallory"));
  CHECK(refused[0].detail == "GET /api/v1/worklist");
  Reply metrics = Call(server_, "wang.li", "GET", "/metrics");
  CHECK(metrics.status == 200);
  CHECK_THAT(metrics.body, Catch::Contains("teleread_tasks{state=\"waiting\"} 6") &&
                               Catch::Contains("teleread_ingest_instances_total") &&
                               Catch::Contains("teleread_http_refused_total 1"));
  // One study claimed: the claim-turnaround histogram has one observation.
  const std::string uid = Body(Call(server_, "wang.li", "GET", "/api/v1/worklist"))["items"][0]["study_instance_uid"];
  REQUIRE(Call(server_, "wang.li", "POST", "/api/v1/studies/" + uid + "/claim").status == 200);
  CHECK_THAT(Call(server_, "wang.li", "GET", "/metrics").body,
             Catch::Contains("teleread_turnaround_claim_seconds_count 1") &&
                 Catch::Contains("teleread_turnaround_claim_seconds_bucket{le=\"60\"} 1") &&
                 Catch::Contains("teleread_turnaround_report_seconds_count 0"));
  CHECK(Body(Call(server_, "wang.li", "GET", "/healthz"))["status"] == "ok");
}

TEST_CASE("a radiologist's common name on a certificate without OU=radiologist is refused", "[https][tls]") {
  ScratchDir dir;
  ServerOptions options;
  // No certificate_subject for zhao.min: only the common name and the OU identify her.
  options.edits.push_back({R"(^certificate_subject = "CN=zhao\.min,.*$)", R"(certificate_subject = "")"});
  TestServer server(dir.path() / "server", options);
  server.Start();
  CHECK(server.Call("zhao.min", "GET", "/api/v1/worklist").status == 200);  // her own OU=radiologist certificate

  // The same centre CA in a second directory, so that other certificates named zhao.min can be made.
  const std::filesystem::path ca = dir.path() / "ca2";
  std::filesystem::create_directories(ca);
  for (const char* f : {"ca.pem", "ca.key"}) std::filesystem::copy_file(server.pki() / f, ca / f);
  auto status_with = [&](const std::string& name) {
    CommandResult r =
        RunCommand({"/usr/bin/curl", "-sS", "--max-time", "30", "--cacert", (server.pki() / "ca.pem").string(),
                    "--cert", (ca / (name + ".pem")).string(), "--key", (ca / (name + ".key")).string(), "-w",
                    "\n%{http_code}", "https://127.0.0.1:" + std::to_string(server.https_port()) + "/api/v1/worklist"});
    return r.output.size() >= 3 ? r.output.substr(r.output.size() - 3) : r.output;
  };

  // A member hospital's certificate named like the radiologist.
  REQUIRE(RunCommand({TELEREAD_SERVER_BIN, "pki", "issue", ca.string(), "--kind", "member", "--name", "zhao.min"})
              .exit_code == 0);
  CHECK(status_with("zhao.min") == "403");

  // A client certificate from the centre CA with another OU (made outside `pki issue`).
  const std::filesystem::path ext = ca / "client.ext";
  WriteFile(ext, "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n");
  REQUIRE(RunCommand({"/usr/bin/openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", (ca / "other.key").string(), "-subj",
                      "/O=Lixian Regional Imaging Reading Centre/OU=server/CN=zhao.min", "-out",
                      (ca / "other.csr").string()})
              .exit_code == 0);
  REQUIRE(RunCommand({"/usr/bin/openssl", "x509", "-req", "-in", (ca / "other.csr").string(), "-CA",
                      (ca / "ca.pem").string(), "-CAkey", (ca / "ca.key").string(), "-set_serial", "4242", "-days", "2",
                      "-extfile", ext.string(), "-out", (ca / "other.pem").string()})
              .exit_code == 0);
  CHECK(status_with("other") == "403");
  CHECK_THAT(server.Log(), Catch::Contains("is no radiologist or admin here"));
}
