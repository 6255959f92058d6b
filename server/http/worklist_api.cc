// The worklist route of the reading API: the first page kept while the index's task version holds.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "server/http/api_reply.h"
#include "server/http/gzip_splice.h"
#include "server/http/reading_api.h"
#include "server/http/request_trace.h"

namespace teleread {
namespace {

using json = nlohmann::json;
using api::AuditFailed;
using api::Error;
using api::QueryParam;
using api::RowJson;

}  // namespace

namespace api {

// Put into the object's map one by one: built from an initializer list, each pair is first a
// two-element array: about three times the allocations, for every claim's answer.
json RowJson(const WorklistRow& r) {
  json out(json::value_t::object);
  json::object_t& o = *out.get_ptr<json::object_t*>();
  auto put = [&o](const char* key, json value) { o.emplace(key, std::move(value)); };
  auto time_or_null = [](int64_t ms) { return ms ? json(ms) : json(nullptr); };
  auto text_or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
  put("study_instance_uid", r.study_instance_uid);
  put("member", r.member_id);
  put("modalities", r.modalities);
  put("body_part", r.body_part);
  put("description", r.study_description);
  put("patient_name", r.patient_name);
  put("patient_id", r.patient_id);
  put("patient_birth_date", r.patient_birth_date);
  put("patient_age", r.patient_age);
  put("patient_sex", r.patient_sex);
  put("study_date", r.study_date);
  put("series", r.num_series);
  put("instances", r.num_instances);
  put("priority", r.priority);
  put("state", r.state);
  put("claimed_by", text_or_null(r.claimed_by));
  put("received_ms", r.received_ms);
  put("complete_ms", r.complete_ms);
  put("due_ms", r.due_ms);
  put("claimed_ms", time_or_null(r.claimed_ms));
  put("lease_expires_ms", r.state == "claimed" ? json(r.lease_expires_ms) : json(nullptr));
  put("reported_ms", time_or_null(r.reported_ms));
  put("delivered_ms", time_or_null(r.delivered_ms));
  put("amended_ms", time_or_null(r.amended_ms));
  put("reported_by", text_or_null(r.reported_by));
  put("acknowledged_ms", time_or_null(r.acknowledged_ms));
  put("overdue", r.overdue);
  return out;
}

}  // namespace api

HttpResponse ReadingApi::WorklistPage(const std::string& query, const Identity& who, bool gzip) {
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
  // As the store reads them (limit=5000 and limit=1000 are one page), and as the answer says.
  f.limit = std::clamp(f.limit, 1, 1000);
  f.offset = std::max(0, f.offset);
  std::shared_ptr<const WorklistPageCache::Page> page = WorklistItems(f, who);
  if (!page) return Error(500, "the worklist cannot be read");
  // The body as json::dump writes it (keys in order): this caller's own parts around the items
  // as they were kept, shared by every caller of the page.
  std::string prefix = "{";
  // The reader's own critical results that the member has not acknowledged yet. Not listed: the
  // request fails rather than show a worklist that hides them (before the audit: nothing shown).
  if (critical_ && !who.admin) {
    TraceTimer timer(&RequestTrace::critical_us);
    Result<CriticalResults::Rows> c = critical_->Unacknowledged(who.id);
    if (!c.ok()) {
      spdlog::error("worklist for {}: critical results not listed: {}", who.id, c.status().message());
      return Error(503,
                   "your unacknowledged critical results cannot be listed now; the worklist is not shown "
                   "without them: try again, and call the reading centre if this goes on");
    }
    json open = json::array();
    for (const CriticalResult& r : *c.value()) {
      open.push_back(json{{"report_sop_instance_uid", r.sop_instance_uid},
                          {"study_instance_uid", r.study_instance_uid},
                          {"member", r.member_id},
                          {"opened_ms", r.opened_ms},
                          {"escalated", critical_->Overdue(r.opened_ms)}});
    }
    prefix += "\"critical_unacknowledged\":" + open.dump(-1, ' ', false, json::error_handler_t::replace) + ",";
  }
  if (page->rows > 0) {  // names and IDs of the patients listed
    TraceTimer audit(&RequestTrace::audit_us);
    if (Status a = worklist_.Audit(who.id, "list-worklist", "", std::to_string(page->rows) + " task(s)"); !a.ok()) {
      return AuditFailed(a);
    }
  }
  prefix += "\"items\":";
  const std::string suffix = ",\"limit\":" + std::to_string(f.limit) + ",\"offset\":" + std::to_string(f.offset) + "}";
  HttpResponse out;
  out.vary = "Accept-Encoding";  // plain or gzip, by the request's Accept-Encoding: caches must tell
  if (gzip) {
    TraceTimer timer(&RequestTrace::gzip_us);  // the page's deflate too, for its first gzip caller
    out.body = GzipAround(prefix, page->Gzip(), suffix);
    out.content_encoding = "gzip";
    return out;
  }
  out.body.reserve(prefix.size() + page->items_json.size() + suffix.size());
  out.body += prefix;
  out.body += page->items_json;
  out.body += suffix;
  return out;
}

std::shared_ptr<const WorklistPageCache::Page> ReadingApi::WorklistItems(const WorklistFilter& f, const Identity& who) {
  // Only first pages (the one a reader looks at) of filters whose rows do not depend on the time
  // (a claim expiring moves a task between "waiting" and "claimed", and out of "mine") are kept;
  // the rest are read each time.
  const bool keep = f.offset == 0 && f.state.empty() && f.claimed_by.empty();
  // Keyed by what the rows depend on, the caller's routing included, not by the caller: readers
  // who read the same studies share one read (each view is still audited for its caller).
  const std::string key = WorklistPageCache::Key(worklist_.Routed(f, who.id));
  const uint64_t version = worklist_.Version();  // before the read: a later write makes it stale
  auto read = [&]() -> WorklistPageCache::Read {
    if (RequestTrace* t = CurrentTrace()) t->page = 'r';
    TraceTimer sql(&RequestTrace::sql_us);
    return ReadPage(f, who.id);
  };
  if (!keep) return read().page;
  if (RequestTrace* t = CurrentTrace()) t->page = 'k';
  bool waited = false;
  std::shared_ptr<const WorklistPageCache::Page> page = pages_.FindOrRead(key, version, worklist_.Now(), read, &waited);
  if (RequestTrace* t = waited ? CurrentTrace() : nullptr) t->page = 'w';
  if (read_ahead_) {
    pages_.NoteAsked(key, [&]() -> std::function<WorklistPageCache::Read()> {
      return [this, filter = f, reader = who.id] { return ReadPage(filter, reader); };
    });
  }
  return page;
}

WorklistPageCache::Read ReadingApi::ReadPage(const WorklistFilter& f, const std::string& reader) {
  Result<std::vector<WorklistRow>> rows = worklist_.List(f, reader);
  if (!rows.ok()) {
    spdlog::error("worklist not read: {}", rows.status().message());
    return {};
  }
  json items = json::array();
  for (const WorklistRow& r : rows.value()) items.push_back(RowJson(r));
  // Deflated later, by the page's first caller that accepts gzip (Page::Gzip).
  return {WorklistPageCache::Page::Make(items.dump(-1, ' ', false, json::error_handler_t::replace), rows->size()),
          NextTimeChange(rows.value())};
}

void ReadingApi::StartReadAhead(std::chrono::milliseconds poll, std::chrono::milliseconds armed) {
  read_ahead_.reset();  // unsubscribed before the next subscribes
  read_ahead_ = std::make_unique<WorklistReadAhead>(
      pages_, [this] { return worklist_.Version(); }, [this] { return worklist_.Now(); },
      [this](std::function<void()> fn) { return worklist_.OnChange(std::move(fn)); }, poll, armed);
}

}  // namespace teleread
