// DicomFile::Parse: an object received into memory is parsed where it lies, with the same
// summary and the same refusals as the file parse it replaced on the ingest path.
#include <catch2/catch.hpp>

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"

#include <fstream>
#include <iterator>

#include "common/dicom.h"
#include "samples/synthetic.h"
#include "tests/support/process.h"

using namespace teleread;

namespace {

std::filesystem::path OneObject(const test::ScratchDir& dir, const std::string& transfer_syntax) {
  samples::SeriesSpec spec;
  spec.patient_name = "张^三";
  spec.patient_id = "ZZ0042";
  spec.accession_number = "A17";
  spec.rows = spec.columns = 16;
  spec.transfer_syntax = transfer_syntax;
  auto files = samples::WriteSeries(spec, dir.path() / "in");
  REQUIRE(files.ok());
  return files->front();
}

}  // namespace

TEST_CASE("an object in memory is summarised in place as its file would be", "[ingest][parse]") {
  InitializeDicom();
  test::ScratchDir dir;
  const std::string syntax =
      GENERATE(std::string(UID_LittleEndianExplicitTransferSyntax), std::string(UID_LittleEndianImplicitTransferSyntax),
               std::string(UID_BigEndianExplicitTransferSyntax));
  const std::filesystem::path file = OneObject(dir, syntax);
  Result<InstanceSummary> from_file = ReadInstanceSummary(file);
  REQUIRE(from_file.ok());
  const std::string bytes = test::ReadFile(file);
  Result<InstanceSummary> in_place = ReadInstanceSummaryFromMemory(bytes);
  REQUIRE(in_place.ok());
  const InstanceSummary &a = from_file.value(), &b = in_place.value();
  CHECK(b.transfer_syntax_uid == syntax);
  CHECK(b.patient_name == "张^三");
  CHECK(b.patient_id == a.patient_id);
  CHECK(b.accession_number == "A17");
  CHECK(b.sop_instance_uid == a.sop_instance_uid);
  CHECK(b.sop_class_uid == a.sop_class_uid);
  CHECK(b.study_instance_uid == a.study_instance_uid);
  CHECK(b.series_instance_uid == a.series_instance_uid);
  CHECK(b.source_ae_title == a.source_ae_title);
  CHECK(b.modality == a.modality);
}

TEST_CASE("in place, a deflated object is left to the file parse and a lying length is refused", "[ingest][parse]") {
  InitializeDicom();
  test::ScratchDir dir;
  SECTION("deflated") {
    const std::string bytes = test::ReadFile(OneObject(dir, UID_DeflatedExplicitVRLittleEndianTransferSyntax));
    Result<InstanceSummary> s = ReadInstanceSummaryFromMemory(bytes);
    REQUIRE_FALSE(s.ok());
    CHECK(s.status().code() == Status::Code::kInvalidArgument);  // Ingest then parses a memory file
  }
  SECTION("pixel data claiming 4 GB") {
    std::string bytes = test::ReadFile(OneObject(dir, UID_LittleEndianExplicitTransferSyntax));
    const std::string pixel_tag("\xE0\x7F\x10\x00OW\0\0", 8);
    const size_t at = bytes.rfind(pixel_tag);
    REQUIRE(at != std::string::npos);
    bytes.replace(at + 8, 4, std::string("\xF0\xFF\xFF\xFF", 4));
    Result<InstanceSummary> s = ReadInstanceSummaryFromMemory(bytes);
    REQUIRE_FALSE(s.ok());
    // Refused by our scan, before DCMTK (which loads every value from a buffer) could allocate it.
    CHECK(s.status().message().find("longer than the data set") != std::string::npos);
  }
  SECTION("truncated") {
    const std::string bytes = test::ReadFile(OneObject(dir, UID_LittleEndianExplicitTransferSyntax));
    CHECK_FALSE(ReadInstanceSummaryFromMemory(bytes.substr(0, bytes.size() - 100)).ok());
    CHECK_FALSE(ReadInstanceSummaryFromMemory(bytes.substr(0, 100)).ok());
  }
}

TEST_CASE("a summary takes each attribute from the top level only, and is empty where it is missing", "[parse]") {
  InitializeDicom();
  test::ScratchDir dir;
  DcmFileFormat ff;
  DcmDataset& ds = *ff.getDataset();
  REQUIRE(ds.putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage).good());
  REQUIRE(ds.putAndInsertString(DCM_SOPInstanceUID, "1.2.826.0.1.3680043.2.1143.1").good());
  REQUIRE(ds.putAndInsertString(DCM_StudyInstanceUID, "1.2.826.0.1.3680043.2.1143.2").good());
  REQUIRE(ds.putAndInsertString(DCM_PatientID, "ZZ0044").good());
  REQUIRE(ds.putAndInsertString(DCM_StudyDate, "20250101").good());
  // Inside a sequence only: not the object's own.
  DcmItem* item = nullptr;
  REQUIRE(ds.findOrCreateSequenceItem(DCM_ReferencedStudySequence, item, 0).good());
  REQUIRE(item->putAndInsertString(DCM_PatientName, "Nested^Name").good());
  REQUIRE(item->putAndInsertString(DCM_AccessionNumber, "NESTED").good());
  const std::filesystem::path file = dir.path() / "sparse.dcm";
  REQUIRE(ff.saveFile(file.c_str(), EXS_LittleEndianExplicit).good());
  Result<InstanceSummary> from_file = ReadInstanceSummary(file);
  REQUIRE(from_file.ok());
  Result<InstanceSummary> in_place = ReadInstanceSummaryFromMemory(test::ReadFile(file));
  REQUIRE(in_place.ok());
  for (const InstanceSummary& s : {from_file.value(), in_place.value()}) {
    CHECK(s.sop_class_uid == UID_CTImageStorage);
    CHECK(s.patient_id == "ZZ0044");
    CHECK(s.study_date == "20250101");
    CHECK(s.patient_name == "");  // the next tag's value would be ZZ0044
    CHECK(s.accession_number == "");
    CHECK(s.issuer_of_patient_id == "");
    CHECK(s.modality == "");
    CHECK(s.instance_number == "");
  }
}

