#include "server/recovery.h"

#include <vector>

#include "common/log.h"

namespace teleread {

Result<RecoveryReport> RecoverStorage(ObjectStore& store, Index& index, const Config& config, int64_t now_ms) {
  RecoveryReport report;
  report.temp_files_removed = store.RemoveTempFiles();
  std::vector<std::string> orphans;
  Status s = store.ForEachObject([&](const std::string& rel) {
    if (!index.HasPath(rel)) orphans.push_back(rel);
  });
  if (!s.ok()) return s;
  for (const std::string& rel : orphans) {
    std::filesystem::path path = store.Absolute(rel);
    Result<InstanceSummary> summary = ReadInstanceSummary(path);
    const Member* member = summary.ok() ? config.FindMemberByAeTitle(summary->source_ae_title) : nullptr;
    if (!member) {
      ++report.objects_unattributed;
      spdlog::error("recovery: {} has no index row and no configured sender ({}); left in place", rel,
                    summary.ok() ? "AE " + summary->source_ae_title : summary.status().message());
      continue;
    }
    std::error_code ec;
    NewInstance instance{summary.value(), member->id, summary->source_ae_title, rel,
                         std::filesystem::file_size(path, ec), now_ms};
    if (Status st = index.AddInstance(instance); !st.ok()) {
      ++report.objects_unattributed;
      spdlog::error("recovery: cannot index {}: {}", rel, st.ToString());
      continue;
    }
    ++report.objects_reindexed;
  }
  return report;
}

}  // namespace teleread
