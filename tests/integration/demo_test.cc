// The README's main command, run non-interactively on this build with a smaller corpus: the
// whole reading loop from push to signed report verified at the member hospital.
#include <catch2/catch.hpp>

#include "tests/support/process.h"

using namespace teleread::test;
namespace fs = std::filesystem;

TEST_CASE("the demo runs the whole reading loop end to end", "[demo]") {
  ScratchDir dir;
  const fs::path build = fs::path(TELEREAD_SERVER_BIN).parent_path().parent_path();
  const fs::path work = dir.path() / "demo";
  const uint16_t ports[] = {FreePort(), FreePort(), FreePort(), FreePort(), FreePort()};
  for (uint16_t p : ports) ReleasePort(p);  // the demo's processes bind them now
  CommandResult r = RunCommand(
      {"/usr/bin/env", "TELEREAD_DEMO_NO_BUILD=1", "TELEREAD_BUILD_DIR=" + build.string(),
       "TELEREAD_DEMO_DIR=" + work.string(), "TELEREAD_DEMO_PORT=" + std::to_string(ports[0]),
       "TELEREAD_DEMO_HTTPS_PORT=" + std::to_string(ports[1]), "TELEREAD_DEMO_TLS_PORT=" + std::to_string(ports[2]),
       "TELEREAD_DEMO_MEMBER_PORT=" + std::to_string(ports[3]),
       "TELEREAD_DEMO_MEMBER2_PORT=" + std::to_string(ports[4]), "TELEREAD_DEMO_CT_SLICES=4", "/bin/bash",
       std::string(TELEREAD_SOURCE_DIR) + "/samples/demo.sh"},
      std::chrono::seconds(240));
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.output, Catch::Contains("C-ECHO from ZZ_PACS over DICOM TLS with its certificate: OK"));
  // Zhuozhou's plain association and the stranger are refused, twice "Calling AE Title Not Recognized".
  const std::string refused = "Calling AE Title Not Recognized";
  CHECK(r.output.find(refused) != r.output.rfind(refused));
  // The centre workstation's name alone opens nothing (issue 19, finding 1).
  CHECK_THAT(ReadFile(work / "server.log"),
             Catch::Contains("centre AE title LX_WS1 must present its workstation certificate"));
  CHECK_THAT(r.output, Catch::Contains("claimed: held by wang.li"));
  CHECK_THAT(r.output, Catch::Contains("submitted "));
  // The identity banner of the claimed study and of the ECG, and both pictures written.
  CHECK_THAT(r.output, Catch::Contains("张^三   ID ZZ100234   born ") && Catch::Contains("陈^静   ID LS300518"));
  CHECK_THAT(r.output, Catch::Contains("TwelveLeadECGWaveformStorage, 12 channels at 500 Hz, 25 mm/s 10 mm/mV"));
  CHECK(fs::file_size(work / "png" / "ecg.png") > 10000);
  CHECK(fs::file_size(work / "png" / "ct-lung.png") > 10000);
  CHECK_THAT(r.output, Catch::Contains("signature valid"));
  CHECK_THAT(r.output, Catch::Contains("COMPLETE, VERIFIED by Wang^Li"));
  CHECK_THAT(r.output, Catch::Contains("右肺上叶尖段见一直径约8mm磨玻璃结节"));
  CHECK_THAT(r.output, Catch::Contains("SeriesDescription") && Catch::Contains("TeleRead report"));
  CHECK_THAT(r.output, Catch::Contains("-> delivered"));
  // The member PACS holds exactly the one signed report and its PDF copy; the PNGs exist.
  int received = 0, copies = 0;
  for (const auto& e : fs::directory_iterator(work / "member-ZZ_PACS")) {
    received += e.path().filename().string().rfind("SR", 0) == 0;
    copies += e.path().filename().string().rfind("PDF", 0) == 0;
  }
  CHECK(received == 1);
  CHECK(copies == 1);
  CHECK_THAT(r.output, Catch::Contains("PDF copy") && Catch::Contains("%PDF"));
  CHECK(fs::file_size(work / "png" / "ct-lung.png") > 1000);
  CHECK(fs::file_size(work / "png" / "ct-sheet.png") > 1000);
  CHECK_THAT(r.output, !Catch::Contains("ERROR") && !Catch::Contains("NOT VALID"));
  // Zhuozhou pushed over TLS, and its report went to its TLS-only storescp.
  const std::string log = ReadFile(work / "server.log");
  CHECK_THAT(log, Catch::Contains("association ZZ_PACS (zhuozhou) from 127.0.0.1 ended: 6 stored, 0 refused"));
  CHECK_THAT(log, Catch::Contains("; TLSv1."));
  CHECK_THAT(log, Catch::Contains("delivered to zhuozhou (attempt 1, DICOM TLS)"));
  // Studies complete by storage commitment, not the 60 s quiet period; the critical result is acknowledged.
  CHECK_THAT(r.output, Catch::Contains("6 of 6 instances committed, 0 failed"));
  CHECK_THAT(log, Catch::Contains("storage commitment") && Catch::Contains("complete: queued for reading"));
  CHECK_THAT(r.output,
             Catch::Contains("critical result ") && Catch::Contains(" acknowledged by 李华 (急诊科值班医生)"));
  CHECK_THAT(r.output, Catch::Contains("-> acknowledged ") && !Catch::Contains("-> acknowledged -"));
  // The restore drill: the late series, stored after the index snapshot, is found in the segments.
  CHECK_THAT(r.output, Catch::Contains("recovery: indexed 3 object(s) found in segments past their last indexed one, "
                                       "left out 0"));
  CHECK_THAT(r.output, Catch::Contains(" whole, 0 damaged, 0 without a trailer"));
}
