// `teleread fetch` and `teleread view` end to end against the real server over mutual TLS.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"

#include <algorithm>
#include <set>
#include <thread>

#include "samples/synthetic.h"
#include "tests/support/server_fixture.h"
#include "viewer/render.h"

using namespace teleread::test;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr int kCtSlices = 5;

class ViewFixture {
 public:
  ViewFixture() : server_(dir_.path() / "server") {
    server_.Start();
    PushSampleConsortium(server_, dir_.path() / "samples", kCtSlices);
    WriteProfile(server_, "wang.li", dir_.path() / "wang.li.toml");
    WaitForWorklist(server_, 6);
    CommandResult r = Cli({"--json", "worklist", "--modality", "CT"});
    REQUIRE(r.exit_code == 0);
    json items = json::parse(r.output)["items"];
    REQUIRE(items.size() == 1);
    study_ = items[0]["study_instance_uid"];
  }

  CommandResult Cli(std::vector<std::string> args) {
    args.insert(args.begin(), {TELEREAD_CLI_BIN, "--profile", (dir_.path() / "wang.li.toml").string()});
    return RunCommand(args);
  }

  // The API's description of the CT study.
  json Study() {
    CommandResult r = Cli({"--json", "show", study_});
    REQUIRE(r.exit_code == 0);
    return json::parse(r.output);
  }

  fs::path CacheFile(const std::string& sop) const { return cache_ / study_ / (sop + ".dcm"); }

 protected:
  ScratchDir dir_;
  TestServer server_;
  std::string study_;
  fs::path cache_ = dir_.path() / "cache";
};

}  // namespace

TEST_CASE_METHOD(ViewFixture, "fetch downloads a study and resumes from the cache", "[view][fetch]") {
  CommandResult first = Cli({"fetch", study_, "--cache", cache_.string()});
  INFO(first.output);
  REQUIRE(first.exit_code == 0);
  CHECK_THAT(first.output, Catch::StartsWith("fetched 5 of 5 instances (") && Catch::Contains("; 0 already cached"));

  json series = Study()["series"];
  REQUIRE(series.size() == 1);
  REQUIRE(series[0]["instances"].size() == kCtSlices);
  std::vector<std::string> sops;
  for (const json& in : series[0]["instances"]) {
    sops.push_back(in["sop_instance_uid"]);
    INFO(in["sop_instance_uid"]);
    REQUIRE(fs::exists(CacheFile(sops.back())));
    CHECK(fs::file_size(CacheFile(sops.back())) == in["size_bytes"].get<uint64_t>());
  }
  CHECK(CountFiles(cache_ / study_) == kCtSlices);  // no .part left behind

  CHECK_THAT(Cli({"fetch", study_, "--cache", cache_.string()}).output,
             Catch::StartsWith("fetched 0 of 5 instances (0.0 MB)") && Catch::Contains("; 5 already cached"));

  fs::remove(CacheFile(sops[1]));
  CommandResult one = Cli({"fetch", study_, "--cache", cache_.string()});
  CHECK(one.exit_code == 0);
  CHECK_THAT(one.output, Catch::StartsWith("fetched 1 of 5 instances") && Catch::Contains("; 4 already cached"));
  CHECK(fs::exists(CacheFile(sops[1])));

  // A half-written file under the final name (say, after a crash) is caught by its size.
  const uint64_t size = fs::file_size(CacheFile(sops[2]));
  fs::resize_file(CacheFile(sops[2]), size / 2);
  CommandResult truncated = Cli({"fetch", study_, "--cache", cache_.string()});
  CHECK(truncated.exit_code == 0);
  CHECK_THAT(truncated.output, Catch::Contains("the cached copy of instance " + sops[2]) &&
                                   Catch::Contains("fetching it again") && Catch::Contains("fetched 1 of 5 instances"));
  CHECK(fs::file_size(CacheFile(sops[2])) == size);

  // Same size, but another object: caught by its SOP Instance UID.
  fs::copy_file(CacheFile(sops[0]), CacheFile(sops[3]), fs::copy_options::overwrite_existing);
  CommandResult swapped = Cli({"fetch", study_, "--cache", cache_.string()});
  CHECK(swapped.exit_code == 0);
  CHECK_THAT(swapped.output,
             Catch::Contains("holds SOP Instance UID " + sops[0]) && Catch::Contains("fetched 1 of 5 instances"));
  CHECK(ReadFile(CacheFile(sops[3])).find(sops[3]) != std::string::npos);

  CommandResult as_json = Cli({"--json", "fetch", study_, "--cache", cache_.string()});
  REQUIRE(as_json.exit_code == 0);
  json summary = json::parse(as_json.output);
  CHECK(summary["study_instance_uid"] == study_);
  CHECK(summary["instances"] == kCtSlices);
  CHECK(summary["fetched"] == 0);
  CHECK(summary["cached"] == kCtSlices);
  CHECK(summary["bytes"] == 0);
  CHECK(summary["directory"] == (cache_ / study_).string());

  CommandResult unknown = Cli({"fetch", "1.2.3.4", "--cache", cache_.string()});
  CHECK(unknown.exit_code == 1);
  CHECK_THAT(unknown.output, Catch::Contains("HTTP 404"));
  // A study UID that is a path: refused, and nothing written outside the cache.
  auto listing = [&] {
    std::set<std::string> entries;
    for (const auto& e : fs::directory_iterator(dir_.path())) entries.insert(e.path().filename().string());
    for (const auto& e : fs::recursive_directory_iterator(cache_)) entries.insert(e.path().string());
    return entries;
  };
  const std::set<std::string> before = listing();
  CommandResult escape = Cli({"fetch", "../etc", "--cache", cache_.string()});
  INFO(escape.output);
  CHECK(escape.exit_code == 1);
  CHECK_FALSE(escape.output.empty());
  CHECK_THAT(escape.output, !Catch::Contains("fetched"));
  CHECK_FALSE(fs::exists(dir_.path() / "etc"));
  CHECK(listing() == before);
}

