#include "server/store/query.h"

#include "server/store/sqlite.h"

#include <algorithm>
#include <iterator>
#include <optional>

#include "common/text.h"

namespace teleread {
namespace {

enum class Match {
  kNone,         // return key only
  kText,         // single value or wildcard, case-sensitive
  kIndexedText,  // kText on an indexed TEXT column: a wildcard's literal head is a range on it
  kUid,          // list of UIDs
  kDate,         // DA range
  kTime,         // TM range
  kPatientName,  // PN, case-insensitive, any component group, by index
  kPersonName,   // PN, case-insensitive, scanned
  kModalities,   // ModalitiesInStudy: any listed modality among the study's series
};

struct Attribute {
  uint32_t tag;
  QrLevel level;
  const char* column;  // SQL expression over p, st, se, i
  Match match;
};

constexpr Attribute kAttributes[] = {
    {0x00100010, QrLevel::kPatient, "p.patient_name", Match::kPatientName},
    {0x00100020, QrLevel::kPatient, "p.patient_id", Match::kIndexedText},
    {0x00100021, QrLevel::kPatient, "p.issuer_of_patient_id", Match::kText},
    {0x00100030, QrLevel::kPatient, "p.birth_date", Match::kDate},
    {0x00100040, QrLevel::kPatient, "p.sex", Match::kText},
    {0x00101000, QrLevel::kPatient, "p.other_patient_ids", Match::kText},
    {0x00201200, QrLevel::kPatient, "(SELECT COUNT(*) FROM studies x WHERE x.patient_pk = p.id)", Match::kNone},
    {0x00201202, QrLevel::kPatient,
     "(SELECT CAST(TOTAL(num_series) AS INTEGER) FROM studies x WHERE x.patient_pk = p.id)", Match::kNone},
    {0x00201204, QrLevel::kPatient,
     "(SELECT CAST(TOTAL(num_instances) AS INTEGER) FROM studies x WHERE x.patient_pk = p.id)", Match::kNone},
    {0x0020000D, QrLevel::kStudy, "st.study_instance_uid", Match::kUid},
    {0x00080020, QrLevel::kStudy, "st.study_date", Match::kDate},
    {0x00080030, QrLevel::kStudy, "st.study_time", Match::kTime},
    {0x00080050, QrLevel::kStudy, "st.accession_number", Match::kIndexedText},
    {0x00200010, QrLevel::kStudy, "st.study_id", Match::kText},
    {0x00081030, QrLevel::kStudy, "st.study_description", Match::kText},
    {0x00080090, QrLevel::kStudy, "st.referring_physician_name", Match::kPersonName},
    {0x00080080, QrLevel::kStudy, "st.institution_name", Match::kText},
    {0x00101010, QrLevel::kStudy, "st.patient_age", Match::kText},
    {0x00080061, QrLevel::kStudy, "st.modalities", Match::kModalities},
    {0x00201206, QrLevel::kStudy, "st.num_series", Match::kNone},
    {0x00201208, QrLevel::kStudy, "st.num_instances", Match::kNone},
    {0x0020000E, QrLevel::kSeries, "se.series_instance_uid", Match::kUid},
    {0x00080060, QrLevel::kSeries, "se.modality", Match::kIndexedText},
    {0x00200011, QrLevel::kSeries, "se.series_number", Match::kText},
    {0x0008103E, QrLevel::kSeries, "se.series_description", Match::kText},
    {0x00180015, QrLevel::kSeries, "se.body_part_examined", Match::kText},
    {0x00201209, QrLevel::kSeries, "se.num_instances", Match::kNone},
    {0x00080018, QrLevel::kImage, "i.sop_instance_uid", Match::kUid},
    {0x00080016, QrLevel::kImage, "i.sop_class_uid", Match::kUid},
    {0x00200013, QrLevel::kImage, "i.instance_number", Match::kText},
};

const Attribute* FindAttribute(uint32_t tag) {
  for (const Attribute& a : kAttributes) {
    if (a.tag == tag) return &a;
  }
  return nullptr;
}

const char* FromClause(QrLevel level) {
  switch (level) {
    case QrLevel::kPatient:
      return " FROM patients p";
    case QrLevel::kStudy:
      return " FROM studies st JOIN patients p ON p.id = st.patient_pk";
    case QrLevel::kSeries:
      return " FROM series se JOIN studies st ON st.id = se.study_pk JOIN patients p ON p.id = st.patient_pk";
    case QrLevel::kImage:
      return " FROM instances i JOIN series se ON se.id = i.series_pk JOIN studies st ON st.id = se.study_pk"
             " JOIN patients p ON p.id = st.patient_pk";
  }
  return "";
}

bool HasWildcard(std::string_view v) { return v.find_first_of("*?") != std::string_view::npos; }

// DICOM's * and ? are GLOB's; a literal [ must not open a GLOB character class.
std::string GlobPattern(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '[') {
      out += "[[]";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Trim(std::string_view v) {
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  return std::string(v);
}

struct Sql {
  std::string where;
  std::vector<std::string> binds;

  void And(const std::string& condition) { where += (where.empty() ? " WHERE " : " AND ") + condition; }
  std::string Param(std::string value) {
    binds.push_back(std::move(value));
    return "?" + std::to_string(binds.size());
  }
};

// The least string above every string that starts with `head`, bytes compared as BINARY does;
// empty when there is none (a head of 0xFF bytes only).
std::string PastPrefix(std::string head) {
  while (!head.empty() && static_cast<unsigned char>(head.back()) == 0xFF) head.pop_back();
  if (!head.empty()) head.back() = static_cast<char>(static_cast<unsigned char>(head.back()) + 1);
  return head;
}

// Whether `s` is strict UTF-8 (no overlong form, surrogate or stray byte) without U+FFFD, the
// character GLOB reads for each stray byte: only then does every string GLOB matches to a head
// start with the head's bytes.
bool PlainUtf8(std::string_view s) {
  static constexpr uint32_t kLeast[] = {0, 0, 0x80, 0x800, 0x10000};
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    const size_t n = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t c = n == 1 ? b : b & (0x7Fu >> n);
    for (size_t k = 1; k < n; ++k) {
      const auto t = static_cast<unsigned char>(s[i + k]);
      if ((t & 0xC0) != 0x80) return false;
      c = (c << 6) | (t & 0x3Fu);
    }
    if (c < kLeast[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF) || c == 0xFFFD) return false;
    i += n;
  }
  return true;
}

// `col GLOB pattern`, and the pattern's literal head as a range that an index on `col` (TEXT
// affinity: the bounds compare as text) takes. SQLite finds that range itself in a bound pattern
// only by preparing the statement again for each pattern; query connections turn that off (QPSG,
// in Prepare), so that a wildcard form is kept like any other.
std::string GlobOnIndex(Sql& sql, const std::string& col, const std::string& pattern) {
  const std::string head = pattern.substr(0, pattern.find_first_of("*?["));
  std::string out;
  if (!head.empty() && PlainUtf8(head)) {
    out += col + " >= " + sql.Param(head) + " AND ";
    if (std::string past = PastPrefix(head); !past.empty()) out += col + " < " + sql.Param(std::move(past)) + " AND ";
  }
  return out + col + " GLOB " + sql.Param(pattern);
}

std::string Digits(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c >= '0' && c <= '9') out += c;
  }
  return out;
}

