// DicomFile::Parse on hostile bytes: each lie is refused cleanly and without allocating what it
// claims (a forked child under a 256 MiB address-space limit, whose large allocations are
// watched), and legal objects are summarised exactly as their files are.
#include <catch2/catch.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcuid.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <new>

#include "common/dicom.h"
#include "common/dicom_scan.h"
#include "samples/synthetic.h"
#include "tests/fuzz/targets.h"
#include "tests/support/asan.h"
#include "tests/support/dicom_bytes.h"
#include "tests/support/process.h"

using namespace teleread;
using test::kItem;
using test::kItemEnd;
using test::kSeqEnd;
using test::U32Le;

#if TELEREAD_ASAN
#define TELEREAD_WATCH_ALLOCATIONS 0  // ASan owns new and the address space
#else
#define TELEREAD_WATCH_ALLOCATIONS 1
namespace {
std::atomic<bool> g_watch{false};
}
// DCMTK allocates values with new (std::nothrow) Uint8[len]: in a watched child, a request over
// 64 MiB ends the child with code 3 (a claim believed).
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  if (g_watch.load(std::memory_order_relaxed) && n > (std::size_t{64} << 20)) _exit(3);
  return std::malloc(n == 0 ? 1 : n);
}
#endif

namespace {

std::filesystem::path OneObject(const test::ScratchDir& dir, const std::string& transfer_syntax) {
  samples::SeriesSpec spec;
  spec.patient_name = "Doe^Jane";
  spec.patient_id = "ZZ0043";
  spec.accession_number = "A18";
  spec.rows = spec.columns = 16;
  spec.transfer_syntax = transfer_syntax;
  auto files = samples::WriteSeries(spec, dir.path() / "in");
  REQUIRE(files.ok());
  return files->front();
}

// An explicit VR little endian object whose pixel data element and all after it are `tail`.
std::string WithTail(const test::ScratchDir& dir, const std::string& tail) {
  std::string bytes = test::ReadFile(OneObject(dir, UID_LittleEndianExplicitTransferSyntax));
  const size_t at = bytes.rfind(std::string("\xE0\x7F\x10\x00OW\0\0", 8));
  REQUIRE(at != std::string::npos);
  return bytes.substr(0, at) + tail;
}

// (7FE0,0010) of undefined length with `vr`, holding `levels` nested sequences.
std::string NestedPixelData(const std::string& vr, int levels) {
  std::string s = std::string("\xE0\x7F\x10\x00", 4) + vr + std::string("\0\0\xFF\xFF\xFF\xFF", 6);
  // Inside SQ the contents stay explicit; inside UN or an unknown VR DCMTK reads implicit LE.
  const std::string nested = vr == "SQ" ? std::string("\x09\x00\x10\x10SQ\0\0\xFF\xFF\xFF\xFF", 12)
                                        : std::string("\x09\x00\x10\x10\xFF\xFF\xFF\xFF", 8);
  for (int i = 0; i < levels; ++i) s += kItem + nested;
  s += kSeqEnd;
  for (int i = 0; i < levels; ++i) s += kItemEnd + kSeqEnd;
  return s;
}

// 0: refused cleanly; 1: accepted; 3: a large allocation; else the child crashed (signal: 128+).
int InChild(const std::function<bool()>& parse) {
  const pid_t pid = fork();
  if (pid == 0) {
#if TELEREAD_WATCH_ALLOCATIONS
    const rlimit limit{256u << 20, 256u << 20};
    setrlimit(RLIMIT_AS, &limit);
    g_watch = true;
#endif
    _exit(parse() ? 1 : 0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int ParseInChild(const std::string& bytes, bool layer_dcmtk_only = false) {
  return InChild([&] {
    if (!layer_dcmtk_only) return ReadInstanceSummaryFromMemory(bytes).ok();
    DcmFileFormat ff;
    return dicom_scan::ReadInPlace(ff, bytes, ERM_fileOnly).good();
  });
}

void CheckSame(const InstanceSummary& a, const InstanceSummary& b) {
#define SAME(f) CHECK(a.f == b.f)
  SAME(transfer_syntax_uid);
  SAME(source_ae_title);
  SAME(specific_character_set);
  SAME(sop_class_uid);
  SAME(sop_instance_uid);
  SAME(study_instance_uid);
  SAME(series_instance_uid);
  SAME(patient_id);
  SAME(issuer_of_patient_id);
  SAME(other_patient_ids);
  SAME(patient_name);
  SAME(patient_birth_date);
  SAME(patient_sex);
  SAME(patient_age);
  SAME(study_date);
  SAME(study_time);
  SAME(accession_number);
  SAME(study_id);
  SAME(study_description);
  SAME(referring_physician_name);
  SAME(institution_name);
  SAME(study_priority);
  SAME(modality);
  SAME(series_number);
  SAME(series_description);
  SAME(body_part_examined);
  SAME(instance_number);
#undef SAME
}

}  // namespace

TEST_CASE("in place, hostile lengths and nesting are refused without allocating them", "[ingest][parse][security]") {
  InitializeDicom();
  test::ScratchDir dir;
  SECTION("(a) a pixel fragment claiming 0xFFFFFFF0 bytes") {
    const std::string tail = std::string("\xE0\x7F\x10\x00OB\0\0\xFF\xFF\xFF\xFF", 12) +
                             std::string("\xFE\xFF\x00\xE0\0\0\0\0", 8) + std::string("\xFE\xFF\x00\xE0", 4) +
                             U32Le(0xFFFFFFF0u) + std::string(64, 'x');
    const std::string bytes = WithTail(dir, tail);
    CHECK(ParseInChild(bytes) == 0);
    Result<InstanceSummary> s = ReadInstanceSummaryFromMemory(bytes);
    REQUIRE_FALSE(s.ok());
    CHECK(s.status().message().find("fragment runs past") != std::string::npos);
  }
  SECTION("(b) an undefined-length UN holding an implicit element of 0x10000000 bytes") {
    const std::string un = std::string("\x29\x00\x10\x10UN\0\0\xFF\xFF\xFF\xFF", 12) + kItem +
                           std::string("\x29\x00\x20\x10", 4) + U32Le(0x10000000u) + std::string(64, 'x');
    const std::string bytes = WithTail(dir, un);
    CHECK(ParseInChild(bytes) == 0);
    Result<InstanceSummary> s = ReadInstanceSummaryFromMemory(bytes);
    REQUIRE_FALSE(s.ok());
    CHECK(s.status().message().find("longer than the data set") != std::string::npos);
  }
  SECTION("(c) pixel data as SQ, UN or an unknown VR nesting 200 and 5,000 levels") {
    const std::string vr = GENERATE(std::string("SQ"), std::string("UN"), std::string("ZZ"));
    const int levels = GENERATE(200, 5000);
    INFO(vr << " x " << levels);
    const std::string bytes = WithTail(dir, NestedPixelData(vr, levels));
    CHECK(ParseInChild(bytes) == 0);
    Result<InstanceSummary> s = ReadInstanceSummaryFromMemory(bytes);
    REQUIRE_FALSE(s.ok());
    CHECK(s.status().message().find("nested deeper") != std::string::npos);
  }
  SECTION("(d) a meta element with a lying length, as OB and as OW") {
    const std::string vr = GENERATE(std::string("OB"), std::string("OW"));
    std::string bytes = test::ReadFile(OneObject(dir, UID_LittleEndianExplicitTransferSyntax));
    const size_t at = bytes.find(std::string("\x02\x00\x01\x00OB\0\0", 8));  // File Meta Information Version
    REQUIRE(at != std::string::npos);
    bytes.replace(at + 4, 2, vr);
    bytes.replace(at + 8, 4, U32Le(0x7FFFFFF0u));
    CHECK(ParseInChild(bytes) == 0);
    Result<InstanceSummary> s = ReadInstanceSummaryFromMemory(bytes);
    REQUIRE_FALSE(s.ok());
    CHECK(s.status().message().find("meta header") != std::string::npos);
  }
  SECTION("(e) an undefined-length OB that is not pixel data, nesting explicit sequences") {
    std::string tail = std::string("\xE1\x7F\x10\x10OB\0\0\xFF\xFF\xFF\xFF", 12);
    for (int i = 0; i < 300; ++i) tail += kItem + std::string("\xE1\x7F\x11\x10SQ\0\0\xFF\xFF\xFF\xFF", 12);
    for (int i = 0; i < 300; ++i) tail += kItemEnd + kSeqEnd;
    const std::string bytes = WithTail(dir, tail);
    CHECK(ParseInChild(bytes) == 0);
    Result<InstanceSummary> s = ReadInstanceSummaryFromMemory(bytes);
    REQUIRE_FALSE(s.ok());
    CHECK(s.status().message().find("undefined length") != std::string::npos);
  }
  SECTION("(f) implicit VR: private sequences of defined length (known by their creator) nesting 300 levels") {
    std::string bytes = test::ReadFile(OneObject(dir, UID_LittleEndianImplicitTransferSyntax));
    const size_t at = bytes.rfind(std::string("\xE0\x7F\x10\x00", 4));
    REQUIRE(at != std::string::npos);
    auto element = [](const std::string& tag, const std::string& value) { return tag + U32Le(value.size()) + value; };
    std::string inner;
    for (int i = 0; i < 300; ++i) {
      const std::string content = element(std::string("\xE1\x7F\x10\x00", 4), "DCMTK_ANONYMIZER") +
                                  (inner.empty() ? std::string() : element(std::string("\xE1\x7F\x00\x10", 4), inner));
      inner = std::string("\xFE\xFF\x00\xE0", 4) + U32Le(content.size()) + content;
    }
    bytes = bytes.substr(0, at) + element(std::string("\xE1\x7F\x10\x00", 4), "DCMTK_ANONYMIZER") +
            element(std::string("\xE1\x7F\x00\x10", 4), inner);
    CHECK(ParseInChild(bytes) == 0);
    Result<InstanceSummary> s = ReadInstanceSummaryFromMemory(bytes);
    REQUIRE_FALSE(s.ok());
    CHECK(s.status().message().find("nested deeper") != std::string::npos);
  }
  SECTION("DCMTK's own read refuses a lying value without allocating it, our scan aside") {
    std::string bytes = test::ReadFile(OneObject(dir, UID_LittleEndianExplicitTransferSyntax));
    const size_t at = bytes.rfind(std::string("\xE0\x7F\x10\x00OW\0\0", 8));
    REQUIRE(at != std::string::npos);
    bytes.replace(at + 8, 4, U32Le(0x7FFF0000u));
    CHECK(ParseInChild(bytes, true) == 0);
  }
}

TEST_CASE("in place, pixel fragments are skipped as DCMTK skips them: OX, ox and px", "[ingest][parse]") {
  InitializeDicom();
  test::ScratchDir dir;
  // A fragment whose bytes would read as sequences nested 200 deep: bytes to DCMTK, and to us.
  const std::string vr = GENERATE(std::string("OB"), std::string("OX"), std::string("ox"), std::string("px"));
  INFO(vr);
  std::string deep;
  for (int i = 0; i < 200; ++i) deep += kItem + std::string("\x09\x00\x10\x10SQ\0\0\xFF\xFF\xFF\xFF", 12);
  const std::string tail = std::string("\xE0\x7F\x10\x00", 4) + vr + std::string("\0\0\xFF\xFF\xFF\xFF", 6) +
                           std::string("\xFE\xFF\x00\xE0\0\0\0\0", 8) + std::string("\xFE\xFF\x00\xE0", 4) +
                           U32Le(static_cast<uint32_t>(deep.size())) + deep + kSeqEnd;
  const std::string bytes = WithTail(dir, tail);
  const std::filesystem::path file = dir.path() / "ox.dcm";
  std::ofstream(file, std::ios::binary) << bytes;
  Result<InstanceSummary> from_file = ReadInstanceSummary(file);
  REQUIRE(from_file.ok());
  Result<InstanceSummary> in_place = ReadInstanceSummaryFromMemory(bytes);
  REQUIRE(in_place.ok());
  CheckSame(from_file.value(), in_place.value());
}

TEST_CASE("in place, a re-encoded private UN sequence is read as implicit VR, as from its file", "[ingest][parse]") {
  InitializeDicom();
  test::ScratchDir dir;
  // (0029,0010) creator, then (0029,1010) a private sequence sent as UN of undefined length:
  // its item holds an implicit VR element that an explicit reading would take for a 0-length one.
  const std::string un = std::string(
                             "\x29\x00\x10\x00LO\x04\x00"
                             "ACME",
                             12) +
                         std::string("\x29\x00\x10\x10UN\0\0\xFF\xFF\xFF\xFF", 12) + kItem +
                         std::string("\x29\x00\x11\x10", 4) + U32Le(8) + "ABCDEFGH" + kItemEnd + kSeqEnd;
  std::string bytes = test::ReadFile(OneObject(dir, UID_LittleEndianExplicitTransferSyntax));
  const size_t at = bytes.rfind(std::string("\xE0\x7F\x10\x00OW\0\0", 8));
  REQUIRE(at != std::string::npos);
  bytes.insert(at, un);
  const std::filesystem::path file = dir.path() / "un.dcm";
  std::ofstream(file, std::ios::binary) << bytes;
  Result<InstanceSummary> from_file = ReadInstanceSummary(file);
  REQUIRE(from_file.ok());
  Result<InstanceSummary> in_place = ReadInstanceSummaryFromMemory(bytes);
  REQUIRE(in_place.ok());
  CHECK(in_place->patient_name == "Doe^Jane");
  CheckSame(from_file.value(), in_place.value());
  CHECK(ParseInChild(bytes) == 1);
}

TEST_CASE("nesting cannot hide behind a value the scan and DCMTK read differently", "[ingest][parse][security]") {
  // Implicit VR, 20,000 nested sequences behind a value that DCMTK and a scan not tracking private
  // creators could read differently. DCMTK recursing into them overflows the stack; the file
  // scan, which did not check lengths, skipped past the end and let it.
  InitializeDicom();
  test::ScratchDir dir;
  std::string bytes = test::ReadFile(OneObject(dir, UID_LittleEndianImplicitTransferSyntax));
  const size_t at = bytes.rfind(test::Tag(0x7FE0, 0x0010));
  REQUIRE(at != std::string::npos);
  bytes.resize(at);
  const std::string creator = test::Tag(0x0009, 0x0010) + U32Le(16) + "DCMTK_ANONYMIZER";
  std::string refusal;
  SECTION("a private sequence of 4 bytes: DCMTK reads its item past the value") {
    // (0009,1000) is a sequence in private.dic: its item's length and contents lie after it.
    bytes += creator + test::Tag(0x0009, 0x1000) + U32Le(4) + test::Tag(0xFFFE, 0xE000) + U32Le(0xFFFFFFFFu);
    refusal = "does not walk as a sequence";
  }
  SECTION("a private sequence claiming 2 GB that a sequence delimiter ends at once") {
    // DCMTK then reads on after the delimiter; the scan saw a plain value running past the end.
    bytes += creator + test::Tag(0x0009, 0x1000) + U32Le(0x7FFFFFF0u) + kSeqEnd;
    refusal = "(0009,1000) is longer than the data set";
  }
  SECTION("a private value starting with an item whose element claims 2 GB") {
    bytes += test::Tag(0x0009, 0x1010) + U32Le(16) + test::Tag(0xFFFE, 0xE000) + U32Le(8) + test::Tag(0x0010, 0x0010) +
             U32Le(0x7FFFFFF0u);
    refusal = "longer than the data set";
  }
  SECTION("a private value starting with an item whose element overruns it") {
    bytes += test::Tag(0x0009, 0x1010) + U32Le(16) + test::Tag(0xFFFE, 0xE000) + U32Le(8) + test::Tag(0x0010, 0x0010) +
             U32Le(12);
    refusal = "does not walk as a sequence";
  }
  SECTION("pixel data starting with an item whose element claims 2 GB: bytes, as DCMTK reads them") {
    bytes += test::Tag(0x7FE0, 0x0010) + U32Le(16) + test::Tag(0xFFFE, 0xE000) + U32Le(8) + test::Tag(0x0010, 0x0010) +
             U32Le(0x7FFFFFF0u);
    refusal = "nested deeper than 128";
  }
  constexpr int kLevels = 20000;
  for (int i = 0; i < kLevels; ++i) bytes += test::Tag(0x0011, 0x1010) + U32Le(0xFFFFFFFFu) + kItem;
  for (int i = 0; i < kLevels; ++i) bytes += kItemEnd + kSeqEnd;
  const std::filesystem::path file = dir.path() / "hidden-nesting.dcm";
  test::WriteFile(file, bytes);
  CHECK(InChild([&] { return DicomFile::Open(file, 0, true).ok(); }) == 0);
  CHECK(ParseInChild(bytes) == 0);
  Result<std::unique_ptr<DicomFile>> from_file = DicomFile::Open(file, 0, true);
  REQUIRE_FALSE(from_file.ok());
  CHECK_THAT(from_file.status().message(), Catch::Contains(refusal));
  Result<std::unique_ptr<DicomFile>> in_place = DicomFile::Parse(bytes);
  REQUIRE_FALSE(in_place.ok());
  CHECK(in_place.status().message() == from_file.status().message());
}

TEST_CASE("in place, the whole summary matches the file's, native and encapsulated", "[ingest][parse]") {
  InitializeDicom();
  test::ScratchDir dir;
  struct Case {
    std::string syntax, tool, option;
  };
  const Case c =
      GENERATE(Case{UID_LittleEndianExplicitTransferSyntax, "", ""},
               Case{UID_LittleEndianImplicitTransferSyntax, "", ""}, Case{UID_BigEndianExplicitTransferSyntax, "", ""},
               Case{UID_JPEGProcess14SV1TransferSyntax, "/usr/bin/dcmcjpeg", "+e1"},
               Case{UID_RLELosslessTransferSyntax, "/usr/bin/dcmcrle", ""});
  INFO(c.syntax);
  std::filesystem::path file =
      OneObject(dir, c.tool.empty() ? c.syntax : std::string(UID_LittleEndianExplicitTransferSyntax));
  if (!c.tool.empty()) {
    const std::filesystem::path out = dir.path() / "encapsulated.dcm";
    std::vector<std::string> argv = {c.tool};
    if (!c.option.empty()) argv.push_back(c.option);
    argv.push_back(file.string());
    argv.push_back(out.string());
    REQUIRE(test::RunCommand(argv).exit_code == 0);
    file = out;
  }
  Result<InstanceSummary> from_file = ReadInstanceSummary(file);
  REQUIRE(from_file.ok());
  REQUIRE(from_file->transfer_syntax_uid == c.syntax);
  const std::string bytes = test::ReadFile(file);
  Result<InstanceSummary> in_place = ReadInstanceSummaryFromMemory(bytes);
  REQUIRE(in_place.ok());
  CheckSame(from_file.value(), in_place.value());
  CHECK(ParseInChild(bytes) == 1);
}

namespace {

// A meta header whose (0002,0010) is the deflated UID padded with NULs to 256 bytes: DCMTK reads
// up to the first NUL and would inflate the data set; our reading passes over a value that long
// and walks the data set as explicit VR little endian.
std::string DeflatedForDcmtkOnly(const test::ScratchDir& dir) {
  std::string bytes = test::ReadFile(OneObject(dir, UID_LittleEndianExplicitTransferSyntax));
  const std::string tag("\x02\x00\x10\x00UI", 6);
  const size_t at = bytes.find(tag);
  REQUIRE(at != std::string::npos);
  const size_t old_size =
      8 + (static_cast<unsigned char>(bytes[at + 6]) | static_cast<unsigned char>(bytes[at + 7]) << 8);
  std::string uid = UID_DeflatedExplicitVRLittleEndianTransferSyntax;
  uid.resize(256, '\0');
  const std::string element = tag + U32Le(uid.size()).substr(0, 2) + uid;
  bytes.replace(at, old_size, element);
  const uint32_t group_length = static_cast<uint32_t>(static_cast<unsigned char>(bytes[140])) |
                                static_cast<uint32_t>(static_cast<unsigned char>(bytes[141])) << 8;
  bytes.replace(140, 4, U32Le(group_length + static_cast<uint32_t>(element.size() - old_size)));
  return bytes;
}

}  // namespace

TEST_CASE("in place, a data set DCMTK alone reads as deflated is refused and named, never inflated",
          "[ingest][parse][security]") {
  InitializeDicom();
  test::ScratchDir dir;
  std::string bytes = DeflatedForDcmtkOnly(dir);
  bool asks_to_inflate = true;
  SECTION("its data set walks plain: DCMTK's one parse finds it out") {}
  SECTION("its data set does not walk: the refusal names the meta header all the same") {
    const size_t at = bytes.rfind(std::string("\xE0\x7F\x10\x00OW\0\0", 8));
    REQUIRE(at != std::string::npos);
    bytes.replace(at + 8, 4, U32Le(0x7FFF0000u));
  }
  SECTION("its data set does not walk on file either (nested too deep): the file path asks DCMTK's meta header") {
    const size_t at = bytes.rfind(std::string("\xE0\x7F\x10\x00OW\0\0", 8));
    REQUIRE(at != std::string::npos);
    bytes = bytes.substr(0, at) + NestedPixelData("SQ", 200);
  }
  SECTION("it has no data set: DCMTK reads it without asking to inflate, and is asked what it read") {
    const uint32_t group_length = static_cast<uint32_t>(static_cast<unsigned char>(bytes[140])) |
                                  static_cast<uint32_t>(static_cast<unsigned char>(bytes[141])) << 8;
    bytes.resize(144 + group_length);
    asks_to_inflate = false;
  }
  Result<InstanceSummary> s = ReadInstanceSummaryFromMemory(bytes);
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().code() == Status::Code::kCorruption);
  CHECK(s.status().message().find("does not say plainly that the data set is deflated") != std::string::npos);
  CHECK(ParseInChild(bytes) == 0);
  // The file path refuses it for the same reason.
  const std::filesystem::path file = dir.path() / "deflated-for-dcmtk.dcm";
  test::WriteFile(file, bytes);
  Result<InstanceSummary> from_file = ReadInstanceSummary(file);
  REQUIRE_FALSE(from_file.ok());
  CHECK(from_file.status().message() == s.status().message());
  // DCMTK's own layer: it asks to inflate (when there is something to inflate), is refused, and
  // reads nothing.
  DcmFileFormat ff;
  bool deflated = false;
  CHECK(dicom_scan::ReadInPlace(ff, bytes, ERM_fileOnly, &deflated).bad() == asks_to_inflate);
  CHECK(deflated == asks_to_inflate);
  CHECK(dicom_scan::DcmtkReadsCompressed(ff));
  // And from the file, which the file path reads with DCMTK once, refusing to inflate.
  DcmFileFormat from_disk;
  bool file_deflated = false;
  CHECK(dicom_scan::ReadFileNoInflate(from_disk, file, 4096, ERM_fileOnly, &file_deflated).bad() == asks_to_inflate);
  CHECK(file_deflated == asks_to_inflate);
  CHECK(dicom_scan::DcmtkReadsCompressed(from_disk));
  // A file without meta header is not read at all.
  DcmFileFormat as_data_set;
  CHECK(dicom_scan::ReadFileNoInflate(as_data_set, file, 4096, ERM_dataset) == EC_IllegalCall);
}

TEST_CASE("JPIP Referenced Deflate is a deflated data set in memory and on file", "[ingest][parse][security]") {
  // DCMTK inflates 1.2.840.10008.1.2.4.95 as it does 1.2.840.10008.1.2.1.99 (the same deflated
  // explicit VR little endian stream): a deflated object's syntax UID, of the same length, is swapped.
  InitializeDicom();
  test::ScratchDir dir;
  const std::string deflated = UID_DeflatedExplicitVRLittleEndianTransferSyntax;
  const std::string jpip = UID_JPIPReferencedDeflateTransferSyntax;
  REQUIRE(deflated.size() == jpip.size());
  auto as_jpip = [&](std::string bytes) {
    const size_t at = bytes.find(deflated);
    REQUIRE(at != std::string::npos);
    REQUIRE(at < 512);
    return bytes.replace(at, jpip.size(), jpip);
  };
  CHECK(dicom_scan::StreamCompressed(jpip.c_str()));
  CHECK_FALSE(dicom_scan::StreamCompressed(UID_LittleEndianExplicitTransferSyntax));
  SECTION("read from its inflated copy on file, left to the file path in memory") {
    const std::string bytes = as_jpip(test::ReadFile(OneObject(dir, deflated)));
    const std::filesystem::path file = dir.path() / "jpip-deflate.dcm";
    test::WriteFile(file, bytes);
    Result<InstanceSummary> from_file = ReadInstanceSummary(file);
    INFO(from_file.status().ToString());
    REQUIRE(from_file.ok());
    CHECK(from_file->transfer_syntax_uid == jpip);
    CHECK(from_file->patient_name == "Doe^Jane");
    Result<InstanceSummary> in_place = ReadInstanceSummaryFromMemory(bytes);
    REQUIRE_FALSE(in_place.ok());
    CHECK(in_place.status().code() == Status::Code::kInvalidArgument);
    CHECK(in_place.status().message() == "a deflated data set is parsed from a file");
  }
  SECTION("an element claiming 3.7 GB is refused from the inflated copy, never allocated by DCMTK") {
    const std::string bytes = as_jpip(
        test::ReadFile(fuzz::FuzzDir() / "regressions" / "fuzz_dataset_summary" / "deflated-element-claims-3-gb"));
    const std::filesystem::path file = dir.path() / "jpip-claim.dcm";
    test::WriteFile(file, bytes);
    Result<InstanceSummary> from_file = ReadInstanceSummary(file);
    REQUIRE_FALSE(from_file.ok());
    CHECK_THAT(from_file.status().message(), Catch::Contains("longer than the data set"));
    CHECK(InChild([&] { return DicomFile::Open(file, 0, true).ok(); }) == 0);
    CHECK(ReadInstanceSummaryFromMemory(bytes).status().code() == Status::Code::kInvalidArgument);
  }
}