TEST_CASE_METHOD(ViewFixture, "view renders a PNG a contact sheet a preview and JSON", "[view]") {
  const fs::path png = dir_.path() / "x.png", sheet = dir_.path() / "sheet.png";
  CommandResult out = Cli({"view", study_, "--cache", cache_.string(), "--out", png.string()});
  INFO(out.output);
  REQUIRE(out.exit_code == 0);
  CHECK_THAT(out.output, Catch::Contains("wrote " + png.string() +
                                         ": series 1 instance 3 (position 3 of 5) frame 1 of 1, "
                                         "512x512, window C 40 W 400"));
  CHECK(CountFiles(cache_ / study_) == 1);  // only what it needed
  teleread::Result<teleread::viewer::RgbImage> image = teleread::viewer::ReadPng(png);
  REQUIRE(image.ok());
  CHECK(image->width == 512);
  CHECK(image->height == 512);

  CommandResult montage = Cli({"view", study_, "--cache", cache_.string(), "--sheet", sheet.string()});
  INFO(montage.output);
  REQUIRE(montage.exit_code == 0);
  CHECK_THAT(montage.output, Catch::Contains("5 images in a 3x2 grid, 768x560"));  // 48 rows of identity
  CHECK(CountFiles(cache_ / study_) == kCtSlices);
  teleread::Result<teleread::viewer::RgbImage> tiles = teleread::viewer::ReadPng(sheet);
  REQUIRE(tiles.ok());
  CHECK(tiles->width == 3 * 256);
  CHECK(tiles->height == 2 * 256 + 48);

  CommandResult as_json =
      Cli({"--json", "view", study_, "--cache", cache_.string(), "--instance", "2", "--preset", "lung"});
  REQUIRE(as_json.exit_code == 0);
  json j = json::parse(as_json.output);
  CHECK(j["series_number"] == "1");
  CHECK(j["instance_number"] == "2");
  CHECK(j["width"] == 512);
  CHECK(j["frames"] == 1);
  CHECK(j["window"]["center"] == -600);
  CHECK(j["window"]["width"] == 1500);
  CHECK(j["photometric"] == "MONOCHROME2");
  CHECK(fs::exists(j["file"].get<std::string>()));

  CommandResult preview = Cli({"view", study_, "--cache", cache_.string(), "--wl=-600,1500", "--preview"});
  CHECK(preview.exit_code == 0);
  CHECK_THAT(preview.output, Catch::Contains("window C -600 W 1500") && Catch::Contains("\033[38;2;") &&
                                 Catch::Contains("\u2580\033[0m\n"));
  // Off a terminal the preview fits 80x24: the caption and at most 21 lines of image.
  CHECK(std::count(preview.output.begin(), preview.output.end(), '\n') <= 22);

  // Usage: nothing to show off a terminal, conflicting windows, a bad frame or series.
  CHECK(Cli({"view", study_, "--cache", cache_.string()}).exit_code == 2);
  CHECK(Cli({"view", study_, "--preset", "lung", "--wl=40,400", "--preview"}).exit_code == 2);
  CHECK(Cli({"view", study_, "--preset", "liver", "--preview"}).exit_code == 2);
  CHECK(Cli({"view", study_, "--wl", "40", "--preview"}).exit_code == 2);
  CommandResult frame = Cli({"view", study_, "--cache", cache_.string(), "--frame", "2", "--preview"});
  CHECK(frame.exit_code == 1);
  CHECK_THAT(frame.output, Catch::Contains("frame 2 is out of range: the image has 1 frame (counted from 1)"));
  CHECK(Cli({"view", study_, "--frame", "0", "--preview"}).exit_code == 2);  // frames count from 1
  CommandResult series = Cli({"view", study_, "--cache", cache_.string(), "--series", "9", "--preview"});
  CHECK(series.exit_code == 1);
  CHECK_THAT(series.output, Catch::Contains("no series 9") && Catch::Contains("1 (CT)"));
}

