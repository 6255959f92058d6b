#include "server/dicom/report_sender.h"

#include <cstdio>

#include "common/log.h"
#include "server/dicom/dicom_tls.h"
#include "server/dicom/dimse_status.h"
#include "server/dicom/store_scu.h"

namespace teleread {

SendResult DicomReportSender::Send(const DeliveryTarget& target, const OutgoingReport& report, bool may_hold,
                                   const std::function<Status()>& begin) {
  SendResult result;
  StoreScu scu(calling_ae_title_, target, timeout_seconds_, tls_ ? tls_->ClientLayer(target) : nullptr);
  if (Status s = scu.Connect({{report.sop_class_uid, report.transfer_syntax_uid}}, may_hold); !s.ok()) {
    result.error = s.message();
    return result;
  }
  if (Status begun = begin(); !begun.ok()) {
    result.error = begun.message();
    scu.Release();
    return result;
  }
  if (may_hold) {
    Result<bool> held = scu.Holds(report.study_instance_uid, report.series_instance_uid, report.sop_instance_uid);
    if (held.ok()) {
      result.already_held = held.value();
    } else {
      spdlog::info(
          "report {} to {}: an earlier attempt may have reached it, but it cannot say ({}); sending "
          "again with the same SOP Instance UID",
          report.sop_instance_uid, target.ae_title, held.status().message());
    }
  }
  if (!result.already_held) {
    StoreResult r = scu.Store(report.file, report.sop_class_uid, report.sop_instance_uid, report.transfer_syntax_uid);
    if (!dimse::CountsAsStored(r.status)) {
      result.error = r.error.empty() ? "refused with status 0x" + dimse::Hex(r.status) : r.error;
    }
  }
  scu.Release();
  return result;
}

}  // namespace teleread
