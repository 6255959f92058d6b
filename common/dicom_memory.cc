// DicomFile::Parse: an object received into memory is checked and parsed where it lies, instead
// of through a memory file that DCMTK and the checks would open one after another.
#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcistrmb.h"

#include "common/dicom.h"
#include "common/dicom_scan.h"

namespace teleread {

Result<std::unique_ptr<DicomFile>> DicomFile::Parse(std::string_view part10) {
  using namespace dicom_scan;
  const ReadAt read_at = MemoryReader(part10);
  Result<Layout> layout = ReadLayout(part10.size(), read_at, [part10] { return DeflatedForDcmtk(part10); });
  if (!layout.ok()) return layout.status();
  if (layout->deflated) return Status::InvalidArgument("a deflated data set is parsed from a file");
  // From a buffer DCMTK loads every value (it can leave none unread), allocating what an element
  // claims: lengths are checked against the bytes that are there first.
  if (Status s = ScanElements(read_at, layout->data_set, layout->size, layout->explicit_vr, layout->big_endian, true);
      !s.ok()) {
    return s;
  }
  std::unique_ptr<DicomFile> f(new DicomFile());
  DcmInputBufferStream in;
  in.setBuffer(part10.data(), static_cast<offile_off_t>(part10.size()));
  in.setEos();
  f->format_->setReadMode(ERM_fileOnly);
  f->format_->transferInit();
  OFCondition cond = f->format_->read(in, EXS_Unknown, EGL_noChange, static_cast<Uint32>(part10.size()));
  f->format_->transferEnd();
  f->format_->setReadMode(ERM_autoDetect);
  in.releaseBuffer();
  if (cond.bad()) return Status::Corruption(std::string("unparseable DICOM data: ") + cond.text());
  return f;
}

Result<InstanceSummary> ReadInstanceSummaryFromMemory(std::string_view part10) {
  Result<std::unique_ptr<DicomFile>> f = DicomFile::Parse(part10);
  if (!f.ok()) return f.status();
  return Summarize(*f.value());
}

}  // namespace teleread
