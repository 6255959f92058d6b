#include "common/encapsulated_pdf.h"

#include <openssl/bn.h>
#include <openssl/rand.h>

#include "common/dicom.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcfilefo.h"
#include "dcmtk/dcmdata/dcmetinf.h"
#include "dcmtk/dcmdata/dcsequen.h"

namespace teleread {
namespace {

// What the copy takes over from the SR: the Patient, General Study and Patient Study modules,
// and the series it joins (the SR's: one report, one series holding both forms).
const DcmTagKey kCopied[] = {
    DCM_SpecificCharacterSet,
    DCM_PatientName,
    DCM_PatientID,
    DCM_IssuerOfPatientID,
    DCM_PatientBirthDate,
    DCM_PatientSex,
    DCM_OtherPatientIDsSequence,
    DCM_StudyInstanceUID,
    DCM_StudyDate,
    DCM_StudyTime,
    DCM_ReferringPhysicianName,
    DCM_StudyID,
    DCM_AccessionNumber,
    DCM_StudyDescription,
    DCM_PatientAge,
    DCM_SeriesInstanceUID,
    DCM_SeriesNumber,
    DCM_SeriesDescription,
};

// Type 2 attributes of the IOD: present, empty when the SR had no value.
const DcmTagKey kRequiredEmpty[] = {DCM_PatientName,    DCM_PatientID, DCM_PatientBirthDate,       DCM_PatientSex,
                                    DCM_StudyDate,      DCM_StudyTime, DCM_ReferringPhysicianName, DCM_StudyID,
                                    DCM_AccessionNumber};

Status CheckPdf(const OFCondition& c, const std::string& what) {
  return c.good() ? Status::Ok() : Status::InvalidArgument(what + ": " + c.text());
}

}  // namespace

std::string NewDicomUid() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) abort();                // no entropy: nothing sensible to go on with
  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0f) | 0x40);  // UUID version 4
  bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3f) | 0x80);  // RFC 4122 variant
  BIGNUM* n = BN_bin2bn(bytes, sizeof bytes, nullptr);
  char* dec = n ? BN_bn2dec(n) : nullptr;
  if (!dec) abort();  // out of memory
  std::string uid = std::string("2.25.") + dec;
  OPENSSL_free(dec);
  BN_free(n);
  return uid;
}

