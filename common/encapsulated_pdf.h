#pragma once
// The DICOM form of a report's PDF copy: an Encapsulated PDF Storage instance (PS3.3 A.45.1) in
// the series of the signed SR it copies, with the SR's patient and study modules, a new SOP
// Instance UID, Document Title and Concept Name (LOINC 18748-4), the SR named in the Source
// Instance Sequence, and the PDF itself as Encapsulated Document (MIME type application/pdf).
// The SR stays the signed original; the copy carries no signature of its own.
#include <filesystem>
#include <string>

#include "common/status.h"

namespace teleread {

inline constexpr char kEncapsulatedPdfClass[] = "1.2.840.10008.5.1.4.1.1.104.1";

struct EncapsulatedPdfRequest {
  std::filesystem::path report;  // the accepted SR: patient, study and series are copied from it
  std::string pdf;               // the document's bytes
  std::string sop_instance_uid;  // of the new instance (NewDicomUid())
  std::string document_title;
  std::string source_ae_title;   // the meta header's: who made the file
  std::string content_datetime;  // YYYYMMDDHHMMSS: when the copy was made
};

// Writes the instance as a Part-10 file (Explicit VR Little Endian) to `out`. InvalidArgument when
// the report cannot be read or is no SR; IOError when `out` cannot be written.
Status WriteEncapsulatedPdf(const EncapsulatedPdfRequest& request, const std::filesystem::path& out);

// The encapsulated document of an Encapsulated PDF file, without the DICOM wrapper and without
// the pad byte an odd length gets. InvalidArgument when the file holds no PDF.
Result<std::string> ReadEncapsulatedPdf(const std::filesystem::path& file);

// A fresh UID under 2.25 (a random UUID as a decimal number, PS3.5 B.2): unique without an
// organisation root and without the host id that DCMTK's generator embeds.
std::string NewDicomUid();

}  // namespace teleread
