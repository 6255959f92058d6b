// A full volume while several associations push small objects at once: each object's bytes go
// into the index in a group commit with its neighbours', and the commit fails with SQLITE_FULL.
// Every sender is told the truth: Success only for an object that is indexed with its bytes,
// 0xA700 for one that is not there at all. The server carries on, takes the refused objects once
// space returns, and what it acknowledged survives a SIGKILL.
#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <csignal>
#include <fstream>
#include <mutex>
#include <thread>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "tests/support/scu.h"
#include "tests/support/server_fixture.h"
#include "tests/support/skip.h"
#include "tests/support/stored.h"
#include "tests/support/tmpfs.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

namespace {

// The SOP Instance UIDs the index holds with their bytes in it (read-only, while the server runs).
std::set<std::string> InIndexUids(const fs::path& storage) {
  std::set<std::string> out;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2((storage / "index.sqlite").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT i.sop_instance_uid FROM instances i JOIN object_data d ON d.instance_id = i.id",
                           -1, &q, nullptr) == SQLITE_OK) {
      while (sqlite3_step(q) == SQLITE_ROW) out.insert(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)));
    }
    sqlite3_finalize(q);
  }
  sqlite3_close(db);
  return out;
}

std::string IntegrityCheck(const fs::path& storage) {
  CommandResult r = RunCommand({"/usr/bin/sqlite3", (storage / "index.sqlite").string(), "PRAGMA integrity_check"});
  return r.output;
}

struct Outcome {
  std::string sop;
  int status = -1;
  fs::path file;
};

// `senders` associations at once, each pushing its share of `files`; the outcome of every one.
std::vector<Outcome> PushConcurrently(const TestServer& server, const std::vector<fs::path>& files, int senders) {
  std::vector<Outcome> out(files.size());
  std::vector<std::thread> threads;
  for (int t = 0; t < senders; ++t) {
    threads.emplace_back([&, t] {
      TestScu scu(server.port(), "ZZ_PACS", {UID_CTImageStorage});
      if (!scu.Connect().empty()) return;
      for (size_t i = static_cast<size_t>(t); i < files.size(); i += static_cast<size_t>(senders)) {
        DcmFileFormat ff;
        if (ff.loadFile(files[i].c_str()).bad()) return;
        OFString sop;
        ff.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, sop);
        out[i] = Outcome{sop.c_str(), scu.Store(*ff.getDataset(), UID_CTImageStorage), files[i]};
      }
      scu.Release();
    });
  }
  for (std::thread& t : threads) t.join();
  return out;
}

}  // namespace

TEST_CASE("a full volume during concurrent in-index ingest refuses 0xA700 with nothing half-stored",
          "[durability][disk][tiers]") {
  if (!CanMountTmpfs()) TELEREAD_SKIP("cannot mount a tmpfs here (not root?): the full-volume test did not run");
  InitializeDicom();
  ScratchDir dir;
  MountedTmpfs mount(dir.path() / "volume", "8m");
  REQUIRE(mount.mounted());
  const fs::path& volume = mount.path();

  samples::SeriesSpec spec;
  spec.patient_name = "Full^Index";
  spec.patient_id = "FULLIDX";
  spec.instances = 240;
  spec.rows = spec.columns = 32;  // ~3 kB each: kept in the index
  auto files = samples::WriteSeries(spec, dir.path() / "in");
  REQUIRE(files.ok());

  std::unique_ptr<TestServer> started = StartServerOnVolume(dir.path() / "server", volume);
  TestServer& server = *started;

  // Leave the index about 1 MB: some dozens of commits (each writes whole pages to the WAL),
  // far fewer than the pushes below need.
  {
    std::ofstream filler(volume / "filler", std::ios::binary);
    const std::string block(4096, '\0');
    while (filler.write(block.data(), static_cast<std::streamsize>(block.size()))) {
    }
  }
  fs::resize_file(volume / "filler", fs::file_size(volume / "filler") - 1024 * 1024);

  const std::vector<Outcome> first = PushConcurrently(server, files.value(), 4);
  std::set<std::string> acknowledged;
  std::vector<fs::path> refused;
  for (const Outcome& o : first) {
    INFO(o.file << ": status " << o.status);
    CHECK((o.status == 0x0000 || o.status == 0xA700));  // no other answer, no broken association
    if (o.status == 0x0000) acknowledged.insert(o.sop);
    if (o.status == 0xA700) refused.push_back(o.file);
  }
  INFO(acknowledged.size() << " acknowledged, " << refused.size() << " refused");
  CHECK(acknowledged.size() > 0);
  REQUIRE(refused.size() > 0);                                            // the volume did fill up
  CHECK_THAT(server.Log(), Catch::Contains("database or disk is full"));  // SQLite's SQLITE_FULL

  // Nothing half-stored: the index holds exactly the acknowledged objects, each with its bytes.
  CHECK(server.running());
  CHECK(InIndexUids(server.storage()) == acknowledged);
  CHECK(IndexedPaths(server.storage()) == FilesUnder(server.storage()));
  CHECK(fs::is_empty(server.storage() / "tmp"));
  CHECK(Echo(server, "ZZ_PACS").exit_code == 0);

  // Space returns: the refused objects go in without a restart.
  fs::remove(volume / "filler");
  const std::vector<Outcome> again = PushConcurrently(server, refused, 4);
  for (const Outcome& o : again) {
    INFO(o.file);
    CHECK(o.status == 0x0000);
    acknowledged.insert(o.sop);
  }
  CHECK(InIndexUids(server.storage()) == acknowledged);

  // What was acknowledged is durable: a crash now loses none of it.
  CHECK(server.Stop(SIGKILL) == -1);
  server.Start();
  CHECK(server.Stop() == 0);
  CHECK(acknowledged.size() == files->size());
  CHECK(InIndexUids(server.storage()) == acknowledged);
  CHECK(IndexedPaths(server.storage()) == FilesUnder(server.storage()));
  CHECK(IntegrityCheck(server.storage()) == "ok\n");
  for (const fs::path& f : files.value()) {
    auto s = ReadInstanceSummary(f);
    REQUIRE(s.ok());
    auto same = SameDataSet(f, StoredFileFor(server.storage(), s->sop_instance_uid, dir.path() / "stored"));
    REQUIRE(same.ok());
    CHECK(same.value());
  }
}
