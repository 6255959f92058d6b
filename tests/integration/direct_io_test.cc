// Which received objects are written with O_DIRECT (server/store/direct_file.h), seen from the
// page cache after the acknowledgement: a direct-written file keeps only its last partial page
// there (its head is parsed from the copy the receiver kept in memory), one written the ordinary
// way all of its pages. Native objects go direct unless [centre] direct_io
// is false; encapsulated ones never (their parse reads a header per fragment all through the file).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "common/dicom.h"
#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcpixel.h"
#include "dcmtk/dcmdata/dcpixseq.h"
#include "dcmtk/dcmdata/dcpxitem.h"
#include "samples/synthetic.h"
#include "tests/support/direct_probe.h"
#include "tests/support/server_fixture.h"
#include "tests/support/skip.h"
#include "tests/support/stored.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

namespace {

// One ~0.5 MB CT-like object, native; with `encapsulated`, its pixels replaced by 3 JPEG 2000
// fragments of 200,000 bytes (never decoded on the way in): large enough that the parse, which
// reads each fragment's header, does not read the whole file back either way.
fs::path Object(const fs::path& dir, const std::string& patient_id, bool encapsulated) {
  samples::SeriesSpec spec;
  spec.patient_name = "Direct^Test";
  spec.patient_id = patient_id;
  spec.rows = spec.columns = 512;
  spec.instances = 1;
  auto files = samples::WriteSeries(spec, dir);
  REQUIRE(files.ok());
  const fs::path file = files->front();
  if (!encapsulated) return file;
  DcmFileFormat ff;
  REQUIRE(ff.loadFile(file.c_str()).good());
  DcmDataset& ds = *ff.getDataset();
  ds.loadAllDataIntoMemory();
  ds.findAndDeleteElement(DCM_PixelData);
  auto* seq = new DcmPixelSequence(DCM_PixelSequenceTag);
  seq->insert(new DcmPixelItem(DCM_PixelItemTag));  // an empty offset table
  std::vector<Uint8> bytes(200000);
  for (int f = 0; f < 3; ++f) {
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<Uint8>(i * 37 + f);
    auto* fragment = new DcmPixelItem(DCM_PixelItemTag);
    fragment->putUint8Array(bytes.data(), static_cast<unsigned long>(bytes.size()));
    seq->insert(fragment);
  }
  auto* pixels = new DcmPixelData(DCM_PixelData);
  pixels->putOriginalRepresentation(EXS_JPEG2000LosslessOnly, nullptr, seq);
  ds.insert(pixels, true);
  REQUIRE(ff.saveFile(file.c_str(), EXS_JPEG2000LosslessOnly).good());
  return file;
}

// Pushes `file` and returns the stored file's {resident pages, pages}.
std::pair<size_t, size_t> PushAndLook(const TestServer& server, const fs::path& file,
                                      const std::vector<std::string>& extra = {}) {
  const std::vector<fs::path> before = ListFiles(server.storage() / "objects");
  const CommandResult pushed = StoreFiles(server, "ZZ_PACS", {file.string()}, extra);
  INFO(pushed.output);
  REQUIRE(StoreResponses(pushed) == std::vector<std::string>{"Success"});
  const std::vector<fs::path> after = ListFiles(server.storage() / "objects");
  REQUIRE(after.size() == before.size() + 1);
  for (const fs::path& f : after) {
    if (std::find(before.begin(), before.end(), f) == before.end()) return Residency(f);
  }
  FAIL("no new object file");
  return {};
}

}  // namespace

TEST_CASE("native objects are written past their head with O_DIRECT unless direct_io is false, encapsulated ones never",
          "[store][direct][ingest]") {
  InitializeDicom();
  ScratchDir dir;
  if (!DirectWritesSkipCache(dir.path())) {
    TELEREAD_SKIP("the scratch directory's file system does not keep O_DIRECT writes out of the page cache");
  }
  const fs::path native = Object(dir.path() / "native", "DIRECT1", false);
  const fs::path native2 = Object(dir.path() / "native2", "DIRECT2", false);
  const fs::path encapsulated = Object(dir.path() / "j2k", "DIRECT3", true);
  REQUIRE(fs::file_size(encapsulated) > 512 * 1024);
  const size_t head_pages = 128 * 1024 / static_cast<size_t>(::sysconf(_SC_PAGESIZE));  // a default memory limit

  ServerOptions files;
  files.segment_mb = 0;  // objects in segments: segment_write_test.cc
  {
    TestServer server(dir.path() / "on", files);
    server.Start();
    auto [resident, pages] = PushAndLook(server, native);
    INFO("native, direct_io default: " << resident << " of " << pages << " pages resident");
    CHECK(pages > 2 * head_pages);
    CHECK(resident <= 1);  // the last partial page: the parse read nothing back
    auto [resident_e, pages_e] = PushAndLook(server, encapsulated, {"-xv"});
    INFO("encapsulated: " << resident_e << " of " << pages_e << " pages resident");
    CHECK(resident_e >= pages_e * 3 / 4);  // all written through the cache; some may be evicted
  }
  {
    ServerOptions off = files;
    off.edits = {{"^small_object_bytes = .*$", "$&\ndirect_io = false"}};
    TestServer server(dir.path() / "off", off);
    server.Start();
    auto [resident, pages] = PushAndLook(server, native2);
    INFO("native, direct_io = false: " << resident << " of " << pages << " pages resident");
    CHECK(resident >= pages * 3 / 4);
  }
}

TEST_CASE("a DICOM worker frees its write buffer when its association ends", "[store][direct][ingest]") {
  InitializeDicom();
  ScratchDir dir;
  const fs::path native = Object(dir.path() / "native", "DIRECT4", false);
  TestServer server(dir.path() / "server");
  server.Start();
  const std::string gauge = "\nteleread_dicom_receive_buffers ";
  auto buffers = [&] {
    const HttpReply r = server.Call("ops", "GET", "/metrics");
    REQUIRE(r.status == 200);
    const size_t at = r.body.find(gauge);
    REQUIRE(at != std::string::npos);
    return std::stoul(r.body.substr(at + gauge.size()));
  };
  CHECK(buffers() == 0);
  const CommandResult pushed = StoreFiles(server, "ZZ_PACS", {native.string()});
  INFO(pushed.output);
  REQUIRE(StoreResponses(pushed) == std::vector<std::string>{"Success"});
  REQUIRE(fs::file_size(native) > 256 * 1024);  // file tier, a buffer taken
  // storescu has released the association; its worker frees the buffer right after.
  size_t left = buffers();
  for (int i = 0; i < 50 && left != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    left = buffers();
  }
  CHECK(left == 0);
}