TEST_CASE("a file's head kept in memory is read from there, the rest and any deferred value from the file",
          "[ingest][parse]") {
  InitializeDicom();
  test::ScratchDir dir;
  const std::filesystem::path file = OneObject(dir, UID_LittleEndianExplicitTransferSyntax);
  Result<InstanceSummary> from_file = ReadInstanceSummary(file);
  REQUIRE(from_file.ok());
  // The head differs from the file in one value, so that where each byte was read from shows.
  std::string altered = test::ReadFile(file);
  const size_t id_at = altered.find("ZZ0042");
  REQUIRE(id_at != std::string::npos);
  altered.replace(id_at, 6, "HEAD42");
  for (const auto& [cut, patient_id] :
       {std::pair<size_t, std::string>{altered.size(), "HEAD42"}, {id_at + 3, "HEA042"}, {200, "ZZ0042"}}) {
    INFO("head of " << cut << " bytes");
    Result<InstanceSummary> s = ReadInstanceSummary(file, std::string_view(altered).substr(0, cut));
    REQUIRE(s.ok());
    CHECK(s->patient_id == patient_id);
    CHECK(s->patient_name == "张^三");
    CHECK(s->sop_instance_uid == from_file->sop_instance_uid);
    CHECK(s->study_instance_uid == from_file->study_instance_uid);
    CHECK(s->transfer_syntax_uid == from_file->transfer_syntax_uid);
  }
  // Values longer than 8 bytes are left unread and load later by offset from the file.
  Result<std::unique_ptr<DicomFile>> f = DicomFile::Open(file, 8, true, altered);
  REQUIRE(f.ok());
  OFString uid, id;
  REQUIRE(f.value()->dataset().findAndGetOFString(DCM_SOPInstanceUID, uid).good());
  CHECK(std::string(uid.c_str()) == from_file->sop_instance_uid);
  REQUIRE(f.value()->dataset().findAndGetOFString(DCM_PatientID, id).good());
  CHECK(std::string(id.c_str()) == "HEAD42");
}

TEST_CASE("an object inside a larger file is parsed from its byte range alone", "[ingest][parse][segment]") {
  InitializeDicom();
  test::ScratchDir dir;
  const std::filesystem::path file = OneObject(dir, UID_LittleEndianExplicitTransferSyntax);
  const std::string bytes = test::ReadFile(file);
  Result<InstanceSummary> from_file = ReadInstanceSummary(file);
  REQUIRE(from_file.ok());
  // Another object's bytes on either side: a parse that strays past the range reads them.
  const std::string before(5000, '\x01'), after = bytes;
  const std::filesystem::path segment = dir.path() / "segment";
  test::WriteFile(segment, before + bytes + after);
  const ByteRange range{before.size(), bytes.size()};
  Result<InstanceSummary> s = ReadInstanceSummary(segment, range);
  REQUIRE(s.ok());
  CHECK(s->sop_instance_uid == from_file->sop_instance_uid);
  CHECK(s->patient_name == "张^三");
  // A value left unread (longer than 8 bytes) loads later from its place in the range.
  Result<std::unique_ptr<DicomFile>> f = DicomFile::OpenRange(segment, range, 8, true);
  REQUIRE(f.ok());
  OFString uid;
  REQUIRE(f.value()->dataset().findAndGetOFString(DCM_StudyInstanceUID, uid).good());
  CHECK(std::string(uid.c_str()) == from_file->study_instance_uid);
  // One byte short: the object's last element runs past the range's end.
  CHECK_FALSE(ReadInstanceSummary(segment, ByteRange{before.size(), bytes.size() - 1}).ok());
  Result<bool> same = SameDataSet(file, segment, &range);
  REQUIRE(same.ok());
  CHECK(same.value());
  const ByteRange shifted{before.size() + bytes.size(), bytes.size()};  // the copy after it: the same
  same = SameDataSet(file, segment, &shifted);
  REQUIRE(same.ok());
  CHECK(same.value());

  // Encapsulated (RLE): no element comparison to fall back on, so the range's bytes decide.
  const std::filesystem::path rle = dir.path() / "rle.dcm";
  REQUIRE(test::RunCommand({"/usr/bin/dcmcrle", file.string(), rle.string()}).exit_code == 0);
  const std::string rle_bytes = test::ReadFile(rle);
  const std::filesystem::path rle_segment = dir.path() / "rle-segment";
  test::WriteFile(rle_segment, before + rle_bytes + rle_bytes);
  for (const uint64_t at : {uint64_t{before.size()}, uint64_t{before.size() + rle_bytes.size()}}) {
    const ByteRange rle_range{at, rle_bytes.size()};
    same = SameDataSet(rle, rle_segment, &rle_range);
    REQUIRE(same.ok());
    CHECK(same.value());
  }
  const ByteRange rle_short{before.size(), rle_bytes.size() - 2};
  same = SameDataSet(rle, rle_segment, &rle_short);
  CHECK((!same.ok() || !same.value()));
}
