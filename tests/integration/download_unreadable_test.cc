// The API download of an instance whose row exists but whose object cannot be read is the
// server's trouble, 503 (try again later), never 404, which would tell the viewer the instance is
// not there. 404 is for a UID without a row, and for a file that is gone. The tests run as root
// here, where chmod 000 reads anyway: the file is replaced by what open or read must fail on.
#include <catch2/catch.hpp>

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "tests/support/server_fixture.h"
#include "tests/support/stored.h"

using namespace teleread;
using namespace teleread::test;
namespace fs = std::filesystem;

namespace {

struct Object {
  std::string study, sop;
  fs::path stored;  // its file under the storage
};

std::vector<Object> PushSeries(const TestServer& server, const fs::path& dir, int count) {
  samples::SeriesSpec spec;
  spec.patient_name = "Unreadable^Test";
  spec.patient_id = "UNREAD1";
  spec.rows = spec.columns = 32;
  spec.instances = count;
  auto files = samples::WriteSeries(spec, dir);
  REQUIRE(files.ok());
  REQUIRE(StoreResponses(StoreFiles(server, "ZZ_PACS", {dir.string()})) ==
          std::vector<std::string>(static_cast<size_t>(count), "Success"));
  std::vector<Object> out;
  for (const fs::path& f : files.value()) {
    auto s = ReadInstanceSummary(f);
    REQUIRE(s.ok());
    const fs::path stored = StoredFileFor(server.storage(), s->sop_instance_uid, dir / "scratch");
    REQUIRE(stored.string().rfind((server.storage() / "objects").string(), 0) == 0);  // a file
    out.push_back(Object{s->study_instance_uid, s->sop_instance_uid, stored});
  }
  return out;
}

HttpReply Download(const TestServer& server, const Object& o, const fs::path& out) {
  fs::remove(out);  // no earlier body read as this one's
  return server.Call("wang.li", "GET", "/api/v1/studies/" + o.study + "/instances/" + o.sop, {"-o", out.string()});
}

}  // namespace

TEST_CASE("a stored object that cannot be read is 503 from the API download and a missing row 404",
          "[https][store][unreadable]") {
  InitializeDicom();
  ScratchDir dir;
  ServerOptions options;
  options.small_object_bytes = 0;  // files, which can be broken from outside
  options.segment_mb = 0;
  TestServer server(dir.path() / "server", options);
  server.Start();
  const std::vector<Object> objects = PushSeries(server, dir.path() / "in", 4);
  const fs::path out = dir.path() / "out.dcm";
  const std::string intact = ReadFile(objects[0].stored);
  REQUIRE(Download(server, objects[0], out).status == 200);
  REQUIRE(ReadFile(out) == intact);

  SECTION("a directory where the file was") {
    fs::rename(objects[0].stored, dir.path() / "aside.dcm");
    fs::create_directory(objects[0].stored);
    const HttpReply r = Download(server, objects[0], out);
    CHECK(r.status == 503);
    CHECK_THAT(ReadFile(out), Catch::Contains("object unreadable"));
    // Put back, it is served again: nothing was remembered as missing.
    fs::remove(objects[0].stored);
    fs::rename(dir.path() / "aside.dcm", objects[0].stored);
    REQUIRE(Download(server, objects[0], out).status == 200);
    CHECK(ReadFile(out) == intact);
  }

  SECTION("a symbolic link that loops (open fails with ELOOP)") {
    fs::remove(objects[1].stored);
    fs::create_symlink(objects[1].stored.filename(), objects[1].stored);
    const HttpReply r = Download(server, objects[1], out);
    CHECK(r.status == 503);
    CHECK_THAT(ReadFile(out), Catch::Contains("object unreadable"));
  }

  SECTION("a file that is gone is 404, as is a UID without a row") {
    fs::remove(objects[2].stored);
    CHECK(Download(server, objects[2], out).status == 404);
    CHECK_THAT(ReadFile(out), Catch::Contains("object file missing"));
    Object unknown = objects[3];
    unknown.sop = "1.2.826.0.1.3680043.10.543.404";
    CHECK(Download(server, unknown, out).status == 404);
  }

  // The server carries on serving the objects it can read.
  CHECK(Download(server, objects[3], out).status == 200);
  CHECK(server.running());
  CHECK(server.Stop() == 0);
}
