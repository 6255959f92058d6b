#include "tests/support/stored.h"

#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "server/store/object_store.h"
#include "tests/support/process.h"

namespace teleread::test {
namespace {

struct ReadOnlyIndex {
  explicit ReadOnlyIndex(const std::filesystem::path& root, int flags = SQLITE_OPEN_READONLY) {
    if (sqlite3_open_v2((root / "index.sqlite").c_str(), &db, flags, nullptr) != SQLITE_OK) {
      sqlite3_close(db);
      db = nullptr;
    }
  }
  ~ReadOnlyIndex() { sqlite3_close(db); }
  sqlite3* db = nullptr;
};

bool InSegment(const std::string& relative_path) { return relative_path.rfind("segments/", 0) == 0; }

// "segments/<name>@<offset>+<length>": that range of the segment file, found as the server finds it.
std::string SegmentBytes(const std::filesystem::path& storage_root, const std::string& relative_path) {
  Result<ObjectHandle> range = ObjectStore(storage_root).Open(relative_path);
  if (!range.ok()) return "";
  std::ifstream in(range->path(), std::ios::binary);
  std::string out(range->length(), '\0');
  if (!in.seekg(static_cast<std::streamoff>(range->offset())) ||
      !in.read(out.data(), static_cast<std::streamsize>(out.size()))) {
    return "";
  }
  return out;
}

size_t CountRows(const std::filesystem::path& storage_root, const char* sql) {
  ReadOnlyIndex index(storage_root);
  if (!index.db) return 0;
  sqlite3_stmt* q = nullptr;
  size_t n = 0;
  if (sqlite3_prepare_v2(index.db, sql, -1, &q, nullptr) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW) {
    n = static_cast<size_t>(sqlite3_column_int64(q, 0));
  }
  sqlite3_finalize(q);
  return n;
}

}  // namespace

std::string StoredBytes(const std::filesystem::path& storage_root, const std::string& relative_path) {
  if (InSegment(relative_path)) return SegmentBytes(storage_root, relative_path);
  if (relative_path.rfind("index:", 0) != 0) {
    std::error_code ec;
    return std::filesystem::exists(storage_root / relative_path, ec) ? ReadFile(storage_root / relative_path) : "";
  }
  ReadOnlyIndex index(storage_root);
  if (!index.db) return "";
  sqlite3_stmt* q = nullptr;
  std::string out;
  if (sqlite3_prepare_v2(index.db,
                         "SELECT d.bytes FROM instances i JOIN object_data d ON d.instance_id = i.id WHERE i.path = ?1",
                         -1, &q, nullptr) == SQLITE_OK) {
    sqlite3_bind_text(q, 1, relative_path.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(q) == SQLITE_ROW) {
      out.assign(static_cast<const char*>(sqlite3_column_blob(q, 0)), static_cast<size_t>(sqlite3_column_bytes(q, 0)));
    }
  }
  sqlite3_finalize(q);
  return out;
}

std::set<std::string> InIndexPaths(const std::filesystem::path& storage_root) {
  std::set<std::string> out;
  ReadOnlyIndex index(storage_root);
  if (!index.db) return out;
  sqlite3_stmt* q = nullptr;
  if (sqlite3_prepare_v2(index.db, "SELECT i.path FROM instances i JOIN object_data d ON d.instance_id = i.id", -1, &q,
                         nullptr) == SQLITE_OK) {
    while (sqlite3_step(q) == SQLITE_ROW) out.insert(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)));
  }
  sqlite3_finalize(q);
  return out;
}

std::set<std::string> InSegmentPaths(const std::filesystem::path& storage_root) {
  std::set<std::string> out;
  std::vector<std::string> rows;
  {
    ReadOnlyIndex index(storage_root);
    if (!index.db) return out;
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(index.db, "SELECT path FROM instances WHERE path LIKE 'segments/%'", -1, &q, nullptr) ==
        SQLITE_OK) {
      while (sqlite3_step(q) == SQLITE_ROW) rows.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)));
    }
    sqlite3_finalize(q);
  }
  // Open refuses a range past its segment's end (IOError) and a missing segment (NotFound).
  const ObjectStore store(storage_root);
  for (const std::string& path : rows) {
    if (store.Open(path).ok()) out.insert(path);
  }
  return out;
}

std::filesystem::path StoredFileFor(const std::filesystem::path& storage_root, const std::string& sop_uid,
                                    const std::filesystem::path& scratch) {
  std::string path;
  {
    ReadOnlyIndex index(storage_root);
    if (!index.db) return {};
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(index.db, "SELECT path FROM instances WHERE sop_instance_uid = ?1", -1, &q, nullptr) ==
        SQLITE_OK) {
      sqlite3_bind_text(q, 1, sop_uid.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(q) == SQLITE_ROW) path = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
    }
    sqlite3_finalize(q);
  }
  if (path.empty()) return {};
  if (path.rfind("index:", 0) != 0 && !InSegment(path)) return storage_root / path;
  const std::string bytes = StoredBytes(storage_root, path);
  if (bytes.empty()) return {};
  std::filesystem::create_directories(scratch);
  const std::filesystem::path out = scratch / ((InSegment(path) ? "segment-" + sop_uid : path.substr(6)) + ".dcm");
  WriteFile(out, bytes);
  return out;
}

bool RemoveStoredObject(const std::filesystem::path& storage_root, const std::string& relative_path) {
  if (InSegment(relative_path)) return false;  // its segment holds others too: not lost alone
  if (relative_path.rfind("index:", 0) != 0) return std::filesystem::remove(storage_root / relative_path);
  ReadOnlyIndex index(storage_root, SQLITE_OPEN_READWRITE);
  if (!index.db) return false;
  sqlite3_busy_timeout(index.db, 10000);
  sqlite3_stmt* q = nullptr;
  bool removed = false;
  if (sqlite3_prepare_v2(index.db,
                         "DELETE FROM object_data WHERE instance_id = (SELECT id FROM instances WHERE path = ?1)", -1,
                         &q, nullptr) == SQLITE_OK) {
    sqlite3_bind_text(q, 1, relative_path.c_str(), -1, SQLITE_TRANSIENT);
    removed = sqlite3_step(q) == SQLITE_DONE && sqlite3_changes(index.db) == 1;
  }
  sqlite3_finalize(q);
  return removed;
}

size_t InIndexObjectCount(const std::filesystem::path& storage_root) {
  return CountRows(storage_root, "SELECT COUNT(*) FROM object_data");
}

size_t InSegmentObjectCount(const std::filesystem::path& storage_root) {
  return CountRows(storage_root, "SELECT COUNT(*) FROM instances WHERE path LIKE 'segments/%'");
}

size_t StoredObjectCount(const std::filesystem::path& storage_root) {
  std::error_code ec;
  const size_t files =
      std::filesystem::exists(storage_root / "objects", ec) ? CountFiles(storage_root / "objects", true) : 0;
  return files + InIndexObjectCount(storage_root) + InSegmentObjectCount(storage_root);
}

std::string DataSetBytes(const std::string& part10) {
  REQUIRE(part10.size() > 144);
  REQUIRE(part10.substr(128, 4) == "DICM");
  uint32_t meta = 0;
  for (int i = 3; i >= 0; --i) meta = meta << 8 | static_cast<unsigned char>(part10[140 + i]);
  return part10.substr(144 + meta);
}

std::vector<std::filesystem::path> ListFiles(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) out.push_back(e.path());
  }
  return out;
}

}  // namespace teleread::test
