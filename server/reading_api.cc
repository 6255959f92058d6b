#include "server/reading_api.h"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "common/log.h"
#include "server/server_app.h"

namespace teleread {
namespace {

using json = nlohmann::json;

// Paths, query values and stored attributes are bytes from outside and need not be UTF-8, which
// json::dump would refuse by throwing; such bytes are shown as U+FFFD instead.
HttpResponse Json(int status, const json& body) {
  return HttpResponse{status, "application/json", body.dump(-1, ' ', false, json::error_handler_t::replace), {}, {}};
}
HttpResponse Error(int status, const std::string& message) { return Json(status, json{{"error", message}}); }

int StatusFor(const Status& s) {
  switch (s.code()) {
    case Status::Code::kNotFound:
      return 404;
    case Status::Code::kConflict:
      return 409;
    case Status::Code::kInvalidArgument:
      return 400;
    case Status::Code::kPermissionDenied:
      return 403;
    case Status::Code::kCorruption:
      return 422;  // well-formed, but its signature or content cannot be trusted
    case Status::Code::kNoSpace:
      return 507;
    default:
      return 500;
  }
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding; a '%' not followed by two hex digits stays as it is.
std::string Decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const int high = s[i] == '%' && i + 2 < s.size() ? HexDigit(s[i + 1]) : -1;
    const int low = high < 0 ? -1 : HexDigit(s[i + 2]);
    if (low >= 0) {
      out += static_cast<char>(high << 4 | low);
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

std::string QueryParam(const std::string& query, const std::string& key) {
  std::istringstream in(query);
  std::string pair;
  while (std::getline(in, pair, '&')) {
    size_t eq = pair.find('=');
    if (Decode(pair.substr(0, eq)) == key) return eq == std::string::npos ? "1" : Decode(pair.substr(eq + 1));
  }
  return "";
}

std::vector<std::string> Split(const std::string& path) {
  std::vector<std::string> parts;
  std::istringstream in(path);
  std::string p;
  while (std::getline(in, p, '/')) {
    if (!p.empty()) parts.push_back(Decode(p));
  }
  return parts;
}

// The next row of a read; an index error becomes a 500 through the transport's exception handler
// rather than a silently short answer.
bool NextRow(Statement& q) {
  Result<bool> row = q.Step();
  if (!row.ok()) throw std::runtime_error("index read failed: " + row.status().message());
  return row.value();
}

json RowJson(const WorklistRow& r) {
  return json{{"study_instance_uid", r.study_instance_uid},
              {"member", r.member_id},
              {"modalities", r.modalities},
              {"body_part", r.body_part},
              {"description", r.study_description},
              {"patient_age", r.patient_age},
              {"patient_sex", r.patient_sex},
              {"patient_name", r.patient_name},
              {"patient_id", r.patient_id},
              {"patient_birth_date", r.patient_birth_date},
              {"study_date", r.study_date},
              {"series", r.num_series},
              {"instances", r.num_instances},
              {"priority", r.priority},
              {"state", r.state},
              {"claimed_by", r.claimed_by.empty() ? json(nullptr) : json(r.claimed_by)},
              {"received_ms", r.received_ms},
              {"complete_ms", r.complete_ms},
              {"due_ms", r.due_ms},
              {"claimed_ms", r.claimed_ms ? json(r.claimed_ms) : json(nullptr)},
              {"lease_expires_ms", r.state == "claimed" ? json(r.lease_expires_ms) : json(nullptr)},
              {"reported_ms", r.reported_ms ? json(r.reported_ms) : json(nullptr)},
              {"delivered_ms", r.delivered_ms ? json(r.delivered_ms) : json(nullptr)},
              {"amended_ms", r.amended_ms ? json(r.amended_ms) : json(nullptr)},
              {"reported_by", r.reported_by.empty() ? json(nullptr) : json(r.reported_by)},
              {"overdue", r.overdue}};
}

}  // namespace

std::optional<Identity> ReadingApi::Identify(const PeerCertificate& peer) const {
  if (peer.common_name.empty()) return std::nullopt;
  if (peer.organizational_unit == "member") {
    for (const Member& m : config_.members) {
      bool match = m.id == peer.common_name;
      for (const std::string& ae : m.ae_titles) match |= ae == peer.common_name;
      if (match) return Identity{m.id, false, m.id};
    }
    return std::nullopt;
  }
  if (peer.organizational_unit == "admin") {
    for (const std::string& a : config_.https.admins) {
      if (a == peer.common_name) return Identity{a, true, ""};
    }
    return std::nullopt;
  }
  // Like members and admins, a radiologist is known by the OU the centre CA gave its certificate,
  // so that no other kind of certificate passes for one by its common name.
  if (peer.organizational_unit != "radiologist") return std::nullopt;
  for (const Radiologist& r : config_.radiologists) {
    if (r.id != peer.common_name) continue;
    if (!r.certificate_subject.empty() && r.certificate_subject != peer.subject) return std::nullopt;
    return Identity{r.id, false, ""};
  }
  return std::nullopt;
}

HttpResponse ReadingApi::Handle(const HttpRequest& request, const PeerCertificate& peer) {
  ++requests_;
  std::optional<Identity> who = Identify(peer);
  if (!who) {
    ++refused_;
    spdlog::warn("HTTPS {} {} refused: certificate '{}' is no radiologist or admin here", request.method,
                 request.target, peer.subject);
    (void)worklist_.Audit(peer.subject.empty() ? "(no certificate)" : peer.subject, "refused", "",
                          request.method + " " + request.target);
    return Error(403, "this certificate does not belong to a configured radiologist, admin or member hospital");
  }
  HttpResponse r = Route(request, *who);
  spdlog::debug("HTTPS {} {} by {}: {}", request.method, request.target, who->id, r.status);
  return r;
}

HttpResponse ReadingApi::Route(const HttpRequest& req, const Identity& who) {
  const size_t q = req.target.find('?');
  const std::string path = req.target.substr(0, q);
  const std::string query = q == std::string::npos ? "" : req.target.substr(q + 1);
  const std::vector<std::string> p = Split(path);
  const bool get = req.method == "GET", post = req.method == "POST";
  if (get && path == "/healthz") return Json(200, json{{"status", "ok"}});
  if (get && path == "/metrics") return Metrics();
  if (p.size() < 2 || p[0] != "api" || p[1] != "v1") return Error(404, "no such endpoint");
  if (get && p.size() == 3 && p[2] == "whoami") {
    std::string name = who.id;  // the radiologist's DICOM person name, for the reports they sign
    for (const Radiologist& r : config_.radiologists) {
      if (r.id == who.id && who.member_id.empty() && !who.admin) name = r.name;
    }
    return Json(200, json{{"id", who.id},
                          {"name", name},
                          {"role", who.admin ? "admin" : !who.member_id.empty() ? "member" : "radiologist"},
                          {"server", config_.centre.name},
                          {"ae_title", config_.centre.ae_title}});
  }
  if (get && p.size() == 3 && p[2] == "reports") return Reports("", query, who);
  if (get && p.size() == 4 && p[2] == "reports") return ReportFile(p[3], who);
  if (get && p.size() == 5 && p[2] == "studies" && p[4] == "reports") return Reports(p[3], query, who);
  // Member hospitals read their reports; the rest is the reading centre's.
  if (!who.member_id.empty()) return Error(403, "a member hospital may only list and download its reports");
  if (get && p.size() == 3 && p[2] == "deliveries") {
    if (!who.admin) return Error(403, "only an admin may list the delivery outbox");
    return Deliveries(query, who);
  }
  if (post && p.size() == 5 && p[2] == "deliveries" && p[4] == "retry") {
    if (!who.admin) return Error(403, "only an admin may retry a delivery");
    if (!outbox_) return Error(503, "report delivery is not running");
    int64_t id = 0;
    try {
      id = std::stoll(p[3]);
    } catch (const std::exception&) {
      return Error(400, "a delivery id is a number");
    }
    if (Status st = outbox_->Retry(id, who.id); !st.ok()) return Error(StatusFor(st), st.message());
    return Json(200, json{{"id", id}, {"state", "pending"}});
  }
  if (get && p.size() == 3 && p[2] == "worklist") return WorklistPage(query, who);
  if (p.size() >= 4 && p[2] == "studies") {
    const std::string& uid = p[3];
    if (get && p.size() == 4) return Study(uid, who);
    if (get && p.size() == 5 && p[4] == "priors") return Priors(uid, who);
    if (get && p.size() == 5 && p[4] == "archive") return Archive(uid, who);
    if (get && p.size() == 6 && p[4] == "instances") return Instance(uid, p[5], who);
    if (post && p.size() == 5 && p[4] == "reports") return SubmitReport(uid, req, who);
    if (post && p.size() == 5) return ClaimAction(uid, p[4], query, who);
  }
  return Error(404, "no such endpoint");
}

HttpResponse ReadingApi::WorklistPage(const std::string& query, const Identity& who) {
  WorklistFilter f;
  f.modality = QueryParam(query, "modality");
  f.member_id = QueryParam(query, "member");
  // A typo in a member id would otherwise look like an empty worklist.
  if (!f.member_id.empty()) {
    std::string known;
    bool found = false;
    for (const Member& m : config_.members) {
      found |= m.id == f.member_id;
      known += (known.empty() ? "" : ", ") + m.id;
    }
    if (!found) return Error(400, "no member hospital '" + f.member_id + "'; members: " + known);
  }
  f.priority = QueryParam(query, "priority");
  f.state = QueryParam(query, "state");
  if (QueryParam(query, "mine") == "1") f.claimed_by = who.id;
  try {
    if (std::string l = QueryParam(query, "limit"); !l.empty()) f.limit = std::stoi(l);
    if (std::string o = QueryParam(query, "offset"); !o.empty()) f.offset = std::stoi(o);
  } catch (const std::exception&) {
    return Error(400, "limit and offset must be numbers");
  }
  if (!f.state.empty() && f.state != "waiting" && f.state != "claimed" && f.state != "reported") {
    return Error(400, "state must be waiting, claimed or reported");
  }
  Result<std::vector<WorklistRow>> rows = worklist_.List(f);
  if (!rows.ok()) return Error(500, rows.status().message());
  json items = json::array();
  for (const WorklistRow& r : rows.value()) items.push_back(RowJson(r));
  return Json(200, json{{"items", items}, {"limit", f.limit}, {"offset", f.offset}});
}

HttpResponse ReadingApi::Study(const std::string& uid, const Identity& who) {
  Result<std::unique_ptr<Database>> db = index_.OpenReader();
  if (!db.ok()) return Error(500, db.status().message());
  Statement st(db.value()->handle(),
               "SELECT st.id, st.member_id, st.study_date, st.study_time, st.accession_number, st.study_description, "
               "st.referring_physician_name, st.institution_name, st.patient_age, p.sex, p.birth_date, st.modalities, "
               "p.patient_name, p.patient_id, p.issuer_of_patient_id FROM studies st JOIN patients p ON p.id = st.patient_pk WHERE st.study_instance_uid = ?1");
  st.Bind(1, uid);
  Result<bool> found = st.Step();
  if (!found.ok()) return Error(500, found.status().message());
  if (!found.value()) return Error(404, "no study " + uid);
  json study{{"study_instance_uid", uid},      {"member", st.Text(1)},         {"study_date", st.Text(2)},
             {"study_time", st.Text(3)},       {"accession_number", st.Text(4)}, {"description", st.Text(5)},
             {"referring_physician", st.Text(6)}, {"institution", st.Text(7)},   {"patient_age", st.Text(8)},
             {"patient_sex", st.Text(9)},      {"patient_birth_date", st.Text(10)}, {"modalities", st.Text(11)},
             {"patient_name", st.Text(12)},    {"patient_id", st.Text(13)},    {"issuer_of_patient_id", st.Text(14)}};
  const int64_t study_pk = st.Int(0);
  Statement se(db.value()->handle(),
               "SELECT id, series_instance_uid, modality, series_number, series_description, body_part_examined, "
               "num_instances FROM series WHERE study_pk = ?1 ORDER BY CAST(series_number AS INTEGER), id");
  se.Bind(1, study_pk);
  json series = json::array();
  while (NextRow(se)) {
    Statement in(db.value()->handle(),
                 "SELECT sop_instance_uid, sop_class_uid, instance_number, transfer_syntax_uid, size_bytes "
                 "FROM instances WHERE series_pk = ?1 ORDER BY CAST(instance_number AS INTEGER), id");
    in.Bind(1, se.Int(0));
    json instances = json::array();
    while (NextRow(in)) {
      instances.push_back(json{{"sop_instance_uid", in.Text(0)},
                               {"sop_class_uid", in.Text(1)},
                               {"instance_number", in.Text(2)},
                               {"transfer_syntax_uid", in.Text(3)},
                               {"size_bytes", in.Int(4)}});
    }
    series.push_back(json{{"series_instance_uid", se.Text(1)},
                          {"modality", se.Text(2)},
                          {"series_number", se.Text(3)},
                          {"description", se.Text(4)},
                          {"body_part", se.Text(5)},
                          {"instance_count", se.Int(6)},
                          {"instances", instances}});
  }
  study["series"] = series;
  Result<WorklistRow> task = worklist_.Task(uid);
  study["task"] = task.ok() ? RowJson(task.value()) : json(nullptr);
  (void)worklist_.Audit(who.id, "view", uid, "");
  return Json(200, study);
}

HttpResponse ReadingApi::Instance(const std::string& uid, const std::string& sop, const Identity& who) {
  std::optional<StoredInstance> found = index_.FindInstance(sop);
  if (!found) return Error(404, "no instance " + sop);
  // The instance must belong to the study named in the path.
  Result<std::unique_ptr<Database>> db = index_.OpenReader();
  if (!db.ok()) return Error(500, db.status().message());
  Statement q(db.value()->handle(),
              "SELECT 1 FROM instances i JOIN series se ON se.id = i.series_pk JOIN studies st ON st.id = se.study_pk "
              "WHERE i.sop_instance_uid = ?1 AND st.study_instance_uid = ?2");
  q.Bind(1, sop).Bind(2, uid);
  if (!NextRow(q)) return Error(404, "instance " + sop + " is not in study " + uid);
  (void)worklist_.Audit(who.id, "download", uid, sop);
  HttpResponse r;
  r.content_type = "application/dicom";
  r.file = store_.Absolute(found->relative_path);
  return r;
}

HttpResponse ReadingApi::Archive(const std::string& uid, const Identity& who) {
  Result<std::unique_ptr<Database>> db = index_.OpenReader();
  if (!db.ok()) return Error(500, db.status().message());
  Statement q(db.value()->handle(),
              "SELECT se.series_instance_uid, i.sop_instance_uid, i.path FROM instances i JOIN series se ON se.id = "
              "i.series_pk JOIN studies st ON st.id = se.study_pk WHERE st.study_instance_uid = ?1 "
              "ORDER BY se.id, CAST(i.instance_number AS INTEGER), i.id");
  q.Bind(1, uid);
  HttpResponse r;
  while (NextRow(q)) {
    // Names stay under tar's 100-character field: the series' and instance's last UID components.
    auto tail = [](const std::string& u) { return u.size() > 40 ? u.substr(u.size() - 40) : u; };
    r.tar.emplace_back(tail(q.Text(0)) + "/" + tail(q.Text(1)) + ".dcm", store_.Absolute(q.Text(2)));
  }
  if (r.tar.empty()) return Error(404, "no study " + uid);
  (void)worklist_.Audit(who.id, "download", uid, "whole study");
  r.content_type = "application/x-tar";
  return r;
}

HttpResponse ReadingApi::Priors(const std::string& uid, const Identity& who) {
  Result<std::unique_ptr<Database>> db = index_.OpenReader();
  if (!db.ok()) return Error(500, db.status().message());
  // Same member and Patient ID, or another member's patient sharing an Other Patient ID (the
  // consortium's national identifier): the mutual recognition of exams.
  Statement q(db.value()->handle(),
              "WITH me AS (SELECT p.id AS pk, p.member_id, p.patient_id, p.other_patient_ids FROM studies st "
              "JOIN patients p ON p.id = st.patient_pk WHERE st.study_instance_uid = ?1), "
              "same AS (SELECT p.id FROM patients p, me WHERE (p.member_id = me.member_id AND p.patient_id = "
              "me.patient_id) OR (me.other_patient_ids <> '' AND (p.other_patient_ids = me.other_patient_ids OR "
              "instr('\\' || p.other_patient_ids || '\\', '\\' || me.other_patient_ids || '\\') > 0 OR "
              "instr('\\' || me.other_patient_ids || '\\', '\\' || p.other_patient_ids || '\\') > 0) AND "
              "p.other_patient_ids <> '')) "
              "SELECT st.study_instance_uid, st.member_id, st.study_date, st.modalities, st.study_description, "
              "st.num_instances FROM studies st WHERE st.patient_pk IN (SELECT id FROM same) AND "
              "st.study_instance_uid <> ?1 ORDER BY st.study_date DESC");
  q.Bind(1, uid);
  json priors = json::array();
  for (;;) {
    Result<bool> row = q.Step();
    if (!row.ok()) return Error(500, row.status().message());
    if (!row.value()) break;
    priors.push_back(json{{"study_instance_uid", q.Text(0)},
                          {"member", q.Text(1)},
                          {"study_date", q.Text(2)},
                          {"modalities", q.Text(3)},
                          {"description", q.Text(4)},
                          {"instances", q.Int(5)}});
  }
  (void)who;
  return Json(200, json{{"study_instance_uid", uid}, {"priors", priors}});
}

HttpResponse ReadingApi::ClaimAction(const std::string& uid, const std::string& action, const std::string& query,
                                     const Identity& who) {
  Result<WorklistRow> row = Status::InvalidArgument("unknown action");
  if (action == "claim") {
    row = worklist_.Claim(uid, who.id);
    if (!row.ok() && row.status().code() == Status::Code::kConflict) {
      const std::string& holder = row.status().message();
      return Json(409, json{{"error", holder == "already reported" ? "the study is already reported"
                                                                   : "claimed by " + holder},
                            {"claimed_by", holder == "already reported" ? json(nullptr) : json(holder)}});
    }
  } else if (action == "renew") {
    row = worklist_.Renew(uid, who.id);
  } else if (action == "release") {
    Status s = worklist_.Release(uid, who.id);
    if (!s.ok()) return Error(StatusFor(s), s.message());
    row = worklist_.Task(uid);
  } else if (action == "reassign") {
    if (!who.admin) return Error(403, "only an admin may reassign a claim");
    const std::string to = QueryParam(query, "to");
    bool known = false;
    for (const Radiologist& r : config_.radiologists) known |= r.id == to;
    if (!known) return Error(400, "'to' must name a configured radiologist");
    row = worklist_.Reassign(uid, to);
    if (row.ok()) (void)worklist_.Audit(who.id, "reassign", uid, to);
  } else {
    return Error(404, "no such action: " + action);
  }
  if (!row.ok()) return Error(StatusFor(row.status()), row.status().message());
  return Json(200, RowJson(row.value()));
}

HttpResponse ReadingApi::SubmitReport(const std::string& uid, const HttpRequest& req, const Identity& who) {
  if (who.admin) return Error(403, "reports are signed and submitted by radiologists");
  if (!desk_) return Error(503, "report acceptance is not running");
  if (!req.content_type.empty() && req.content_type != "application/dicom") {
    return Error(415, "send the signed report as application/dicom");
  }
  Result<AcceptedReport> r = desk_->Accept(uid, req.body, who.id);
  if (!r.ok()) {
    spdlog::warn("report for study {} from {} refused: {}", uid, who.id, r.status().message());
    (void)worklist_.Audit(who.id, "report-refused", uid, r.status().message());
    return Error(StatusFor(r.status()), r.status().message());
  }
  return Json(r->resent ? 200 : 201, json{{"sop_instance_uid", r->sop_instance_uid},
                        {"series_instance_uid", r->series_instance_uid},
                        {"study_instance_uid", r->study_instance_uid},
                        {"signer", r->signer},
                        {"signed_at", r->signed_at},
                        {"amends", r->predecessor_sop_instance_uid.empty() ? json(nullptr)
                                                                          : json(r->predecessor_sop_instance_uid)},
                        {"critical", r->critical},
                        {"accepted_ms", r->accepted_ms},
                        {"delivery", "pending"}});
}

HttpResponse ReadingApi::Reports(const std::string& study_uid, const std::string& query, const Identity& who) {
  const std::string study = study_uid.empty() ? QueryParam(query, "study") : study_uid;
  const std::string accession = QueryParam(query, "accession"), patient = QueryParam(query, "patient");
  if (study.empty() && accession.empty() && patient.empty()) {
    return Error(400, "name a study, an accession or a patient");
  }
  Result<std::unique_ptr<Database>> db = index_.OpenReader();
  if (!db.ok()) return Error(500, db.status().message());
  Statement q(db.value()->handle(),
              "SELECT r.sop_instance_uid, st.study_instance_uid, se.series_instance_uid, st.member_id, "
              "st.accession_number, p.patient_id, r.signer, r.signed_at, r.accepted_ms, r.predecessor_sop_instance_uid, "
              "r.critical, COALESCE((SELECT n.sop_instance_uid FROM reports n WHERE n.predecessor_sop_instance_uid = "
              "r.sop_instance_uid), ''), COALESCE(d.state, ''), COALESCE(d.attempts, 0), COALESCE(d.delivered_ms, 0), "
              "COALESCE(d.last_error, ''), i.size_bytes "
              "FROM reports r JOIN studies st ON st.id = r.study_pk JOIN patients p ON p.id = st.patient_pk "
              "JOIN instances i ON i.sop_instance_uid = r.sop_instance_uid JOIN series se ON se.id = i.series_pk "
              "LEFT JOIN deliveries d ON d.sop_instance_uid = r.sop_instance_uid "
              "WHERE (?1 = '' OR st.study_instance_uid = ?1) AND (?2 = '' OR st.accession_number = ?2) "
              "AND (?3 = '' OR p.patient_id = ?3) AND (?4 = '' OR st.member_id = ?4) ORDER BY r.accepted_ms, r.id");
  q.Bind(1, study).Bind(2, accession).Bind(3, patient).Bind(4, who.member_id);
  json items = json::array();
  while (NextRow(q)) {
    items.push_back(json{{"sop_instance_uid", q.Text(0)},
                         {"study_instance_uid", q.Text(1)},
                         {"series_instance_uid", q.Text(2)},
                         {"member", q.Text(3)},
                         {"accession_number", q.Text(4)},
                         {"patient_id", q.Text(5)},
                         {"signer", q.Text(6)},
                         {"signed_at", q.Text(7)},
                         {"accepted_ms", q.Int(8)},
                         {"amends", q.Text(9).empty() ? json(nullptr) : json(q.Text(9))},
                         {"critical", q.Int(10) != 0},
                         {"amended_by", q.Text(11).empty() ? json(nullptr) : json(q.Text(11))},
                         {"delivery", json{{"state", q.Text(12)},
                                           {"attempts", q.Int(13)},
                                           {"delivered_ms", q.Int(14) ? json(q.Int(14)) : json(nullptr)},
                                           {"last_error", q.Text(15)}}},
                         {"size_bytes", q.Int(16)}});
  }
  (void)worklist_.Audit(who.id, "list-reports", study, accession.empty() ? patient : accession);
  return Json(200, json{{"items", items}});
}

HttpResponse ReadingApi::ReportFile(const std::string& sop, const Identity& who) {
  Result<std::unique_ptr<Database>> db = index_.OpenReader();
  if (!db.ok()) return Error(500, db.status().message());
  Statement q(db.value()->handle(),
              "SELECT i.path, st.study_instance_uid FROM reports r JOIN studies st ON st.id = r.study_pk "
              "JOIN instances i ON i.sop_instance_uid = r.sop_instance_uid WHERE r.sop_instance_uid = ?1 "
              "AND (?2 = '' OR st.member_id = ?2)");
  q.Bind(1, sop).Bind(2, who.member_id);
  // Another member's report reads as absent.
  if (!NextRow(q)) return Error(404, "no report " + sop);
  (void)worklist_.Audit(who.id, "download", q.Text(1), "report " + sop);
  HttpResponse r;
  r.content_type = "application/dicom";
  r.file = store_.Absolute(q.Text(0));
  return r;
}

HttpResponse ReadingApi::Deliveries(const std::string& query, const Identity& who) {
  if (!outbox_) return Error(503, "report delivery is not running");
  const std::string state = QueryParam(query, "state");
  if (!state.empty() && state != "pending" && state != "delivered" && state != "dead") {
    return Error(400, "state must be pending, delivered or dead");
  }
  int limit = 100;
  try {
    if (std::string l = QueryParam(query, "limit"); !l.empty()) limit = std::clamp(std::stoi(l), 1, 1000);
  } catch (const std::exception&) {
    return Error(400, "limit must be a number");
  }
  Result<std::vector<DeliveryRow>> rows = outbox_->List(state, QueryParam(query, "study"), limit);
  if (!rows.ok()) return Error(500, rows.status().message());
  json items = json::array();
  for (const DeliveryRow& d : rows.value()) {
    items.push_back(json{{"id", d.id},
                         {"sop_instance_uid", d.sop_instance_uid},
                         {"study_instance_uid", d.study_instance_uid},
                         {"member", d.member_id},
                         {"state", d.state},
                         {"attempts", d.attempts},
                         {"next_attempt_ms", d.state == "pending" ? json(d.next_attempt_ms) : json(nullptr)},
                         {"created_ms", d.created_ms},
                         {"delivered_ms", d.delivered_ms ? json(d.delivered_ms) : json(nullptr)},
                         {"last_attempt_ms", d.last_attempt_ms ? json(d.last_attempt_ms) : json(nullptr)},
                         {"last_error", d.last_error}});
  }
  (void)who;
  return Json(200, json{{"items", items}});
}

HttpResponse ReadingApi::Metrics() {
  std::ostringstream m;
  if (dicom_stats_) {
    m << "# TYPE teleread_dicom_associations_total counter\nteleread_dicom_associations_total "
      << dicom_stats_->associations.load() << "\n";
    m << "# TYPE teleread_dicom_associations_rejected_total counter\nteleread_dicom_associations_rejected_total "
      << dicom_stats_->rejected.load() << "\n";
    m << "# TYPE teleread_ingest_instances_total counter\nteleread_ingest_instances_total "
      << dicom_stats_->stored.load() << "\n";
    m << "# TYPE teleread_ingest_refused_total counter\nteleread_ingest_refused_total " << dicom_stats_->refused.load()
      << "\n";
    m << "# TYPE teleread_ingest_bytes_total counter\nteleread_ingest_bytes_total " << dicom_stats_->bytes.load()
      << "\n";
    m << "# TYPE teleread_dicom_tls_associations_total counter\nteleread_dicom_tls_associations_total "
      << dicom_stats_->tls_associations.load() << "\n";
    m << "# TYPE teleread_dicom_tls_refused_total counter\nteleread_dicom_tls_refused_total "
      << dicom_stats_->tls_refused.load() << "\n";
  }
  if (certificates_) {
    m << certificates_->Metrics(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  }
  Result<TaskCounts> c = worklist_.Counts();
  if (c.ok()) {
    m << "# TYPE teleread_tasks gauge\n";
    m << "teleread_tasks{state=\"waiting\"} " << c->waiting << "\n";
    m << "teleread_tasks{state=\"claimed\"} " << c->claimed << "\n";
    m << "teleread_tasks{state=\"reported\"} " << c->reported << "\n";
    m << "# TYPE teleread_tasks_open_by_priority gauge\n";
    for (const auto& [priority, n] : c->open_by_priority) {
      m << "teleread_tasks_open_by_priority{priority=\"" << priority << "\"} " << n << "\n";
    }
    m << "# TYPE teleread_tasks_overdue gauge\nteleread_tasks_overdue " << c->overdue << "\n";
    auto histogram = [&m](const char* name, const Histogram& h) {
      m << "# TYPE " << name << " histogram\n";
      for (size_t i = 0; i < std::size(Histogram::kBounds); ++i) {
        m << name << "_bucket{le=\"" << Histogram::kBounds[i] << "\"} " << h.buckets[i] << "\n";
      }
      m << name << "_bucket{le=\"+Inf\"} " << h.count << "\n" << name << "_sum " << h.sum << "\n"
        << name << "_count " << h.count << "\n";
    };
    histogram("teleread_turnaround_claim_seconds", c->complete_to_claim);
    histogram("teleread_turnaround_report_seconds", c->complete_to_report);
    histogram("teleread_turnaround_delivery_seconds", c->report_to_delivery);
  }
  if (outbox_) {
    if (Result<DeliveryCounts> d = outbox_->Counts(); d.ok()) {
      m << "# TYPE teleread_report_deliveries gauge\n";
      m << "teleread_report_deliveries{state=\"pending\"} " << d->pending << "\n";
      m << "teleread_report_deliveries{state=\"delivered\"} " << d->delivered << "\n";
      m << "teleread_report_deliveries{state=\"dead\"} " << d->dead << "\n";
      m << "# TYPE teleread_report_delivery_oldest_pending_seconds gauge\n"
        << "teleread_report_delivery_oldest_pending_seconds "
        << (d->oldest_pending_ms ? (NowMs() - d->oldest_pending_ms) / 1000.0 : 0.0) << "\n";
    }
  }
  m << "# TYPE teleread_http_requests_total counter\nteleread_http_requests_total " << requests_.load() << "\n";
  m << "# TYPE teleread_http_refused_total counter\nteleread_http_refused_total " << refused_.load() << "\n";
  return HttpResponse{200, "text/plain; version=0.0.4", m.str(), {}, {}};
}

}  // namespace teleread