Status WriteEncapsulatedPdf(const EncapsulatedPdfRequest& req, const std::filesystem::path& out) {
  Result<std::unique_ptr<DicomFile>> source = DicomFile::Open(req.report, 64 * 1024, true);
  if (!source.ok()) return Status::InvalidArgument("cannot read the report: " + source.status().message());
  DcmDataset& sr = source.value()->dataset();
  OFString sr_class, sr_instance;
  sr.findAndGetOFString(DCM_SOPClassUID, sr_class);
  sr.findAndGetOFString(DCM_SOPInstanceUID, sr_instance);
  if (sr_instance.empty() || sr_class.empty()) return Status::InvalidArgument("the report has no SOP Instance UID");

  DcmFileFormat file;
  DcmDataset& ds = *file.getDataset();
  for (const DcmTagKey& tag : kCopied) {
    DcmElement* copy = nullptr;
    if (sr.findAndGetElement(tag, copy, OFFalse, OFTrue).good() && copy) ds.insert(copy, OFTrue);
  }
  for (const DcmTagKey& tag : kRequiredEmpty) {
    if (!ds.tagExists(tag)) ds.insertEmptyElement(tag);
  }
  if (!ds.tagExists(DCM_SpecificCharacterSet)) ds.putAndInsertString(DCM_SpecificCharacterSet, "ISO_IR 192");
  const std::string date = req.content_datetime.substr(0, 8), time = req.content_datetime.substr(8);
  OFCondition c = ds.putAndInsertString(DCM_SOPClassUID, kEncapsulatedPdfClass);
  if (c.good()) c = ds.putAndInsertString(DCM_SOPInstanceUID, req.sop_instance_uid.c_str());
  if (c.good()) c = ds.putAndInsertString(DCM_InstanceCreationDate, date.c_str());
  if (c.good()) c = ds.putAndInsertString(DCM_InstanceCreationTime, time.c_str());
  // Encapsulated Document Series: the SR's series, so its modality too (series-level attributes
  // agree across a series; SR is among the module's defined terms).
  if (c.good()) c = ds.putAndInsertString(DCM_Modality, "SR");
  // General and SC Equipment: made on a workstation (the centre's server), not scanned.
  if (c.good()) c = ds.putAndInsertString(DCM_Manufacturer, "TeleRead");
  if (c.good()) c = ds.putAndInsertString(DCM_ConversionType, "WSD");
  // Encapsulated Document.
  if (c.good()) c = ds.putAndInsertString(DCM_InstanceNumber, "2");  // the SR is 1 in the series
  if (c.good()) c = ds.putAndInsertString(DCM_ContentDate, date.c_str());
  if (c.good()) c = ds.putAndInsertString(DCM_ContentTime, time.c_str());
  if (c.good()) c = ds.putAndInsertString(DCM_AcquisitionDateTime, req.content_datetime.c_str());
  if (c.good()) c = ds.putAndInsertString(DCM_BurnedInAnnotation, "YES");  // the patient's name is on it
  if (c.good()) c = ds.putAndInsertString(DCM_DocumentTitle, req.document_title.c_str());
  if (Status s = CheckPdf(c, "cannot set the copy's attributes"); !s.ok()) return s;

  DcmItem* concept = nullptr;
  c = ds.findOrCreateSequenceItem(DCM_ConceptNameCodeSequence, concept);
  if (c.good()) c = concept->putAndInsertString(DCM_CodeValue, "18748-4");
  if (c.good()) c = concept->putAndInsertString(DCM_CodingSchemeDesignator, "LN");
  if (c.good()) c = concept->putAndInsertString(DCM_CodeMeaning, "Diagnostic Imaging Report");
  // The signed SR this is a copy of.
  DcmItem* source_item = nullptr;
  if (c.good()) c = ds.findOrCreateSequenceItem(DCM_SourceInstanceSequence, source_item);
  if (c.good()) c = source_item->putAndInsertString(DCM_ReferencedSOPClassUID, sr_class.c_str());
  if (c.good()) c = source_item->putAndInsertString(DCM_ReferencedSOPInstanceUID, sr_instance.c_str());
  if (c.good()) c = ds.putAndInsertString(DCM_MIMETypeOfEncapsulatedDocument, "application/pdf");
  if (c.good()) c = ds.putAndInsertUint32(DCM_EncapsulatedDocumentLength, static_cast<Uint32>(req.pdf.size()));
  // An odd length is padded with one zero byte when written (PS3.5 7.1.1, OB).
  if (c.good()) {
    c = ds.putAndInsertUint8Array(DCM_EncapsulatedDocument, reinterpret_cast<const Uint8*>(req.pdf.data()),
                                  static_cast<unsigned long>(req.pdf.size()));
  }
  if (Status s = CheckPdf(c, "cannot set the copy's document"); !s.ok()) return s;

  DcmMetaInfo& meta = *file.getMetaInfo();
  if (!req.source_ae_title.empty())
    meta.putAndInsertString(DCM_SourceApplicationEntityTitle, req.source_ae_title.c_str());
  c = file.saveFile(out.c_str(), EXS_LittleEndianExplicit);
  if (c.bad()) return Status::IOError("cannot write " + out.string() + ": " + c.text());
  return Status::Ok();
}

Result<std::string> ReadEncapsulatedPdf(const std::filesystem::path& path) {
  Result<std::unique_ptr<DicomFile>> file = DicomFile::Open(path, 0, false);
  if (!file.ok()) return Status::InvalidArgument(path.string() + " is not a readable DICOM file");
  DcmDataset& ds = file.value()->dataset();
  OFString cls, mime;
  ds.findAndGetOFString(DCM_SOPClassUID, cls);
  ds.findAndGetOFString(DCM_MIMETypeOfEncapsulatedDocument, mime);
  if (cls != kEncapsulatedPdfClass || mime != "application/pdf") {
    return Status::InvalidArgument(path.string() + " is no Encapsulated PDF");
  }
  const Uint8* bytes = nullptr;
  unsigned long n = 0;
  if (ds.findAndGetUint8Array(DCM_EncapsulatedDocument, bytes, &n).bad() || !bytes) {
    return Status::InvalidArgument(path.string() + " has no Encapsulated Document");
  }
  Uint32 length = 0;
  if (ds.findAndGetUint32(DCM_EncapsulatedDocumentLength, length).good() && length <= n) n = length;
  return std::string(reinterpret_cast<const char*>(bytes), n);
}

}  // namespace teleread