// "A-B", "A-", "-B" or "A" over an expression whose values compare as strings.
Status RangeCondition(Sql& sql, const std::string& expr, const std::string& value, bool time) {
  auto normal = [time](std::string_view v, char pad) {
    std::string d = Digits(v);
    if (!time) return d;
    if (d.size() > 6) d.resize(6);
    return d + std::string(6 - d.size(), pad);
  };
  const std::string col = time ? "substr(" + expr + " || '000000', 1, 6)" : expr;
  size_t dash = value.find('-');
  if (dash == std::string::npos) {
    std::string v = Digits(value);
    if (v.empty()) return Status::InvalidArgument("bad date/time value '" + value + "'");
    if (time) {
      sql.And(expr + " <> '' AND " + col + " BETWEEN " + sql.Param(normal(value, '0')) + " AND " +
              sql.Param(normal(value, '9')));
    } else {
      sql.And(expr + " = " + sql.Param(v));
    }
    return Status::Ok();
  }
  std::string low = normal(std::string_view(value).substr(0, dash), '0');
  std::string high = normal(std::string_view(value).substr(dash + 1), '9');
  if (Digits(value.substr(0, dash)).empty()) low.clear();
  if (Digits(value.substr(dash + 1)).empty()) high.clear();
  if (low.empty() && high.empty()) return Status::InvalidArgument("bad range '" + value + "'");
  sql.And(expr + " <> ''");
  if (!low.empty()) sql.And(col + " >= " + sql.Param(low));
  if (!high.empty()) sql.And(col + " <= " + sql.Param(high));
  return Status::Ok();
}

