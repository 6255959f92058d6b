#include "server/store/index.h"
#include "server/store/index_detail.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "common/log.h"
#include "common/text.h"
#include "server/store/schema.h"
#include "server/store/sqlite.h"
#include "server/store/task_sql.h"

namespace teleread {
namespace {

int64_t MaxInstanceId(Database& db) {
  Statement rows(db.handle(), "SELECT COALESCE(MAX(id), 0) FROM instances");
  Result<bool> row = rows.Step();
  return row.ok() && row.value() ? rows.Int(0) : -1;
}

// Below this many instances the C-FIND tables are too small to measure.
constexpr int64_t kMeasurableInstances = 10'000;

// A large centre's proportions (100,000 studies, each member a tenth) for the C-FIND tables, until
// the index is big enough to measure: a member's query then has from its first study on the plan
// it will have at scale, driven by its selective key, not by the member's whole list.
Status SeedStatistics(Database& db) {
  return db.Exec(R"sql(
DELETE FROM sqlite_stat1 WHERE tbl IN ('patients', 'patient_name_keys', 'studies');
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
  ('patients', 'sqlite_autoindex_patients_1', '100000 10000 1 1'),
  ('patients', 'patients_patient_id', '100000 1'),
  ('patient_name_keys', 'patient_name_keys_key', '150000 2'),
  ('patient_name_keys', 'patient_name_keys_patient', '150000 2'),
  ('patient_name_keys', 'patient_name_keys_member_key', '150000 15000 2'),
  ('studies', 'sqlite_autoindex_studies_1', '100000 1'),
  ('studies', 'studies_patient', '100000 1'),
  ('studies', 'studies_date', '100000 30'),
  ('studies', 'studies_accession', '100000 1'),
  ('studies', 'studies_member_date', '100000 10000 3'),
  ('studies', 'studies_member_accession', '100000 10000 1'),
  ('studies', 'studies_awaiting_task', '100 100');
ANALYZE sqlite_schema;
)sql");
}

}  // namespace

namespace index_detail {

bool BatchTraceOn() {
  static const bool on = std::getenv("TELEREAD_API_TRACE") != nullptr;
  return on;
}

thread_local int64_t checkpoint_us = -1;

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace index_detail

using index_detail::BatchTraceOn;
using index_detail::checkpoint_us;
using index_detail::NowUs;

struct Index::WriterStatements {
  explicit WriterStatements(sqlite3* h)
      : find_study(h, "SELECT id, member_id FROM studies WHERE study_instance_uid = ?1"),
        find_patient(h,
                     "SELECT id FROM patients WHERE member_id = ?1 AND patient_id = ?2 AND "
                     "issuer_of_patient_id = ?3"),
        insert_patient(h,
                       "INSERT INTO patients (member_id, patient_id, issuer_of_patient_id, patient_name, birth_date, "
                       "sex, other_patient_ids) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        insert_study(h,
                     "INSERT INTO studies (patient_pk, member_id, study_instance_uid, study_date, study_time, "
                     "accession_number, study_id, study_description, referring_physician_name, institution_name, "
                     "priority, patient_age, specific_character_set, first_received_ms, last_received_ms) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)"),
        find_series(h, "SELECT id, study_pk FROM series WHERE series_instance_uid = ?1"),
        insert_series(h,
                      "INSERT INTO series (study_pk, series_instance_uid, modality, series_number, "
                      "series_description, body_part_examined) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        insert_instance(h,
                        "INSERT INTO instances (series_pk, sop_instance_uid, sop_class_uid, instance_number, "
                        "transfer_syntax_uid, size_bytes, path, calling_ae_title, received_ms) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        insert_object_data(h, "INSERT INTO object_data (instance_id, bytes) VALUES (?1, ?2)"),
        insert_name_key(h, "INSERT INTO patient_name_keys (patient_pk, name_key, member_id) VALUES (?1, ?2, ?3)"),
        bump_series(h, "UPDATE series SET num_instances = num_instances + 1 WHERE id = ?1"),
        bump_study_series(h,
                          "UPDATE studies SET num_series = num_series + 1, modalities = CASE "
                          "WHEN ?2 = '' OR instr('\\' || modalities || '\\', '\\' || ?2 || '\\') > 0 THEN modalities "
                          "WHEN modalities = '' THEN ?2 ELSE modalities || '\\' || ?2 END WHERE id = ?1"),
        bump_study(h,
                   "UPDATE studies SET num_instances = num_instances + 1, "
                   "last_received_ms = MAX(last_received_ms, ?2) WHERE id = ?1"),
        touch_task(h,
                   "UPDATE reading_tasks SET late_instances = late_instances + 1, updated_ms = ?2 "
                   "WHERE study_pk = ?1") {}

  Statement find_study, find_patient, insert_patient, insert_study, find_series, insert_series, insert_instance,
      insert_object_data, insert_name_key, bump_series, bump_study_series, bump_study, touch_task;
};

Result<std::unique_ptr<Index>> Index::OpenExisting(const std::filesystem::path& db_path) {
  Result<std::unique_ptr<Database>> reader = Database::Open(db_path, true);
  if (!reader.ok()) return reader.status();
  Result<int> version = SchemaVersion(*reader.value());
  if (!version.ok()) return version.status();
  if (version.value() == 0) return Status::InvalidArgument(db_path.string() + " is not a TeleRead index");
  if (version.value() != LatestSchemaVersion()) {
    return Status::InvalidArgument("index schema version " + std::to_string(version.value()) + ", this TeleRead's is " +
                                   std::to_string(LatestSchemaVersion()) +
                                   (version.value() < LatestSchemaVersion()
                                        ? ": start teleread-server on it once to migrate it"
                                        : ": use the teleread-server that wrote it"));
  }
  // Its writer read-only too: closed last, a writable one could checkpoint the WAL into the file
  // of a stopped server (a restored backup being checked).
  Result<std::unique_ptr<Database>> writer = Database::Open(db_path, true);
  if (!writer.ok()) return writer.status();
  return std::unique_ptr<Index>(new Index(db_path, std::move(writer.value()), std::move(reader.value())));
}

Result<std::unique_ptr<Index>> Index::Open(const std::filesystem::path& db_path) {
  Result<std::unique_ptr<Database>> writer = Database::Open(db_path, false);
  if (!writer.ok()) return writer.status();
  if (Status s = MigrateSchema(*writer.value()); !s.ok()) return s;
  // Without statistics SQLite guesses, and a member's scope alone looked as selective as a
  // PatientID: plans come from measured proportions, or seeded ones while there is too little
  // to measure.
  if (Status s = writer.value()->Analyze(); !s.ok()) return s;
  if (MaxInstanceId(*writer.value()) < kMeasurableInstances) {
    if (Status s = SeedStatistics(*writer.value()); !s.ok()) return s;
  }
  Result<std::unique_ptr<Database>> reader = Database::Open(db_path, true);
  if (!reader.ok()) return reader.status();
  return std::unique_ptr<Index>(new Index(db_path, std::move(writer.value()), std::move(reader.value())));
}

Index::Index(std::filesystem::path db_path, std::unique_ptr<Database> writer, std::unique_ptr<Database> reader)
    : db_path_(std::move(db_path)),
      writer_db_(std::move(writer)),
      writer_sql_(std::make_unique<WriterStatements>(writer_db_->handle())),
      // One per HTTPS handler thread that may read at once (server/http's kHandlerThreads).
      readers_(ReaderPool::Create(db_path_, 32, statistics_)),
      reader_db_(std::move(reader)) {
  instances_at_analyze_ = std::max<int64_t>(0, MaxInstanceId(*writer_db_));
  sqlite3_update_hook(
      writer_db_->handle(),
      [](void* self, int op, const char*, const char* table, sqlite3_int64 rowid) {
        // Every table a worklist row is read from: no rule that a change to a study must also
        // touch its task. Only noted per row; the version moves at most once per commit.
        static_cast<Index*>(self)->shown_changes_.Note(op, table, rowid);
      },
      this);
  if (BatchTraceOn()) {
    // As SQLite's own auto-checkpoint (PASSIVE once the WAL holds 1000 pages), timed.
    sqlite3_wal_hook(
        writer_db_->handle(),
        [](void*, sqlite3* db, const char* name, int pages) {
          if (pages < 1000) return SQLITE_OK;
          const int64_t start = NowUs();
          sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
          checkpoint_us = NowUs() - start;
          return SQLITE_OK;
        },
        nullptr);
  }
  writer_thread_ = std::thread([this] { WriterLoop(); });
}

Index::~Index() {
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    stopping_ = true;
  }
  writer_cv_->notify_all();
  writer_thread_.join();
  {
    std::lock_guard<std::mutex> writer(writer_mu_);
    (void)SyncUnsyncedCommits(true);
  }
  // Every write is answered now, but a caller may not have woken yet: it takes queue_mu_ to leave.
  std::unique_lock<std::mutex> lock(queue_mu_);
  callers_left_.wait(lock, [this] { return callers_ == 0; });
}

Status Index::AddInstance(const NewInstance& instance, const WriteFn& also, Durability durability, Coming* coming) {
  return RunWrite(
      [this, &instance, &also](Database& db) {
        Status s = InsertInstance(db, instance);
        return s.ok() && also ? also(db) : s;
      },
      durability, coming);
}

Status Index::RelocateInstance(const std::string& sop_instance_uid, const std::string& from_path,
                               const std::string& to_path, uint64_t size_bytes, const WriteFn& also) {
  return RunWrite([&](Database& db) {
    Statement q(db.handle(),
                "UPDATE instances SET path = ?1, size_bytes = ?2 WHERE sop_instance_uid = ?3 AND path = ?4");
    q.Bind(1, to_path).Bind(2, static_cast<int64_t>(size_bytes)).Bind(3, sop_instance_uid).Bind(4, from_path);
    if (Status s = q.Run(); !s.ok()) return s;
    if (db.Changes() != 1) return Status::NotFound("instance " + sop_instance_uid + " is not at " + from_path);
    return also ? also(db) : Status::Ok();
  });
}

bool Index::AnalyzeDue() const {
  return inserted_since_analyze_ >= std::max<int64_t>(kMeasurableInstances, instances_at_analyze_);
}

void Index::MaybeAnalyze(Database& db) {
  // After each doubling of the instances (and at least every 10,000), so that the plans follow
  // a large load; the sampled ANALYZE costs milliseconds, between two batches.
  if (!AnalyzeDue()) return;
  const int64_t rows = MaxInstanceId(db);
  instances_at_analyze_ = rows >= 0 ? rows : instances_at_analyze_ + inserted_since_analyze_;
  inserted_since_analyze_ = 0;
  if (Status s = db.Analyze(); !s.ok()) {
    spdlog::warn("index statistics not refreshed: {}", s.ToString());
  } else {
    statistics_->fetch_add(1, std::memory_order_release);
  }
}

Status Index::InsertInstance(Database& db, const NewInstance& in) {
  const InstanceSummary& s = in.summary;
  WriterStatements& p = *writer_sql_;

  int64_t study_pk = 0;
  {
    Statement& q = p.find_study;
    q.Bind(1, s.study_instance_uid);
    Result<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (row.value()) {
      study_pk = q.Int(0);
      std::string owner = q.Text(1);
      q.Reset();
      if (owner != in.member_id) {
        return Status::PermissionDenied("study " + s.study_instance_uid + " was sent by another member hospital");
      }
    } else {
      q.Reset();
    }
  }
  if (study_pk == 0) {
    int64_t patient_pk = 0;
    Statement& fp = p.find_patient;
    fp.Bind(1, in.member_id).Bind(2, s.patient_id).Bind(3, s.issuer_of_patient_id);
    Result<bool> row = fp.Step();
    if (!row.ok()) return row.status();
    if (row.value()) patient_pk = fp.Int(0);
    fp.Reset();
    if (patient_pk == 0) {
      p.insert_patient.Bind(1, in.member_id).Bind(2, s.patient_id).Bind(3, s.issuer_of_patient_id);
      p.insert_patient.Bind(4, s.patient_name).Bind(5, s.patient_birth_date).Bind(6, s.patient_sex);
      p.insert_patient.Bind(7, s.other_patient_ids);
      if (Status st = p.insert_patient.Run(); !st.ok()) return st;
      patient_pk = db.LastInsertRowId();
      for (const std::string& key : PersonNameKeys(s.patient_name)) {
        Status st = p.insert_name_key.Bind(1, patient_pk).Bind(2, key).Bind(3, in.member_id).Run();
        if (!st.ok()) return st;
      }
    }
    Statement& is = p.insert_study;
    is.Bind(1, patient_pk).Bind(2, in.member_id).Bind(3, s.study_instance_uid).Bind(4, s.study_date);
    is.Bind(5, s.study_time).Bind(6, s.accession_number).Bind(7, s.study_id).Bind(8, s.study_description);
    is.Bind(9, s.referring_physician_name).Bind(10, s.institution_name).Bind(11, s.study_priority);
    is.Bind(12, s.patient_age).Bind(13, s.specific_character_set).Bind(14, in.received_ms);
    if (Status st = is.Run(); !st.ok()) return st;
    study_pk = db.LastInsertRowId();
  }

  int64_t series_pk = 0;
  {
    Statement& q = p.find_series;
    q.Bind(1, s.series_instance_uid);
    Result<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (row.value()) {
      series_pk = q.Int(0);
      int64_t owner_study = q.Int(1);
      q.Reset();
      if (owner_study != study_pk) {
        return Status::Conflict("series " + s.series_instance_uid + " belongs to another study");
      }
    } else {
      q.Reset();
    }
  }
  if (series_pk == 0) {
    Statement& q = p.insert_series;
    q.Bind(1, study_pk).Bind(2, s.series_instance_uid).Bind(3, s.modality).Bind(4, s.series_number);
    q.Bind(5, s.series_description).Bind(6, s.body_part_examined);
    if (Status st = q.Run(); !st.ok()) return st;
    series_pk = db.LastInsertRowId();
    if (Status st = p.bump_study_series.Bind(1, study_pk).Bind(2, s.modality).Run(); !st.ok()) return st;
  }

  Statement& ii = p.insert_instance;
  ii.Bind(1, series_pk).Bind(2, s.sop_instance_uid).Bind(3, s.sop_class_uid).Bind(4, s.instance_number);
  ii.Bind(5, s.transfer_syntax_uid).Bind(6, static_cast<int64_t>(in.size_bytes)).Bind(7, in.relative_path);
  ii.Bind(8, in.calling_ae_title).Bind(9, in.received_ms);
  if (Status st = ii.Run(); !st.ok()) {
    if (st.code() == Status::Code::kConflict) {
      return Status::Conflict("SOP instance " + s.sop_instance_uid + " is indexed already");
    }
    return st;
  }
  if (!in.data.empty()) {
    // SQLITE_FULL here maps to NoSpace, refused like a failed file write.
    Statement& od = p.insert_object_data;
    if (Status st = od.Bind(1, db.LastInsertRowId()).BindBlob(2, in.data).Run(); !st.ok()) return st;
  }
  ++inserted_since_analyze_;
  if (Status st = p.bump_series.Bind(1, series_pk).Run(); !st.ok()) return st;
  if (Status st = p.bump_study.Bind(1, study_pk).Bind(2, in.received_ms).Run(); !st.ok()) return st;
  return p.touch_task.Bind(1, study_pk).Bind(2, in.received_ms).Run();
}

Result<int> Index::PromoteQuietStudies(int64_t now_ms, int64_t quiet_ms, const TaskPolicy& policy) {
  int created = 0;
  Status s = RunWrite([&](Database& db) -> Status {
    Statement insert(db.handle(), InsertTasksSql(policy, "task_created = 0 AND last_received_ms <= ?2"));
    insert.Bind(1, now_ms).Bind(2, now_ms - quiet_ms);
    BindTaskPolicy(insert, policy);
    if (Status st = insert.Run(); !st.ok()) return st;
    created = sqlite3_changes(db.handle());
    if (created == 0) return Status::Ok();
    Statement mark(db.handle(),
                   "UPDATE studies SET task_created = 1 WHERE task_created = 0 AND last_received_ms <= ?1");
    return mark.Bind(1, now_ms - quiet_ms).Run();
  });
  if (!s.ok()) return s;
  return created;
}

Result<PooledReader> Index::OpenReader() const { return readers_->Take(); }

Status Index::ReadObjectData(const std::string& relative_path,
                             const std::function<Status(std::string_view)>& fn) const {
  Result<PooledReader> reader = readers_->Take();
  if (!reader.ok()) return reader.status();
  return teleread::ReadObjectData(reader.value()->handle(), relative_path, fn);
}

Status ReadObjectData(sqlite3* db, const std::string& relative_path,
                      const std::function<Status(std::string_view)>& fn) {
  Statement q(db, "SELECT d.bytes FROM instances i JOIN object_data d ON d.instance_id = i.id WHERE i.path = ?1");
  q.Bind(1, relative_path);
  Result<bool> row = q.Step();
  if (!row.ok()) return row.status();
  if (!row.value()) return Status::NotFound("no data in the index for " + relative_path);
  return fn(q.Blob(0));
}

Result<int64_t> Index::CountInIndexRowsWithoutData() const {
  Result<PooledReader> reader = readers_->Take();
  if (!reader.ok()) return reader.status();
  Statement q(reader.value()->handle(),
              "SELECT COUNT(*) FROM instances i WHERE i.path >= 'index:' AND i.path < 'index;' AND "
              "NOT EXISTS (SELECT 1 FROM object_data d WHERE d.instance_id = i.id)");
  Result<bool> row = q.Step();
  if (!row.ok()) return row.status();
  return q.Int(0);
}

std::optional<StoredInstance> Index::FindInstance(const std::string& sop_instance_uid) {
  std::lock_guard<std::mutex> lock(read_mu_);
  static const char* kSql =
      "SELECT st.member_id, i.path, st.study_instance_uid, se.series_instance_uid FROM instances i "
      "JOIN series se ON se.id = i.series_pk "
      "JOIN studies st ON st.id = se.study_pk WHERE i.sop_instance_uid = ?1";
  Statement q(reader_db_->handle(), kSql);
  q.Bind(1, sop_instance_uid);
  Result<bool> row = q.Step();
  if (!row.ok() || !row.value()) return std::nullopt;
  return StoredInstance{q.Text(0), q.Text(1), q.Text(2), q.Text(3)};
}

bool Index::HasPath(const std::string& relative_path) {
  std::lock_guard<std::mutex> lock(read_mu_);
  Statement q(reader_db_->handle(), "SELECT 1 FROM instances WHERE path = ?1");
  q.Bind(1, relative_path);
  Result<bool> row = q.Step();
  return row.ok() && row.value();
}

std::optional<std::string> Index::StudyOwner(const std::string& study_instance_uid) {
  {
    std::lock_guard<std::mutex> lock(owners_mu_);
    if (auto it = owners_.find(study_instance_uid); it != owners_.end()) return it->second;
  }
  std::string owner;
  {
    std::lock_guard<std::mutex> lock(read_mu_);
    CachedStatement q(*reader_db_, "SELECT member_id FROM studies WHERE study_instance_uid = ?1");
    q->Bind(1, study_instance_uid);
    Result<bool> row = q->Step();
    if (!row.ok() || !row.value()) return std::nullopt;  // not kept: the study may arrive yet
    owner = q->Text(0);
  }
  std::lock_guard<std::mutex> lock(owners_mu_);
  // Bounded: the studies arriving now are the ones asked for again.
  if (owners_.size() >= kOwnersKept) owners_.clear();
  owners_.emplace(study_instance_uid, owner);
  return owner;
}

}  // namespace teleread
