#pragma once
// A C-STORE SCU that can send what storescu never would: a data set on another SOP class's
// presentation context, command UIDs that disagree with the data set, objects without UIDs.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

class DcmDataset;

namespace teleread::test {

class TestScu {
 public:
  // Proposes each SOP class with `transfer_syntaxes` (default: Explicit, then Implicit VR Little Endian).
  TestScu(uint16_t port, std::string calling_ae, std::vector<std::string> sop_classes,
          std::vector<std::string> transfer_syntaxes = {});
  ~TestScu();
  TestScu(const TestScu&) = delete;
  TestScu& operator=(const TestScu&) = delete;

  // Empty on success, else why the association failed.
  std::string Connect();

  // Sends `dataset` on the context negotiated for `context_sop_class`. The command carries
  // `command_sop_class` / `command_sop_instance`, defaulting to the data set's own values.
  // Returns the DIMSE status, or -1 when the association broke.
  int Store(DcmDataset& dataset, const std::string& context_sop_class, std::string command_sop_class = "",
            std::string command_sop_instance = "", std::string* error_comment = nullptr);

  // Sends each file's data set on `sop_class`'s context, in order (each must load): their DIMSE
  // statuses, as Store returns them; `error_comment` holds the last error comment.
  std::vector<int> StoreFiles(const std::vector<std::filesystem::path>& files, const std::string& sop_class,
                              std::string* error_comment = nullptr);

  // The transfer syntax the centre accepted for `sop_class`; empty when it refused the context.
  std::string AcceptedTransferSyntax(const std::string& sop_class) const;

  void Release();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace teleread::test
