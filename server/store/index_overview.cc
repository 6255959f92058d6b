// What the index holds, summed up for `teleread-server status` and looked up by the start-up
// recovery: off every hot path (each query reads whole tables or a segment's rows).
#include <mutex>
#include <vector>

#include "server/store/index.h"
#include "server/store/sqlite.h"

namespace teleread {

Result<IndexCounts> Index::Counts() {
  std::lock_guard<std::mutex> lock(read_mu_);
  Statement q(reader_db_->handle(),
              "SELECT (SELECT COUNT(*) FROM patients), (SELECT COUNT(*) FROM studies), "
              "(SELECT COUNT(*) FROM series), i.n, i.bytes, "
              "(SELECT COUNT(*) FROM reading_tasks WHERE state = 'waiting'), (SELECT COUNT(*) FROM reading_tasks), "
              "i.in_index, i.in_segments FROM (SELECT COUNT(*) AS n, COALESCE(SUM(size_bytes), 0) AS bytes, "
              "COALESCE(SUM(path GLOB 'index:*'), 0) AS in_index, "
              "COALESCE(SUM(path GLOB 'segments/*'), 0) AS in_segments FROM instances) i");
  Result<bool> row = q.Step();
  if (!row.ok()) return row.status();
  return IndexCounts{q.Int(0), q.Int(1), q.Int(2), q.Int(3), q.Int(4), q.Int(5), q.Int(6), q.Int(7), q.Int(8)};
}

Result<std::vector<StudyOverview>> Index::ListStudies() {
  std::lock_guard<std::mutex> lock(read_mu_);
  Statement q(reader_db_->handle(),
              "SELECT st.member_id, st.study_instance_uid, p.patient_id, st.study_date, "
              "(SELECT GROUP_CONCAT(DISTINCT se.modality) FROM series se WHERE se.study_pk = st.id), "
              "st.study_description, st.priority, st.num_series, st.num_instances, COALESCE(t.state, '') "
              "FROM studies st JOIN patients p ON p.id = st.patient_pk "
              "LEFT JOIN reading_tasks t ON t.study_pk = st.id ORDER BY st.member_id, st.first_received_ms");
  std::vector<StudyOverview> out;
  for (;;) {
    Result<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) break;
    out.push_back(StudyOverview{q.Text(0), q.Text(1), q.Text(2), q.Text(3), q.Text(4), q.Text(5), q.Text(6), q.Int(7),
                                q.Int(8), q.Text(9)});
  }
  return out;
}

Status Index::ForEachSegmentPath(const std::function<void(const std::string&)>& fn) {
  std::lock_guard<std::mutex> lock(read_mu_);
  Statement q(reader_db_->handle(), "SELECT path FROM instances WHERE path >= 'segments/' AND path < 'segments0'");
  for (;;) {
    Result<bool> row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) return Status::Ok();
    fn(q.Text(0));
  }
}

Result<std::string> Index::LastPathInSegment(const std::string& segment) {
  std::lock_guard<std::mutex> lock(read_mu_);
  // Paths "segments/<name>@<offset>+<length>": the UNIQUE index on path gives the segment's rows,
  // and the cast reads the offset (the digits before '+').
  const std::string prefix = segment + "@";
  Statement q(reader_db_->handle(),
              "SELECT path FROM instances WHERE path >= ?1 AND path < ?2 "
              "ORDER BY CAST(substr(path, ?3) AS INTEGER) DESC LIMIT 1");
  q.Bind(1, prefix);
  q.Bind(2, segment + "A");  // 'A' sorts after '@'
  q.Bind(3, static_cast<int64_t>(prefix.size() + 1));
  Result<bool> row = q.Step();
  if (!row.ok()) return row.status();
  return row.value() ? q.Text(0) : std::string();
}

}  // namespace teleread
