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

// Age as stored (056Y), else from the birth date at the study date.
std::string AgeText(const json& r) {
  std::string age = r.value("patient_age", "");
  while (age.size() > 1 && age[0] == '0') age.erase(0, 1);
  if (!age.empty()) return age;
  const std::string born = r.value("patient_birth_date", ""), on = r.value("study_date", "");
  if (born.size() == 8 && on.size() == 8) {
    int years = std::stoi(on.substr(0, 4)) - std::stoi(born.substr(0, 4));
    if (on.substr(4) < born.substr(4)) --years;
    if (years >= 0 && years < 150) return std::to_string(years) + "Y";
  }
  return "-";
}

void PrintWorklist(const json& items) {
  std::printf("%-8s %-12s %-9s %-5s %s %s %-7s %s %-8s %-11s %s\n", "PRIORITY", "DUE", "MEMBER", "MOD",
              PadToWidth("PATIENT", 22).c_str(), PadToWidth("ID", 12).c_str(), "SEX/AGE",
              PadToWidth("DESCRIPTION", 22).c_str(), "WAITING", "CLAIMED BY", "STUDY");
  for (const json& r : items) {
    const bool overdue = r["overdue"].get<bool>();
    std::string due = ClockText(r["due_ms"].get<int64_t>()) + (overdue ? "!" : "");
    const std::string sex_age = r.value("patient_sex", "") + "/" + AgeText(r);
    const std::string priority = r["priority"].get<std::string>();
    const char* colour = overdue || priority == "STAT" ? Ansi("\033[1;31m") : "";
    std::printf("%s%-8s%s %-12s %-9s %-5s %s %s %-7s %s %-8s %-11s %s\n", colour, priority.c_str(),
                *colour ? Ansi("\033[0m") : "", due.c_str(), r["member"].get<std::string>().c_str(),
                r["modalities"].get<std::string>().c_str(), PadToWidth(r.value("patient_name", ""), 22).c_str(),
                PadToWidth(r.value("patient_id", ""), 12).c_str(), sex_age.c_str(),
                PadToWidth(r["description"].get<std::string>(), 22).c_str(),
                Waiting(r["complete_ms"].get<int64_t>()).c_str(),
                r["claimed_by"].is_null() ? "-" : r["claimed_by"].get<std::string>().c_str(),
                r["study_instance_uid"].get<std::string>().c_str());
  }
}

// The reader's own critical results that the member has not acknowledged (the worklist's
// "critical_unacknowledged"): shown under the table, so that nobody forgets to follow one up.
void PrintCriticalReminder(const json& reply) {
  if (!reply.contains("critical_unacknowledged") || reply["critical_unacknowledged"].empty()) return;
  const json& open = reply["critical_unacknowledged"];
  std::printf("%s! %zu critical result(s) you signed are not yet acknowledged by the member:%s\n", Ansi("\033[1;31m"),
              open.size(), Ansi("\033[0m"));
  for (const json& c : open) {
    std::printf("  report %s  study %s  %s  waiting %s%s\n", c["report_sop_instance_uid"].get<std::string>().c_str(),
                c["study_instance_uid"].get<std::string>().c_str(), c["member"].get<std::string>().c_str(),
                Waiting(c["opened_ms"].get<int64_t>()).c_str(),
                c.value("escalated", false) ? "  ESCALATED: phone the member" : "");
  }
  std::printf("  (`teleread critical` lists them; the member acknowledges with `teleread critical ack`)\n");
}

struct WorklistOptions {
  std::string modality, member, priority, state;
  bool mine = false;
  int limit = 50, offset = 0;
};

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

