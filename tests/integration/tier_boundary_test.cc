// The tier boundary through the network: an object whose stored size (meta header and data set,
// as the receiver writes them) is exactly centre.small_object_bytes is kept in the index; one
// byte more and it is a file, the receiver spilling what it held in memory to a temp file in the
// middle of a PDV (storescu sends 4 KiB PDUs). Both come back byte for byte, as storescp +B
// writes them.
#include <catch2/catch.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcmetinf.h"

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "tests/support/server_fixture.h"
#include "tests/support/stored.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kThreshold = 16384;
constexpr int kMaxPdu = 4096;  // the sender's: PDVs of about 4 KiB, so the object spans several
// Every object here has SOP Instance UIDs of one length, so the meta header the receiver writes
// (it names the UID) has one size.
const std::string kUidRoot = "1.2.826.0.1.3680043.10.543.77.";

// The base image's copy with SOP Instance UID kUidRoot + `n` and an Image Comments value of
// `pad` bytes: the knob that sets the stored size to the byte (even sizes only, as DICOM's are).
fs::path Variant(const fs::path& base, const fs::path& out, char n, size_t pad) {
  DcmFileFormat ff;
  REQUIRE(ff.loadFile(base.c_str()).good());
  DcmDataset* ds = ff.getDataset();
  REQUIRE(ds->putAndInsertString(DCM_SOPInstanceUID, (kUidRoot + n).c_str()).good());
  REQUIRE(ds->putAndInsertString(DCM_ImageComments, std::string(pad, 'x').c_str()).good());
  ff.getMetaInfo()->clear();  // made afresh, naming the new UID
  REQUIRE(ff.saveFile(out.c_str(), EXS_LittleEndianExplicit).good());
  return out;
}

std::vector<std::string> Push(uint16_t port, const std::vector<fs::path>& files) {
  std::vector<std::string> args;
  for (const fs::path& f : files) args.push_back(f.string());
  return StoreResponses(StoreTo(port, "ZZ_PACS", args, {"--max-send-pdu", std::to_string(kMaxPdu)}));
}

std::string PathOf(const fs::path& storage, const std::string& sop) {
  const fs::path f = StoredFileFor(storage, sop, storage.parent_path() / "scratch");
  if (f.empty()) return "";
  return f.string().rfind((storage / "objects").string(), 0) == 0 ? f.lexically_relative(storage).string()
                                                                  : "index:" + f.stem().string();
}

}  // namespace

