// teleread-find-latency: C-FIND latency of one DICOM server (TeleRead, Orthanc, ...), measured over
// ONE association so that association setup is not part of the figure.
// Prints: query=<name> n=<N> matches=<M> p50_ms=<x> p99_ms=<y> mean_ms=<z>
// --query echo times a C-ECHO instead: the round trip under every query, for comparison.
#include "dcmtk/config/osconfig.h"  // must come first
#include "dcmtk/dcmdata/dcdeftag.h"
#include "dcmtk/dcmdata/dcdict.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmnet/scu.h"
#include "dcmtk/oflog/oflog.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

// Counts pending responses and frees them at once: keeping N datasets alive (DcmSCU's response
// list) would add allocation cost that has nothing to do with the server.
class CountingScu : public DcmSCU {
 public:
  long matches = 0;
  Uint16 final_status = 0xFFFF;

  OFCondition handleFINDResponse(const T_ASC_PresentationContextID, QRResponse* response,
                                 OFBool& wait_for_next) override {
    if (DICOM_PENDING_STATUS(response->m_status)) {
      if (response->m_dataset != nullptr) ++matches;
      wait_for_next = OFTrue;
    } else {
      final_status = response->m_status;
      wait_for_next = OFFalse;
    }
    return EC_Normal;
  }
};

// Nearest-rank percentile: a value that was actually observed.
double Percentile(const std::vector<double>& sorted, double p) {
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * sorted.size()));
  return sorted[std::min(sorted.size(), std::max<size_t>(rank, 1)) - 1];
}