// `member`: the bound member id placeholder when the query is scoped, else empty.
Status AddCondition(Sql& sql, const Attribute& a, const std::string& raw, const std::string& member) {
  const std::string value = Trim(raw);
  if (value.empty() || value == "*") return Status::Ok();  // universal matching
  const std::string col = a.column;
  switch (a.match) {
    case Match::kNone:
      return Status::Ok();
    case Match::kText:
      sql.And(col + (HasWildcard(value) ? " GLOB " + sql.Param(GlobPattern(value)) : " = " + sql.Param(value)));
      return Status::Ok();
    case Match::kIndexedText:
      sql.And(HasWildcard(value) ? GlobOnIndex(sql, col, GlobPattern(value)) : col + " = " + sql.Param(value));
      return Status::Ok();
    case Match::kUid: {
      std::vector<std::string> uids = SplitNonEmpty(value, '\\');
      std::string list;
      for (const std::string& u : uids) list += (list.empty() ? "" : ", ") + sql.Param(Trim(u));
      sql.And(col + " IN (" + list + ")");
      return Status::Ok();
    }
    case Match::kDate:
      return RangeCondition(sql, col, value, false);
    case Match::kTime:
      return RangeCondition(sql, col, value, true);
    case Match::kPatientName:
    case Match::kPersonName: {
      // The first non-empty component group of the query is matched against each stored group.
      std::vector<std::string> groups = PersonNameKeys(value);
      if (groups.empty()) return Status::Ok();
      const std::string& key = groups.front();
      const bool wild = HasWildcard(key);
      if (a.match == Match::kPatientName) {
        const std::string scope = member.empty() ? "" : "member_id = " + member + " AND ";
        sql.And("p.id IN (SELECT patient_pk FROM patient_name_keys WHERE " + scope +
                (wild ? GlobOnIndex(sql, "name_key", GlobPattern(key)) : "name_key = " + sql.Param(key)) + ")");
      } else {
        sql.And("upper(" + col + ") " + (wild ? "GLOB " : "= ") + sql.Param(wild ? GlobPattern(key) : key));
      }
      return Status::Ok();
    }
    case Match::kModalities: {
      std::string any;
      for (const std::string& m : SplitNonEmpty(value, '\\')) {
        std::string t = Trim(m);
        any += std::string(any.empty() ? "" : " OR ") + "m.modality " +
               (HasWildcard(t) ? "GLOB " + sql.Param(GlobPattern(t)) : "= " + sql.Param(t));
      }
      sql.And("EXISTS (SELECT 1 FROM series m WHERE m.study_pk = st.id AND (" + any + "))");
      return Status::Ok();
    }
  }
  return Status::Ok();
}

