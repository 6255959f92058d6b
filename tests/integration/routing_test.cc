// Routing over HTTPS with the sample consortium: each reader's worklist and claims follow their
// modalities; a study nobody reads is flagged in /metrics and the log.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "tests/support/server_fixture.h"

using namespace teleread;
using namespace teleread::test;
using json = nlohmann::json;

namespace {

std::string Uid(const json& items, const std::string& modality) {
  for (const json& i : items) {
    if (i["modalities"] == modality) return i["study_instance_uid"];
  }
  return "";
}

}  // namespace

TEST_CASE("worklists and claims follow each reader's modalities, and unreadable studies are flagged",
          "[https][routing]") {
  ScratchDir dir;
  ServerOptions o;
  o.edits = {{"^modalities = \\[\\]$", "modalities = [\"CT\"]"}};  // zhao.min: CT only; nobody reads US
  TestServer server(dir.path() / "server", o);
  server.Start();
  PushSampleConsortium(server, dir.path() / "samples", 2);
  REQUIRE(WaitFor([&] {
    HttpReply r = server.Call("ops", "GET", "/api/v1/worklist");
    return r.status == 200 && r.Json()["items"].size() == 6;
  }));
  const json all = server.Call("ops", "GET", "/api/v1/worklist").Json()["items"];
  const std::string us = Uid(all, "US"), ecg = Uid(all, "ECG"), ct = Uid(all, "CT");
  REQUIRE_FALSE(us.empty());
  REQUIRE_FALSE(ecg.empty());

  const json wang = server.Call("wang.li", "GET", "/api/v1/worklist").Json()["items"];
  CHECK(wang.size() == 4);
  CHECK(Uid(wang, "US").empty());
  CHECK(Uid(wang, "ECG").empty());
  const json liu = server.Call("liu.xin", "GET", "/api/v1/worklist").Json()["items"];
  REQUIRE(liu.size() == 1);
  CHECK(liu[0]["study_instance_uid"] == ecg);

  HttpReply refused = server.Call("wang.li", "POST", "/api/v1/studies/" + ecg + "/claim");
  CHECK(refused.status == 403);
  CHECK(refused.Json()["error"] == "wang.li reads CT, MR, CR, DX; this study is ECG");
  CHECK(server.Call("liu.xin", "POST", "/api/v1/studies/" + ct + "/claim").status == 403);
  CHECK(server.Call("liu.xin", "POST", "/api/v1/studies/" + ecg + "/claim").status == 200);
  // An admin assigns the ultrasound nobody reads.
  CHECK(server.Call("ops", "POST", "/api/v1/studies/" + us + "/reassign?to=wang.li").status == 200);
  CHECK(server.Call("wang.li", "GET", "/api/v1/worklist?mine=1").Json()["items"].size() == 1);

  HttpReply metrics = server.Call("ops", "GET", "/metrics");
  CHECK_THAT(metrics.body, Catch::Contains("teleread_tasks_unroutable 1\n"));
  CHECK(WaitFor([&] { return server.Log().find("study " + us + " from ") != std::string::npos; }));
  CHECK_THAT(server.Log(), Catch::Contains("cannot be read: no configured radiologist reads it"));
}
