#pragma once
// Signed reports for the tests, made the way the workstation makes them, and a member
// hospital's PACS (DCMTK storescp) to receive them.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/report.h"
#include "tests/support/process.h"
#include "tests/support/server_fixture.h"

class DcmDataset;

namespace teleread::test {

struct SampleStudy {
  std::string study_instance_uid;
  std::vector<std::filesystem::path> files;
  std::vector<InstanceRef> evidence;
};

// The files of one study among those written under `samples_dir`.
SampleStudy FindSampleStudy(const std::filesystem::path& samples_dir, const std::string& study_uid);

// Writes to `out` a report of `study` signed with `pki_dir`/<signer>.pem/.key; `tweak` edits the
// data set before it is signed (a report the workstation would never make, validly signed).
void WriteSignedReport(const SampleStudy& study, const std::filesystem::path& pki_dir, const std::string& signer,
                       const std::filesystem::path& out, const std::optional<InstanceRef>& predecessor = std::nullopt,
                       const std::string& findings = "右肺上叶见一直径约8mm磨玻璃结节。", bool check_validity = true,
                       const std::function<void(DcmDataset&)>& tweak = {}, bool critical = false);

// The InstanceRef of a report file, for amending it.
InstanceRef ReportRef(const std::filesystem::path& report);

// POSTs a report file to the study's reports endpoint as `who`.
HttpReply SubmitReport(const TestServer& server, const std::string& who, const std::string& study_uid,
                       const std::filesystem::path& report);

// A member's PACS: storescp on a free loopback port, writing what it receives to a directory.
// With `tls_args` (e.g. {"+tls", key, cert, "+cf", ca}) it takes DICOM TLS only.
// storescp runs with --unique-filenames: every receipt is a file of its own, so a second
// delivery of the same SOP Instance UID is counted, not overwritten.
class MemberPacs {
 public:
  MemberPacs(std::filesystem::path dir, std::string ae_title, std::vector<std::string> tls_args = {});
  void Start();
  void Stop();
  uint16_t port() const { return port_; }
  // Every receipt so far, one file each (a re-sent instance is two files).
  std::vector<std::filesystem::path> Files() const;
  // How many times this SOP Instance UID was received.
  int Received(const std::string& sop_instance_uid) const;
  // A received file holding this SOP Instance UID; empty when there is none.
  std::filesystem::path FileOf(const std::string& sop_instance_uid) const;

 private:
  // Every receipt with the SOP Instance UID it holds.
  std::vector<std::pair<std::filesystem::path, std::string>> Receipts() const;

  std::filesystem::path dir_;
  std::string ae_title_;
  std::vector<std::string> tls_args_;
  uint16_t port_;
  ChildProcess process_;
};

}  // namespace teleread::test