struct BuiltQuery {
  std::string sql;
  std::vector<std::string> binds;
  std::vector<uint32_t> columns;
};

Result<BuiltQuery> Build(const FindRequest& r, const std::string& select_prefix, bool with_attributes) {
  BuiltQuery out;
  std::string select = "SELECT " + select_prefix;
  if (with_attributes) {
    // Only what the caller asked for: the patient-level counts cost a subquery per row.
    for (const Attribute& a : kAttributes) {
      if (a.level > r.level) continue;
      bool requested = false;
      for (const QrKey& k : r.keys) requested |= k.tag == a.tag;
      if (!requested) continue;
      select += std::string(out.columns.empty() && select_prefix.empty() ? "" : ", ") + a.column;
      out.columns.push_back(a.tag);
    }
  }
  Sql sql;
  const std::string member = r.member_scope.empty() ? "" : sql.Param(r.member_scope);
  for (const QrKey& k : r.keys) {
    const Attribute* a = FindAttribute(k.tag);
    if (a == nullptr || a->level > r.level) continue;  // unsupported or below the level: return key only
    if (Status s = AddCondition(sql, *a, k.value, member); !s.ok()) return s;
  }
  if (!member.empty()) {
    // On every table that carries the member (a patient's studies are its member's), so that
    // whichever key is selective finds an index that leads with the member: patients
    // (member_id, patient_id), studies (member_id, accession_number | study_date), name keys.
    sql.And("p.member_id = " + member);
    if (r.level != QrLevel::kPatient) sql.And("st.member_id = " + member);
  }
  if (out.columns.empty() && select_prefix.empty()) select += "1";
  out.sql = select + FromClause(r.level) + sql.where;
  out.binds = std::move(sql.binds);
  return out;
}

// Kept by the connection (CachedStatement): a PACS asks the same forms of query again and again
// with other values, and preparing the joins costs more than running a selective one. Its plan
// must not depend on the values bound (QPSG), or SQLite prepares a wildcard form again for each
// pattern (GlobOnIndex gives the index its range instead).
// Not one with a long list of values (a C-MOVE of many UIDs): rarely asked again, and large; and
// a few dozen forms per connection at most.
std::unique_ptr<CachedStatement> Prepare(Database& db, const BuiltQuery& q, bool keep = true) {
  constexpr size_t kKeptBinds = 16;
  constexpr size_t kKeptForms = 32;
  db.keep_at_most(kKeptForms);
  (void)sqlite3_db_config(db.handle(), SQLITE_DBCONFIG_ENABLE_QPSG, 1, static_cast<int*>(nullptr));
  auto stmt = std::make_unique<CachedStatement>(db, q.sql, keep && q.binds.size() <= kKeptBinds);
  for (size_t i = 0; i < q.binds.size(); ++i) (*stmt)->Bind(static_cast<int>(i + 1), q.binds[i]);
  return stmt;
}

}  // namespace

std::optional<QrLevel> ParseQrLevel(std::string_view text) {
  std::string t = Trim(text);
  if (t == "PATIENT") return QrLevel::kPatient;
  if (t == "STUDY") return QrLevel::kStudy;
  if (t == "SERIES") return QrLevel::kSeries;
  if (t == "IMAGE") return QrLevel::kImage;
  return std::nullopt;
}

bool QueryEngine::Knows(uint32_t tag, QrLevel level) {
  const Attribute* a = FindAttribute(tag);
  return a != nullptr && a->level <= level;
}

FindCursor::FindCursor(PooledReader db, std::unique_ptr<CachedStatement> query, std::vector<uint32_t> columns)
    : db_(std::move(db)), query_(std::move(query)), columns_(std::move(columns)) {}

FindCursor::~FindCursor() {
  query_.reset();  // reset first: an idle connection holds no read snapshot
  db_.reset();
}

