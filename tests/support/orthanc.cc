#include "tests/support/orthanc.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <signal.h>

namespace fs = std::filesystem;

namespace teleread::test {
namespace {
constexpr char kReceivedMark[] = "teleread-test received ";
}

OrthancPacs::OrthancPacs(fs::path dir, std::string ae_title, uint16_t dicom_port, std::string extra_config)
    : dir_(std::move(dir)),
      ae_title_(std::move(ae_title)),
      dicom_port_(dicom_port),
      http_port_(FreePort()),
      extra_config_(std::move(extra_config)) {}

OrthancPacs::~OrthancPacs() { Stop(); }

void OrthancPacs::Start() {
  fs::create_directories(dir_);
  std::string refuse;
  for (const std::string& uid : refused_)
    refuse += "  if dicom.SOPInstanceUID == '" + uid + "' then return false end\n";
  WriteFile(dir_ / "received.lua", std::string(R"(function ReceivedInstanceFilter(dicom, origin, info)
  print(')") + kReceivedMark + R"(' .. dicom.SOPInstanceUID)
)" + refuse + R"(  return true
end
)");
  WriteFile(dir_ / "orthanc.json", R"({
  "Name": ")" + ae_title_ + R"(", "StorageDirectory": ")" +
                                       (dir_ / "storage").string() + R"(",
  "IndexDirectory": ")" + (dir_ / "index").string() +
                                       R"(",
  "DicomServerEnabled": true, "DicomAet": ")" +
                                       ae_title_ + R"(", "DicomPort": )" + std::to_string(dicom_port_) + R"(,
  "DicomCheckCalledAet": false, "DicomAlwaysAllowStore": true, "DicomAlwaysAllowEcho": true,
  "DicomAlwaysAllowFind": true,
  "LuaScripts": [")" + (dir_ / "received.lua").string() +
                                       R"("],
  )" + extra_config_ + R"(
  "HttpServerEnabled": true, "HttpPort": )" +
                                       std::to_string(http_port_) + R"(,
  "RemoteAccessAllowed": false, "AuthenticationEnabled": false
})");
  ReleasePort(dicom_port_);  // reserved by FreePort until now
  ReleasePort(http_port_);
  process_.Start({ORTHANC_BIN, (dir_ / "orthanc.json").string()}, dir_ / "orthanc.log");
  if (!WaitFor([&] { return Rest({"/system"}).exit_code == 0; }, 30)) {
    FAIL("Orthanc did not start:\n" << ReadFile(dir_ / "orthanc.json") << "\n" << Log());
  }
}

void OrthancPacs::Stop() {
  if (process_.running()) process_.Stop(SIGTERM);
}

CommandResult OrthancPacs::Rest(std::vector<std::string> args) const {
  if (!args.empty() && !args[0].empty() && args[0][0] == '/') {
    args[0] = "http://127.0.0.1:" + std::to_string(http_port_) + args[0];
  }
  args.insert(args.begin(), {"/usr/bin/curl", "-sS", "--fail", "--max-time", "60"});
  return RunCommand(args, std::chrono::seconds(60));
}

std::string OrthancPacs::InstanceId(const std::string& sop_instance_uid) const {
  CommandResult r = Rest({"/tools/lookup", "-X", "POST", "-d", sop_instance_uid});
  if (r.exit_code != 0) return "";
  for (const nlohmann::json& hit : nlohmann::json::parse(r.output)) {
    if (hit["Type"] == "Instance") return hit["ID"];
  }
  return "";
}

int OrthancPacs::Received(const std::string& sop_instance_uid) const {
  return CountOccurrences(Log(), kReceivedMark + sop_instance_uid + "\n");
}

std::string OrthancPacs::Log() const { return ReadFile(dir_ / "orthanc.log"); }

}  // namespace teleread::test
