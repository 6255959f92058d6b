#include "server/http/reading_api.h"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/clock.h"
#include "common/log.h"
#include "server/http/api_reply.h"
#include "server/http/gzip_splice.h"
#include "server/http/request_trace.h"

namespace teleread {
namespace {

using json = nlohmann::json;
using api::AuditFailed;
using api::Error;
using api::Json;
using api::QueryParam;
using api::RowJson;
using api::StatusFor;

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

std::vector<std::string> Split(const std::string& path) {
  std::vector<std::string> parts;
  std::istringstream in(path);
  std::string p;
  while (std::getline(in, p, '/')) {
    if (!p.empty()) parts.push_back(Decode(p));
  }
  return parts;
}

}  // namespace

namespace api {

HttpResponse AuditFailed(const Status& s) {
  spdlog::error("audit entry not written, request refused: {}", s.message());
  return Error(503, "the audit trail cannot be written, so nothing is served");
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

}  // namespace api

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

std::optional<HttpResponse> ReadingApi::Admit(const HttpRequest& head, const PeerCertificate& peer,
                                              uint64_t& body_limit) {
  // A signed report is a Basic Text SR of a few kB plus its evidence references; 8 MB leaves room
  // for thousands of referenced instances. Nothing else takes a body beyond a few parameters.
  constexpr uint64_t kReportBytes = 8ull << 20;
  constexpr uint64_t kOtherBytes = 64ull << 10;
  std::optional<Identity> who = Identify(peer);
  if (!who) {
    // Refused and audited by Handle, before any body: on the handler pool, since the audit entry
    // waits for its commit and this runs on a TLS I/O thread.
    return DeferredResponse([this, head, peer] { return Handle(head, peer); });
  }
  const std::string path = head.target.substr(0, head.target.find('?'));
  const std::vector<std::string> p = Split(path);
  const bool report = head.method == "POST" && p.size() == 5 && p[0] == "api" && p[2] == "studies" && p[4] == "reports";
  if (report && (who->admin || !who->member_id.empty())) {
    return Error(403, "reports are signed and submitted by radiologists");
  }
  body_limit = std::min(body_limit, report ? kReportBytes : kOtherBytes);
  return std::nullopt;
}

HttpResponse ReadingApi::Handle(const HttpRequest& request, const PeerCertificate& peer) {
  ++requests_;
  std::optional<Identity> who = Identify(peer);
  if (!who) {
    ++refused_;
    spdlog::warn("HTTPS {} {} refused: certificate '{}' is no radiologist or admin here", request.method,
                 request.target, peer.subject);
    (void)refusals_.Refused(peer.subject.empty() ? "(no certificate)" : peer.subject,
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
                          {"role", who.admin                ? "admin"
                                   : !who.member_id.empty() ? "member"
                                                            : "radiologist"},
                          {"server", config_.centre.name},
                          {"ae_title", config_.centre.ae_title}});
  }
  if (get && p.size() == 3 && p[2] == "reports") return Reports("", query, who);
  if (get && p.size() == 4 && p[2] == "reports") return ReportFile(p[3], who);
  if (get && p.size() == 5 && p[2] == "reports" && p[4] == "pdf")
    return ReportPdf(p[3], QueryParam(query, "format"), who);
  if (get && p.size() == 5 && p[2] == "studies" && p[4] == "reports") return Reports(p[3], query, who);
  if (get && p.size() == 3 && p[2] == "critical") return CriticalList(QueryParam(query, "state"), who);
  if (post && p.size() == 5 && p[2] == "reports" && p[4] == "acknowledge") {
    return Acknowledge(p[3], QueryParam(query, "by"), req, who);
  }
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
  if (get && p.size() == 3 && p[2] == "worklist") return WorklistPage(query, who, AcceptsGzip(req.accept_encoding));
  if (p.size() >= 4 && p[2] == "studies") {
    const std::string& uid = p[3];
    if (get && p.size() == 4) return Study(uid, who);
    if (get && p.size() == 5 && p[4] == "priors") return Priors(uid, who);
    if (get && p.size() == 5 && p[4] == "archive") return Archive(uid, who);
    if (get && p.size() == 5 && p[4] == "template") return StudyTemplate(uid, QueryParam(query, "name"), who);
    if (get && p.size() == 6 && p[4] == "instances") return Instance(uid, p[5], who);
    if (post && p.size() == 5 && p[4] == "reports") return SubmitReport(uid, req, who);
    if (post && p.size() == 5) return ClaimAction(uid, p[4], query, who);
  }
  return Error(404, "no such endpoint");
}

HttpResponse ReadingApi::Study(const std::string& uid, const Identity& who) {
  Result<StudyDetail> found = reads_.Study(uid);
  if (!found.ok()) return Error(StatusFor(found.status()), found.status().message());
  const StudyDetail& d = found.value();
  json study{{"study_instance_uid", uid},
             {"member", d.member_id},
             {"study_date", d.study_date},
             {"study_time", d.study_time},
             {"accession_number", d.accession_number},
             {"description", d.description},
             {"referring_physician", d.referring_physician},
             {"institution", d.institution},
             {"patient_name", d.patient_name},
             {"patient_id", d.patient_id},
             {"issuer_of_patient_id", d.issuer_of_patient_id},
             {"patient_age", d.patient_age},
             {"patient_sex", d.patient_sex},
             {"patient_birth_date", d.patient_birth_date},
             {"modalities", d.modalities}};
  json series = json::array();
  for (const SeriesEntry& se : d.series) {
    json instances = json::array();
    for (const InstanceEntry& in : se.instances) {
      instances.push_back(json{{"sop_instance_uid", in.sop_instance_uid},
                               {"sop_class_uid", in.sop_class_uid},
                               {"instance_number", in.instance_number},
                               {"transfer_syntax_uid", in.transfer_syntax_uid},
                               {"size_bytes", in.size_bytes}});
    }
    series.push_back(json{{"series_instance_uid", se.series_instance_uid},
                          {"modality", se.modality},
                          {"series_number", se.series_number},
                          {"description", se.description},
                          {"body_part", se.body_part},
                          {"instance_count", se.instance_count},
                          {"instances", instances}});
  }
  study["series"] = series;
  Result<WorklistRow> task = worklist_.Task(uid);
  study["task"] = task.ok() ? RowJson(task.value()) : json(nullptr);
  if (Status a = worklist_.Audit(who.id, "view", uid, ""); !a.ok()) return AuditFailed(a);
  return Json(200, study);
}

HttpResponse ReadingApi::Instance(const std::string& uid, const std::string& sop, const Identity& who) {
  Result<std::string> path = reads_.InstancePath(uid, sop);
  if (!path.ok()) return Error(StatusFor(path.status()), path.status().message());
  if (Status a = worklist_.Audit(who.id, "download", uid, sop); !a.ok()) return AuditFailed(a);
  return StoredObject(path.value());
}

HttpResponse ReadingApi::StoredObject(const std::string& relative_path) const {
  Result<ObjectHandle> object = store_.Open(relative_path);
  if (!object.ok()) {
    // Missing is 404; an unreadable disk or index is the server's trouble: 503, try again later.
    const bool missing = object.status().code() == Status::Code::kNotFound;
    return Error(missing ? 404 : 503,
                 missing ? "object file missing" : "object unreadable: " + object.status().message());
  }
  HttpResponse r;
  r.content_type = "application/dicom";
  r.file = object->path();
  r.object = std::make_shared<ObjectHandle>(std::move(object.value()));  // open until the response opens it
  return r;
}

HttpResponse ReadingApi::Archive(const std::string& uid, const Identity& who) {
  Result<std::vector<ArchiveEntry>> entries = reads_.Archive(uid);
  if (!entries.ok()) return Error(500, entries.status().message());
  HttpResponse r;
  for (const ArchiveEntry& e : entries.value()) {
    // Names stay under tar's 100-character field: the series' and instance's last UID components.
    auto tail = [](const std::string& u) { return u.size() > 40 ? u.substr(u.size() - 40) : u; };
    r.tar.emplace_back(tail(e.series_instance_uid) + "/" + tail(e.sop_instance_uid) + ".dcm", e.relative_path);
  }
  r.objects = &store_;
  if (r.tar.empty()) return Error(404, "no study " + uid);
  if (Status a = worklist_.Audit(who.id, "download", uid, "whole study"); !a.ok()) return AuditFailed(a);
  r.content_type = "application/x-tar";
  return r;
}

HttpResponse ReadingApi::Priors(const std::string& uid, const Identity& who) {
  Result<std::vector<PriorStudy>> found = reads_.Priors(uid);
  if (!found.ok()) return Error(500, found.status().message());
  json priors = json::array();
  for (const PriorStudy& p : found.value()) {
    priors.push_back(json{{"study_instance_uid", p.study_instance_uid},
                          {"member", p.member_id},
                          {"study_date", p.study_date},
                          {"modalities", p.modalities},
                          {"description", p.description},
                          {"instances", p.instances}});
  }
  // Priors name other studies of the patient, across members: a read like any other.
  if (Status a = worklist_.Audit(who.id, "view-priors", uid, std::to_string(priors.size()) + " prior(s)"); !a.ok()) {
    return AuditFailed(a);
  }
  return Json(200, json{{"study_instance_uid", uid}, {"priors", priors}});
}

HttpResponse ReadingApi::ClaimAction(const std::string& uid, const std::string& action, const std::string& query,
                                     const Identity& who) {
  TraceTimer sql(&RequestTrace::sql_us);  // the claim's reads and its write (its audit row commits with it)
  Result<WorklistRow> row = Status::InvalidArgument("unknown action");
  if (action == "claim") {
    row = worklist_.Claim(uid, who.id);
    if (!row.ok() && row.status().code() == Status::Code::kConflict) {
      const std::string& holder = row.status().message();
      return Json(
          409, json{{"error", holder == "already reported" ? "the study is already reported" : "claimed by " + holder},
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
    row = worklist_.Reassign(uid, to, who.id);
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
  return Json(
      r->resent ? 200 : 201,
      json{{"sop_instance_uid", r->sop_instance_uid},
           {"series_instance_uid", r->series_instance_uid},
           {"study_instance_uid", r->study_instance_uid},
           {"signer", r->signer},
           {"signed_at", r->signed_at},
           {"amends", r->predecessor_sop_instance_uid.empty() ? json(nullptr) : json(r->predecessor_sop_instance_uid)},
           {"critical", r->critical},
           {"accepted_ms", r->accepted_ms},
           {"pdf_sop_instance_uid", r->pdf_sop_instance_uid.empty() ? json(nullptr) : json(r->pdf_sop_instance_uid)},
           {"delivery", "pending"}});
}

HttpResponse ReadingApi::Reports(const std::string& study_uid, const std::string& query, const Identity& who) {
  const std::string study = study_uid.empty() ? QueryParam(query, "study") : study_uid;
  const std::string accession = QueryParam(query, "accession"), patient = QueryParam(query, "patient");
  if (study.empty() && accession.empty() && patient.empty()) {
    return Error(400, "name a study, an accession or a patient");
  }
  Result<std::vector<ReportListing>> found = reads_.Reports(ReportQuery{study, accession, patient, who.member_id});
  if (!found.ok()) return Error(500, found.status().message());
  json items = json::array();
  for (const ReportListing& l : found.value()) {
    items.push_back(json{
        {"sop_instance_uid", l.sop_instance_uid},
        {"study_instance_uid", l.study_instance_uid},
        {"series_instance_uid", l.series_instance_uid},
        {"member", l.member_id},
        {"accession_number", l.accession_number},
        {"patient_id", l.patient_id},
        {"signer", l.signer},
        {"signed_at", l.signed_at},
        {"accepted_ms", l.accepted_ms},
        {"amends", l.amends.empty() ? json(nullptr) : json(l.amends)},
        {"critical", l.critical},
        {"amended_by", l.amended_by.empty() ? json(nullptr) : json(l.amended_by)},
        {"delivery", json{{"state", l.delivery_state},
                          {"attempts", l.delivery_attempts},
                          {"delivered_ms", l.delivered_ms ? json(l.delivered_ms) : json(nullptr)},
                          {"last_error", l.delivery_error}}},
        {"size_bytes", l.size_bytes},
        {"pdf", l.pdf_sop_instance_uid.empty()
                    ? json(nullptr)
                    : json{{"sop_instance_uid", l.pdf_sop_instance_uid},
                           {"delivery",
                            json{{"state", l.pdf_delivery_state},
                                 {"delivered_ms", l.pdf_delivered_ms ? json(l.pdf_delivered_ms) : json(nullptr)}}}}}});
  }
  if (Status a = worklist_.Audit(who.id, "list-reports", study, accession.empty() ? patient : accession); !a.ok()) {
    return AuditFailed(a);
  }
  return Json(200, json{{"items", items}});
}

HttpResponse ReadingApi::ReportFile(const std::string& sop, const Identity& who) {
  // Another member's report reads as absent.
  Result<StoredReport> found = reads_.Report(sop, who.member_id);
  if (!found.ok()) return Error(StatusFor(found.status()), found.status().message());
  if (Status a = worklist_.Audit(who.id, "download", found->study_instance_uid, "report " + sop); !a.ok()) {
    return AuditFailed(a);
  }
  return StoredObject(found->relative_path);
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
                         {"last_error", d.last_error},
                         {"report_sop_instance_uid", d.report_sop_instance_uid},
                         {"object", d.report_sop_instance_uid == d.sop_instance_uid ? "sr" : "pdf"}});
  }
  (void)who;
  return Json(200, json{{"items", items}});
}

HttpResponse ReadingApi::Metrics() {
  std::ostringstream m;
  for (const MetricsSource& source : metrics_) m << source();
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
    if (Result<std::vector<WorklistRow>> u = worklist_.Unroutable(); u.ok()) {
      m << "# TYPE teleread_tasks_unroutable gauge\nteleread_tasks_unroutable " << u->size() << "\n";
    }
    auto histogram = [&m](const char* name, const Histogram& h) {
      m << "# TYPE " << name << " histogram\n";
      for (size_t i = 0; i < std::size(Histogram::kBounds); ++i) {
        m << name << "_bucket{le=\"" << Histogram::kBounds[i] << "\"} " << h.buckets[i] << "\n";
      }
      m << name << "_bucket{le=\"+Inf\"} " << h.count << "\n"
        << name << "_sum " << h.sum << "\n"
        << name << "_count " << h.count << "\n";
    };
    histogram("teleread_turnaround_claim_seconds", c->complete_to_claim);
    histogram("teleread_turnaround_report_seconds", c->complete_to_report);
    histogram("teleread_turnaround_delivery_seconds", c->report_to_delivery);
    histogram("teleread_turnaround_acknowledged_seconds", c->report_to_acknowledged);
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
  m << CriticalMetrics();
  m << "# TYPE teleread_worklist_pages_kept_total counter\nteleread_worklist_pages_kept_total " << pages_.hits()
    << "\n";
  m << "# TYPE teleread_worklist_pages_read_ahead_total counter\nteleread_worklist_pages_read_ahead_total "
    << (read_ahead_ ? read_ahead_->pages_read() : 0) << "\n";
  m << "# TYPE teleread_http_requests_total counter\nteleread_http_requests_total " << requests_.load() << "\n";
  m << "# TYPE teleread_http_refused_total counter\nteleread_http_refused_total " << refused_.load() << "\n";
  return HttpResponse{200, "text/plain; version=0.0.4", m.str(), {}, {}};
}

}  // namespace teleread
