#pragma once
// The DICOM adapter: the only place in common/ that includes DCMTK. Everything else sees
// InstanceSummary and plain strings (UTF-8).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

class DcmDataset;
class DcmFileFormat;

namespace teleread {

// What the index needs from one stored object. Text values are UTF-8, decoded from the
// object's Specific Character Set; UIDs and codes are as found, trailing padding removed.
struct InstanceSummary {
  std::string transfer_syntax_uid;  // from the file meta header
  std::string source_ae_title;      // from the file meta header: who sent it to us
  // From the file meta header: the SOP Class and Instance UIDs of the C-STORE request it came with
  // (the receiver writes them there).
  std::string media_storage_sop_class_uid;
  std::string media_storage_sop_instance_uid;
  std::string specific_character_set;
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string study_instance_uid;
  std::string series_instance_uid;
  std::string patient_id;
  std::string issuer_of_patient_id;
  std::string other_patient_ids;  // backslash-separated
  std::string patient_name;
  std::string patient_birth_date;
  std::string patient_sex;
  std::string patient_age;
  std::string study_date;
  std::string study_time;
  std::string accession_number;
  std::string study_id;
  std::string study_description;
  std::string referring_physician_name;
  std::string institution_name;
  std::string study_priority;  // Requested Procedure Priority or Study Priority ID, upper case
  std::string modality;
  std::string series_number;
  std::string series_description;
  std::string body_part_examined;
  std::string instance_number;
};

// Loads the dictionary and quietens DCMTK's own console logging; call once at start-up,
// before threads start.
void InitializeDicom();

// Deeper sequence nesting than this is refused: DCMTK parses recursively, and a hostile object
// nested some thousands deep overflows a thread's stack. Real objects (SR trees included) stay
// far below it.
inline constexpr int kMaxSequenceDepth = 128;

// A deflated data set that inflates to more than this is refused: DCMTK holds all of it in memory.
inline constexpr uint64_t kMaxInflatedBytes = uint64_t{512} << 20;

// A file parsed by DCMTK after its data set was scanned without recursion (values skipped):
// sequences nested deeper than kMaxSequenceDepth, a length past the end, a deflated data set over
// kMaxInflatedBytes and one DCMTK would inflate although the meta header does not plainly say so
// are refused first. The only way TeleRead parses what others sent. A deflated data set is parsed from its inflated
// copy, kept while this lives: reading a deflated stream DCMTK allocates whatever length an element claims. A plain
// file is read with a limit no larger than the file itself, so DCMTK checks any longer claim against the bytes that are
// there instead of allocating it.
// Part of a file: an object stored inside a larger one (a segment).
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

class DicomFile {
 public:
  // Values longer than `max_read_length` stay on disk (0: all are loaded). Corruption when the
  // file is no parseable DICOM (without a meta header too, unless `require_meta_header`).
  // `head`, when not empty, is the file's first bytes (kept while it was received): read from
  // memory instead of the file; it must be what the file holds.
  static Result<std::unique_ptr<DicomFile>> Open(const std::filesystem::path& file, uint32_t max_read_length,
                                                 bool require_meta_header, std::string_view head = {});
  // The same for `range` of `file`: nothing outside it is read, and a value left unread loads
  // later from the file at its place in the range. A deflated data set is refused (Corruption).
  static Result<std::unique_ptr<DicomFile>> OpenRange(const std::filesystem::path& file, const ByteRange& range,
                                                      uint32_t max_read_length, bool require_meta_header,
                                                      std::string_view head = {});
  // The same checks and parse for a Part 10 object held in memory, read in place (every value
  // is loaded: meant for objects of at most a few hundred KiB). InvalidArgument for a deflated
  // data set, or bytes without the preamble, which are parsed from a file only (Open).
  static Result<std::unique_ptr<DicomFile>> Parse(std::string_view part10);
  ~DicomFile();
  DicomFile(const DicomFile&) = delete;
  DicomFile& operator=(const DicomFile&) = delete;

  DcmFileFormat& format();
  DcmDataset& dataset();
  // A deflated file's data set as it inflated (Explicit VR Little Endian: what dataset() was
  // parsed from), readable while this lives; empty for any other file.
  std::filesystem::path inflated_data_set() const;

 private:
  struct Inflated;
  DicomFile();
  static Result<std::unique_ptr<DicomFile>> OpenPart(const std::filesystem::path& file, const ByteRange* range,
                                                     uint32_t max_read_length, bool require_meta_header,
                                                     std::string_view head);
  std::unique_ptr<DcmFileFormat> format_;
  std::unique_ptr<Inflated> inflated_;
};

// Parses the whole file (large values are not loaded into memory) and extracts the summary.
// Corruption when the file is not a parseable DICOM file with a meta header.
Result<InstanceSummary> ReadInstanceSummary(const std::filesystem::path& file, std::string_view head = {});
Result<InstanceSummary> ReadInstanceSummary(const std::filesystem::path& file, const ByteRange& range,
                                            std::string_view head = {});
// The same for an object held in memory (DicomFile::Parse): InvalidArgument when it is deflated.
Result<InstanceSummary> ReadInstanceSummaryFromMemory(std::string_view part10);
// The summary of a file parsed already; transfer syntax and source AE are empty without a meta header.
InstanceSummary Summarize(DicomFile& file);

// Decodes `raw` from a DICOM Specific Character Set (e.g. "ISO_IR 100", "ISO_IR 192",
// "GB18030", "\ISO 2022 IR 87") to UTF-8. `delimiters` are the characters that reset
// ISO 2022 code extensions: "\\" for most VRs, "\\^=" for person names.
Result<std::string> DecodeToUtf8(std::string_view specific_character_set, std::string_view raw,
                                 std::string_view delimiters = "\\");

// Encodes UTF-8 text to a DICOM Specific Character Set without code extensions (ISO_IR 100,
// ISO_IR 192, GB18030, ...). InvalidArgument when the set is unsupported or a character has
// no representation in it. ISO_IR 192 never fails: ill-formed UTF-8 bytes become U+FFFD.
Result<std::string> EncodeFromUtf8(std::string_view specific_character_set, std::string_view utf8);

// Whether two stored files carry the same data set: byte equality of the data sets, else, when
// neither has encapsulated pixel data, equality after re-encoding both as Explicit VR Little
// Endian (so an implicit-VR or deflated re-send of the same object is the same); otherwise false.
// `a_range`, `b_range`: that part of the file (an object inside a segment).
Result<bool> SameDataSet(const std::filesystem::path& a, const std::filesystem::path& b,
                         const ByteRange* b_range = nullptr, const ByteRange* a_range = nullptr);

bool IsStorageSopClass(std::string_view sop_class_uid);

}  // namespace teleread
