// `teleread read` driven in a real terminal: tmux runs it, send-keys types, capture-pane reads
// the screen. Scrolling, a window resize, the prior side by side, quitting.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "tests/support/server_fixture.h"

using namespace teleread::test;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

[[noreturn]] void Skip(const std::string& why) {
  std::cout << "SKIPPED: " << why << std::endl;
  std::exit(77);  // ctest's SKIP_RETURN_CODE
}

class Tmux {
 public:
  Tmux(const fs::path& dir) : socket_((dir / "tmux.sock").string()) {
    if (std::string(TMUX_BIN).empty() || !fs::exists(TMUX_BIN)) Skip("tmux is missing: apt-get install tmux");
  }
  ~Tmux() { RunCommand({TMUX_BIN, "-S", socket_, "kill-server"}); }

  CommandResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), {TMUX_BIN, "-S", socket_});
    return RunCommand(args);
  }
  std::string Screen() { return Run({"capture-pane", "-p", "-e", "-t", "reader"}).output; }
  // Waits until the screen holds `text`; the screen as last seen.
  std::string WaitFor(const std::string& text, int seconds = 20) {
    std::string screen;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < deadline) {
      screen = Screen();
      if (screen.find(text) != std::string::npos) return screen;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return screen;
  }
  void Keys(const std::string& keys) { Run({"send-keys", "-t", "reader", keys}); }

 private:
  std::string socket_;
};

}  // namespace

TEST_CASE("the reader scrolls, follows a window resize, compares with the prior and quits in tmux", "[reader][view]") {
  ScratchDir dir;
  Tmux tmux(dir.path());
  TestServer server(dir.path() / "server");
  server.Start();
  PushSampleConsortium(server, dir.path() / "samples", 5);
  const fs::path profile = dir.path() / "wang.li.toml";
  WriteFile(profile, "server = \"https://127.0.0.1:" + std::to_string(server.https_port()) + "\"\n" +
                         "certificate = \"" + (server.pki() / "wang.li.pem").string() + "\"\n" + "key = \"" +
                         (server.pki() / "wang.li.key").string() + "\"\n" + "ca = \"" +
                         (server.pki() / "ca.pem").string() + "\"\n");
  std::string study;
  for (int i = 0; i < 100 && study.empty(); ++i) {
    CommandResult r =
        RunCommand({TELEREAD_CLI_BIN, "--profile", profile.string(), "--json", "worklist", "--modality", "CT"});
    if (r.exit_code == 0 && !json::parse(r.output)["items"].empty())
      study = json::parse(r.output)["items"][0]["study_instance_uid"];
    if (study.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  REQUIRE(!study.empty());
  const fs::path trace = dir.path() / "trace.txt";
  const std::string command = "env TELEREAD_GRAPHICS=symbols TELEREAD_READER_TRACE=" + trace.string() +
                              " XDG_CACHE_HOME=" + (dir.path() / "cache").string() + " " + TELEREAD_CLI_BIN +
                              " --profile " + profile.string() + " read " + study + "; echo READER-EXIT=$?; sleep 60";
  REQUIRE(tmux.Run({"new-session", "-d", "-s", "reader", "-x", "200", "-y", "50", command}).exit_code == 0);

  // The patient first, the middle image of five, the keys. The key line is drawn last: a screen
  // taken when the name appears may not have it yet (seen under ASan beside other tests).
  tmux.WaitFor("张^三");
  tmux.WaitFor("38;2;");
  std::string screen = tmux.WaitFor("q quit");
  INFO(screen);
  CHECK_THAT(screen,
             Catch::Contains("张^三  ID ZZ100234") && Catch::Contains("CT Se 1 Im 3/5") && Catch::Contains("q quit"));
  // The image is drawn with half and quarter blocks in 24-bit colour.
  const bool coloured = tmux.Screen().find("38;2;") != std::string::npos;
  CHECK(coloured);

  tmux.Keys("n");
  CHECK_THAT(tmux.WaitFor("Im 4/5"), Catch::Contains("Im 4/5"));
  tmux.Keys("G");
  CHECK_THAT(tmux.WaitFor("Im 5/5"), Catch::Contains("Im 5/5"));
  tmux.Keys("g");
  CHECK_THAT(tmux.WaitFor("Im 1/5"), Catch::Contains("Im 1/5"));
  tmux.Run({"send-keys", "-t", "reader", "Down"});
  CHECK_THAT(tmux.WaitFor("Im 2/5"), Catch::Contains("Im 2/5"));
  tmux.Keys("1");  // the lung preset
  CHECK_THAT(tmux.WaitFor("W 1500 L -600"), Catch::Contains("W 1500 L -600"));
  tmux.Keys("t");
  tmux.Keys("4");
  tmux.Run({"send-keys", "-t", "reader", "Enter"});
  CHECK_THAT(tmux.WaitFor("Im 4/5"), Catch::Contains("Im 4/5"));

  // A smaller window: redrawn to fit, the key line cut to the new width.
  REQUIRE(tmux.Run({"resize-window", "-t", "reader", "-x", "80", "-y", "24"}).exit_code == 0);
  std::string small;
  for (int i = 0; i < 100; ++i) {
    small = tmux.Screen();
    if (small.find("q quit") == std::string::npos && small.find("Im 4/5") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  INFO(small);
  CHECK(small.find("q quit") == std::string::npos);
  CHECK_THAT(small, Catch::Contains("Im 4/5") && Catch::Contains("张^三"));
  size_t lines = 0;
  for (char c : small) lines += c == '\n';
  CHECK(lines <= 24);

  // The prior (Yixian's chest DX of the same patient, by the shared national ID) beside it.
  tmux.Keys("x");
  std::string both = tmux.WaitFor("PRIOR");
  INFO(both);
  CHECK_THAT(both, Catch::Contains("NOW CT Se 1 Im 4/5") && Catch::Contains("PRIOR 2026-11-18 DX"));
  tmux.Keys("n");
  CHECK_THAT(tmux.WaitFor("NOW CT Se 1 Im 5/5"), Catch::Contains("PRIOR"));

  tmux.Keys("q");
  CHECK_THAT(tmux.WaitFor("READER-EXIT=0"), Catch::Contains("READER-EXIT=0"));
  std::ifstream in(trace);
  std::stringstream t;
  t << in.rdbuf();
  CHECK_THAT(t.str(), Catch::Contains("first_image_epoch_ms") && Catch::Contains("key_ms"));
}
