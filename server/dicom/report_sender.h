#pragma once
// Report delivery over DICOM: a C-STORE to the member's delivery AE (with DICOM TLS where the
// target asks for it), preceded on a re-send by a C-FIND asking whether the member holds it.
//
// Thread-safety: Send may be called from any thread; each call opens its own association.
#include <string>

#include "server/reading/outbox.h"

namespace teleread {

class DicomTls;

class DicomReportSender : public ReportSender {
 public:
  // `tls` (may be null: no DICOM TLS) outlives this.
  DicomReportSender(std::string calling_ae_title, int timeout_seconds, const DicomTls* tls)
      : calling_ae_title_(std::move(calling_ae_title)), timeout_seconds_(timeout_seconds), tls_(tls) {}

  SendResult Send(const DeliveryTarget& target, const OutgoingReport& report, bool may_hold,
                  const std::function<Status()>& begin) override;

 private:
  std::string calling_ae_title_;
  int timeout_seconds_;
  const DicomTls* tls_;
};

}  // namespace teleread
