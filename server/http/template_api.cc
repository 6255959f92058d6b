// GET /api/v1/studies/{uid}/template[?name=]: the report template `report new` starts from.
#include <nlohmann/json.hpp>

#include "server/http/reading_api.h"

namespace teleread {

HttpResponse ReadingApi::StudyTemplate(const std::string& uid, const std::string& name, const Identity& who) {
  using json = nlohmann::json;
  auto reply = [](int status, const json& body) {
    return HttpResponse{status, "application/json", body.dump(-1, ' ', false, json::error_handler_t::replace), {}, {}};
  };
  if (!who.member_id.empty()) return reply(403, json{{"error", "templates are the reading centre's"}});
  Result<StudyDetail> study = reads_.Study(uid);
  if (!study.ok()) {
    return reply(study.status().code() == Status::Code::kNotFound ? 404 : 500,
                 json{{"error", study.status().message()}});
  }
  std::vector<std::string> modalities;
  std::string body_part;
  for (const SeriesEntry& se : study->series) {
    modalities.push_back(se.modality);
    if (body_part.empty()) body_part = se.body_part;
  }
  const ReportTemplate* t = ChooseTemplate(templates_, modalities, body_part, name);
  json names = json::array();
  for (const ReportTemplate& each : templates_) names.push_back(each.name);
  if (!t) return reply(404, json{{"error", "no template named '" + name + "'"}, {"templates", names}});
  json picklists = json::object();
  for (const auto& [label, choices] : t->picklists) picklists[label] = choices;
  return reply(200, json{{"name", t->name},
                         {"title", t->title},
                         {"modalities", t->modalities},
                         {"body_parts", t->body_parts},
                         {"findings", t->findings},
                         {"impression", t->impression},
                         {"recommendation", t->recommendation},
                         {"picklists", picklists},
                         {"templates", names}});
}

}  // namespace teleread