int Fail(const std::string& what, const OFCondition& cond = EC_Normal) {
  std::fprintf(stderr, "teleread-find-latency: %s%s%s\n", what.c_str(), cond.bad() ? ": " : "",
               cond.bad() ? cond.text() : "");
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"C-FIND (Study Root, STUDY level) latency over one association"};
  std::string host = "127.0.0.1", calling_ae = "BENCH", called_ae = "TELEREAD", query, value;
  int port = 0, repeat = 200, warmup = 5, timeout_s = 120;
  app.add_option("--host", host, "Server host");
  app.add_option("--port", port, "Server DICOM port")->required()->check(CLI::Range(1, 65535));
  app.add_option("--aet", calling_ae, "Calling AE title");
  app.add_option("--aec", called_ae, "Called AE title");
  bool nagle = false;
  app.add_option("--query", query, "patient-id, accession, name-wildcard, uid, date-range or all")
      ->required()
      ->check(CLI::IsMember({"patient-id", "accession", "name-wildcard", "uid", "date-range", "all", "echo"}));
  app.add_option("--value", value,
                 "Matching value: a PatientID, an AccessionNumber, a PatientName like ZHANG*, a StudyInstanceUID, "
                 "a StudyDate range");
  app.add_flag("--nagle", nagle, "Leave Nagle on, as Debian's DCMTK clients do by default");
  app.add_option("--repeat", repeat, "Timed runs")->check(CLI::Range(1, 1000000));
  app.add_option("--warmup", warmup, "Untimed runs first")->check(CLI::Range(0, 1000000));
  app.add_option("--timeout", timeout_s, "Seconds to wait for any network event")->check(CLI::Range(1, 3600));
  CLI11_PARSE(app, argc, argv);
  // echo: a C-ECHO round trip on the same kind of association, the floor under any C-FIND.
  if (query != "all" && query != "echo" && value.empty()) return Fail("--query " + query + " needs --value");

  // Debian's DCMTK leaves Nagle on unless this is set, which would add delayed-ACK stalls of
  // ~40 ms to request/response exchanges; the server side has its own setting.
  if (!nagle) setenv("TCP_NODELAY", "1", 1);
  if (nagle) unsetenv("TCP_NODELAY");
  // DcmSCU logs every response at INFO; writing those lines would be part of the timed loop.
  OFLog::configure(OFLogger::WARN_LOG_LEVEL);
  if (!dcmDataDict.isDictionaryLoaded()) return Fail("no DICOM data dictionary loaded (check DCMDICTPATH)");

  DcmDataset keys;
  keys.putAndInsertString(DCM_QueryRetrieveLevel, "STUDY");
  for (const DcmTagKey& tag :
       {DCM_StudyInstanceUID, DCM_PatientName, DCM_PatientID, DCM_StudyDate, DCM_ModalitiesInStudy,
        DCM_NumberOfStudyRelatedInstances, DCM_AccessionNumber, DCM_StudyDescription}) {
    keys.insertEmptyElement(tag);
  }
  if (query == "patient-id") keys.putAndInsertString(DCM_PatientID, value.c_str());
  if (query == "name-wildcard") keys.putAndInsertString(DCM_PatientName, value.c_str());
  if (query == "date-range") keys.putAndInsertString(DCM_StudyDate, value.c_str());
  if (query == "accession") keys.putAndInsertString(DCM_AccessionNumber, value.c_str());
  if (query == "uid") keys.putAndInsertString(DCM_StudyInstanceUID, value.c_str());

  CountingScu scu;
  scu.setAETitle(calling_ae.c_str());
  scu.setPeerAETitle(called_ae.c_str());
  scu.setPeerHostName(host.c_str());
  scu.setPeerPort(static_cast<Uint16>(port));
  scu.setMaxReceivePDULength(131072);
  // Non-blocking so that a stalled server fails the run instead of hanging it.
  scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
  scu.setDIMSETimeout(timeout_s);
  scu.setACSETimeout(timeout_s);
  scu.setConnectionTimeout(timeout_s);
  OFList<OFString> syntaxes;
  syntaxes.push_back(UID_LittleEndianExplicitTransferSyntax);
  syntaxes.push_back(UID_LittleEndianImplicitTransferSyntax);
  OFCondition cond = scu.addPresentationContext(UID_FINDStudyRootQueryRetrieveInformationModel, syntaxes);
  if (cond.bad()) return Fail("cannot add presentation context", cond);
  if (query == "echo") {
    cond = scu.addPresentationContext(UID_VerificationSOPClass, syntaxes);
    if (cond.bad()) return Fail("cannot add presentation context", cond);
  }
  if ((cond = scu.initNetwork()).bad()) return Fail("cannot initialise the network", cond);
  if ((cond = scu.negotiateAssociation()).bad()) {
    return Fail("association with " + called_ae + "@" + host + ":" + std::to_string(port) + " failed", cond);
  }
  T_ASC_PresentationContextID pres_id = scu.findAnyPresentationContextID(UID_FINDStudyRootQueryRetrieveInformationModel,
                                                                         UID_LittleEndianExplicitTransferSyntax);
  if (pres_id == 0) return Fail("the server accepted no Study Root FIND presentation context");

  std::vector<double> ms;
  ms.reserve(repeat);
  for (int i = 0; i < warmup + repeat; ++i) {
    scu.matches = 0;
    scu.final_status = 0xFFFF;
    auto t0 = std::chrono::steady_clock::now();
    if (query == "echo") {
      cond = scu.sendECHORequest(0);
      scu.final_status = STATUS_Success;
    } else {
      cond = scu.sendFINDRequest(pres_id, &keys, nullptr);
    }
    auto t1 = std::chrono::steady_clock::now();
    if (cond.bad()) return Fail("C-FIND failed on run " + std::to_string(i + 1), cond);
    if (scu.final_status != STATUS_Success) {
      char status[8];
      std::snprintf(status, sizeof status, "0x%04x", scu.final_status);
      return Fail("C-FIND run " + std::to_string(i + 1) + " ended with status " + status);
    }
    if (i >= warmup) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  scu.releaseAssociation();

  double mean = 0;
  for (double x : ms) mean += x;
  mean /= ms.size();
  std::sort(ms.begin(), ms.end());
  std::printf("query=%s n=%d matches=%ld p50_ms=%.3f p99_ms=%.3f mean_ms=%.3f\n", query.c_str(), repeat, scu.matches,
              Percentile(ms, 50), Percentile(ms, 99), mean);
  return 0;
}
