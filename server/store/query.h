#pragma once
// C-FIND matching and C-MOVE/C-GET selection over the SQLite index (PS3.4 C.2.2.2), with the
// caller's scope applied inside the SQL: a member hospital's query never reads another
// member's rows. Plain C++: tags are numbers, values UTF-8; the DICOM side is qr_scp.cc.
//
// Thread-safety: a QueryEngine may be shared; each Find/Retrieve uses its own connection.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "server/store/reader_pool.h"

namespace teleread {

class CachedStatement;
class Database;

enum class QrLevel { kPatient = 0, kStudy = 1, kSeries = 2, kImage = 3 };

// "PATIENT", "STUDY", "SERIES", "IMAGE" -> level; nullopt for anything else.
std::optional<QrLevel> ParseQrLevel(std::string_view text);

struct QrKey {
  uint32_t tag = 0;   // (group << 16) | element
  std::string value;  // UTF-8; empty: universal matching (return key only)
};

struct FindRequest {
  QrLevel level = QrLevel::kStudy;
  std::vector<QrKey> keys;
  std::string member_scope;  // member id; empty: every member (centre AE titles)
};

// One match: a value for each requested attribute the index knows at the request's level and above.
using FindRow = std::vector<std::pair<uint32_t, std::string>>;

class FindCursor {
 public:
  FindCursor(PooledReader db, std::unique_ptr<CachedStatement> query, std::vector<uint32_t> columns);
  ~FindCursor();  // gives the connection back to the pool
  // False when there are no more matches.
  Result<bool> Next(FindRow* row);

 private:
  PooledReader db_;
  std::unique_ptr<CachedStatement> query_;  // kept by its connection for the next query of the same form
  std::vector<uint32_t> columns_;
};

struct RetrieveItem {
  std::string sop_class_uid;
  std::string sop_instance_uid;
  std::string transfer_syntax_uid;
  std::string relative_path;
};

class QueryEngine {
 public:
  // `statistics`: the index's (Index::statistics_epoch), so that queries plan with its latest.
  explicit QueryEngine(std::filesystem::path db_path, ReaderPool::StatisticsEpoch statistics = nullptr)
      : pool_(ReaderPool::Create(std::move(db_path), 8, std::move(statistics))) {}
  // Reading through `pool` (a test looks at the statements its connections keep).
  explicit QueryEngine(std::shared_ptr<ReaderPool> pool) : pool_(std::move(pool)) {}

  Result<std::unique_ptr<FindCursor>> Find(const FindRequest& request) const;

  // The instances a C-MOVE/C-GET identifier selects within the scope. The identifier must carry
  // the unique key of its level, non-empty (and may narrow with the keys above), and no unique key
  // may hold a wildcard; InvalidArgument, naming the key, otherwise.
  Result<std::vector<RetrieveItem>> Retrieve(const FindRequest& request) const;

  // SQLite's plan for the request, one line per step (for tests and the benchmark).
  Result<std::string> ExplainFind(const FindRequest& request) const;

  // Whether the index has this attribute at or above `level` (others are returned empty).
  static bool Knows(uint32_t tag, QrLevel level);

 private:
  std::shared_ptr<ReaderPool> pool_;  // shared with open cursors, which may outlive a query
};

}  // namespace teleread
