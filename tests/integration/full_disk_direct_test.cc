// A full ext4 volume under the file tier's O_DIRECT writes: tmpfs (the other full-disk tests)
// takes no O_DIRECT, so only a real block file system shows what a server's disk does when the
// aligned writes past an object's head meet ENOSPC. Each sender is told the truth, nothing
// half-written stays, and every object acknowledged is whole.
#include <catch2/catch.hpp>

#include <algorithm>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcuid.h"

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "tests/support/direct_probe.h"
#include "tests/support/scu.h"
#include "tests/support/server_fixture.h"
#include "tests/support/skip.h"
#include "tests/support/stored.h"
#include "tests/support/tmpfs.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

TEST_CASE("a full ext4 volume under O_DIRECT writes answers 0xA700 and leaves nothing half-written",
          "[durability][disk][direct]") {
  // Files of their own, or ranges of 2 MiB segments that grow until the disk is full.
  const uint64_t segment_mb = GENERATE(0, 2);
  INFO("segment_mb " << segment_mb);
  ScratchDir dir;
  MountedExt4 volume(dir.path() / "volume.img", dir.path() / "volume", 24);
  if (!volume.mounted()) TELEREAD_SKIP("cannot make and loop-mount an ext4 image here (not root?)");
  if (!DirectWritesSkipCache(volume.path())) TELEREAD_SKIP("O_DIRECT writes are cached on this ext4");
  InitializeDicom();

  samples::SeriesSpec spec;
  spec.patient_id = "FULL3";
  spec.rows = spec.columns = 512;
  spec.instances = 64;  // 64 x 0.5 MB: more than the volume holds
  auto files = samples::WriteSeries(spec, dir.path() / "in");
  REQUIRE(files.ok());

  ServerOptions options;
  options.segment_mb = segment_mb;
  std::unique_ptr<TestServer> started = StartServerOnVolume(dir.path() / "server", volume.path(), options);
  TestServer& server = *started;

  TestScu scu(server.port(), "ZZ_PACS", {UID_CTImageStorage});
  REQUIRE(scu.Connect() == "");
  std::string comment;
  const std::vector<int> statuses = scu.StoreFiles(files.value(), UID_CTImageStorage, &comment);
  scu.Release();
  const auto stored = std::count(statuses.begin(), statuses.end(), 0);
  const auto full = std::count(statuses.begin(), statuses.end(), 0xA700);
  INFO("last error comment: " << comment);
  CHECK(stored > 10);
  CHECK(full > 0);
  CHECK(stored + full == static_cast<long>(statuses.size()));  // nothing else, and no broken association
  CHECK(server.running());
  CHECK(Echo(server, "ZZ_PACS").exit_code == 0);
  CHECK(fs::is_empty(server.storage() / "tmp"));

  // Exactly the acknowledged objects are there, each with the data set that was sent (in the
  // transfer syntax the association chose).
  const std::set<std::string> indexed = IndexedPaths(server.storage());
  CHECK(indexed.size() == static_cast<size_t>(stored));
  const size_t in_segments = InSegmentObjectCount(server.storage());
  CHECK(ListFiles(server.storage() / "objects").size() + in_segments == static_cast<size_t>(stored));
  CHECK(indexed == FilesUnder(server.storage()));
  if (segment_mb == 0) CHECK(in_segments == 0);
  if (segment_mb > 0) CHECK(in_segments > 10);
  for (size_t i = 0; i < files->size(); ++i) {
    if (statuses[i] != 0) continue;
    Result<InstanceSummary> sent = ReadInstanceSummary(files.value()[i]);
    REQUIRE(sent.ok());
    const fs::path kept = StoredFileFor(server.storage(), sent->sop_instance_uid, dir.path());
    INFO("object " << i);
    REQUIRE_FALSE(kept.empty());
    Result<bool> same = SameDataSet(kept, files.value()[i]);
    REQUIRE(same.ok());
    CHECK(same.value());
  }
}
