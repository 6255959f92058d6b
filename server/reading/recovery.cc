#include "server/reading/recovery.h"

#include <algorithm>
#include <optional>
#include <vector>

#include "common/log.h"
#include "server/store/segment_trailer.h"

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

// Segments in the order they were made: "<start time>-<pid>-<n>.seg" by start, then by n.
bool MadeBefore(const std::string& a, const std::string& b) {
  const size_t da = a.rfind('-'), db = b.rfind('-');
  if (da == std::string::npos || db == std::string::npos || a.compare(0, da, b, 0, db) != 0) return a < b;
  const std::string na = a.substr(da + 1), nb = b.substr(db + 1);
  return na.size() != nb.size() ? na.size() < nb.size() : na < nb;
}

// The objects of each segment past the last one a row names: stored between the two steps of a
// backup (the index restored first, store/README.md), synced before a crash cut their commit
// off, or whose unsynced commit a power cut took (index.h, Durability). Each goes through Ingest
// as if its sender had sent it again, with the SOP Class and Instance UIDs of its C-STORE request
// (its meta header), so the same checks decide.
Status RecoverSegmentObjects(ObjectStore& store, Index& index, Ingest& ingest, const Config& config,
                             RecoveryReport& report) {
  const std::filesystem::path dir = store.Absolute("segments");
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return Status::Ok();
  std::vector<std::string> names;
  bool written = false;
  for (const std::filesystem::directory_entry& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".seg" || !e.is_regular_file(ec)) continue;
    names.push_back(e.path().filename().string());
    written |= e.file_size(ec) > 0;
  }
  if (ec) return Status::IOError("cannot list " + dir.string() + ": " + ec.message());
  Result<std::string> key = SegmentTrailerKey(dir, false);
  if (!key.ok()) {
    // Segments written before trailers have none; segments restored without their key cannot be
    // read for objects without a row any more.
    if (written) {
      spdlog::warn(
          "recovery: segments not read for objects without an index row: {} (restore "
          "segments/trailer.key from the backup if it was lost)",
          key.status().ToString());
    }
    return Status::Ok();
  }
  std::sort(names.begin(), names.end(), MadeBefore);
  for (const std::string& name : names) {
    Result<std::string> last = index.LastPathInSegment("segments/" + name);
    if (!last.ok()) return last.status();
    uint64_t from = 0;
    if (!last->empty()) {
      std::string segment;
      uint64_t offset = 0, length = 0;
      if (!ObjectStore::ParseInSegmentPath(last.value(), &segment, &offset, &length)) {
        spdlog::error("recovery: segments/{} not read: malformed path in the index: {}", name, last.value());
        continue;
      }
      // Past its bytes (a segment written before trailers has none after them).
      from = (offset + length + SegmentPool::kAlign - 1) / SegmentPool::kAlign * SegmentPool::kAlign;
    }
    Result<SegmentScan> found = FindSegmentObjects(dir / name, from, SegmentPool::kAlign, key.value());
    if (!found.ok()) {  // one unreadable segment does not keep the server from starting
      spdlog::error("recovery: segments/{} not read: {}", name, found.status().ToString());
      continue;
    }
    if (found->damaged > 0) {
      spdlog::error(
          "recovery: segments/{} holds {} object(s) past its last indexed one whose bytes do not match "
          "their trailer: not indexed",
          name, found->damaged);
      report.segment_objects_damaged += found->damaged;
    }
    // Their bytes may have reached only the page cache (a process killed before its sync): on the
    // disk before any row names them.
    if (!found->objects.empty()) {
      if (Status synced = SyncPath(dir / name); !synced.ok()) {
        spdlog::error("recovery: segments/{} not read: {}", name, synced.ToString());
        continue;
      }
    }
    for (const SegmentTrailer& t : found->objects) {
      StoreRequest request;
      request.segment_object = ObjectStore::InSegmentPathFor(name, t.offset, t.length);
      request.segment_synced = true;
      Result<InstanceSummary> summary = ReadInstanceSummary(dir / name, ByteRange{t.offset, t.length});
      const Member* member = summary.ok() ? config.FindMemberByAeTitle(summary->source_ae_title) : nullptr;
      StoreOutcome outcome{IngestCode::kUnreadable, summary.ok() ? "" : summary.status().message(), false, 0};
      if (summary.ok() && !member) {
        // Kept as it is: the member's configuration may come back.
        outcome.error_comment = "no configured sender (AE '" + summary->source_ae_title + "')";
      } else if (member) {
        request.calling_ae_title = summary->source_ae_title;
        request.member_id = member->id;
        request.negotiated_sop_class_uid = summary->media_storage_sop_class_uid;
        request.affected_sop_instance_uid = summary->media_storage_sop_instance_uid;
        outcome = ingest.Store(request);
      }
      if (outcome.code == IngestCode::kStored && outcome.stored_new) {
        ++report.segment_objects_indexed;
        continue;
      }
      ++report.segment_objects_refused;
      spdlog::warn("recovery: {} not indexed: {}", request.segment_object,
                   outcome.code == IngestCode::kStored ? "an identical copy is indexed" : outcome.error_comment);
      if (member && ingest.SegmentCopyUnneeded(request, outcome)) {
        if (Status s = VoidSegmentTrailer(dir / name, t.offset, t.length, SegmentPool::kAlign); !s.ok()) {
          spdlog::warn("recovery: {}", s.ToString());
          ingest.KeepsSealedCopy(summary->sop_instance_uid);
        }
      } else if (summary.ok()) {
        ingest.KeepsSealedCopy(summary->sop_instance_uid);
      }
    }
  }
  // The rows indexed here durable before the first association: its copies need no bookkeeping
  // of them (Ingest::Receiving).
  return report.segment_objects_indexed > 0 ? index.SyncNow() : Status::Ok();
}

}  // namespace

Result<RecoveryReport> RecoverStorage(ObjectStore& store, Index& index, Ingest& ingest, const Config& config,
                                      int64_t now_ms) {
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
  if (Status st = RecoverSegmentObjects(store, index, ingest, config, report); !st.ok()) return st;
  Result<int64_t> missing = index.CountInIndexRowsWithoutData();
  if (!missing.ok()) return missing.status();
  report.rows_without_data = missing.value();
  if (report.rows_without_data > 0) {
    spdlog::error("recovery: {} instance row(s) kept in the index have no data", report.rows_without_data);
  }
  return report;
}

}  // namespace teleread
