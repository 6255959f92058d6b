#include "common/dicom.h"

#include "common/charset.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcdict.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmf.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcspchrs.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmdata/dcxfer.h"
#include "dcmtk/oflog/oflog.h"
#include "dcmtk/ofstd/ofchrenc.h"

#include "common/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <vector>

#include "common/dataset_compare.h"
#include "common/dicom_scan.h"

namespace teleread {
namespace {

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  size_t start = s.find_first_not_of(' ');
  return start == std::string::npos ? std::string() : s.substr(start);
}

bool IsAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// Raw (undecoded) value of a string element, all values, as stored.
std::string RawString(DcmItem& item, const DcmTagKey& tag) {
  OFString value;
  if (item.findAndGetOFStringArray(tag, value).bad()) return std::string();
  return std::string(value.c_str(), value.length());
}

// An item's top-level elements, listed once and looked up by binary search: RawString searches
// the list from its start for every tag, and a summary asks for some thirty.
class TopLevel {
 public:
  explicit TopLevel(DcmItem& item) {
    for (DcmObject* o = item.nextInContainer(nullptr); o; o = item.nextInContainer(o)) elements_.push_back(o);
    // DCMTK keeps an item's elements in ascending tag order; sorted anyway should that change
    // (stable: the first element with a tag is still the one found, as by RawString).
    if (!std::is_sorted(elements_.begin(), elements_.end(), ByTag)) {
      std::stable_sort(elements_.begin(), elements_.end(), ByTag);
    }
  }
  // As RawString: the first element with the tag, all its values.
  std::string Raw(const DcmTagKey& tag) const {
    auto it = std::lower_bound(elements_.begin(), elements_.end(), tag,
                               [](const DcmObject* o, const DcmTagKey& t) { return o->getTag() < t; });
    if (it == elements_.end() || (*it)->getTag() != tag) return std::string();
    OFString value;
    if (static_cast<DcmElement*>(*it)->getOFStringArray(value).bad()) return std::string();
    return std::string(value.c_str(), value.length());
  }

 private:
  static bool ByTag(const DcmObject* a, const DcmObject* b) { return a->getTag() < b->getTag(); }
  std::vector<DcmObject*> elements_;
};

class TextDecoder {
 public:
  explicit TextDecoder(std::string charset) : charset_(Trim(std::move(charset))) {}

  std::string Decode(const std::string& raw, const char* delimiters) {
    if (IsAscii(raw) && charset_.find("2022") == std::string::npos) return Trim(raw);
    Result<std::string> decoded = DecodeToUtf8(charset_, raw, delimiters);
    if (decoded.ok()) return Trim(decoded.value());
    // Keep what is readable rather than refuse an object over a display string.
    std::string lossy;
    for (char c : raw) lossy += static_cast<unsigned char>(c) < 0x80 ? c : '?';
    return Trim(lossy);
  }

 private:
  std::string charset_;
};

}  // namespace

void InitializeDicom() {
  OFLog::configure(OFLogger::WARN_LOG_LEVEL);
  RouteDcmtkLogging();
  // loadFileUntilTag and friends warn on routine events; keep errors only.
  OFLog::getLogger("dcmtk.dcmdata").setLogLevel(OFLogger::ERROR_LOG_LEVEL);
  OFLog::getLogger("dcmtk.dcmnet").setLogLevel(OFLogger::ERROR_LOG_LEVEL);
  // Report SRs copy what the study has; a missing type 2 attribute there is no error of ours.
  OFLog::getLogger("dcmtk.dcmsr").setLogLevel(OFLogger::ERROR_LOG_LEVEL);
  OFLog::getLogger("dcmtk.dcmsign").setLogLevel(OFLogger::ERROR_LOG_LEVEL);
  (void)dcmDataDict.isDictionaryLoaded();
}

bool IsStorageSopClass(std::string_view uid) { return dcmIsaStorageSOPClassUID(std::string(uid).c_str(), ESSC_All); }