TEST_CASE_METHOD(ViewFixture, "view names a structured report it cannot read and why", "[view][fetch]") {
  // A Basic Text SR added to the CT study by the same hospital, as series 2.
  DcmFileFormat ff;
  DcmDataset& ds = *ff.getDataset();
  ds.putAndInsertString(DCM_SOPClassUID, UID_BasicTextSRStorage);
  ds.putAndInsertString(DCM_SOPInstanceUID, teleread::samples::NewUid().c_str());
  ds.putAndInsertString(DCM_StudyInstanceUID, study_.c_str());
  ds.putAndInsertString(DCM_SeriesInstanceUID, teleread::samples::NewUid().c_str());
  ds.putAndInsertString(DCM_PatientID, "ZZ100234");
  ds.putAndInsertString(DCM_Modality, "SR");
  ds.putAndInsertString(DCM_SeriesNumber, "2");
  ds.putAndInsertString(DCM_InstanceNumber, "1");
  const fs::path sr = dir_.path() / "sr.dcm";
  REQUIRE(ff.saveFile(sr.c_str(), EXS_LittleEndianExplicit).good());
  REQUIRE(StoreFiles(server_, "ZZ_PACS", {sr.string()}).exit_code == 0);
  REQUIRE(Study()["series"].size() == 2);

  CommandResult all = Cli({"fetch", study_, "--cache", cache_.string()});
  CHECK(all.exit_code == 0);
  CHECK_THAT(all.output, Catch::StartsWith("fetched 6 of 6 instances"));

  CommandResult report = Cli({"view", study_, "--cache", cache_.string(), "--series", "2", "--preview"});
  CHECK(report.exit_code == 1);
  // This SR has no content tree: it is named, and why it cannot be shown is said.
  CHECK_THAT(report.output,
             Catch::Contains("series 2 #1 (BasicTextSRStorage)") && Catch::Contains("not a readable SR document"));
  // The default is the first series with images, whatever comes first.
  CommandResult image = Cli({"--json", "view", study_, "--cache", cache_.string()});
  CHECK(image.exit_code == 0);
  CHECK(json::parse(image.output)["series_number"] == "1");
}
