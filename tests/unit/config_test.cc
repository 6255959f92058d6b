#include <catch2/catch.hpp>
#include <regex>

#include "common/config.h"
#include "tests/support/process.h"
#include "tests/support/server_fixture.h"

using namespace teleread;
using teleread::test::ReadFile;

namespace {

const std::filesystem::path kSample = std::filesystem::path(TELEREAD_SOURCE_DIR) / "config" / "teleread.toml";

// The sample config with one line replaced (or a line appended after the match).
std::string Edit(const std::string& pattern, const std::string& replacement) {
  std::string text = ReadFile(kSample);
  std::regex re(pattern, std::regex::multiline);
  REQUIRE(std::regex_search(text, re));
  return std::regex_replace(text, re, replacement, std::regex_constants::format_first_only);
}

int LineOf(const std::string& text, const std::string& needle) {
  size_t at = text.find(needle);
  REQUIRE(at != std::string::npos);
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + at, '\n'));
}

std::string ErrorOf(const std::string& text) {
  try {
    ParseConfig(text, "t.toml", "/etc/teleread");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("the sample consortium config loads", "[config]") {
  Config c = LoadConfig(kSample);
  CHECK(c.centre.ae_title == "LX_READ");
  CHECK(c.centre.bind_address == "127.0.0.1");
  CHECK(c.centre.storage.is_absolute());
  CHECK(c.centre.storage == std::filesystem::weakly_canonical(kSample.parent_path() / "../var/teleread"));
  REQUIRE(c.members.size() == 3);
  REQUIRE(c.FindMemberByAeTitle("ZZ_PACS") != nullptr);
  CHECK(c.FindMemberByAeTitle("ZZ_PACS")->id == "zhuozhou");
  CHECK(c.FindMemberByAeTitle("LS_PACS")->id == "laishui");
  CHECK(c.FindMemberByAeTitle("YX_CT01")->id == "yixian");
  CHECK(c.FindMemberByAeTitle("NOBODY") == nullptr);
  REQUIRE(c.members[0].delivery.has_value());
  CHECK(c.members[0].delivery->port == 11201);
  CHECK(c.IsCentreAeTitle("LX_WS1"));
  CHECK_FALSE(c.IsCentreAeTitle("ZZ_PACS"));
  REQUIRE(c.radiologists.size() == 3);
  CHECK(c.radiologists[2].id == "liu.xin");  // the ECG reader
  CHECK(c.radiologists[2].modalities == std::vector<std::string>{"ECG"});
  CHECK(c.reading.critical_ack_minutes == 30);
}

TEST_CASE("a bad config names the key and the line", "[config]") {
  SECTION("unknown key") {
    std::string text = Edit("^quiet_period_seconds = .*$", "quiet_period_seconds = 30\nquiet_perod = 5");
    std::string error = ErrorOf(text);
    CHECK(error == "t.toml:" + std::to_string(LineOf(text, "quiet_perod")) + ": centre.quiet_perod: unknown key");
  }
  SECTION("wrong type") {
    std::string text = Edit("^dicom_port = .*$", "dicom_port = \"eleven\"");
    CHECK(ErrorOf(text) ==
          "t.toml:" + std::to_string(LineOf(text, "dicom_port =")) + ": centre.dicom_port: expected an integer");
  }
  SECTION("out of range") {
    std::string text = Edit("^dicom_port = .*$", "dicom_port = 70000");
    CHECK_THAT(ErrorOf(text), Catch::StartsWith("t.toml:" + std::to_string(LineOf(text, "dicom_port ="))) &&
                                  Catch::Contains("centre.dicom_port: must be between 1 and 65535"));
  }
  SECTION("AE title too long") {
    std::string text = Edit("^ae_title = \"LX_READ\"$", "ae_title = \"LX_READING_CENTRE_01\"");
    CHECK_THAT(ErrorOf(text), Catch::StartsWith("t.toml:" + std::to_string(LineOf(text, "LX_READING_CENTRE_01"))) &&
                                  Catch::Contains("centre.ae_title"));
  }
  SECTION("one AE title for two members") {
    std::string text = Edit("^ae_titles = \\[\"LS_PACS\"\\]$", "ae_titles = [\"ZZ_PACS\"]");
    CHECK_THAT(ErrorOf(text), Catch::Contains("members[1].ae_titles") && Catch::Contains("already used"));
  }
  SECTION("bad address") {
    std::string text = Edit("^allowed_addresses = \\[\"127.0.0.1\"\\]$", "allowed_addresses = [\"localhost\"]");
    CHECK_THAT(ErrorOf(text), Catch::Contains("members[0].allowed_addresses") && Catch::Contains("not an IP address"));
  }
  SECTION("TOML syntax error") {
    std::string text = Edit("^name = \"Zhuozhou City Hospital\"$", "name = \"Zhuozhou");
    CHECK_THAT(ErrorOf(text), Catch::StartsWith("t.toml:" + std::to_string(LineOf(text, "name = \"Zhuozhou"))));
  }
}

TEST_CASE("teleread-server refuses a bad config and --check-config accepts the sample", "[config][cli]") {
  test::ScratchDir dir;
  auto ok = test::RunCommand({TELEREAD_SERVER_BIN, "--config", kSample.string(), "--check-config"});
  CHECK(ok.exit_code == 0);
  CHECK_THAT(ok.output, Catch::Contains("OK (3 members"));

  std::filesystem::path bad = dir.path() / "bad.toml";
  test::WriteFile(bad, Edit("^max_associations = .*$", "max_associations = 0"));
  auto refused = test::RunCommand({TELEREAD_SERVER_BIN, "--config", bad.string()});
  CHECK(refused.exit_code == 2);
  CHECK_THAT(refused.output, Catch::Contains("bad.toml:") && Catch::Contains("centre.max_associations"));
  CHECK_FALSE(std::filesystem::exists(dir.path() / "var"));
}

TEST_CASE("max_pdu_bytes above what DCMTK 3.6.7 can receive is a config error", "[config]") {
  // Above 131072 (ASC_MAXIMUMPDUSIZE) DCMTK refuses every incoming association, so the check must.
  for (const char* bad : {"131074", "16777216", "4095"}) {
    INFO(bad);
    std::string text = Edit("^max_pdu_bytes = .*$", std::string("max_pdu_bytes = ") + bad);
    CHECK(ErrorOf(text) == "t.toml:" + std::to_string(LineOf(text, "max_pdu_bytes =")) +
                               ": centre.max_pdu_bytes: must be between 4096 and 131072, got " + bad);
  }
  for (const char* good : {"4096", "65535", "131072"}) {
    INFO(good);
    CHECK(ErrorOf(Edit("^max_pdu_bytes = .*$", std::string("max_pdu_bytes = ") + good)).empty());
  }
}

TEST_CASE("small_object_bytes above 1 MiB is a config error", "[config]") {
  // Each association holds up to twice this in memory (received bytes and the memory file parsed).
  const std::string bad = "1048577";
  std::string text = Edit("^small_object_bytes = .*$", "small_object_bytes = " + bad);
  CHECK(ErrorOf(text) == "t.toml:" + std::to_string(LineOf(text, "small_object_bytes =")) +
                             ": centre.small_object_bytes: must be between 0 and 1048576, got " + bad);
  CHECK(ErrorOf(Edit("^small_object_bytes = .*$", "small_object_bytes = 1048576")).empty());
}

TEST_CASE("direct_io is on by default, false turns it off, anything but a boolean is an error", "[config]") {
  CHECK(LoadConfig(kSample).centre.direct_io);
  CHECK_FALSE(ParseConfig(Edit("^small_object_bytes = .*$", "$&\ndirect_io = false"), "t.toml", "/etc/teleread")
                  .centre.direct_io);
  const std::string text = Edit("^small_object_bytes = .*$", "$&\ndirect_io = \"no\"");
  CHECK(ErrorOf(text) ==
        "t.toml:" + std::to_string(LineOf(text, "direct_io =")) + ": centre.direct_io: expected true or false");
}

TEST_CASE("status with a wrong --storage fails and creates no index", "[config][cli]") {
  test::ScratchDir dir;
  auto r =
      test::RunCommand({TELEREAD_SERVER_BIN, "--config", kSample.string(), "--storage", dir.path().string(), "status"});
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.output, Catch::Contains("no index at " + (dir.path() / "index.sqlite").string()));
  CHECK(std::filesystem::is_empty(dir.path()));
}

TEST_CASE("pki init reports its failure on stderr with a non-zero exit", "[cli][pki]") {
  test::ScratchDir dir;
  const std::string ca = (dir.path() / "ca").string();
  REQUIRE(test::RunCommand({TELEREAD_SERVER_BIN, "pki", "init", ca}).exit_code == 0);
  // A second init would overwrite the CA: refused, and nothing of it on stdout.
  auto again = test::RunCommand({"/bin/sh", "-c", "\"$0\" pki init \"$1\" 2>/dev/null", TELEREAD_SERVER_BIN, ca});
  CHECK(again.exit_code == 1);
  CHECK(again.output.empty());
  auto both = test::RunCommand({TELEREAD_SERVER_BIN, "pki", "init", ca});
  CHECK(both.exit_code == 1);
  CHECK_THAT(both.output, Catch::StartsWith("teleread-server: "));
}

TEST_CASE("DICOM TLS keys are read and their combinations checked", "[config][tls]") {
  const std::string tls_table =
      "[dicom_tls]\ncertificate = \"pki/server.pem\"\nkey = \"pki/server.key\"\nca = \"pki/ca.pem\"\n";
  auto with = [&](const std::string& extra) { return Edit("^\\[reading\\]$", tls_table + extra + "\n[reading]"); };

  Config c =
      ParseConfig(with("port = 2763\nprofile = \"bcp195\"\nexpiry_warning_days = 14"), "t.toml", "/etc/teleread");
  CHECK(c.dicom_tls.enabled);
  CHECK(c.dicom_tls.port == 2763);
  CHECK_FALSE(c.dicom_tls.same_port);
  CHECK(c.dicom_tls.allow_plain);
  CHECK(c.dicom_tls.certificate == "/etc/teleread/pki/server.pem");
  CHECK(c.dicom_tls.profile == "bcp195");
  CHECK(c.dicom_tls.expiry_warning_days == 14);
  CHECK(c.dicom_tls.crl.empty());  // no revocation list unless given
  CHECK(ParseConfig(with("crl = \"pki/crl.pem\""), "t.toml", "/etc/teleread").dicom_tls.crl ==
        "/etc/teleread/pki/crl.pem");
  CHECK_THAT(ErrorOf(with("crl = \"\"")), Catch::Contains("dicom_tls.crl: must not be empty"));
  CHECK_FALSE(LoadConfig(kSample).dicom_tls.enabled);

  Config one_port = ParseConfig(with("same_port = true\nallow_plain = false"), "t.toml", "/etc/teleread");
  CHECK(one_port.dicom_tls.same_port);
  CHECK_FALSE(one_port.dicom_tls.allow_plain);

  CHECK_THAT(ErrorOf(with("same_port = true\nport = 2762")), Catch::Contains("dicom_tls.port: not with same_port"));
  CHECK_THAT(ErrorOf(with("allow_plain = false")), Catch::Contains("allow_plain: false needs same_port = true"));
  CHECK_THAT(ErrorOf(with("profile = \"aes\"")), Catch::Contains("must be bcp195-nd, bcp195 or bcp195-ex"));
  CHECK_THAT(ErrorOf(with("certificates = \"x\"")), Catch::Contains("dicom_tls.certificates: unknown key"));

  // Member TLS settings need the [dicom_tls] table.
  CHECK_THAT(ErrorOf(Edit("^require_tls = false$", "require_tls = true")),
             Catch::Contains("members[0].require_tls: DICOM TLS needs the [dicom_tls] table"));
  CHECK_THAT(ErrorOf(Edit("^tls = false$", "tls = true")), Catch::Contains("DICOM TLS needs the [dicom_tls] table"));
  CHECK_THAT(ErrorOf(Edit("^tls = false$", "tls_ca = \"ca.pem\"")), Catch::Contains("tls_ca: needs tls = true"));
  CHECK_THAT(ErrorOf(Edit("^require_tls = false$", "require_tls = 1")), Catch::Contains("expected true or false"));

  // A member's own limit never exceeds the centre's.
  Config capped = ParseConfig(Edit("^max_associations = 8$", "max_associations = 500"), "t.toml", "/etc/teleread");
  CHECK(capped.members[0].max_associations == capped.centre.max_associations);
  CHECK(LoadConfig(kSample).members[1].max_associations == 8);
}
