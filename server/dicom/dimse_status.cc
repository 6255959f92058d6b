#include "server/dicom/dimse_status.h"

#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdatset.h"
#include "dcmtk/dcmdata/dcdeftag.h"

#include <cstdio>

namespace teleread::dimse {

uint16_t ForIngest(IngestCode code) {
  switch (code) {
    case IngestCode::kStored:
      return kSuccess;
    case IngestCode::kDifferentContent:
      return kDuplicateSopInstance;
    case IngestCode::kNotAuthorized:
      return kNotAuthorized;
    case IngestCode::kNoStorage:
      return kOutOfResources;
    case IngestCode::kDoesNotMatch:
      return kDataSetDoesNotMatchSopClass;
    case IngestCode::kUnreadable:
      return kCannotUnderstand;
  }
  return kCannotUnderstand;
}

std::string Hex(uint16_t status) {
  char hex[8];
  std::snprintf(hex, sizeof hex, "%04X", status);
  return hex;
}

std::string ErrorCommentValue(const std::string& comment) { return comment.substr(0, 64); }

void SetErrorComment(DcmDataset& detail, const std::string& comment) {
  detail.putAndInsertString(DCM_ErrorComment, ErrorCommentValue(comment).c_str());
}

}  // namespace teleread::dimse
