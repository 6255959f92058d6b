#pragma once
// Orthanc (Debian 12's 1.10) as a member hospital's PACS: a configuration with only what a test
// needs, its REST API on a free loopback port, and a Lua filter that logs every instance it
// receives, so that a test can count transfers (Orthanc keeps one copy of a re-sent instance).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/support/process.h"

namespace teleread::test {

class OrthancPacs {
 public:
  // `extra_config`: further top-level members of Orthanc's JSON configuration, each followed
  // by a comma (TLS settings, DicomModalities).
  OrthancPacs(std::filesystem::path dir, std::string ae_title, uint16_t dicom_port, std::string extra_config = "");
  ~OrthancPacs();

  // Before Start: this instance is refused on receipt (the Lua filter returns false), as a PACS
  // that rejects an object does; it is still counted by Received.
  void Refuse(const std::string& sop_instance_uid) { refused_.push_back(sop_instance_uid); }
  // Starts Orthanc and waits until its REST API answers; FAILs the test if it does not.
  void Start();
  void Stop();

  uint16_t dicom_port() const { return dicom_port_; }
  // curl with `args`, where a leading "/" in the first argument is Orthanc's REST root.
  CommandResult Rest(std::vector<std::string> args) const;
  // Orthanc's id of the instance with this SOP Instance UID; empty when it holds none.
  std::string InstanceId(const std::string& sop_instance_uid) const;
  // How many times Orthanc has received this SOP Instance UID (by any protocol).
  int Received(const std::string& sop_instance_uid) const;
  std::string Log() const;

 private:
  std::filesystem::path dir_;
  std::string ae_title_;
  uint16_t dicom_port_, http_port_;
  std::string extra_config_;
  std::vector<std::string> refused_;
  ChildProcess process_;
};

}  // namespace teleread::test
