// The `teleread` workstation CLI end to end against the real server over mutual TLS.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <thread>

#include "tests/support/server_fixture.h"

using namespace teleread::test;
using json = nlohmann::json;

namespace {

class CliFixture {
 public:
  CliFixture() : server_(dir_.path() / "server") {
    server_.Start();
    PushSampleConsortium(server_, dir_.path() / "samples", 2);
    for (const char* who : {"wang.li", "zhao.min"}) {
      WriteFile(dir_.path() / (std::string(who) + ".toml"),
                "server = \"https://127.0.0.1:" + std::to_string(server_.https_port()) + "\"\n" +
                    "certificate = \"" + (server_.pki() / (std::string(who) + ".pem")).string() + "\"\n" +
                    "key = \"" + (server_.pki() / (std::string(who) + ".key")).string() + "\"\n" +
                    "ca = \"" + (server_.pki() / "ca.pem").string() + "\"\n");
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      CommandResult r = Cli("wang.li", {"--json", "worklist"});
      if (r.exit_code == 0 && json::parse(r.output)["items"].size() == 5) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    FAIL("the sample studies did not reach the worklist");
  }

  CommandResult Cli(const std::string& who, std::vector<std::string> args) {
    args.insert(args.begin(), {TELEREAD_CLI_BIN, "--profile", (dir_.path() / (who + ".toml")).string()});
    return RunCommand(args);
  }

 protected:
  ScratchDir dir_;
  TestServer server_;
};

}  // namespace

TEST_CASE_METHOD(CliFixture, "the CLI reads the worklist and claims over mutual TLS", "[cli]") {
  CommandResult who = Cli("wang.li", {"whoami"});
  CHECK(who.exit_code == 0);
  CHECK_THAT(who.output, Catch::StartsWith("wang.li (radiologist) at Lixian Regional Imaging Reading Centre"));

  CommandResult table = Cli("wang.li", {"worklist"});
  CHECK(table.exit_code == 0);
  CHECK_THAT(table.output, Catch::StartsWith("PRIORITY") && Catch::Contains("胸部CT平扫"));
  json items = json::parse(Cli("wang.li", {"--json", "worklist", "--modality", "CT"}).output)["items"];
  REQUIRE(items.size() == 1);
  const std::string uid = items[0]["study_instance_uid"];

  CommandResult claim = Cli("wang.li", {"claim", uid});
  CHECK(claim.exit_code == 0);
  CHECK_THAT(claim.output, Catch::StartsWith("claimed: held by wang.li"));
  CommandResult taken = Cli("zhao.min", {"claim", uid});
  CHECK(taken.exit_code == 1);
  CHECK_THAT(taken.output, Catch::Contains("claimed by wang.li") && Catch::Contains("HTTP 409"));
  CHECK(json::parse(Cli("wang.li", {"--json", "worklist", "--mine"}).output)["items"].size() == 1);

  CommandResult show = Cli("wang.li", {"show", uid});
  CHECK(show.exit_code == 0);
  CHECK_THAT(show.output, Catch::Contains("series 1  CT  2 instances") && Catch::Contains("prior") &&
                              Catch::Contains("yixian"));
  CHECK(Cli("wang.li", {"release", uid}).exit_code == 0);
  CHECK(Cli("zhao.min", {"claim", uid}).exit_code == 0);
}

TEST_CASE_METHOD(CliFixture, "the CLI fails clearly on usage and connection errors", "[cli]") {
  CHECK(RunCommand({TELEREAD_CLI_BIN, "worklist", "--priority", "URGENT"}).exit_code == 2);
  CHECK(RunCommand({TELEREAD_CLI_BIN}).exit_code == 2);
  CommandResult missing = RunCommand({TELEREAD_CLI_BIN, "--profile", (dir_.path() / "none.toml").string(), "whoami"});
  CHECK(missing.exit_code == 1);
  CHECK_THAT(missing.output, Catch::Contains("--profile"));
  server_.Stop();
  CommandResult down = Cli("wang.li", {"whoami"});
  CHECK(down.exit_code == 1);
  CHECK_THAT(down.output, Catch::Contains("cannot reach 127.0.0.1") && Catch::Contains("check the server address"));
}
