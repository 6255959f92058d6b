// The element scan and meta-header reading behind DicomFile (common/dicom.h), shared by its
// file and in-memory readers. Internal to common/.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string_view>

#include "common/status.h"
#include "dcmtk/config/osconfig.h"  // must come first of DCMTK's
#include "dcmtk/dcmdata/dcfilefo.h"

namespace teleread::dicom_scan {

// Reads n bytes at pos into buf; whether they were all there.
using ReadAt = std::function<bool(uint64_t pos, void* buf, size_t n)>;

// Walks the data set's elements from `pos` to `size` without recursion, values skipped, never
// moving backwards (so that `read_at` may be a stream). With `check_lengths`, an element whose
// defined length runs past `size` is Corruption.
Status ScanElements(const ReadAt& read_at, uint64_t pos, uint64_t size, bool explicit_vr, bool big_endian,
                    bool check_lengths);

// Whether a transfer syntax's data set is one deflated stream, as DCMTK judges it: Deflated
// Explicit VR Little Endian and JPIP Referenced Deflate alike ("deflated" below means either).
bool StreamCompressed(const char* syntax);

// The refusal of an object DCMTK reads as deflated while its meta header does not say so plainly.
Status NotPlainlyDeflated();

// Whether DCMTK reads the data set of `ff`, whose meta header it has parsed, as deflated.
bool DcmtkReadsCompressed(DcmFileFormat& ff);

// Whether DCMTK will read the object's data set as deflated, whatever our own reading of the meta
// header found: where the two disagree the object is refused rather than allocated blindly.
bool DeflatedForDcmtk(const std::filesystem::path& file);
bool DeflatedForDcmtk(std::string_view part10);

// Where a file's data set starts and how it is encoded, as its meta header says.
struct Layout {
  uint64_t data_set = 0;
  uint64_t size = 0;
  bool explicit_vr = true, big_endian = false, deflated = false;
};

// Reads the meta header of an object of `size` bytes; `deflated_for_dcmtk` is asked when the
// header does not say deflated (a disagreement is Corruption).
Result<Layout> ReadLayout(uint64_t size, const ReadAt& read_at, const std::function<bool()>& deflated_for_dcmtk);

// Reads an object held in memory into `ff` where it lies. DCMTK refuses a value claiming more
// bytes than there are (as on a file) instead of allocating it; nesting depth is ScanElements'.
// A data set DCMTK would inflate is not read (an error); `deflated`, when given, says so.
OFCondition ReadInPlace(DcmFileFormat& ff, std::string_view part10, E_FileReadMode mode, bool* deflated = nullptr);

// Reads `file` into `ff` as DcmFileFormat::loadFile does, except that a data set DCMTK would
// inflate is not read (an error); `deflated`, when given, says so. ERM_dataset (a data set
// without meta header) is refused with EC_IllegalCall.
// `head`, when not empty, holds the object's first bytes (as received): read from memory, not the
// file. The object is the file, or `length` bytes of it from `offset` (a segment's).
OFCondition ReadFileNoInflate(DcmFileFormat& ff, const std::filesystem::path& file, Uint32 max_read,
                              E_FileReadMode mode, bool* deflated = nullptr, std::string_view head = {},
                              uint64_t offset = 0, uint64_t length = UINT64_MAX);

// What the file and the memory parse both check of a data set that is not plainly deflated, in
// order: every element's length and the nesting depth (ScanElements), then DCMTK's read into
// `ff` (`read`, which refuses to inflate and says so), then whether DCMTK took the data set as
// deflated. `deflated_for_dcmtk` names the cause when the scan fails.
Status ScanAndRead(const ReadAt& read_at, const Layout& layout, DcmFileFormat& ff,
                   const std::function<bool()>& deflated_for_dcmtk,
                   const std::function<OFCondition(bool* deflated)>& read);

// An object held in memory as a ReadAt.
ReadAt MemoryReader(std::string_view bytes);

}  // namespace teleread::dicom_scan