TEST_CASE("an object of exactly small_object_bytes is kept in the index and one byte more spills to a file mid-PDV",
          "[tiers][ingest][boundary]") {
  InitializeDicom();
  ScratchDir dir;
  samples::SeriesSpec spec;
  spec.patient_name = "Boundary^Test";
  spec.patient_id = "TIERB1";
  spec.rows = spec.columns = 48;  // 4.5 KiB of pixels: the padding makes up the rest
  auto base = samples::WriteSeries(spec, dir.path() / "base");
  REQUIRE(base.ok());
  const fs::path in = dir.path() / "in";
  fs::create_directories(in);

  ServerOptions options;
  options.small_object_bytes = kThreshold;
  options.segment_mb = 0;  // the spill into a segment: segment_write_test.cc
  TestServer server(dir.path() / "server", options);
  server.Start();

  // Calibration: the stored size of one object tells the meta header's, so that the next ones
  // can be padded to the byte.
  const fs::path calibration = Variant(base->front(), in / "c.dcm", '0', 2000);
  REQUIRE(Push(server.port(), {calibration}) == std::vector<std::string>{"Success"});
  const std::string calibrated = ReadFile(StoredFileFor(server.storage(), kUidRoot + '0', dir.path() / "scratch"));
  REQUIRE(!calibrated.empty());
  const size_t meta = calibrated.size() - DataSetBytes(calibrated).size();
  auto pad_for = [&](uint64_t stored_size) {
    REQUIRE(stored_size >= calibrated.size() - 2000);
    return static_cast<size_t>(2000 + stored_size - calibrated.size());
  };
  // Exactly the threshold; and the next size a DICOM object can have (sizes are even), two more.
  const fs::path exact = Variant(base->front(), in / "exact.dcm", '1', pad_for(kThreshold));
  const fs::path over = Variant(base->front(), in / "over.dcm", '2', pad_for(kThreshold + 2));
  // The spill point, in data set bytes, falls well inside a PDV for any fragment size DCMTK makes
  // of a 4096-byte PDU (its PDU and PDV headers take 6 to 12 bytes): not at a PDV's first byte.
  const size_t spill_at = kThreshold - meta;
  for (size_t fragment = kMaxPdu - 16; fragment <= kMaxPdu; ++fragment) {
    INFO("fragment " << fragment << ", spill at data set byte " << spill_at);
    CHECK(spill_at % fragment > 64);
    CHECK(fragment - spill_at % fragment > 64);
  }

  REQUIRE(Push(server.port(), {exact, over}) == std::vector<std::string>(2, "Success"));
  const std::string stored_exact = StoredBytes(server.storage(), PathOf(server.storage(), kUidRoot + '1'));
  const std::string stored_over = StoredBytes(server.storage(), PathOf(server.storage(), kUidRoot + '2'));
  REQUIRE(stored_exact.size() == kThreshold);
  REQUIRE(stored_over.size() == kThreshold + 2);
  CHECK(PathOf(server.storage(), kUidRoot + '1').rfind("index:", 0) == 0);
  CHECK(PathOf(server.storage(), kUidRoot + '2').rfind("objects/", 0) == 0);
  CHECK(InIndexPaths(server.storage()).count(PathOf(server.storage(), kUidRoot + '1')) == 1);
  CHECK(DataSetBytes(stored_exact) == DataSetBytes(ReadFile(exact)));
  CHECK(DataSetBytes(stored_over) == DataSetBytes(ReadFile(over)));
  CHECK(fs::is_empty(server.storage() / "tmp"));

  SECTION("storescp +B writes the same bytes, meta header too") {
    const uint16_t port = FreePort();
    const fs::path received = dir.path() / "storescp";
    fs::create_directories(received);
    ChildProcess storescp;
    ReleasePort(port);
    storescp.Start({STORESCP_BIN, "+B", "-aet", "LX_READ", "-od", received.string(), std::to_string(port)},
                   dir.path() / "storescp.log");
    REQUIRE(WaitFor(
        [&] {
          return RunCommand({ECHOSCU_BIN, "-aet", "ZZ_PACS", "-aec", "LX_READ", "127.0.0.1", std::to_string(port)})
                     .exit_code == 0;
        },
        20));
    REQUIRE(Push(port, {exact, over}) == std::vector<std::string>(2, "Success"));
    storescp.Stop(15);
    const std::vector<fs::path> files = ListFiles(received);
    REQUIRE(files.size() == 2);
    for (const fs::path& f : files) {
      auto s = ReadInstanceSummary(f);
      REQUIRE(s.ok());
      INFO(f);
      CHECK(ReadFile(f) == (s->sop_instance_uid == kUidRoot + '1' ? stored_exact : stored_over));
    }
  }

  SECTION("C-GET and the API download give back what was sent") {
    auto s = ReadInstanceSummary(exact);
    REQUIRE(s.ok());
    const fs::path got = dir.path() / "got";
    CommandResult r = GetStudy(server, "ZZ_PACS", s->study_instance_uid, got);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    int compared = 0;
    for (const fs::path& f : ListFiles(got)) {
      auto g = ReadInstanceSummary(f);
      REQUIRE(g.ok());
      if (g->sop_instance_uid == kUidRoot + '1') CHECK(DataSetBytes(ReadFile(f)) == DataSetBytes(ReadFile(exact)));
      if (g->sop_instance_uid == kUidRoot + '2') CHECK(DataSetBytes(ReadFile(f)) == DataSetBytes(ReadFile(over)));
      compared += g->sop_instance_uid != kUidRoot + '0';
    }
    CHECK(compared == 2);
    for (const auto& [n, stored] : {std::pair<char, std::string>{'1', stored_exact}, {'2', stored_over}}) {
      const fs::path one = dir.path() / (std::string("api-") + n + ".dcm");
      REQUIRE(server
                  .Curl("wang.li", "GET", "/api/v1/studies/" + s->study_instance_uid + "/instances/" + kUidRoot + n,
                        {"-o", one.string()})
                  .output == "\n200");
      CHECK(ReadFile(one) == stored);
    }
  }

  SECTION("with the threshold one byte lower, the object of exactly the old threshold is a file") {
    REQUIRE(server.Stop() == 0);
    ServerOptions lower = options;
    lower.small_object_bytes = kThreshold - 1;
    ScratchDir other;
    TestServer second(other.path() / "server", lower);
    second.Start();
    REQUIRE(Push(second.port(), {exact}) == std::vector<std::string>{"Success"});
    const std::string path = PathOf(second.storage(), kUidRoot + '1');
    CHECK(path.rfind("objects/", 0) == 0);
    CHECK(InIndexObjectCount(second.storage()) == 0);
    CHECK(StoredBytes(second.storage(), path) == stored_exact);  // the same bytes, in the other tier
    CHECK(fs::is_empty(second.storage() / "tmp"));
  }
}
