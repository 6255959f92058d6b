#include "viewer/documents.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmsr/dsrdoc.h"

#include <fstream>
#include <sstream>

#include "common/charset.h"
#include "common/dicom.h"

namespace teleread::viewer {

ObjectKind KindOfSopClass(const std::string& uid) {
  if (dcmIsImageStorageSOPClassUID(uid.c_str())) return ObjectKind::kImage;
  if (uid == UID_EncapsulatedPDFStorage || uid == UID_EncapsulatedCDAStorage || uid == UID_EncapsulatedSTLStorage ||
      uid == UID_EncapsulatedOBJStorage || uid == UID_EncapsulatedMTLStorage) {
    return ObjectKind::kEncapsulatedDocument;
  }
  if (DSRTypes::sopClassUIDToDocumentType(uid.c_str()) != DSRTypes::DT_invalid) return ObjectKind::kStructuredReport;
  // Waveform storage classes share the root 1.2.840.10008.5.1.4.1.1.9.
  if (uid.rfind("1.2.840.10008.5.1.4.1.1.9.", 0) == 0) return ObjectKind::kWaveform;
  return ObjectKind::kOther;
}

std::string SopClassName(const std::string& uid) { return dcmFindNameOfUID(uid.c_str(), uid.c_str()); }

Result<std::string> StructuredReportText(const std::filesystem::path& file) {
  Result<std::unique_ptr<DicomFile>> ff = DicomFile::Open(file, 0, false);
  if (!ff.ok()) return Status::Corruption(file.string() + ": " + ff.status().message());
  DcmDataset& ds = ff.value()->dataset();
  // DCMTK prints values as stored; UTF-8 first (code extensions too) so that names show.
  if (Status st = ConvertDatasetToUtf8(ds); !st.ok()) {
    return Status::InvalidArgument("cannot decode the document's text: " + st.message());
  }
  DSRDocument doc;
  if (OFCondition c = doc.read(ds, DSRTypes::RF_readDigitalSignatures); c.bad()) {
    return Status::InvalidArgument(file.filename().string() + " is not a readable SR document: " + c.text());
  }
  std::ostringstream out;
  doc.print(out, DSRTypes::PF_printEmptyCodes | DSRTypes::PF_indicateEnhancedEncodingMode);
  return out.str();
}

Result<std::filesystem::path> SaveEncapsulatedDocument(const std::filesystem::path& file,
                                                       const std::filesystem::path& out_dir) {
  Result<std::unique_ptr<DicomFile>> ff = DicomFile::Open(file, 0, false);
  if (!ff.ok()) return Status::Corruption(file.string() + ": " + ff.status().message());
  DcmDataset& ds = ff.value()->dataset();
  const Uint8* bytes = nullptr;
  unsigned long length = 0;
  if (ds.findAndGetUint8Array(DCM_EncapsulatedDocument, bytes, &length).bad() || bytes == nullptr) {
    return Status::InvalidArgument(file.filename().string() + " holds no encapsulated document");
  }
  OFString mime;
  (void)ds.findAndGetOFString(DCM_MIMETypeOfEncapsulatedDocument, mime);
  std::string ext = ".bin";
  if (mime == "application/pdf") ext = ".pdf";
  if (mime == "text/xml") ext = ".xml";
  if (mime == "model/stl") ext = ".stl";
  // The value is padded to even length; a PDF's own end is its %%EOF line.
  if (ext == ".pdf" && length > 0 && bytes[length - 1] == 0) --length;
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  const std::filesystem::path out = out_dir / (file.stem().string() + ext);
  std::ofstream os(out, std::ios::binary | std::ios::trunc);
  os.write(reinterpret_cast<const char*>(bytes), static_cast<std::streamsize>(length));
  if (!os.flush()) return Status::IOError("cannot write " + out.string());
  return out;
}

}  // namespace teleread::viewer
