#include <catch2/catch.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/oflog/oflog.h"

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

#include "common/dicom.h"
#include "common/text.h"
#include "samples/synthetic.h"
#include "tests/support/process.h"

using namespace teleread;

TEST_CASE("text is decoded from the object's Specific Character Set", "[charset]") {
  InitializeDicom();
  SECTION("GB18030") {
    auto name = DecodeToUtf8("GB18030", "\xD5\xC5^\xC8\xFD", "\\^=");
    REQUIRE(name.ok());
    CHECK(name.value() == "张^三");
  }
  SECTION("ISO_IR 100 (Latin-1)") {
    auto name = DecodeToUtf8("ISO_IR 100", "M\xFCller^J\xF6rg", "\\^=");
    REQUIRE(name.ok());
    CHECK(name.value() == "Müller^Jörg");
  }
  SECTION("ISO_IR 192 (UTF-8) passes through") {
    auto name = DecodeToUtf8("ISO_IR 192", "李^四", "\\^=");
    REQUIRE(name.ok());
    CHECK(name.value() == "李^四");
  }
  SECTION("no Specific Character Set: ASCII stays as is") {
    auto name = DecodeToUtf8("", "Doe^John", "\\^=");
    REQUIRE(name.ok());
    CHECK(name.value() == "Doe^John");
  }
  SECTION("an unknown character set is an error, not garbage") { CHECK_FALSE(DecodeToUtf8("ISO_IR 9999", "abc").ok()); }
}

TEST_CASE("an object written in GB18030 is indexed with UTF-8 text", "[charset]") {
  InitializeDicom();
  test::ScratchDir dir;
  samples::SeriesSpec spec;
  spec.patient_name = "张^三";
  spec.patient_id = "ZZ1";
  spec.specific_character_set = "GB18030";
  spec.study_description = "胸部CT平扫";
  spec.rows = spec.columns = 16;
  auto files = samples::WriteSeries(spec, dir.path());
  REQUIRE(files.ok());
  REQUIRE(files->size() == 1);
  // On disk the name is in GB18030, not UTF-8.
  std::string bytes = test::ReadFile(files->front());
  CHECK(bytes.find("\xD5\xC5^\xC8\xFD") != std::string::npos);
  CHECK(bytes.find("张") == std::string::npos);

  auto summary = ReadInstanceSummary(files->front());
  REQUIRE(summary.ok());
  CHECK(summary->specific_character_set == "GB18030");
  CHECK(summary->patient_name == "张^三");
  CHECK(summary->study_description == "胸部CT平扫");
  CHECK(summary->patient_id == "ZZ1");
}

TEST_CASE("tables line up with Chinese text", "[text]") {
  CHECK(DisplayWidth("Knee AP") == 7);
  CHECK(DisplayWidth("胸部CT平扫") == 10);
  CHECK(PadToWidth("胸部CT平扫", 12) == "胸部CT平扫  ");
  CHECK(PadToWidth("胸部CT平扫", 5) == "胸部C");
  CHECK(PadToWidth("胸部", 3) == "胸 ");  // never half a character
  CHECK(PadToWidth("Müller", 8) == "Müller  ");
}

// The examples of PS3.5 Annex H, I and K: names in ISO 2022 code extensions, which DCMTK's
// converter as built on Debian refuses ("Cannot open character encoding").
TEST_CASE("ISO 2022 code extensions decode to UTF-8 (PS3.5 Annex H, I, K)", "[charset]") {
  InitializeDicom();
  SECTION("Japanese, ISO 2022 IR 87 (kanji and hiragana)") {
    auto name =
        DecodeToUtf8("\\ISO 2022 IR 87",
                     "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B", "\\^=");
    REQUIRE(name.ok());
    CHECK(name.value() == "Yamada^Tarou=山田^太郎=やまだ^たろう");
  }
  SECTION("Japanese, ISO 2022 IR 13 with IR 87 (half-width katakana)") {
    auto name = DecodeToUtf8("ISO 2022 IR 13\\ISO 2022 IR 87",
                             "\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^"
                             "\x1b$B$?$m$&\x1b(J",
                             "\\^=");
    REQUIRE(name.ok());
    CHECK(name.value() == "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう");
  }
  SECTION("Korean, ISO 2022 IR 149") {
    auto name = DecodeToUtf8(
        "\\ISO 2022 IR 149",
        "Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf", "\\^=");
    REQUIRE(name.ok());
    CHECK(name.value() == "Hong^Gildong=洪^吉洞=홍^길동");
  }
  SECTION("Chinese, ISO 2022 IR 58") {
    auto name = DecodeToUtf8("\\ISO 2022 IR 58", "Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab=", "\\^=");
    REQUIRE(name.ok());
    CHECK(name.value() == "Zhang^XiaoDong=张^小东=");
  }
  SECTION("Latin-1 in G1 and GBK") {
    auto latin = DecodeToUtf8("ISO 2022 IR 100", "M\xfcller", "\\");
    REQUIRE(latin.ok());
    CHECK(latin.value() == "Müller");
    auto gbk = DecodeToUtf8("GBK", "\xD5\xC5^\xC8\xFD", "\\^=");
    REQUIRE(gbk.ok());
    CHECK(gbk.value() == "张^三");
  }
  SECTION("an unknown escape sequence is an error, not garbage") {
    CHECK_FALSE(DecodeToUtf8("\\ISO 2022 IR 87", "\x1b$Z;3", "\\^=").ok());
  }
}

TEST_CASE("DCMTK's diagnostics go through our logger, not raw to the terminal", "[charset][log]") {
  InitializeDicom();
  std::ostringstream captured;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(captured);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  OFLogger dcmdata = OFLog::getLogger("dcmtk.dcmdata");  // errors only: its warnings are routine
  OFLogger dcmimgle = OFLog::getLogger("dcmtk.dcmimgle");
  OFLOG_WARN(dcmimgle, "a warning DCMTK would have printed as W: ...");
  OFLOG_ERROR(dcmdata, "an error of DCMTK's");
  spdlog::set_default_logger(previous);
  CHECK_THAT(captured.str(), Catch::Contains("[warning] dcmtk.dcmimgle: a warning DCMTK would have printed") &&
                                 Catch::Contains("[error] dcmtk.dcmdata: an error of DCMTK's"));
}
