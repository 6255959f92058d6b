#include "server/store/schema.h"

#include <string>
#include <vector>

namespace teleread {
namespace {

// Never edit a shipped migration; append a new one.
const std::vector<const char*>& Migrations() {
  static const std::vector<const char*> migrations = {
      // 1: patients scoped by member, the study hierarchy, reading tasks.
      R"sql(
CREATE TABLE patients (
  id INTEGER PRIMARY KEY,
  member_id TEXT NOT NULL,
  patient_id TEXT NOT NULL,
  issuer_of_patient_id TEXT NOT NULL,
  patient_name TEXT NOT NULL,
  birth_date TEXT NOT NULL,
  sex TEXT NOT NULL,
  other_patient_ids TEXT NOT NULL,
  UNIQUE (member_id, patient_id, issuer_of_patient_id)
);
CREATE INDEX patients_patient_id ON patients (patient_id);
-- One row per person-name component group (alphabetic, ideographic, phonetic), upper-cased,
-- so that C-FIND matches names case-insensitively in any group, by index for prefixes.
CREATE TABLE patient_name_keys (
  patient_pk INTEGER NOT NULL REFERENCES patients(id),
  name_key TEXT NOT NULL
);
CREATE INDEX patient_name_keys_key ON patient_name_keys (name_key);
CREATE INDEX patient_name_keys_patient ON patient_name_keys (patient_pk);
CREATE TABLE studies (
  id INTEGER PRIMARY KEY,
  patient_pk INTEGER NOT NULL REFERENCES patients(id),
  member_id TEXT NOT NULL,
  study_instance_uid TEXT NOT NULL UNIQUE,
  study_date TEXT NOT NULL,
  study_time TEXT NOT NULL,
  accession_number TEXT NOT NULL,
  study_id TEXT NOT NULL,
  study_description TEXT NOT NULL,
  referring_physician_name TEXT NOT NULL,
  institution_name TEXT NOT NULL,
  priority TEXT NOT NULL,
  patient_age TEXT NOT NULL,
  specific_character_set TEXT NOT NULL,
  modalities TEXT NOT NULL DEFAULT '',
  num_series INTEGER NOT NULL DEFAULT 0,
  num_instances INTEGER NOT NULL DEFAULT 0,
  first_received_ms INTEGER NOT NULL,
  last_received_ms INTEGER NOT NULL,
  task_created INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX studies_patient ON studies (patient_pk);
CREATE INDEX studies_date ON studies (study_date);
CREATE INDEX studies_accession ON studies (accession_number);
CREATE INDEX studies_member_date ON studies (member_id, study_date);
CREATE INDEX studies_awaiting_task ON studies (last_received_ms) WHERE task_created = 0;
CREATE TABLE series (
  id INTEGER PRIMARY KEY,
  study_pk INTEGER NOT NULL REFERENCES studies(id),
  series_instance_uid TEXT NOT NULL UNIQUE,
  modality TEXT NOT NULL,
  series_number TEXT NOT NULL,
  series_description TEXT NOT NULL,
  body_part_examined TEXT NOT NULL,
  num_instances INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX series_study ON series (study_pk);
CREATE INDEX series_modality ON series (modality);
CREATE TABLE instances (
  id INTEGER PRIMARY KEY,
  series_pk INTEGER NOT NULL REFERENCES series(id),
  sop_instance_uid TEXT NOT NULL UNIQUE,
  sop_class_uid TEXT NOT NULL,
  instance_number TEXT NOT NULL,
  transfer_syntax_uid TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  path TEXT NOT NULL UNIQUE,
  calling_ae_title TEXT NOT NULL,
  received_ms INTEGER NOT NULL
);
CREATE INDEX instances_series ON instances (series_pk);
CREATE TABLE reading_tasks (
  id INTEGER PRIMARY KEY,
  study_pk INTEGER NOT NULL UNIQUE REFERENCES studies(id),
  state TEXT NOT NULL CHECK (state IN ('waiting', 'claimed', 'reported')),
  priority TEXT NOT NULL,
  complete_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  late_instances INTEGER NOT NULL DEFAULT 0,
  due_ms INTEGER NOT NULL DEFAULT 0,
  claimed_by TEXT NOT NULL DEFAULT '',
  claimed_ms INTEGER NOT NULL DEFAULT 0,
  lease_expires_ms INTEGER NOT NULL DEFAULT 0,
  reported_ms INTEGER NOT NULL DEFAULT 0,
  delivered_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX reading_tasks_state ON reading_tasks (state, due_ms);
-- Who saw, claimed and signed what, and who was refused: never updated, only appended.
CREATE TABLE audit_log (
  id INTEGER PRIMARY KEY,
  at_ms INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  study_instance_uid TEXT NOT NULL,
  detail TEXT NOT NULL
);
CREATE INDEX audit_log_study ON audit_log (study_instance_uid);
)sql",
      // 2: signed reports and their delivery outbox.
      R"sql(
-- One row per accepted signed report; the SR itself is an instance of the study.
CREATE TABLE reports (
  id INTEGER PRIMARY KEY,
  sop_instance_uid TEXT NOT NULL UNIQUE,
  study_pk INTEGER NOT NULL REFERENCES studies(id),
  signer TEXT NOT NULL,
  signer_subject TEXT NOT NULL,
  signed_at TEXT NOT NULL,
  accepted_ms INTEGER NOT NULL,
  predecessor_sop_instance_uid TEXT NOT NULL DEFAULT '',
  critical INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX reports_study ON reports (study_pk);
-- What must reach a member hospital; a row is delivered once the member answered success.
CREATE TABLE deliveries (
  id INTEGER PRIMARY KEY,
  sop_instance_uid TEXT NOT NULL,
  member_id TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  delivered_ms INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  UNIQUE (sop_instance_uid, member_id)
);
CREATE INDEX deliveries_pending ON deliveries (next_attempt_ms) WHERE state = 'pending';
ALTER TABLE reading_tasks ADD COLUMN amended_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE reading_tasks ADD COLUMN reported_by TEXT NOT NULL DEFAULT '';
)sql",
      // 3: when a delivery last began to send, so that a re-send first asks the member.
      R"sql(
-- 0 until an attempt has begun to send; after that the member may hold the report already.
ALTER TABLE deliveries ADD COLUMN last_attempt_ms INTEGER NOT NULL DEFAULT 0;
-- A pending row of an older server may have been sent just before it stopped: ask first.
UPDATE deliveries SET last_attempt_ms = created_ms WHERE state = 'pending';
)sql",
      // 4: the audit trail becomes a hash chain (server/store/audit_log.h); older entries keep
      // empty hashes and are reported as written before the chain began.
      R"sql(
ALTER TABLE audit_log ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN hash TEXT NOT NULL DEFAULT '';
)sql",
      // 5: member-scoped C-FIND: each selective key is searched inside the member's own rows,
      // so that the scope never makes SQLite walk the member's whole study list.
      R"sql(
ALTER TABLE patient_name_keys ADD COLUMN member_id TEXT NOT NULL DEFAULT '';
UPDATE patient_name_keys SET member_id = (SELECT p.member_id FROM patients p WHERE p.id = patient_name_keys.patient_pk);
CREATE INDEX patient_name_keys_member_key ON patient_name_keys (member_id, name_key);
CREATE INDEX studies_member_accession ON studies (member_id, accession_number);
-- The worklist's first page read in its own order (priority, due time) among the open tasks,
-- instead of every open task sorted: the expression is the one task_store.cc orders by.
CREATE INDEX reading_tasks_open_order ON reading_tasks
  ((CASE priority WHEN 'STAT' THEN 0 WHEN 'HIGH' THEN 1 ELSE 2 END), due_ms, id) WHERE state IN ('waiting', 'claimed');
)sql",
      // 6: the clinical reporting loop: expired claims named, critical results, storage commitment.
      R"sql(
-- Who held a claim that expired (the sweep clears claimed_by), so that they are told it expired.
ALTER TABLE reading_tasks ADD COLUMN expired_claim_by TEXT NOT NULL DEFAULT '';
ALTER TABLE reading_tasks ADD COLUMN acknowledged_ms INTEGER NOT NULL DEFAULT 0;
-- One row per report with a critical finding, open until a named person at the member acknowledges.
CREATE TABLE critical_results (
  id INTEGER PRIMARY KEY,
  sop_instance_uid TEXT NOT NULL UNIQUE,
  study_pk INTEGER NOT NULL REFERENCES studies(id),
  member_id TEXT NOT NULL,
  signer TEXT NOT NULL,
  opened_ms INTEGER NOT NULL,
  acknowledged_ms INTEGER NOT NULL DEFAULT 0,
  acknowledged_by TEXT NOT NULL DEFAULT '',
  acknowledged_via TEXT NOT NULL DEFAULT '',
  escalated_ms INTEGER NOT NULL DEFAULT 0,
  webhook_state TEXT NOT NULL DEFAULT 'none' CHECK (webhook_state IN ('none', 'pending', 'delivered', 'dead')),
  webhook_attempts INTEGER NOT NULL DEFAULT 0,
  webhook_next_ms INTEGER NOT NULL DEFAULT 0,
  webhook_delivered_ms INTEGER NOT NULL DEFAULT 0,
  webhook_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX critical_results_open ON critical_results (opened_ms) WHERE acknowledged_ms = 0;
CREATE INDEX critical_results_webhook ON critical_results (webhook_next_ms) WHERE webhook_state = 'pending';
-- When the sending member's storage commitment covered the instance; 0: not (yet) committed.
ALTER TABLE instances ADD COLUMN committed_ms INTEGER NOT NULL DEFAULT 0;
)sql",
      // 7: each report's PDF copy (an Encapsulated PDF instance in the report's series), delivered with it.
      R"sql(
ALTER TABLE reports ADD COLUMN pdf_sop_instance_uid TEXT NOT NULL DEFAULT '';
-- The report a delivery belongs to: its SR or its PDF copy is sent; older rows sent the SR itself.
ALTER TABLE deliveries ADD COLUMN report_sop_instance_uid TEXT NOT NULL DEFAULT '';
UPDATE deliveries SET report_sop_instance_uid = sop_instance_uid;
CREATE INDEX deliveries_report ON deliveries (report_sop_instance_uid);
)sql",
      // 8: small objects kept inside the index, committed with their instance row (one WAL sync
      // covers data and index); such an instance's path is "index:<64 hex>" (store/README.md).
      R"sql(
CREATE TABLE object_data (
  instance_id INTEGER PRIMARY KEY REFERENCES instances(id),
  bytes BLOB NOT NULL
);
)sql",
      // 9: studies awaiting their reading task, by id alone: every instance moves its study's
      // last_received_ms, and an index on it rewrote one more page per stored object.
      R"sql(
DROP INDEX studies_awaiting_task;
CREATE INDEX studies_awaiting_task ON studies (task_created) WHERE task_created = 0;
)sql",
      // 10: claims by the end of their lease: the sweep of expired claims (every tick of the task
      // promoter, 100 ms to 1 s) read every claim, ~2.5 ms in the writer at 10,000.
      R"sql(
