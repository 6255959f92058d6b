// The report's PDF copy over the API: GET /api/v1/reports/{uid}/pdf serves the PDF document itself
// (application/pdf), ?format=dicom its Encapsulated PDF instance as stored (application/dicom).
#include "common/encapsulated_pdf.h"
#include "server/http/api_reply.h"
#include "server/http/reading_api.h"

namespace teleread {

using api::Error;
using api::StatusFor;

HttpResponse ReadingApi::ReportPdf(const std::string& sop, const std::string& format, const Identity& who) {
  if (!format.empty() && format != "pdf" && format != "dicom") return Error(400, "format must be pdf or dicom");
  // The report's own rule: its member hospital, or the centre's radiologists and admins; another
  // member's report is absent (404), as the SR is, so that UIDs of other hospitals are not probed.
  Result<StoredReport> found = reads_.ReportPdf(sop, who.member_id);
  if (!found.ok()) return Error(StatusFor(found.status()), found.status().message());
  if (Status a = worklist_.Audit(who.id, "download", found->study_instance_uid, "PDF copy of report " + sop); !a.ok()) {
    return Error(503, "the audit trail cannot be written, so nothing is served");
  }
  if (format == "dicom") return StoredObject(found->relative_path);
  Result<ObjectHandle> object = store_.Open(found->relative_path);
  if (!object.ok()) return Error(500, "the stored PDF copy cannot be read: " + object.status().message());
  // The report desk's copies are files or index rows, never inside a segment.
  if (object->ranged()) return Error(500, "the stored PDF copy is held inside a segment, which this does not read");
  Result<std::string> pdf = ReadEncapsulatedPdf(object->path());
  if (!pdf.ok()) return Error(500, "the stored PDF copy cannot be read: " + pdf.status().message());
  HttpResponse r;
  r.content_type = "application/pdf";
  r.body = std::move(pdf.value());
  return r;
}

}  // namespace teleread
