// The critical-result routes of the reading API: listing by role, the member's acknowledgement.
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "server/http/api_reply.h"
#include "server/http/reading_api.h"

namespace teleread {
namespace {

using json = nlohmann::json;
using api::Error;
using api::Json;
using api::StatusFor;

json CriticalJson(const CriticalResult& c, bool overdue) {
  return json{{"report_sop_instance_uid", c.sop_instance_uid},
              {"study_instance_uid", c.study_instance_uid},
              {"accession_number", c.accession_number},
              {"member", c.member_id},
              {"signer", c.signer},
              {"opened_ms", c.opened_ms},
              {"state", c.acknowledged_ms ? "acknowledged" : "unacknowledged"},
              {"acknowledged_ms", c.acknowledged_ms ? json(c.acknowledged_ms) : json(nullptr)},
              {"acknowledged_by", c.acknowledged_ms ? json(c.acknowledged_by) : json(nullptr)},
              {"acknowledged_via", c.acknowledged_ms ? json(c.acknowledged_via) : json(nullptr)},
              {"escalated", c.acknowledged_ms == 0 && (c.escalated_ms > 0 || overdue)},
              {"webhook", json{{"state", c.webhook_state},
                               {"attempts", c.webhook_attempts},
                               {"delivered_ms", c.webhook_delivered_ms ? json(c.webhook_delivered_ms) : json(nullptr)},
                               {"last_error", c.webhook_error}}}};
}

}  // namespace

HttpResponse ReadingApi::CriticalList(const std::string& state, const Identity& who) {
  if (!critical_) return Error(503, "critical results are not running");
  if (!state.empty() && state != "unacknowledged" && state != "acknowledged") {
    return Error(400, "state must be unacknowledged or acknowledged");
  }
  // A member sees its own, a radiologist what they signed, an admin everything.
  CriticalQuery q;
  q.state = state;
  q.member_id = who.member_id;
  if (!who.admin && who.member_id.empty()) q.signer = who.id;
  Result<std::vector<CriticalResult>> rows = critical_->List(q);
  if (!rows.ok()) return Error(500, rows.status().message());
  json items = json::array();
  for (const CriticalResult& c : rows.value()) items.push_back(CriticalJson(c, critical_->Overdue(c.opened_ms)));
  (void)worklist_.Audit(who.id, "list-critical", "", state);
  return Json(200, json{{"items", items}});
}

HttpResponse ReadingApi::Acknowledge(const std::string& sop, const std::string& by_param, const HttpRequest& req,
                                     const Identity& who) {
  if (!critical_) return Error(503, "critical results are not running");
  if (who.member_id.empty()) return Error(403, "a critical result is acknowledged by the member hospital");
  std::string by = by_param;
  if (by.empty() && !req.body.empty()) {
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.contains("by") || !body["by"].is_string()) {
      return Error(400, "send {\"by\": \"the name of the person who took the call\"}");
    }
    by = body["by"].get<std::string>();
  }
  if (Status s = critical_->Acknowledge(sop, who.member_id, by, who.id); !s.ok()) {
    return Error(StatusFor(s), s.message());
  }
  Result<std::vector<CriticalResult>> rows = critical_->List(CriticalQuery{who.member_id, "", "acknowledged", 1000});
  if (rows.ok()) {
    for (const CriticalResult& c : rows.value()) {
      if (c.sop_instance_uid == sop) return Json(200, CriticalJson(c, false));
    }
  }
  return Json(200, json{{"report_sop_instance_uid", sop}, {"state", "acknowledged"}});
}

std::string ReadingApi::CriticalMetrics() const {
  if (!critical_) return "";
  Result<CriticalCounts> c = critical_->Counts();
  if (!c.ok()) return "";
  std::string m;
  m += "# TYPE teleread_critical_unacknowledged gauge\nteleread_critical_unacknowledged " +
       std::to_string(c->unacknowledged) + "\n";
  m += "# TYPE teleread_critical_escalated gauge\nteleread_critical_escalated " + std::to_string(c->escalated) + "\n";
  const double oldest = c->oldest_unacknowledged_ms ? (NowMs() - c->oldest_unacknowledged_ms) / 1000.0 : 0.0;
  m +=
      "# TYPE teleread_critical_unacknowledged_oldest_seconds gauge\nteleread_critical_unacknowledged_oldest_seconds " +
      std::to_string(oldest) + "\n";
  return m;
}

}  // namespace teleread