Result<std::string> DecodeToUtf8(std::string_view charset, std::string_view raw, std::string_view delimiters) {
  // The value's padding is no part of it, here as in EncodeFromUtf8: what one writes the other reads.
  const std::string term = Trim(std::string(charset));
  if (UsesIso2022(term)) return DecodeIso2022(term, raw, delimiters);  // DCMTK's converter refuses these
  DcmSpecificCharacterSet converter;
  OFCondition cond = converter.selectCharacterSet(OFString(term.data(), term.size()));
  if (cond.bad()) {
    return Status::InvalidArgument("unsupported Specific Character Set '" + term + "': " + cond.text());
  }
  OFString out;
  cond = converter.convertString(raw.data(), raw.size(), out, OFString(delimiters.data(), delimiters.size()));
  if (cond.bad()) return Status::InvalidArgument(std::string("cannot decode text: ") + cond.text());
  return std::string(out.c_str(), out.length());
}

namespace {

// `s` with every ill-formed UTF-8 sequence (overlong forms, surrogates, beyond U+10FFFF, stray
// or missing continuation bytes) replaced by U+FFFD, a byte at a time.
std::string WellFormedUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    size_t n = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
    if (c < 0x80) {
      n = 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;  // nothing beyond U+10FFFF
    }
    bool ok = n > 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; ++k) {
      const unsigned char first = k == 1 ? lo : 0x80, last = k == 1 ? hi : 0xBF;
      ok = b(i + k) >= first && b(i + k) <= last;
    }
    if (ok) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

}  // namespace

Result<std::string> EncodeFromUtf8(std::string_view charset, std::string_view utf8) {
  static const std::pair<const char*, const char*> kEncodings[] = {
      {"", "ASCII"},
      {"ISO_IR 6", "ASCII"},
      {"ISO_IR 192", "UTF-8"},
      {"ISO_IR 100", "ISO-8859-1"},
      {"ISO_IR 101", "ISO-8859-2"},
      {"ISO_IR 109", "ISO-8859-3"},
      {"ISO_IR 110", "ISO-8859-4"},
      {"ISO_IR 144", "ISO-8859-5"},
      {"ISO_IR 127", "ISO-8859-6"},
      {"ISO_IR 126", "ISO-8859-7"},
      {"ISO_IR 138", "ISO-8859-8"},
      {"ISO_IR 148", "ISO-8859-9"},
      {"ISO_IR 166", "TIS-620"},
      {"GB18030", "GB18030"},
      {"GBK", "GBK"},
  };
  const std::string term = Trim(std::string(charset));
  const char* encoding = nullptr;
  for (const auto& [dicom, iconv] : kEncodings) {
    if (term == dicom) encoding = iconv;
  }
  if (encoding == nullptr) return Status::InvalidArgument("cannot encode to '" + term + "'");
  if (std::string_view(encoding) == "UTF-8") return WellFormedUtf8(utf8);
  OFCharacterEncoding converter;
  OFCondition cond = converter.selectEncoding("UTF-8", encoding);
  if (cond.bad()) return Status::InvalidArgument(std::string("cannot encode to ") + encoding + ": " + cond.text());
  OFString out;
  cond = converter.convertString(OFString(utf8.data(), utf8.size()), out);
  if (cond.bad()) return Status::InvalidArgument(std::string("text not representable in ") + encoding);
  return std::string(out.c_str(), out.length());
}

namespace {

using dicom_scan::DeflatedForDcmtk;
using dicom_scan::Layout;
using dicom_scan::ReadAt;
using dicom_scan::ScanElements;

// Reads `file` through a 64 KiB window: the element scan's short forward reads (one per element
// header) cost one pread per window instead of a seek and a read each.
class WindowReader {
 public:
  // `head`: the object's first bytes, read from memory. The object is the file, or the `limit`
  // bytes of it from `base` (offsets are the object's: 0 is `base`).
  explicit WindowReader(const std::filesystem::path& file, std::string_view head = {}, uint64_t base = 0,
                        uint64_t limit = UINT64_MAX)
      : fd_(::open(file.c_str(), O_RDONLY | O_CLOEXEC)), head_(head), base_(base), limit_(limit) {}
  ~WindowReader() {
    if (fd_ >= 0) ::close(fd_);
  }
  WindowReader(const WindowReader&) = delete;
  WindowReader& operator=(const WindowReader&) = delete;
  bool ok() const { return fd_ >= 0; }

