// whoami, worklist, claim/renew/release, show.
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>

#include "common/text.h"
#include "viewer/cli.h"

namespace teleread::viewer {
namespace {

std::string Waiting(int64_t since_ms) {
  int64_t minutes = (static_cast<int64_t>(std::time(nullptr)) * 1000 - since_ms) / 60000;
  if (minutes < 60) return std::to_string(minutes) + "m";
  return std::to_string(minutes / 60) + "h" + std::to_string(minutes % 60) + "m";
}

void PrintWorklist(const json& items) {
  std::printf("%-8s %-12s %-10s %-5s %-28s %-8s %-8s %-11s %s\n", "PRIORITY", "DUE", "MEMBER", "MOD", "DESCRIPTION",
              "AGE/SEX", "WAITING", "CLAIMED BY", "STUDY");
  for (const json& r : items) {
    const bool overdue = r["overdue"].get<bool>();
    std::string due = ClockText(r["due_ms"].get<int64_t>()) + (overdue ? "!" : "");
    std::string age_sex = r["patient_age"].get<std::string>() + "/" + r["patient_sex"].get<std::string>();
    const std::string priority = r["priority"].get<std::string>();
    const char* colour = overdue || priority == "STAT" ? Ansi("\033[1;31m") : "";
    std::printf("%s%-8s%s %-12s %-10s %-5s %s %-8s %-8s %-11s %s\n", colour, priority.c_str(),
                *colour ? Ansi("\033[0m") : "", due.c_str(), r["member"].get<std::string>().c_str(),
                r["modalities"].get<std::string>().c_str(), PadToWidth(r["description"].get<std::string>(), 28).c_str(),
                age_sex.c_str(), Waiting(r["complete_ms"].get<int64_t>()).c_str(),
                r["claimed_by"].is_null() ? "-" : r["claimed_by"].get<std::string>().c_str(),
                r["study_instance_uid"].get<std::string>().c_str());
  }
}

struct WorklistOptions {
  std::string modality, member, priority, state;
  bool mine = false;
  int limit = 50;
};

int RunWorklist(Session& s, const WorklistOptions& o) {
  ApiClient* api = s.Api();
  if (!api) return 1;
  std::string q = "/api/v1/worklist?limit=" + std::to_string(o.limit);
  if (!o.modality.empty()) q += "&modality=" + o.modality;
  if (!o.member.empty()) q += "&member=" + o.member;
  if (!o.priority.empty()) q += "&priority=" + o.priority;
  if (!o.state.empty()) q += "&state=" + o.state;
  if (o.mine) q += "&mine=1";
  auto r = CallJson(*api, "GET", q);
  if (!r) return 1;
  if (s.as_json) {
    std::cout << r->dump(2) << "\n";
  } else {
    PrintWorklist((*r)["items"]);
  }
  return 0;
}

int RunTaskAction(Session& s, const std::string& action, const std::string& study) {
  ApiClient* api = s.Api();
  if (!api) return 1;
  auto r = CallJson(*api, "POST", "/api/v1/studies/" + study + "/" + action);
  if (!r) return 1;
  if (s.as_json) {
    std::cout << r->dump(2) << "\n";
  } else if ((*r)["state"] == "claimed") {
    std::cout << action << "ed: held by " << (*r)["claimed_by"].get<std::string>() << " until "
              << ClockText((*r)["lease_expires_ms"].get<int64_t>()) << "\n";
  } else {
    std::cout << action << "d: the study is " << (*r)["state"].get<std::string>() << "\n";
  }
  return 0;
}

int RunShow(Session& s, const std::string& study) {
  ApiClient* api = s.Api();
  if (!api) return 1;
  auto r = CallJson(*api, "GET", "/api/v1/studies/" + study);
  if (!r) return 1;
  auto priors = CallJson(*api, "GET", "/api/v1/studies/" + study + "/priors");
  if (!priors) return 1;
  if (s.as_json) {
    (*r)["priors"] = (*priors)["priors"];
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  const json& st = *r;
  std::cout << st["description"].get<std::string>() << "  " << st["modalities"].get<std::string>() << "  "
            << st["study_date"].get<std::string>() << "  from " << st["member"].get<std::string>() << "\n"
            << "patient " << st["patient_age"].get<std::string>() << "/" << st["patient_sex"].get<std::string>()
            << "  accession " << st["accession_number"].get<std::string>() << "\n";
  for (const json& se : st["series"]) {
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

}  // namespace

void AddReadingCommands(CLI::App& app, Session& s) {
  app.add_subcommand("whoami", "Check the connection; show the radiologist and the server")->callback([&s] {
    ApiClient* api = s.Api();
    if (!api) {
      s.exit_code = 1;
      return;
    }
    auto r = CallJson(*api, "GET", "/api/v1/whoami");
    if (!r) {
      s.exit_code = 1;
    } else if (s.as_json) {
      std::cout << r->dump(2) << "\n";
    } else {
      std::cout << (*r)["id"].get<std::string>() << " (" << (*r)["role"].get<std::string>() << ") at "
                << (*r)["server"].get<std::string>() << " [" << (*r)["ae_title"].get<std::string>() << "]\n";
    }
  });

  auto o = std::make_shared<WorklistOptions>();
  CLI::App* worklist = app.add_subcommand("worklist", "Studies waiting to be read, most urgent first");
  worklist->add_option("--modality", o->modality);
  worklist->add_option("--member", o->member);
  worklist->add_option("--priority", o->priority)->check(CLI::IsMember({"STAT", "HIGH", "ROUTINE"}));
  worklist->add_option("--state", o->state)->check(CLI::IsMember({"waiting", "claimed", "reported"}));
  worklist->add_flag("--mine", o->mine, "Only my claims");
  worklist->add_option("--limit", o->limit)->check(CLI::Range(1, 1000));
  worklist->callback([&s, o] { s.exit_code = RunWorklist(s, *o); });

  auto study = std::make_shared<std::string>();
  for (const char* action : {"claim", "renew", "release"}) {
    CLI::App* sub = app.add_subcommand(action, std::string(action) + " a study");
    sub->add_option("study", *study, "Study Instance UID")->required();
    std::string a = action;
    sub->callback([&s, a, study] { s.exit_code = RunTaskAction(s, a, *study); });
  }
  CLI::App* show = app.add_subcommand("show", "A study's series, key attributes and priors");
  show->add_option("study", *study, "Study Instance UID")->required();
  show->callback([&s, study] { s.exit_code = RunShow(s, *study); });
}

}  // namespace teleread::viewer
