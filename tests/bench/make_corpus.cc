// Corpora for the C-FIND benchmark, one naming scheme for both servers:
//   teleread-bench-corpus files OUT --studies N     N one-instance studies as DICOM files (OUT/part0..3)
//   teleread-bench-corpus index STORAGE --studies N --instances K [--tasks]
//                                                   the same studies written straight into an index
//   teleread-bench-corpus explain STORAGE [--member M]  query plans of the benchmark's selective queries
// Study n: PatientName ZHANG^WEI<n>, PatientID P<n, 7 digits>, StudyDate 2015-01-01 + (n mod 3650)
// days, CT for even n and MR for odd, AccessionNumber A<n>, StudyInstanceUID 2.25.4242.1.<n>.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "common/dicom.h"
#include "common/text.h"
#include "samples/synthetic.h"
#include "server/store/query.h"
#include "server/store/schema.h"
#include "server/store/sqlite.h"

using namespace teleread;

namespace {

std::string StudyDate(int n) {
  // Days since 2015-01-01 to a calendar date, without time zones.
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int day = n % 3650, year = 2015;
  for (;;) {
    int len = (year % 4 == 0) ? 366 : 365;
    if (day < len) break;
    day -= len;
    ++year;
  }
  int month = 0;
  for (;; ++month) {
    int len = kDays[month] + (month == 1 && year % 4 == 0 ? 1 : 0);
    if (day < len) break;
    day -= len;
  }
  char out[32];
  std::snprintf(out, sizeof out, "%04d%02d%02d", year, month + 1, day + 1);
  return out;
}

std::string PatientId(int n) {
  char out[16];
  std::snprintf(out, sizeof out, "P%07d", n);
  return out;
}

int WriteFiles(const std::filesystem::path& out, int studies) {
  for (int n = 0; n < studies; ++n) {
    samples::SeriesSpec spec;
    spec.patient_name = "ZHANG^WEI" + std::to_string(n);
    spec.patient_id = PatientId(n);
    spec.study_date = StudyDate(n);
    spec.modality = n % 2 ? "MR" : "CT";
    spec.accession_number = "A" + std::to_string(n);
    spec.study_description = "Benchmark study";
    spec.study_instance_uid = "2.25.4242.1." + std::to_string(n);  // as in the generated index
    spec.rows = spec.columns = 16;
    auto files = samples::WriteSeries(spec, out / ("part" + std::to_string(n % 4)) / std::to_string(n));
    if (!files.ok()) {
      std::cerr << files.status().ToString() << "\n";
      return 1;
    }
  }
  std::cout << "wrote " << studies << " studies under " << out << "\n";
  return 0;
}

int WriteIndex(const std::filesystem::path& storage, int studies, int instances, bool tasks) {
  std::filesystem::create_directories(storage / "objects");
  std::filesystem::create_directories(storage / "tmp");
  auto db = Database::Open(storage / "index.sqlite", false);
  if (!db.ok() || !MigrateSchema(*db.value()).ok()) {
    std::cerr << "cannot create the index\n";
    return 1;
  }
  Database& d = *db.value();
  (void)d.Exec("PRAGMA synchronous = OFF");  // a generated index: no durability needed while writing it
  const char* members[] = {"zhuozhou", "laishui", "yixian"};
  Statement patient(d.handle(),
                    "INSERT INTO patients (id, member_id, patient_id, issuer_of_patient_id, patient_name, birth_date, "
                    "sex, other_patient_ids) VALUES (?1, ?2, ?3, '', ?4, '19700101', 'O', '')");
  Statement name_key(d.handle(), "INSERT INTO patient_name_keys (patient_pk, name_key, member_id) VALUES (?1, ?2, ?3)");
  Statement study(d.handle(),
                  "INSERT INTO studies (id, patient_pk, member_id, study_instance_uid, study_date, study_time, "
                  "accession_number, study_id, study_description, referring_physician_name, institution_name, "
                  "priority, patient_age, specific_character_set, modalities, num_series, num_instances, "
                  "first_received_ms, last_received_ms, task_created) VALUES (?1, ?1, ?2, ?3, ?4, '083000', ?5, '1', "
                  "'Benchmark study', '', 'Bench Hospital', '', '050Y', 'ISO_IR 192', ?6, 1, ?7, 0, 0, 1)");
  Statement series(
      d.handle(),
      "INSERT INTO series (id, study_pk, series_instance_uid, modality, series_number, series_description, "
      "body_part_examined, num_instances) VALUES (?1, ?1, ?2, ?3, '1', '', '', ?4)");
  Statement instance(d.handle(),
                     "INSERT INTO instances (series_pk, sop_instance_uid, sop_class_uid, instance_number, "
                     "transfer_syntax_uid, size_bytes, path, calling_ae_title, received_ms) VALUES (?1, ?2, ?3, ?4, "
                     "'1.2.840.10008.1.2.1', 10000, ?5, 'BENCH', 0)");
  Statement task(d.handle(),
                 "INSERT INTO reading_tasks (study_pk, state, priority, complete_ms, updated_ms, due_ms) "
                 "VALUES (?1, 'waiting', ?2, ?3, ?3, ?3 + ?4)");
  const int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  auto start = std::chrono::steady_clock::now();
  const std::string root = "2.25.4242";
  for (int n = 0; n < studies; ++n) {
    if (n % 10000 == 0) {
      if (n > 0 && !d.Exec("COMMIT").ok()) return 1;
      if (!d.Exec("BEGIN").ok()) return 1;
    }
    const int64_t pk = n + 1;
    const std::string name = "ZHANG^WEI" + std::to_string(n);
    const std::string modality = n % 2 ? "MR" : "CT";
    const std::string uid = root + ".1." + std::to_string(n);
    patient.Bind(1, pk).Bind(2, members[n % 3]).Bind(3, PatientId(n)).Bind(4, name);
    name_key.Bind(1, pk).Bind(2, FoldCase(name)).Bind(3, members[n % 3]);
    study.Bind(1, pk).Bind(2, members[n % 3]).Bind(3, uid).Bind(4, StudyDate(n)).Bind(5, "A" + std::to_string(n));
    study.Bind(6, modality).Bind(7, int64_t{instances});
    series.Bind(1, pk).Bind(2, root + ".2." + std::to_string(n)).Bind(3, modality).Bind(4, int64_t{instances});
    if (!patient.Run().ok() || !name_key.Run().ok() || !study.Run().ok() || !series.Run().ok()) return 1;
    if (tasks) {
      // 2% STAT, 10% HIGH, the rest ROUTINE, with due times as their SLAs give them.
      const bool stat = n % 50 == 0, high = !stat && n % 10 == 1;
      task.Bind(1, pk).Bind(2, stat ? "STAT" : high ? "HIGH" : "ROUTINE").Bind(3, now_ms - n);
      if (!task.Bind(4, int64_t{stat ? 3'600'000 : high ? 14'400'000 : 86'400'000}).Run().ok()) return 1;
    }
    for (int k = 0; k < instances; ++k) {
      const std::string sop = root + ".3." + std::to_string(n) + "." + std::to_string(k);
      instance.Bind(1, pk).Bind(2, sop).Bind(3, "1.2.840.10008.5.1.4.1.1.2").Bind(4, std::to_string(k + 1));
      instance.Bind(5, "objects/bench/" + sop + ".dcm");
      if (!instance.Run().ok()) return 1;
    }
  }
  if (!d.Exec("COMMIT").ok() || !d.Exec("ANALYZE").ok()) return 1;
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "indexed " << studies << " studies, " << int64_t{studies} * instances << " instances in " << s << " s\n";
  return 0;
}

int Explain(const std::filesystem::path& storage, const std::string& member) {
  QueryEngine engine(storage / "index.sqlite");
  struct Q {
    const char* name;
    uint32_t tag;
    const char* value;
  };
  const Q queries[] = {{"patient-id", 0x00100020, "P0012348"},
                       {"accession", 0x00080050, "A12348"},
                       {"name-wildcard", 0x00100010, "ZHANG^WEI1234*"},
                       {"uid", 0x0020000D, "2.25.4242.1.12348"},
                       {"date-range", 0x00080020, "20200101-20200102"}};
  for (const Q& q : queries) {
    FindRequest r;
    r.level = QrLevel::kStudy;
    r.keys = {{q.tag, q.value}};
    r.member_scope = member;
    auto plan = engine.ExplainFind(r);
    if (!plan.ok()) return 1;
    std::cout << q.name << ":\n" << plan.value();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"C-FIND benchmark corpora"};
  std::string out;
  int studies = 1000, instances = 10;
  CLI::App* files = app.add_subcommand("files", "One-instance studies as DICOM files");
  files->add_option("out", out)->required();
  files->add_option("--studies", studies);
  CLI::App* index = app.add_subcommand("index", "The same studies written straight into an index");
  index->add_option("storage", out)->required();
  index->add_option("--studies", studies);
  index->add_option("--instances", instances);
  bool tasks = false;
  index->add_flag("--tasks", tasks, "Every study a waiting reading task");
  CLI::App* explain = app.add_subcommand("explain", "Query plans of the selective benchmark queries");
  explain->add_option("storage", out)->required();
  std::string member;
  explain->add_option("--member", member, "Member id whose scope the queries carry (default: none, the centre)");
  app.require_subcommand(1);
  CLI11_PARSE(app, argc, argv);
  InitializeDicom();
  if (*files) return WriteFiles(out, studies);
  if (*index) return WriteIndex(out, studies, instances, tasks);
  return Explain(out, member);
}
