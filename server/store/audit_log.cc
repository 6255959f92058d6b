#include "server/store/audit_log.h"

#include <openssl/evp.h>

#include "common/log.h"
#include "server/store/index.h"
#include "server/store/sqlite.h"

namespace teleread {
namespace {

// Every field with its length in front, so that no two different entries read the same
// ("a|b" + "c" versus "a" + "b|c").
std::string Canonical(int64_t id, int64_t at_ms, const AuditEntry& e) {
  std::string out;
  auto field = [&out](const std::string& v) {
    out += std::to_string(v.size());
    out += ':';
    out += v;
    out += ';';
  };
  field(std::to_string(id));
  field(std::to_string(at_ms));
  field(e.actor);
  field(e.action);
  field(e.study_instance_uid);
  field(e.detail);
  return out;
}

std::string ChainHash(const std::string& prev_hash, const std::string& canonical) {
  const std::string input = prev_hash + "\n" + canonical;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &len, EVP_sha256(), nullptr) != 1) return "";
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

Result<AuditHead> ReadHead(Database& db) {
  CachedStatement last(db, "SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1");
  Result<bool> row = last->Step();
  if (!row.ok()) return row.status();
  if (!row.value()) return AuditHead{};
  return AuditHead{last->Int(0), last->Text(1)};
}

Status Insert(Database& db, int64_t at_ms, const AuditEntry& e) {
  Result<AuditHead> head = ReadHead(db);
  if (!head.ok()) return head.status();
  const int64_t id = head->id + 1;
  const std::string hash = ChainHash(head->hash, Canonical(id, at_ms, e));
  if (hash.empty()) return Status::IOError("audit entry: SHA-256 failed");
  CachedStatement a(db,
                    "INSERT INTO audit_log (id, at_ms, actor, action, study_instance_uid, detail, prev_hash, hash) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  return a->Bind(1, id)
      .Bind(2, at_ms)
      .Bind(3, e.actor)
      .Bind(4, e.action)
      .Bind(5, e.study_instance_uid)
      .Bind(6, e.detail)
      .Bind(7, head->hash)
      .Bind(8, hash)
      .Run();
}

}  // namespace

Status AppendAudit(Database& db, int64_t at_ms, const AuditEntry& e) {
  // Unavailable, whatever SQLite said: a refused insert (SQLITE_CONSTRAINT) must not read as a
  // conflict of the change it records (a claim "held by" SQLite's message).
  if (Status s = Insert(db, at_ms, e); !s.ok()) {
    spdlog::error("audit entry '{}' not written: {}", e.action, s.ToString());
    return Status::Unavailable("the audit trail cannot be written, so nothing was done");
  }
  return Status::Ok();
}

Status AuditLog::Append(const AuditEntry& entry) {
  const int64_t now = clock_();
  return index_.Write([&](Database& db) { return AppendAudit(db, now, entry); });
}

std::future<Status> AuditLog::AppendAsync(AuditEntry entry) {
  const int64_t now = clock_();
  return index_.WriteAsync([now, entry = std::move(entry)](Database& db) { return AppendAudit(db, now, entry); });
}

Result<AuditHead> AuditLog::Head() {
  AuditHead head;
  Status s = index_.Write([&](Database& db) {
    Result<AuditHead> h = ReadHead(db);
    if (!h.ok()) return h.status();
    head = h.value();
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return head;
}

Status ForEachAuditEntry(const std::filesystem::path& index_path,
                         const std::function<void(const StoredAuditEntry&)>& each) {
  Result<std::unique_ptr<Database>> db = Database::Open(index_path, true);
  if (!db.ok()) return db.status();
  Statement q(
      db.value()->handle(),
      "SELECT id, at_ms, actor, action, study_instance_uid, detail, prev_hash, hash FROM audit_log ORDER BY id");
  for (;;) {
    Result<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) return Status::Ok();
    each(StoredAuditEntry{q.Int(0), q.Int(1), {q.Text(2), q.Text(3), q.Text(4), q.Text(5)}, q.Text(6), q.Text(7)});
  }
}

Result<AuditVerdict> VerifyAuditTrail(const std::filesystem::path& index_path) {
  AuditVerdict v;
  std::string prev;  // the previous entry's hash
  bool chained = false;
  Status s = ForEachAuditEntry(index_path, [&](const StoredAuditEntry& e) {
    ++v.entries;
    v.head = {e.id, e.hash};
    if (v.first_broken_id) return;
    auto broken = [&](const std::string& why) {
      v.first_broken_id = e.id;
      v.problem = why;
    };
    if (!chained && e.hash.empty() && e.prev_hash.empty()) {
      ++v.unchained;  // older than the chain: nothing to check
      return;
    }
    chained = true;
    if (e.prev_hash != prev) {
      broken("it does not follow the entry before it (an entry was removed, inserted or changed before it)");
    } else if (e.hash != ChainHash(e.prev_hash, Canonical(e.id, e.at_ms, e.entry))) {
      broken("its content does not match its hash (the entry was changed)");
    }
    prev = e.hash;
  });
  if (!s.ok()) return s;
  return v;
}

}  // namespace teleread