CREATE INDEX reading_tasks_lease ON reading_tasks (lease_expires_ms) WHERE state = 'claimed';
)sql",
  };
  return migrations;
}

}  // namespace

int LatestSchemaVersion() { return static_cast<int>(Migrations().size()); }

Result<int> SchemaVersion(Database& db) {
  Statement exists(db.handle(), "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_version'");
  Result<bool> found = exists.Step();
  if (!found.ok()) return found.status();
  if (!found.value()) return 0;
  Statement q(db.handle(), "SELECT COALESCE(MAX(version), 0) FROM schema_version");
  Result<bool> row = q.Step();
  if (!row.ok()) return row.status();
  return static_cast<int>(q.Int(0));
}

Status MigrateSchema(Database& db) {
  Status s = db.Exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
  if (!s.ok()) return s;
  Result<int> current = SchemaVersion(db);
  if (!current.ok()) return current.status();
  const int version = current.value();
  if (version > LatestSchemaVersion()) {
    return Status::InvalidArgument("index schema version " + std::to_string(version) +
                                   " is newer than this TeleRead supports (" + std::to_string(LatestSchemaVersion()) +
                                   ")");
  }
  for (int v = version + 1; v <= LatestSchemaVersion(); ++v) {
    Transaction tx(db);
    if (!tx.status().ok()) return tx.status();
    if (s = db.Exec(Migrations()[v - 1]); !s.ok()) return s;
    if (s = db.Exec("DELETE FROM schema_version; INSERT INTO schema_version (version) VALUES (" + std::to_string(v) +
                    ")");
        !s.ok()) {
      return s;
    }
    if (s = tx.Commit(); !s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace teleread
