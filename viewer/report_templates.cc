// The report template `report new` starts from: chosen by the server for the study (modality and
// body part) or named with --template; its text fills what the command line did not give, and its
// pick-lists become comments in the editor.
#include <iostream>

#include "viewer/cli.h"

namespace teleread::viewer {

bool StartFromTemplate(Session& s, const std::string& study_uid, const std::string& name, ReportContent& content,
                       std::string* editor_hints) {
  ApiClient* api = s.Api();
  if (!api) return false;
  auto t = CallJson(*api, "GET", "/api/v1/studies/" + study_uid + "/template" + (name.empty() ? "" : "?name=" + name));
  if (!t) return false;
  if (content.findings.empty()) content.findings = t->value("findings", "");
  if (content.impression.empty()) content.impression = t->value("impression", "");
  if (content.recommendation.empty()) content.recommendation = t->value("recommendation", "");
  std::string hints = "# Template: " + t->value("name", "") + " (" + t->value("title", "") + ")\n";
  for (const auto& [label, choices] : (*t)["picklists"].items()) {
    hints += "# " + label + ":";
    for (const json& c : choices) hints += " [" + c.get<std::string>() + "]";
    hints += "\n";
  }
  *editor_hints = hints;
  return true;
}

}  // namespace teleread::viewer