  bool Read(uint64_t at, void* out, size_t n) {
    if (at > limit_ || n > limit_ - at) return false;
    if (at <= head_.size() && n <= head_.size() - at) {
      std::memcpy(out, head_.data() + at, n);
      return true;
    }
    if (at < start_ || at + n > start_ + len_) {
      if (n > kWindow) return PreadAll(at, out, n);
      buf_.resize(kWindow);
      const size_t want = static_cast<size_t>(std::min<uint64_t>(kWindow, limit_ - at));
      const ssize_t r = ::pread(fd_, buf_.data(), want, static_cast<off_t>(base_ + at));
      start_ = at;
      len_ = r > 0 ? static_cast<uint64_t>(r) : 0;
      if (len_ < n) return false;
    }
    std::memcpy(out, buf_.data() + (at - start_), n);
    return true;
  }

 private:
  bool PreadAll(uint64_t at, void* out, size_t n) {
    for (size_t done = 0; done < n;) {
      const ssize_t r = ::pread(fd_, static_cast<char*>(out) + done, n - done, static_cast<off_t>(base_ + at + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      done += static_cast<size_t>(r);
    }
    return true;
  }

  static constexpr size_t kWindow = 64 * 1024;
  int fd_;
  std::string_view head_;
  uint64_t base_, limit_;
  std::vector<char> buf_;
  uint64_t start_ = 0, len_ = 0;
};

ReadAt FileReader(WindowReader& in) {
  return [&in](uint64_t at, void* buf, size_t n) { return in.Read(at, buf, n); };
}

// A DCMTK read that refuses to inflate follows (ReadFileNoInflate) and DcmtkReadsCompressed after
// it (dicom_scan::ScanAndRead): a Part 10 file (with its preamble) is not parsed by DCMTK a first
// time here to learn whether DCMTK would read it as deflated.
// `range`: the object is that part of the file (a segment's), which DCMTK never reads as a whole.
Result<Layout> ReadLayout(const std::filesystem::path& file, const ReadAt& read_at, const ByteRange* range) {
  std::error_code ec;
  const uint64_t size = range ? range->length : std::filesystem::file_size(file, ec);
  if (ec) return Status::IOError("cannot size " + file.string());
  char magic[4] = {};
  const bool part10 = size >= 132 && read_at(128, magic, 4) && std::memcmp(magic, "DICM", 4) == 0;
  if (part10 || range) return dicom_scan::ReadLayout(size, read_at, [] { return false; });
  return dicom_scan::ReadLayout(size, read_at, [&file] { return DeflatedForDcmtk(file); });
}

// The deflated data set of `file` from `offset`, inflated into an unlinked temporary file, at
// most kMaxInflatedBytes. DCMTK reads it by its /proc/self/fd name while the descriptor is open.
class InflatedCopy {
 public:
  ~InflatedCopy() {
    if (fd_ >= 0) ::close(fd_);
  }
  Status Make(const std::filesystem::path& file, uint64_t offset) {
    std::error_code ec;
    std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
    if (ec) return Status::IOError("no directory for temporary files: " + ec.message());
    std::string name = (dir / "teleread-inflate-XXXXXX").string();
    fd_ = ::mkstemp(name.data());
    if (fd_ < 0) return Status::FromErrno(errno, "cannot create a temporary file to inflate into");
    ::unlink(name.c_str());
    DcmInputFileStream in(file.c_str(), static_cast<offile_off_t>(offset));
    if (!in.good()) return Status::Corruption(std::string("cannot read the data set: ") + in.status().text());
    if (in.installCompressionFilter(ESC_zlib).bad()) return Status::Corruption("cannot inflate the data set");
    std::vector<char> buf(1 << 16);
    while (in.good() && !in.eos()) {
      const offile_off_t r = in.read(buf.data(), static_cast<offile_off_t>(buf.size()));
      if (r <= 0) break;
      size_ += static_cast<uint64_t>(r);
      if (size_ > kMaxInflatedBytes) {
        return Status::Corruption("the deflated data set inflates to more than " +
                                  std::to_string(kMaxInflatedBytes >> 20) + " MiB");
      }
      for (size_t done = 0; done < static_cast<size_t>(r);) {
        const ssize_t w = ::write(fd_, buf.data() + done, static_cast<size_t>(r) - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return Status::FromErrno(errno, "cannot write the inflated data set");
        done += static_cast<size_t>(w);
      }
    }
    if (!in.good()) return Status::Corruption(std::string("cannot inflate the data set: ") + in.status().text());
    return Status::Ok();
  }
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }
  uint64_t size() const { return size_; }
  ReadAt reader() const {
    return [fd = fd_](uint64_t at, void* buf, size_t n) {
      return ::pread(fd, buf, n, static_cast<off_t>(at)) == static_cast<ssize_t>(n);
    };
  }

 private:
  int fd_ = -1;
  uint64_t size_ = 0;
};

}  // namespace

struct DicomFile::Inflated : InflatedCopy {};

DicomFile::DicomFile() : format_(std::make_unique<DcmFileFormat>()) {}
DicomFile::~DicomFile() = default;

Result<std::unique_ptr<DicomFile>> DicomFile::Open(const std::filesystem::path& file, uint32_t max_read_length,
                                                   bool require_meta_header, std::string_view head) {
  return OpenPart(file, nullptr, max_read_length, require_meta_header, head);
}

Result<std::unique_ptr<DicomFile>> DicomFile::OpenRange(const std::filesystem::path& file, const ByteRange& range,
                                                        uint32_t max_read_length, bool require_meta_header,
                                                        std::string_view head) {
  return OpenPart(file, &range, max_read_length, require_meta_header, head);
}

Result<std::unique_ptr<DicomFile>> DicomFile::OpenPart(const std::filesystem::path& file, const ByteRange* range,
                                                       uint32_t max_read_length, bool require_meta_header,
                                                       std::string_view head) {
  WindowReader in(file, head, range ? range->offset : 0, range ? range->length : UINT64_MAX);
  if (!in.ok()) return Status::IOError("cannot open " + file.string());
  const ReadAt read_at = FileReader(in);
  Result<Layout> layout = ReadLayout(file, read_at, range);
  if (!layout.ok()) return layout.status();
  std::unique_ptr<DicomFile> f(new DicomFile());
  // DCMTK allocates a value it loads before it reads it, whatever length the element claims, and
  // checks the claim against the bytes left only for a value it leaves on disk. No value can be
  // longer than the file, so with this cap a lying length is refused rather than allocated.
  // (With dcmIgnoreParsingErrors, which TeleRead leaves off, DCMTK would keep the claim.)
  // (DCMTK leaves on disk every value longer than the limit, so 0 would load none.)
  auto limit = [max_read_length](uint64_t bytes) {
    return static_cast<uint32_t>(std::min<uint64_t>(max_read_length == 0 ? UINT32_MAX : max_read_length, bytes));
  };
  const E_FileReadMode mode = require_meta_header ? ERM_fileOnly : ERM_autoDetect;
  if (!layout->deflated) {
    // Whether DCMTK reads the data set as deflated where the meta header does not say so plainly
    // is learnt from the one DCMTK read (which refuses to inflate), asked first only when the
    // scan fails, so that the refusal names the cause.
    if (Status s = dicom_scan::ScanAndRead(
            read_at, layout.value(), *f->format_, [&file, range] { return !range && DeflatedForDcmtk(file); },
            [&](bool* deflated) {
              return range
                         ? dicom_scan::ReadFileNoInflate(*f->format_, file, limit(layout->size), mode, deflated, head,
                                                         range->offset, range->length)
                         : dicom_scan::ReadFileNoInflate(*f->format_, file, limit(layout->size), mode, deflated, head);
            });
        !s.ok()) {
      return s;
    }
    return f;
  }
  // Segments hold native objects only (a deflated one is inflated from a file of its own).
  if (range) return Status::Corruption("a deflated data set is not read from a byte range of " + file.string());
  // From a deflated stream DCMTK cannot leave a value on disk, so it would allocate any claim.
  f->inflated_ = std::make_unique<Inflated>();
  if (Status s = f->inflated_->Make(file, layout->data_set); !s.ok()) return s;
  if (Status s = ScanElements(f->inflated_->reader(), 0, f->inflated_->size(), true, false, true); !s.ok()) return s;
  OFCondition cond = f->format_->loadFile(file.c_str(), EXS_Unknown, EGL_noChange, limit(layout->size), ERM_metaOnly);
  if (cond.good()) {
    cond = f->format_->getDataset()->loadFile(f->inflated_->path().c_str(), EXS_LittleEndianExplicit, EGL_noChange,
                                              limit(f->inflated_->size()));
  }
  if (cond.bad()) return Status::Corruption(std::string("unparseable DICOM data: ") + cond.text());
  return f;
}

DcmFileFormat& DicomFile::format() { return *format_; }
std::filesystem::path DicomFile::inflated_data_set() const {
  return inflated_ ? std::filesystem::path(inflated_->path()) : std::filesystem::path();
}
DcmDataset& DicomFile::dataset() { return *format_->getDataset(); }

Result<InstanceSummary> ReadInstanceSummary(const std::filesystem::path& file, const ByteRange& range,
                                            std::string_view head) {
  Result<std::unique_ptr<DicomFile>> f = DicomFile::OpenRange(file, range, 4096, true, head);
  if (!f.ok()) return f.status();
  return Summarize(*f.value());
}

Result<InstanceSummary> ReadInstanceSummary(const std::filesystem::path& file, std::string_view head) {
  // Values longer than 4 KiB stay on disk: a 1 GB object costs no more memory than a small one.
  Result<std::unique_ptr<DicomFile>> f = DicomFile::Open(file, 4096, true, head);
  if (!f.ok()) return f.status();
  return Summarize(*f.value());
}

InstanceSummary Summarize(DicomFile& file) {
  DcmFileFormat& ff = file.format();
  DcmDataset& ds = *ff.getDataset();
  InstanceSummary s;
  s.transfer_syntax_uid = Trim(RawString(*ff.getMetaInfo(), DCM_TransferSyntaxUID));
  s.source_ae_title = Trim(RawString(*ff.getMetaInfo(), DCM_SourceApplicationEntityTitle));
  s.media_storage_sop_class_uid = Trim(RawString(*ff.getMetaInfo(), DCM_MediaStorageSOPClassUID));
  s.media_storage_sop_instance_uid = Trim(RawString(*ff.getMetaInfo(), DCM_MediaStorageSOPInstanceUID));
  const TopLevel top(ds);
  s.specific_character_set = Trim(top.Raw(DCM_SpecificCharacterSet));
  TextDecoder text(s.specific_character_set);
  auto plain = [&](const DcmTagKey& tag) { return Trim(top.Raw(tag)); };
  auto decoded = [&](const DcmTagKey& tag) { return text.Decode(top.Raw(tag), "\\"); };
  s.sop_class_uid = plain(DCM_SOPClassUID);
  s.sop_instance_uid = plain(DCM_SOPInstanceUID);
  s.study_instance_uid = plain(DCM_StudyInstanceUID);
  s.series_instance_uid = plain(DCM_SeriesInstanceUID);
  s.patient_id = decoded(DCM_PatientID);
  s.issuer_of_patient_id = decoded(DCM_IssuerOfPatientID);
  s.other_patient_ids = decoded(DCM_RETIRED_OtherPatientIDs);
  s.patient_name = text.Decode(top.Raw(DCM_PatientName), "\\^=");
  s.patient_birth_date = plain(DCM_PatientBirthDate);
  s.patient_sex = plain(DCM_PatientSex);
  s.patient_age = plain(DCM_PatientAge);
  s.study_date = plain(DCM_StudyDate);
  s.study_time = plain(DCM_StudyTime);
  s.accession_number = decoded(DCM_AccessionNumber);
  s.study_id = decoded(DCM_StudyID);
  s.study_description = decoded(DCM_StudyDescription);
  s.referring_physician_name = text.Decode(top.Raw(DCM_ReferringPhysicianName), "\\^=");
  s.institution_name = decoded(DCM_InstitutionName);
  s.study_priority = plain(DCM_RequestedProcedurePriority);
  if (s.study_priority.empty()) s.study_priority = plain(DCM_RETIRED_StudyPriorityID);
  std::transform(s.study_priority.begin(), s.study_priority.end(), s.study_priority.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  s.modality = plain(DCM_Modality);
  s.series_number = plain(DCM_SeriesNumber);
  s.series_description = decoded(DCM_SeriesDescription);
  s.body_part_examined = plain(DCM_BodyPartExamined);
  s.instance_number = plain(DCM_InstanceNumber);
  return s;
}

namespace {

// Offset of the data set in a Part 10 file: preamble, "DICM", then the meta group whose
// length is given by its first element (0002,0000) UL.
Result<uint64_t> DataSetOffset(std::ifstream& in) {
  unsigned char head[144];
  if (!in.read(reinterpret_cast<char*>(head), sizeof head)) return Status::Corruption("file too short");
  if (std::string_view(reinterpret_cast<char*>(head + 128), 4) != "DICM" || head[132] != 0x02 || head[133] != 0 ||
      head[134] != 0 || head[135] != 0 || head[136] != 'U' || head[137] != 'L') {
    return Status::Corruption("no standard file meta header");
  }
  uint32_t group_length = head[140] | (head[141] << 8) | (head[142] << 16) | (uint32_t(head[143]) << 24);
  return uint64_t{144} + group_length;
}

Result<bool> SameBytesAfter(const std::filesystem::path& a, const std::filesystem::path& b, const ByteRange* a_range,
                            const ByteRange* b_range) {
  std::ifstream fa(a, std::ios::binary), fb(b, std::ios::binary);
  if (!fa || !fb) return Status::IOError("cannot open stored files for comparison");
  const uint64_t a_base = a_range ? a_range->offset : 0, b_base = b_range ? b_range->offset : 0;
  fa.seekg(static_cast<std::streamoff>(a_base));
  fb.seekg(static_cast<std::streamoff>(b_base));
  Result<uint64_t> oa = DataSetOffset(fa), ob = DataSetOffset(fb);
  if (!oa.ok()) return oa.status();
  if (!ob.ok()) return ob.status();
  std::error_code ec;
  uint64_t la = (a_range ? a_range->length : std::filesystem::file_size(a, ec)) - oa.value();
  uint64_t lb = (b_range ? b_range->length : std::filesystem::file_size(b, ec)) - ob.value();
  if (ec) return Status::IOError("cannot stat stored files: " + ec.message());
  if (la != lb) return false;
  fa.seekg(static_cast<std::streamoff>(a_base + oa.value()));
  fb.seekg(static_cast<std::streamoff>(b_base + ob.value()));
  std::vector<char> ba(1 << 16), bb(1 << 16);
  while (la > 0) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(la, ba.size()));
    if (!fa.read(ba.data(), n) || !fb.read(bb.data(), n)) return Status::IOError("short read comparing files");
    if (!std::equal(ba.begin(), ba.begin() + n, bb.begin())) return false;
    la -= n;
  }
  return true;
}

// Pixel data not encapsulated: DCMTK can re-encode it without codecs (a deflated stream is
// inflated on reading, and two deflaters may produce different bytes for the same data set).
bool IsNative(const std::string& ts) { return !DcmXfer(ts.c_str()).isEncapsulated(); }

}  // namespace

Result<bool> SameDataSet(const std::filesystem::path& a, const std::filesystem::path& b, const ByteRange* b_range,
                         const ByteRange* a_range) {
  Result<InstanceSummary> sa = a_range ? ReadInstanceSummary(a, *a_range) : ReadInstanceSummary(a),
                          sb = b_range ? ReadInstanceSummary(b, *b_range) : ReadInstanceSummary(b);
  if (!sa.ok()) return sa.status();
  if (!sb.ok()) return sb.status();
  if (sa->transfer_syntax_uid == sb->transfer_syntax_uid) {
    Result<bool> same_bytes = SameBytesAfter(a, b, a_range, b_range);
    if (!same_bytes.ok() || same_bytes.value()) return same_bytes;
  }
  if (!IsNative(sa->transfer_syntax_uid) || !IsNative(sb->transfer_syntax_uid)) return false;
  return SameElements(a, b, b_range, a_range);  // streamed: neither object is loaded whole
}

}  // namespace teleread
