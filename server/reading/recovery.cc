#include "server/reading/recovery.h"

#include <optional>
#include <vector>

#include "common/log.h"

namespace teleread {
namespace {

// Moved aside rather than deleted, so that the operator decides.
std::filesystem::path MoveToQuarantine(ObjectStore& store, const std::filesystem::path& path) {
  std::error_code ec;
  const std::filesystem::path aside = store.Absolute("quarantine") / path.filename();
  std::filesystem::create_directories(aside.parent_path(), ec);
  std::filesystem::rename(path, aside, ec);
  return aside;
}

}  // namespace

Result<RecoveryReport> RecoverStorage(ObjectStore& store, Index& index, const Config& config, int64_t now_ms) {
  RecoveryReport report;
  const ObjectStore::TempCleanup temp = store.RemoveTempFiles();
  report.temp_files_removed = temp.removed;
  report.temp_files_kept = temp.kept;
  std::vector<std::string> orphans;
  Status s = store.ForEachObject([&](const std::string& rel) {
    if (!index.HasPath(rel)) orphans.push_back(rel);
  });
  if (!s.ok()) return s;
  for (const std::string& rel : orphans) {
    std::filesystem::path path = store.Absolute(rel);
    Result<InstanceSummary> summary = ReadInstanceSummary(path);
    const Member* member = summary.ok() ? config.FindMemberByAeTitle(summary->source_ae_title) : nullptr;
    // Its UID indexed under another path (a cross-tier re-send cut short by a crash): a stray copy,
    // which re-indexing would refuse on every start.
    const std::optional<StoredInstance> indexed =
        summary.ok() ? index.FindInstance(summary->sop_instance_uid) : std::nullopt;
    if (indexed) {
      const std::filesystem::path aside = MoveToQuarantine(store, path);
      ++report.objects_unattributed;
      spdlog::warn("recovery: moved {} to {}: its SOP Instance UID is indexed at {}", rel, aside.string(),
                   indexed->relative_path);
      continue;
    }
    if (!member) {
      // No member to index it for: a report whose submission a crash cut short (never
      // acknowledged), a damaged file, or, after restoring an older index, a report accepted
      // since. Moved aside rather than deleted, so that the operator decides.
      const std::filesystem::path aside = MoveToQuarantine(store, path);
      ++report.objects_unattributed;
      spdlog::warn("recovery: moved {} to {}: no index row and no configured sender ({})", rel, aside.string(),
                   summary.ok() ? "AE '" + summary->source_ae_title + "'" : summary.status().message());
      continue;
    }
    std::error_code ec;
    NewInstance instance{
        summary.value(), member->id, summary->source_ae_title, rel, std::filesystem::file_size(path, ec), now_ms};
    if (Status st = index.AddInstance(instance); !st.ok()) {
      ++report.objects_unattributed;
      spdlog::error("recovery: cannot index {}: {}", rel, st.ToString());
      continue;
    }
    ++report.objects_reindexed;
  }
  Result<int64_t> missing = index.CountInIndexRowsWithoutData();
  if (!missing.ok()) return missing.status();
  report.rows_without_data = missing.value();
  if (report.rows_without_data > 0) {
    spdlog::error("recovery: {} instance row(s) kept in the index have no data", report.rows_without_data);
  }
  return report;
}

}  // namespace teleread