int RunWorklist(Session& s, const WorklistOptions& o) {
  ApiClient* api = s.Api();
  if (!api) return 1;
  std::string q = "/api/v1/worklist?limit=" + std::to_string(o.limit) + "&offset=" + std::to_string(o.offset);
  if (!o.modality.empty()) q += "&modality=" + Upper(o.modality);
  if (!o.member.empty()) q += "&member=" + o.member;
  if (!o.priority.empty()) q += "&priority=" + Upper(o.priority);
  if (!o.state.empty()) q += "&state=" + o.state;
  if (o.mine) q += "&mine=1";
  auto r = CallJson(*api, "GET", q);
  if (!r) return 1;
  if (s.as_json) {
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  const json& items = (*r)["items"];
  if (items.empty()) {
    std::string filters;
    if (!o.modality.empty()) filters += " modality " + Upper(o.modality);
    if (!o.member.empty()) filters += " member " + o.member;
    if (!o.priority.empty()) filters += " priority " + Upper(o.priority);
    if (!o.state.empty()) filters += " state " + o.state;
    if (o.mine) filters += " claimed by you";
    std::cout << (o.offset > 0 ? "no more studies past " + std::to_string(o.offset)
                               : std::string("the worklist is empty")) +
                     (filters.empty() ? "" : " for" + filters) + "\n";
    PrintCriticalReminder(*r);
    return 0;
  }
  PrintWorklist(items);
  if (static_cast<int>(items.size()) == o.limit) {
    std::cout << "(" << items.size() << " shown; the next page: --offset " << o.offset + o.limit << ")\n";
  }
  PrintCriticalReminder(*r);
  return 0;
}

bool CheckUid(const std::string& uid);

int RunTaskAction(Session& s, const std::string& action, const std::string& study) {
  if (!CheckUid(study)) return 1;
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

// Whether `uid` may be sent to the server; prints why not.
bool CheckUid(const std::string& uid) {
  const bool ok = !uid.empty() && uid.size() <= 64 && uid.find_first_not_of("0123456789.") == std::string::npos &&
                  uid.front() != '.' && uid.back() != '.';
  if (!ok) Fail("'" + uid + "' is not a Study Instance UID (digits and dots, at most 64 characters)");
  return ok;
}

std::string DateText(const std::string& da) {
  return da.size() == 8 ? da.substr(0, 4) + "-" + da.substr(4, 2) + "-" + da.substr(6, 2) : da;
}

std::string ShortClass(const std::string& uid) {
  static const std::map<std::string, std::string> names = {
      {"1.2.840.10008.5.1.4.1.1.2", "CT"},
      {"1.2.840.10008.5.1.4.1.1.4", "MR"},
      {"1.2.840.10008.5.1.4.1.1.1", "CR"},
      {"1.2.840.10008.5.1.4.1.1.1.1", "DX"},
      {"1.2.840.10008.5.1.4.1.1.6.1", "US"},
      {"1.2.840.10008.5.1.4.1.1.3.1", "US multi-frame"},
      {"1.2.840.10008.5.1.4.1.1.7", "secondary capture"},
      {"1.2.840.10008.5.1.4.1.1.9.1.1", "12-lead ECG"},
      {"1.2.840.10008.5.1.4.1.1.9.1.2", "general ECG"},
      {"1.2.840.10008.5.1.4.1.1.88.11", "basic text SR"},
      {"1.2.840.10008.5.1.4.1.1.88.22", "enhanced SR"},
      {"1.2.840.10008.5.1.4.1.1.104.1", "PDF"},
  };
  auto it = names.find(uid);
  return it == names.end() ? uid : it->second;
}

int RunShow(Session& s, const std::string& study) {
  if (!CheckUid(study)) return 1;
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
  const char* bold = Ansi("\033[1m");
  const char* plain = *bold ? Ansi("\033[0m") : "";
  // The banner names the patient first: reading the wrong patient's study is the error to prevent.
  std::cout << bold << st.value("patient_name", "") << plain << "   ID " << st.value("patient_id", "") << "   born "
            << DateText(st.value("patient_birth_date", "")) << "   " << st.value("patient_sex", "") << " "
            << AgeText(st) << "\n"
            << "accession " << st.value("accession_number", "") << "   " << DateText(st.value("study_date", ""))
            << "   " << st.value("description", "") << "   " << st.value("modalities", "") << "\n"
            << "from " << st.value("member", "") << "   referring " << st.value("referring_physician", "") << "   "
            << st.value("institution", "") << "\n"
            << "study " << study << "\n";
  for (const json& se : st["series"]) {
    const json& ins = se["instances"];
    std::cout << "  series " << se["series_number"].get<std::string>() << "  " << se["modality"].get<std::string>()
              << "  " << se["instance_count"].get<int64_t>() << " instances  " << se["description"].get<std::string>()
              << "\n";
    // Position (what --position takes) and Instance Number, which need not be unique.
    constexpr size_t kListed = 24;
    for (size_t i = 0; i < ins.size() && i < kListed; ++i) {
      std::cout << "    " << i + 1 << ": #" << ins[i]["instance_number"].get<std::string>() << "  "
                << ShortClass(ins[i]["sop_class_uid"].get<std::string>()) << "\n";
    }
    if (ins.size() > kListed) {
      std::cout << "    ... positions " << kListed + 1 << " to " << ins.size() << " (#"
                << ins[kListed]["instance_number"].get<std::string>() << " to #"
                << ins.back()["instance_number"].get<std::string>() << ")\n";
    }
  }
  const json& list = (*priors)["priors"];
  if (list.empty()) std::cout << "no priors\n";
  for (const json& p : list) {
    std::cout << "  prior  " << DateText(p["study_date"].get<std::string>()) << "  " << p["member"].get<std::string>()
              << "  " << p["modalities"].get<std::string>() << "  " << p["description"].get<std::string>() << "  "
              << p["study_instance_uid"].get<std::string>() << "\n";
  }
  if (!list.empty()) std::cout << "open a prior with `teleread show UID` or `teleread view UID`\n";
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
  worklist->add_option("--modality", o->modality, "Only studies with a series of this modality (CT, ct, ECG...)");
  worklist->add_option("--member", o->member, "Only studies from this member hospital (its id, e.g. ZZ)");
  worklist->add_option("--priority", o->priority, "Only STAT, HIGH or ROUTINE studies")
      ->check(CLI::IsMember({"STAT", "HIGH", "ROUTINE"}, CLI::ignore_case));
  worklist->add_option("--state", o->state, "waiting, claimed or reported (default: waiting and claimed)")
      ->check(CLI::IsMember({"waiting", "claimed", "reported"}, CLI::ignore_case));
  worklist->add_flag("--mine", o->mine, "Only my claims");
  worklist->add_option("--limit", o->limit, "Rows per page (1-1000, default 50)")->check(CLI::Range(1, 1000));
  worklist->add_option("--offset", o->offset, "Skip this many rows (paging)")->check(CLI::NonNegativeNumber);
  worklist->callback([&s, o] { s.exit_code = RunWorklist(s, *o); });

  auto study = std::make_shared<std::string>();
  for (const char* action : {"claim", "renew", "release"}) {
    CLI::App* sub = app.add_subcommand(action, std::string(action) + " a study");
    sub->add_option("study", *study, "Study Instance UID")->required();
    std::string a = action;
    sub->callback([&s, a, study] { s.exit_code = RunTaskAction(s, a, *study); });
  }
  CLI::App* show = app.add_subcommand("show", "A study's patient, series with their instances, and priors");
  show->add_option("study", *study, "Study Instance UID")->required();
  show->callback([&s, study] { s.exit_code = RunShow(s, *study); });
}

}  // namespace teleread::viewer
