#include <catch2/catch.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcuid.h"

#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>

#include "samples/synthetic.h"
#include "server/reading/ingest.h"
#include "server/reading/recovery.h"
#include "server/reading/worklist.h"
#include "server/store/export.h"
#include "server/store/segment_trailer.h"
#include "server/store/stores.h"
#include "tests/support/process.h"
#include "tests/support/sealed_segment.h"
#include "tests/support/stored.h"

using namespace teleread;

namespace {

size_t CountFiles(const std::filesystem::path& dir) {
  size_t n = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

struct IngestFixture {
  test::ScratchDir dir;
  ObjectStore store{dir.path() / "storage"};
  std::unique_ptr<Index> index;
  int64_t now_ms = 1'800'000'000'000;
  std::unique_ptr<Ingest> ingest;
  std::vector<std::filesystem::path> ct;  // 2 CT slices of one series, from ZZ_PACS

  IngestFixture() {
    InitializeDicom();
    REQUIRE(store.Prepare().ok());
    auto opened = Index::Open(dir.path() / "storage" / "index.sqlite");
    REQUIRE(opened.ok());
    index = std::move(opened.value());
    store.UseIndex(index.get());
    ingest = std::make_unique<Ingest>(store, *index, [this] { return now_ms; });
    ct = CtSeries("ZZ7", 2, 32, "in");
  }

  // A CT series of `count` slices of `size`² pixels for patient `id`, written under `sub`.
  std::vector<std::filesystem::path> CtSeries(const std::string& id, int count, int size, const std::string& sub) {
    samples::SeriesSpec spec;
    spec.patient_name = "Zhang^Wei";
    spec.patient_id = id;
    spec.modality = "CT";
    spec.instances = count;
    spec.rows = spec.columns = size;
    auto files = samples::WriteSeries(spec, dir.path() / sub);
    REQUIRE(files.ok());
    return files.value();
  }

  // Copies `file` to a temp path as the listener would have received it, then stores it.
  StoreOutcome Store(const std::filesystem::path& file, const std::string& member = "zhuozhou",
                     std::string sop_class = UID_CTImageStorage, std::string sop_instance = "") {
    std::filesystem::path temp = store.NewTempPath();
    std::filesystem::copy_file(file, temp);
    if (sop_instance.empty()) {
      DcmFileFormat ff;
      REQUIRE(ff.loadFile(file.c_str()).good());
      OFString uid;
      ff.getDataset()->findAndGetOFString(DCM_SOPInstanceUID, uid);
      sop_instance = uid.c_str();
    }
    StoreOutcome out = ingest->Store({temp, "AE", member, sop_class, sop_instance, {}, {}});
    CHECK_FALSE(std::filesystem::exists(temp));
    return out;
  }

  // A copy of `file` changed by `edit`.
  std::filesystem::path Modified(const std::filesystem::path& file, const std::function<void(DcmDataset&)>& edit) {
    DcmFileFormat ff;
    REQUIRE(ff.loadFile(file.c_str()).good());
    edit(*ff.getDataset());
    std::filesystem::path out = dir.path() / ("modified-" + std::to_string(modified_++) + ".dcm");
    REQUIRE(ff.saveFile(out.c_str(), EXS_LittleEndianExplicit).good());
    return out;
  }

  int64_t Instances() { return index->Counts().value().instances; }
  // Both tiers: files under objects/ and objects kept in the index.
  size_t Objects() { return test::StoredObjectCount(dir.path() / "storage"); }
  std::string Stored(const std::string& relative_path) {
    return test::StoredBytes(dir.path() / "storage", relative_path);
  }
  // Runs the test case once with every object in a file, once with these small ones in the index.
  void EitherTier() { store.set_small_object_bytes(GENERATE(uint64_t{0}, ObjectStore::kDefaultSmallObjectBytes)); }

 private:
  int modified_ = 0;
};

}  // namespace

TEST_CASE_METHOD(IngestFixture, "a stored object is on disk and indexed and bit for bit as received", "[ingest]") {
  EitherTier();
  StoreOutcome out = Store(ct[0]);
  CHECK(out.code == IngestCode::kStored);
  CHECK(out.stored_new);
  CHECK(out.bytes == std::filesystem::file_size(ct[0]));
  CHECK(Instances() == 1);
  REQUIRE(Objects() == 1);
  auto summary = ReadInstanceSummary(ct[0]);
  auto found = index->FindInstance(summary->sop_instance_uid);
  REQUIRE(found.has_value());
  CHECK(found->member_id == "zhuozhou");
  CHECK(Stored(found->relative_path) == test::ReadFile(ct[0]));
}

TEST_CASE_METHOD(IngestFixture, "re-sending an identical object succeeds without a duplicate", "[ingest]") {
  EitherTier();
  REQUIRE(Store(ct[0]).code == IngestCode::kStored);
  StoreOutcome again = Store(ct[0]);
  CHECK(again.code == IngestCode::kStored);
  CHECK_FALSE(again.stored_new);
  CHECK(Instances() == 1);
  CHECK(Objects() == 1);
}

TEST_CASE_METHOD(IngestFixture, "bad objects are refused with the right status and change nothing", "[ingest]") {
  EitherTier();
  REQUIRE(Store(ct[0]).code == IngestCode::kStored);
  const std::string stored_bytes =
      Stored(index->FindInstance(ReadInstanceSummary(ct[0])->sop_instance_uid)->relative_path);
  StoreOutcome out;
  SECTION("same SOP Instance UID, other content: 0x0111, the first copy kept") {
    out = Store(Modified(ct[0], [](DcmDataset& ds) { ds.putAndInsertString(DCM_PatientName, "Other^Name"); }));
    CHECK(out.code == IngestCode::kDifferentContent);
    CHECK(Stored(index->FindInstance(ReadInstanceSummary(ct[0])->sop_instance_uid)->relative_path) == stored_bytes);
  }
  SECTION("another member's object in this member's study: 0x0124") {
    out = Store(ct[1], "laishui");
    CHECK(out.code == IngestCode::kNotAuthorized);
    CHECK_THAT(out.error_comment, Catch::Contains("another member"));
  }
  SECTION("another member re-sends this member's object: 0x0124 (its study), not a re-send's 0x0111") {
    // In the index tier the study's owner is checked by the index write, not before it.
    out = Store(ct[0], "laishui");
    CHECK(out.code == IngestCode::kNotAuthorized);
    CHECK_THAT(out.error_comment, Catch::Contains("another member"));
  }
  SECTION("its series in another study: 0x0124, and the file it was given is removed") {
    out = Store(Modified(ct[1], [](DcmDataset& ds) { ds.putAndInsertString(DCM_StudyInstanceUID, "1.2.826.0.1.99"); }));
    CHECK(out.code == IngestCode::kNotAuthorized);
    CHECK_THAT(out.error_comment, Catch::Contains("another study"));
  }
  SECTION("data set of another SOP class than negotiated: 0xA900") {
    out = Store(ct[1], "zhuozhou", UID_MRImageStorage);
    CHECK(out.code == IngestCode::kDoesNotMatch);
  }
  SECTION("SOP Instance UID differs from the command's: 0xA900") {
    out = Store(ct[1], "zhuozhou", UID_CTImageStorage, "1.2.3.4.5");
    CHECK(out.code == IngestCode::kDoesNotMatch);
  }
  SECTION("no Study Instance UID: 0xA900") {
    out = Store(Modified(ct[1], [](DcmDataset& ds) { delete ds.remove(DCM_StudyInstanceUID); }));
    CHECK(out.code == IngestCode::kDoesNotMatch);
    CHECK_THAT(out.error_comment, Catch::Contains("Study Instance UID"));
  }
  SECTION("no Series Instance UID: 0xA900") {
    out = Store(Modified(ct[1], [](DcmDataset& ds) { delete ds.remove(DCM_SeriesInstanceUID); }));
    CHECK(out.code == IngestCode::kDoesNotMatch);
  }
  SECTION("not DICOM at all: 0xC000") {
    std::filesystem::path junk = dir.path() / "junk.dcm";
    test::WriteFile(junk, std::string(4096, '\x17'));
    out = Store(junk, "zhuozhou", UID_CTImageStorage, "1.2.3");
    CHECK(out.code == IngestCode::kUnreadable);
  }
  SECTION("truncated mid-pixel data: 0xC000") {
    std::filesystem::path cut = dir.path() / "cut.dcm";
    std::string bytes = test::ReadFile(ct[1]);
    test::WriteFile(cut, bytes.substr(0, bytes.size() - 700));
    out = Store(cut, "zhuozhou", UID_CTImageStorage, ReadInstanceSummary(ct[1])->sop_instance_uid);
    CHECK(out.code == IngestCode::kUnreadable);
  }
  CHECK_FALSE(out.error_comment.empty());
  CHECK(Instances() == 1);
  CHECK(Objects() == 1);
  CHECK(CountFiles(dir.path() / "storage" / "tmp") == 0);
}

TEST_CASE_METHOD(IngestFixture, "objects stored from many associations at once are each indexed and whole",
                 "[ingest][concurrency]") {
  EitherTier();
  const std::vector<std::filesystem::path> files = CtSeries("ZZ8", 48, 16, "many");
  std::vector<std::thread> senders;
  std::atomic<int> stored{0};
  for (int t = 0; t < 6; ++t) {
    senders.emplace_back([&, t] {
      for (size_t i = t; i < files.size(); i += 6) {
        std::filesystem::path temp = store.NewTempPath();
        std::filesystem::copy_file(files[i], temp);
        auto sop = ReadInstanceSummary(files[i])->sop_instance_uid;
        StoreRequest request{temp, "AE", "zhuozhou", UID_CTImageStorage, sop, {}, {}};
        stored += ingest->Store(request).code == IngestCode::kStored;
      }
    });
  }
  for (std::thread& t : senders) t.join();
  CHECK(stored == 48);
  CHECK(Instances() == 48);
  CHECK(Objects() == 48);
  CHECK(CountFiles(dir.path() / "storage" / "tmp") == 0);
  for (const auto& f : files) {
    auto found = index->FindInstance(ReadInstanceSummary(f)->sop_instance_uid);
    REQUIRE(found.has_value());
    CHECK(Stored(found->relative_path) == test::ReadFile(f));
  }
}

TEST_CASE_METHOD(IngestFixture, "a study becomes a reading task once its quiet period has passed", "[ingest][tasks]") {
  REQUIRE(Store(ct[0]).code == IngestCode::kStored);
  now_ms += 600;
  REQUIRE(Store(ct[1]).code == IngestCode::kStored);
  CHECK(index->PromoteQuietStudies(now_ms + 999, 1000).value() == 0);  // the second slice restarted the clock
  CHECK(index->PromoteQuietStudies(now_ms + 1000, 1000).value() == 1);
  CHECK(index->PromoteQuietStudies(now_ms + 5000, 1000).value() == 0);  // never twice
  auto counts = index->Counts().value();
  CHECK(counts.tasks_total == 1);
  CHECK(counts.tasks_waiting == 1);
  auto studies = index->ListStudies().value();
  REQUIRE(studies.size() == 1);
  CHECK(studies[0].task_state == "waiting");
  CHECK(studies[0].num_instances == 2);
  CHECK(studies[0].patient_id == "ZZ7");
}

TEST_CASE_METHOD(IngestFixture, "a claim is exclusive until its lease expires", "[ingest][tasks][claim]") {
  REQUIRE(Store(ct[0]).code == IngestCode::kStored);
  REQUIRE(index->PromoteQuietStudies(now_ms + 1000, 1000).value() == 1);
  const std::string uid = ReadInstanceSummary(ct[0])->study_instance_uid;
  Stores stores(*index, [this] { return now_ms; });
  Worklist worklist(stores.tasks, stores.audit, 60'000, [this] { return now_ms; });
  auto a = worklist.Claim(uid, "wang.li");
  REQUIRE(a.ok());
  CHECK(a->state == "claimed");
  CHECK(a->lease_expires_ms == now_ms + 60'000);
  auto b = worklist.Claim(uid, "zhao.min");
  REQUIRE_FALSE(b.ok());
  CHECK(b.status().code() == Status::Code::kConflict);
  CHECK(b.status().message() == "wang.li");
  CHECK(worklist.Claim("1.2.3.999", "zhao.min").status().code() == Status::Code::kNotFound);

  now_ms += 60'001;  // wang.li went quiet: the study is back on the worklist
  CHECK(worklist.Task(uid)->state == "waiting");
  CHECK_FALSE(worklist.Renew(uid, "wang.li").ok());
  CHECK(worklist.ExpireLeases().value() == 1);
  auto c = worklist.Claim(uid, "zhao.min");
  REQUIRE(c.ok());
  CHECK(c->claimed_by == "zhao.min");
  CHECK(worklist.Release(uid, "wang.li").code() == Status::Code::kConflict);
  CHECK(worklist.Release(uid, "zhao.min").ok());
  CHECK(worklist.List({}).value().front().state == "waiting");
}

TEST_CASE("a deflated object is parsed from its inflated copy: large values stay on disk, no file is left",
          "[ingest][deflate]") {
  test::ScratchDir dir, tmp;
  samples::SeriesSpec spec;
  spec.patient_name = "张^三";
  spec.patient_id = "ZZ0001";
  spec.transfer_syntax = UID_DeflatedExplicitVRLittleEndianTransferSyntax;
  auto files = samples::WriteSeries(spec, dir.path());
  REQUIRE(files.ok());
  const char* saved = std::getenv("TMPDIR");
  const std::string saved_tmpdir = saved ? saved : "";
  ::setenv("TMPDIR", tmp.path().c_str(), 1);
  {
    Result<std::unique_ptr<DicomFile>> f = DicomFile::Open(files->front(), 4096, true);
    REQUIRE(f.ok());
    // DCMTK reading the deflated stream itself would have loaded all 512 KB of pixel data.
    DcmElement* pixels = nullptr;
    REQUIRE(f.value()->dataset().findAndGetElement(DCM_PixelData, pixels).good());
    CHECK(pixels->getLength() == 512 * 512 * 2);
    CHECK_FALSE(pixels->valueLoaded());
    OFString name;
    CHECK(f.value()->dataset().findAndGetOFString(DCM_PatientID, name).good());
    CHECK(name == "ZZ0001");
    OFString syntax;
    CHECK(f.value()->format().getMetaInfo()->findAndGetOFString(DCM_TransferSyntaxUID, syntax).good());
    CHECK(syntax == UID_DeflatedExplicitVRLittleEndianTransferSyntax);
    CHECK(CountFiles(tmp.path()) == 0);  // the copy is unlinked from the start
    Uint16* data = nullptr;
    CHECK(pixels->getUint16Array(data).good());  // and read from it on demand
  }
  Result<InstanceSummary> s = ReadInstanceSummary(files->front());
  REQUIRE(s.ok());
  CHECK(s->patient_name == "张^三");
  CHECK(s->transfer_syntax_uid == UID_DeflatedExplicitVRLittleEndianTransferSyntax);
  CHECK(CountFiles(tmp.path()) == 0);
  if (saved)
    ::setenv("TMPDIR", saved_tmpdir.c_str(), 1);
  else
    ::unsetenv("TMPDIR");
}

TEST_CASE_METHOD(IngestFixture, "a companion object lands in its object's index transaction: both or neither",
                 "[ingest][pdf]") {
  EitherTier();
  auto request = [&](Index::WriteFn also) {
    const std::filesystem::path main = store.NewTempPath(), companion = store.NewTempPath();
    std::filesystem::copy_file(ct[0], main);
    std::filesystem::copy_file(ct[1], companion);
    Result<InstanceSummary> a = ReadInstanceSummary(ct[0]), b = ReadInstanceSummary(ct[1]);
    REQUIRE((a.ok() && b.ok()));
    StoreRequest req{main, "AE", "zhuozhou", UID_CTImageStorage, a->sop_instance_uid, {}, std::move(also)};
    req.companions.push_back(CompanionObject{companion, b.value()});
    StoreOutcome out = ingest->Store(req);
    CHECK_FALSE(std::filesystem::exists(main));
    CHECK_FALSE(std::filesystem::exists(companion));
    return out;
  };
  // The transaction fails after both rows were written (as a refused report would): neither stays.
  StoreOutcome refused = request([](Database&) { return Status::Conflict("the claim changed meanwhile"); });
  CHECK(refused.code != IngestCode::kStored);
  CHECK(Instances() == 0);
  CHECK(Objects() == 0);
  // It commits: both are indexed and on disk.
  StoreOutcome stored = request(nullptr);
  CHECK(stored.code == IngestCode::kStored);
  CHECK(Instances() == 2);
  CHECK(Objects() == 2);
  CHECK(index->FindInstance(ReadInstanceSummary(ct[1])->sop_instance_uid).has_value());
}

TEST_CASE_METHOD(IngestFixture, "an object of exactly small_object_bytes is kept in the index, one byte more is a file",
                 "[ingest][tiers]") {
  const std::string sop0 = ReadInstanceSummary(ct[0])->sop_instance_uid;
  const std::string sop1 = ReadInstanceSummary(ct[1])->sop_instance_uid;
  store.set_small_object_bytes(std::filesystem::file_size(ct[0]));
  REQUIRE(Store(ct[0]).code == IngestCode::kStored);
  store.set_small_object_bytes(std::filesystem::file_size(ct[1]) - 1);
  REQUIRE(Store(ct[1]).code == IngestCode::kStored);
  const std::optional<StoredInstance> in_index = index->FindInstance(sop0), in_file = index->FindInstance(sop1);
  REQUIRE((in_index && in_file));
  CHECK(in_index->relative_path == ObjectStore::InIndexPathFor(sop0));
  CHECK(in_file->relative_path == ObjectStore::RelativePathFor(sop1));
  CHECK(test::InIndexObjectCount(dir.path() / "storage") == 1);
  CHECK(CountFiles(dir.path() / "storage" / "objects") == 1);
  // Either tier reads back through a handle as the bytes received.
  for (const auto& [rel, original] :
       {std::pair{in_index->relative_path, ct[0]}, std::pair{in_file->relative_path, ct[1]}}) {
    Result<ObjectHandle> h = store.Open(rel);
    REQUIRE(h.ok());
    CHECK(h->in_memory() == ObjectStore::InIndex(rel));
    CHECK(test::ReadFile(h->path()) == test::ReadFile(original));
  }
  // Re-sent identically to the other tier's threshold: still the one stored copy, accepted.
  store.set_small_object_bytes(0);
  StoreOutcome again = Store(ct[0]);
  CHECK(again.code == IngestCode::kStored);
  CHECK_FALSE(again.stored_new);
  CHECK(Objects() == 2);
  CHECK(store.Open("index:" + std::string(64, '0')).status().code() == Status::Code::kNotFound);
}

TEST_CASE_METHOD(IngestFixture, "a re-send restores the missing file of a file-tier row only if it is that object",
                 "[ingest][tiers][recovery]") {
  store.set_small_object_bytes(0);
  const std::string sop = ReadInstanceSummary(ct[0])->sop_instance_uid;
  REQUIRE(Store(ct[0]).code == IngestCode::kStored);
  const std::filesystem::path file = store.Absolute(ObjectStore::RelativePathFor(sop));
  REQUIRE(std::filesystem::remove(file));  // a backup restored in the wrong order, a damaged disk
  SECTION("the same object: 0x0000, and the row has its file again, as received") {
    StoreOutcome out = Store(ct[0]);
    CHECK(out.code == IngestCode::kStored);
    REQUIRE(std::filesystem::exists(file));
    CHECK(test::ReadFile(file) == test::ReadFile(ct[0]));
  }
  SECTION("its UID in another series: refused, and no file is left for the row") {
    StoreOutcome out =
        Store(Modified(ct[0], [](DcmDataset& ds) { ds.putAndInsertString(DCM_SeriesInstanceUID, "1.2.826.0.1.98"); }));
    CHECK(out.code == IngestCode::kDifferentContent);
    CHECK_FALSE(std::filesystem::exists(file));
  }
  CHECK(Instances() == 1);
  CHECK(index->FindInstance(sop)->relative_path == ObjectStore::RelativePathFor(sop));
}

TEST_CASE_METHOD(IngestFixture, "a stray file of an object kept in the index is quarantined, not compared with",
                 "[ingest][tiers][recovery]") {
  const std::string sop = ReadInstanceSummary(ct[0])->sop_instance_uid;
  REQUIRE(Store(ct[0]).code == IngestCode::kStored);
  REQUIRE(index->FindInstance(sop)->relative_path == ObjectStore::InIndexPathFor(sop));
  // A file-tier re-send cut short by a crash: objects/<hash>.dcm left behind, here with other content.
  const std::filesystem::path stray = store.Absolute(ObjectStore::RelativePathFor(sop));
  std::filesystem::create_directories(stray.parent_path());
  std::filesystem::copy_file(
      Modified(ct[0], [](DcmDataset& ds) { ds.putAndInsertString(DCM_PatientName, "Other^Name"); }), stray);
  store.set_small_object_bytes(0);
  SECTION("before recovery, a file-tier re-send is compared with the indexed copy: 0x0000") {
    CHECK(Store(ct[0]).code == IngestCode::kStored);
  }
  SECTION("recovery moves the stray aside; a re-send afterwards: 0x0000") {
    Config config;  // the stray's sender is configured: without the check it would be re-indexed
    Member zhuozhou;
    zhuozhou.id = "zhuozhou";
    zhuozhou.ae_titles = {ReadInstanceSummary(stray)->source_ae_title};
    config.members.push_back(zhuozhou);
    REQUIRE(config.FindMemberByAeTitle(ReadInstanceSummary(stray)->source_ae_title) != nullptr);
    Result<RecoveryReport> report = RecoverStorage(store, *index, *ingest, config, now_ms);
    REQUIRE(report.ok());
    CHECK(report->objects_unattributed == 1);
    CHECK(report->objects_reindexed == 0);
    CHECK_FALSE(std::filesystem::exists(stray));
    CHECK(std::filesystem::exists(store.Absolute("quarantine") / stray.filename()));
    CHECK(Store(ct[0]).code == IngestCode::kStored);
    CHECK_FALSE(std::filesystem::exists(stray));
  }
  CHECK(Instances() == 1);
  CHECK(index->FindInstance(sop)->relative_path == ObjectStore::InIndexPathFor(sop));
  CHECK(Stored(ObjectStore::InIndexPathFor(sop)) == test::ReadFile(ct[0]));
}

TEST_CASE_METHOD(IngestFixture, "recovery removes a temp name of a placed object only while its link count says two",
                 "[ingest][recovery]") {
  store.set_small_object_bytes(0);
  const std::string sop = ReadInstanceSummary(ct[0])->sop_instance_uid;
  REQUIRE(Store(ct[0]).code == IngestCode::kStored);
  const std::filesystem::path placed = store.Absolute(ObjectStore::RelativePathFor(sop));
  // Place's unlink of the temp name undone by a crash, on a file system that counted it (two links).
  const std::filesystem::path second = store.NewTempPath();
  REQUIRE(::link(placed.c_str(), second.c_str()) == 0);
  const std::filesystem::path partial = store.NewTempPath();
  test::WriteFile(partial, test::ReadFile(ct[1]).substr(0, 300));  // a reception cut short
  Result<RecoveryReport> report = RecoverStorage(store, *index, *ingest, Config{}, now_ms);
  REQUIRE(report.ok());
  CHECK(report->temp_files_removed == 2);
  CHECK(report->temp_files_kept == 0);
  CHECK_FALSE(std::filesystem::exists(second));
  CHECK_FALSE(std::filesystem::exists(partial));
  CHECK(test::ReadFile(placed) == test::ReadFile(ct[0]));
  CHECK(std::filesystem::hard_link_count(placed) == 1);
}

TEST_CASE_METHOD(IngestFixture, "export gives UIDs whose safe names collide files of their own", "[ingest][export]") {
  // A damaged row's UID is made safe for a file name: 1.2a and 1.2b would both become 1.2_.
  InstanceSummary s = ReadInstanceSummary(ct[0]).value();
  const std::string a = "x", b = "y";
  for (const auto& [uid, bytes] : {std::pair{std::string("1.2a"), a}, std::pair{std::string("1.2b"), b}}) {
    s.sop_instance_uid = uid;
    NewInstance n{s, "zhuozhou", "AE", ObjectStore::InIndexPathFor(uid), bytes.size(), now_ms, bytes};
    REQUIRE(index->AddInstance(n).ok());
  }
  const std::filesystem::path out = dir.path() / "export";
  Result<ExportReport> r = ExportStudies({dir.path() / "storage", {s.study_instance_uid}, "", out});
  REQUIRE(r.ok());
  CHECK(r->files == 2);
  std::set<std::string> contents;
  size_t parts = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(out)) {
    if (!e.is_regular_file()) continue;
    contents.insert(test::ReadFile(e.path()));
    parts += e.path().extension() == ".part";
  }
  CHECK(contents == std::set<std::string>{a, b});
  CHECK(parts == 0);
}

TEST_CASE_METHOD(IngestFixture, "a placed file without its row is made durable and indexed by an identical re-send",
                 "[ingest][tiers][recovery]") {
  store.set_small_object_bytes(0);
  const std::string sop = ReadInstanceSummary(ct[0])->sop_instance_uid;
  // An attempt that stopped between placing and indexing (or whose directory sync failed).
  const std::filesystem::path placed = store.Absolute(ObjectStore::RelativePathFor(sop));
  std::filesystem::copy_file(ct[0], placed);
  SECTION("different content under that UID: refused, the file kept, no row") {
    StoreOutcome out =
        Store(Modified(ct[0], [](DcmDataset& ds) { ds.putAndInsertString(DCM_PatientName, "Other^Name"); }));
    CHECK(out.code == IngestCode::kDifferentContent);
    CHECK(Instances() == 0);
    CHECK(test::ReadFile(placed) == test::ReadFile(ct[0]));
  }
  SECTION("the same object: 0x0000, one row pointing at that file") {
    StoreOutcome out = Store(ct[0]);
    CHECK(out.code == IngestCode::kStored);
    CHECK(out.stored_new);
    CHECK(Instances() == 1);
    REQUIRE(index->FindInstance(sop).has_value());
    CHECK(index->FindInstance(sop)->relative_path == ObjectStore::RelativePathFor(sop));
    CHECK(test::ReadFile(placed) == test::ReadFile(ct[0]));
  }
}

TEST_CASE_METHOD(IngestFixture, "start-up recovery passes sealed segment objects through Ingest's checks",
                 "[ingest][recovery][segment]") {
  const std::filesystem::path segments = store.Absolute("segments");
  std::filesystem::create_directories(segments);
  Result<std::string> key = SegmentTrailerKey(segments, true);
  REQUIRE(key.ok());
  const std::vector<std::filesystem::path> other = CtSeries("ZZ8", 1, 32, "other");
  // A study Lishui sent (its first slice indexed before the crash).
  const std::vector<std::filesystem::path> lishui = CtSeries("LS1", 2, 32, "lishui");
  REQUIRE(Store(lishui[0], "lishui").code == IngestCode::kStored);
  // Sent by ZZ_PACS as CT; sent as CT under a Secondary Capture request (refused for good when it
  // arrived, the voiding of its trailer lost in a crash); sent by an AE no member has (yet); a
  // slice of Lishui's study sent by ZZ_PACS (another member's study: refused for good).
  const std::vector<std::string> objects = {
      test::AsReceived(ct[0], "ZZ_PACS", UID_CTImageStorage, dir.path() / "a.dcm"),
      test::AsReceived(ct[1], "ZZ_PACS", UID_SecondaryCaptureImageStorage, dir.path() / "b.dcm"),
      test::AsReceived(other[0], "NEWCOMER", UID_CTImageStorage, dir.path() / "c.dcm"),
      test::AsReceived(lishui[1], "ZZ_PACS", UID_CTImageStorage, dir.path() / "d.dcm")};
  const std::vector<std::string> paths =
      test::WriteSealedSegment(segments, "20260101T000000-1-1.seg", objects, key.value());
  Config config;
  Member zhuozhou;
  zhuozhou.id = "zhuozhou";
  zhuozhou.ae_titles = {"ZZ_PACS"};
  config.members.push_back(zhuozhou);
  auto uid = [](const std::filesystem::path& f) { return ReadInstanceSummary(f)->sop_instance_uid; };

  Result<RecoveryReport> first = RecoverStorage(store, *index, *ingest, config, now_ms);
  REQUIRE(first.ok());
  CHECK(first->segment_objects_indexed == 1);
  CHECK(first->segment_objects_refused == 3);
  REQUIRE(index->FindInstance(uid(ct[0])));
  CHECK(index->FindInstance(uid(ct[0]))->relative_path == paths[0]);
  CHECK_FALSE(index->FindInstance(uid(ct[1])));
  CHECK_FALSE(index->FindInstance(uid(other[0])));
  CHECK_FALSE(index->FindInstance(uid(lishui[1])));
  CHECK(index->FindInstance(uid(lishui[0])));
  CHECK(Instances() == 2);

  // The mismatch and the foreign study's slice were voided; the unknown sender's object is looked
  // at again, and stored once its member is configured.
  Result<RecoveryReport> second = RecoverStorage(store, *index, *ingest, config, now_ms);
  REQUIRE(second.ok());
  CHECK(second->segment_objects_indexed == 0);
  CHECK(second->segment_objects_refused == 1);
  Member newcomer;
  newcomer.id = "newcomer";
  newcomer.ae_titles = {"NEWCOMER"};
  config.members.push_back(newcomer);
  Result<RecoveryReport> third = RecoverStorage(store, *index, *ingest, config, now_ms);
  REQUIRE(third.ok());
  CHECK(third->segment_objects_indexed == 1);
  CHECK(third->segment_objects_refused == 0);
  REQUIRE(index->FindInstance(uid(other[0])));
  CHECK(index->FindInstance(uid(other[0]))->relative_path == paths[2]);
  CHECK(test::StoredBytes(store.Absolute(""), paths[2]) == objects[2]);
  CHECK_FALSE(index->FindInstance(uid(ct[1])));
  CHECK_FALSE(index->FindInstance(uid(lishui[1])));
}
