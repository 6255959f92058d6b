// teleread: the radiologist's reading workstation. Exit codes: 0 ok, 1 failure, 2 usage.
#include <CLI/CLI.hpp>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/text.h"
#include "viewer/api_client.h"
#include "viewer/version.h"

using namespace teleread;
using namespace teleread::viewer;
using json = nlohmann::json;

namespace {

std::filesystem::path DefaultProfile() {
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home ? home : ".") / ".config" / "teleread" / "profile.toml";
}

int Fail(const std::string& message) {
  std::cerr << "teleread: " << message << "\n";
  return 1;
}

std::string Clock(int64_t ms) {
  if (ms <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  char out[32];
  std::strftime(out, sizeof out, "%m-%d %H:%M", std::localtime(&t));
  return out;
}

std::string Waiting(int64_t since_ms) {
  int64_t minutes = (static_cast<int64_t>(std::time(nullptr)) * 1000 - since_ms) / 60000;
  if (minutes < 60) return std::to_string(minutes) + "m";
  return std::to_string(minutes / 60) + "h" + std::to_string(minutes % 60) + "m";
}

// Calls the API; prints the server's reason and returns nullopt on anything but 2xx.
std::optional<json> Api(ApiClient& api, const std::string& method, const std::string& target) {
  Result<ApiResponse> r = api.Call(method, target);
  if (!r.ok()) {
    Fail(r.status().message() + " (check the server address and the certificates in your profile)");
    return std::nullopt;
  }
  json body = json::parse(r->body, nullptr, false);
  if (r->status / 100 != 2) {
    std::string why = body.is_object() && body.contains("error") ? body["error"].get<std::string>() : r->body;
    Fail(why + " (HTTP " + std::to_string(r->status) + ")");
    return std::nullopt;
  }
  return body;
}

void PrintWorklist(const json& items) {
  std::printf("%-8s %-12s %-10s %-5s %-28s %-8s %-8s %-11s %s\n", "PRIORITY", "DUE", "MEMBER", "MOD", "DESCRIPTION",
              "AGE/SEX", "WAITING", "CLAIMED BY", "STUDY");
  for (const json& r : items) {
    std::string due = Clock(r["due_ms"].get<int64_t>()) + (r["overdue"].get<bool>() ? "!" : "");
    std::string age_sex = r["patient_age"].get<std::string>() + "/" + r["patient_sex"].get<std::string>();
    std::printf("%-8s %-12s %-10s %-5s %s %-8s %-8s %-11s %s\n", r["priority"].get<std::string>().c_str(), due.c_str(),
                r["member"].get<std::string>().c_str(), r["modalities"].get<std::string>().c_str(),
                PadToWidth(r["description"].get<std::string>(), 28).c_str(), age_sex.c_str(),
                Waiting(r["complete_ms"].get<int64_t>()).c_str(),
                r["claimed_by"].is_null() ? "-" : r["claimed_by"].get<std::string>().c_str(),
                r["study_instance_uid"].get<std::string>().c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"TeleRead reading workstation"};
  app.set_version_flag("--version", VersionBanner());
  std::string profile_path = DefaultProfile().string();
  bool as_json = false;
  app.add_option("--profile", profile_path, "Profile (TOML): server, certificate, key, ca");
  app.add_flag("--json", as_json, "Print the API's JSON instead of a table");
  app.require_subcommand(1);

  app.add_subcommand("whoami", "Check the connection; show the radiologist and the server");
  CLI::App* worklist = app.add_subcommand("worklist", "Studies waiting to be read, most urgent first");
  std::string modality, member, priority, state;
  bool mine = false;
  int limit = 50;
  worklist->add_option("--modality", modality);
  worklist->add_option("--member", member);
  worklist->add_option("--priority", priority)->check(CLI::IsMember({"STAT", "HIGH", "ROUTINE"}));
  worklist->add_option("--state", state)->check(CLI::IsMember({"waiting", "claimed", "reported"}));
  worklist->add_flag("--mine", mine, "Only my claims");
  worklist->add_option("--limit", limit)->check(CLI::Range(1, 1000));
  std::string study;
  std::map<std::string, CLI::App*> actions;
  for (const char* action : {"claim", "renew", "release"}) {
    actions[action] = app.add_subcommand(action, std::string(action) + " a study");
    actions[action]->add_option("study", study, "Study Instance UID")->required();
  }
  CLI::App* show = app.add_subcommand("show", "A study's series, key attributes and priors");
  show->add_option("study", study, "Study Instance UID")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  Result<Profile> profile = LoadProfile(profile_path);
  if (!profile.ok()) return Fail(profile.status().message() + " (write a profile or pass --profile FILE)");
  ApiClient api(profile.value());

  if (app.got_subcommand("whoami")) {
    auto r = Api(api, "GET", "/api/v1/whoami");
    if (!r) return 1;
    if (as_json) {
      std::cout << r->dump(2) << "\n";
    } else {
      std::cout << (*r)["id"].get<std::string>() << " (" << (*r)["role"].get<std::string>() << ") at "
                << (*r)["server"].get<std::string>() << " [" << (*r)["ae_title"].get<std::string>() << "]\n";
    }
    return 0;
  }
  if (*worklist) {
    std::string q = "/api/v1/worklist?limit=" + std::to_string(limit);
    if (!modality.empty()) q += "&modality=" + modality;
    if (!member.empty()) q += "&member=" + member;
    if (!priority.empty()) q += "&priority=" + priority;
    if (!state.empty()) q += "&state=" + state;
    if (mine) q += "&mine=1";
    auto r = Api(api, "GET", q);
    if (!r) return 1;
    if (as_json) {
      std::cout << r->dump(2) << "\n";
    } else {
      PrintWorklist((*r)["items"]);
    }
    return 0;
  }
  for (const auto& [action, sub] : actions) {
    if (!*sub) continue;
    auto r = Api(api, "POST", "/api/v1/studies/" + study + "/" + action);
    if (!r) return 1;
    if (as_json) {
      std::cout << r->dump(2) << "\n";
    } else if ((*r)["state"] == "claimed") {
      std::cout << action << "ed: held by " << (*r)["claimed_by"].get<std::string>() << " until "
                << Clock((*r)["lease_expires_ms"].get<int64_t>()) << "\n";
    } else {
      std::cout << action << "d: the study is " << (*r)["state"].get<std::string>() << "\n";
    }
    return 0;
  }
  if (*show) {
    auto r = Api(api, "GET", "/api/v1/studies/" + study);
    if (!r) return 1;
    auto priors = Api(api, "GET", "/api/v1/studies/" + study + "/priors");
    if (!priors) return 1;
    if (as_json) {
      (*r)["priors"] = (*priors)["priors"];
      std::cout << r->dump(2) << "\n";
      return 0;
    }
    const json& s = *r;
    std::cout << s["description"].get<std::string>() << "  " << s["modalities"].get<std::string>() << "  "
              << s["study_date"].get<std::string>() << "  from " << s["member"].get<std::string>() << "\n"
              << "patient " << s["patient_age"].get<std::string>() << "/" << s["patient_sex"].get<std::string>()
              << "  accession " << s["accession_number"].get<std::string>() << "\n";
    for (const json& se : s["series"]) {
      std::cout << "  series " << se["series_number"].get<std::string>() << "  " << se["modality"].get<std::string>()
                << "  " << se["instance_count"].get<int64_t>() << " instances  " << se["description"].get<std::string>()
                << "\n";
    }
    for (const json& p : (*priors)["priors"]) {
      std::cout << "  prior  " << p["study_date"].get<std::string>() << "  " << p["member"].get<std::string>() << "  "
                << p["modalities"].get<std::string>() << "  " << p["description"].get<std::string>() << "\n";
    }
    return 0;
  }
  return 2;
}
