// DicomFile::Parse: an object received into memory is checked and parsed where it lies, instead
// of through a memory file that DCMTK and the checks would open one after another.
#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcfilefo.h"

#include "common/dicom.h"
#include "common/dicom_scan.h"

namespace teleread {

Result<std::unique_ptr<DicomFile>> DicomFile::Parse(std::string_view part10) {
  using namespace dicom_scan;
  // What the network receives is Part 10 (receive.cc writes the preamble and meta header).
  // DCMTK also reads a file whose meta group starts it without the preamble: such bytes (never
  // what receive.cc writes) are left to the file path, which accepts and refuses them as DCMTK does.
  if (part10.size() < 132 || part10.substr(128, 4) != "DICM") {
    return Status::InvalidArgument("not Part 10 with its preamble: parsed from a file");
  }
  if (part10.size() >= 0xFFFFFFFFu) return Status::InvalidArgument("too large to parse in memory");
  const ReadAt read_at = MemoryReader(part10);
  // Whether DCMTK reads the data set as deflated where our reading of the meta header does not
  // is learnt from the one DCMTK parse below (which refuses to inflate), so that no object is
  // parsed twice.
  Result<Layout> layout = ReadLayout(part10.size(), read_at, [] { return false; });
  if (!layout.ok()) return layout.status();
  if (layout->deflated) return Status::InvalidArgument("a deflated data set is parsed from a file");
  // DCMTK recurses per nested sequence: the depth is checked first (and every length, so that
  // a lie is named; ReadInPlace would refuse it too, without allocating it).
  std::unique_ptr<DicomFile> f(new DicomFile());
  if (Status s = ScanAndRead(
          read_at, layout.value(), *f->format_, [part10] { return DeflatedForDcmtk(part10); },
          [&](bool* deflated) { return ReadInPlace(*f->format_, part10, ERM_fileOnly, deflated); });
      !s.ok()) {
    return s;
  }
  return f;
}

Result<InstanceSummary> ReadInstanceSummaryFromMemory(std::string_view part10) {
  Result<std::unique_ptr<DicomFile>> f = DicomFile::Parse(part10);
  if (!f.ok()) return f.status();
  return Summarize(*f.value());
}

}  // namespace teleread