Result<bool> FindCursor::Next(FindRow* row) {
  Statement& query = **query_;
  Result<bool> has = query.Step();
  if (!has.ok() || !has.value()) return has;
  row->clear();
  for (size_t i = 0; i < columns_.size(); ++i) row->emplace_back(columns_[i], query.Text(static_cast<int>(i)));
  return true;
}

Result<std::unique_ptr<FindCursor>> QueryEngine::Find(const FindRequest& request) const {
  Result<BuiltQuery> q = Build(request, "", true);
  if (!q.ok()) return q.status();
  Result<PooledReader> db = pool_->Take();
  if (!db.ok()) return db.status();
  std::unique_ptr<CachedStatement> stmt = Prepare(*db.value(), q.value());
  return std::make_unique<FindCursor>(std::move(db.value()), std::move(stmt), std::move(q->columns));
}

Result<std::string> QueryEngine::ExplainFind(const FindRequest& request) const {
  Result<BuiltQuery> q = Build(request, "", true);
  if (!q.ok()) return q.status();
  q->sql = "EXPLAIN QUERY PLAN " + q->sql;
  Result<PooledReader> db = pool_->Take();
  if (!db.ok()) return db.status();
  std::unique_ptr<CachedStatement> stmt = Prepare(*db.value(), q.value(), false);
  std::string plan;
  for (;;) {
    Result<bool> row = (*stmt)->Step();
    if (!row.ok()) return row.status();
    if (!row.value()) break;
    plan += (*stmt)->Text(3) + "\n";
  }
  stmt.reset();  // before the connection goes back to the pool
  return plan;
}

Result<std::vector<RetrieveItem>> QueryEngine::Retrieve(const FindRequest& request) const {
  static constexpr uint32_t kUniqueKey[] = {0x00100020, 0x0020000D, 0x0020000E, 0x00080018};
  static constexpr const char* kUniqueKeyName[] = {"PatientID", "StudyInstanceUID", "SeriesInstanceUID",
                                                   "SOPInstanceUID"};
  const int level = static_cast<int>(request.level);
  bool has_unique = false;
  FindRequest narrowed;
  narrowed.level = QrLevel::kImage;  // every selected instance, whatever the level
  narrowed.member_scope = request.member_scope;
  for (const QrKey& k : request.keys) {
    // Only unique keys select in a retrieve, as single values or UID lists: no wildcard and no
    // universal matching (PS3.4 C.4.2.2.1, C.4.3.2.1). Other keys are ignored.
    const auto* u = std::find(std::begin(kUniqueKey), std::end(kUniqueKey), k.tag);
    if (u == std::end(kUniqueKey)) continue;
    const char* name = kUniqueKeyName[u - std::begin(kUniqueKey)];
    if (HasWildcard(k.value)) return Status::InvalidArgument(std::string(name) + " must not contain wildcards");
    if (*u == kUniqueKey[level] && !SplitNonEmpty(Trim(k.value), '\\').empty()) has_unique = true;
    narrowed.keys.push_back(k);
  }
  if (!has_unique) {
    static constexpr const char* kLevelName[] = {"PATIENT", "STUDY", "SERIES", "IMAGE"};
    return Status::InvalidArgument(std::string("no ") + kUniqueKeyName[level] + ", the unique key of the " +
                                   kLevelName[level] + " level");
  }
  Result<BuiltQuery> q = Build(narrowed, "i.sop_class_uid, i.sop_instance_uid, i.transfer_syntax_uid, i.path", false);
  if (!q.ok()) return q.status();
  Result<PooledReader> db = pool_->Take();
  if (!db.ok()) return db.status();
  std::unique_ptr<CachedStatement> stmt = Prepare(*db.value(), q.value());
  std::vector<RetrieveItem> items;
  for (;;) {
    Statement& s = **stmt;
    Result<bool> row = s.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) break;
    items.push_back({s.Text(0), s.Text(1), s.Text(2), s.Text(3)});
  }
  stmt.reset();  // before the connection goes back to the pool
  return items;
}

}  // namespace teleread
