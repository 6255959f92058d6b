// critical [--state S], critical ack REPORT_UID --by NAME: critical results and their
// acknowledgement. A member hospital lists and acknowledges its own; a radiologist sees what they
// signed; an admin sees all.
#include <cstdio>
#include <iostream>

#include "viewer/cli.h"

namespace teleread::viewer {
namespace {

struct CriticalOptions {
  std::string state, report, by;
};

std::string UrlEncode(const std::string& s) {
  std::string out;
  static const char* hex = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '.' || c == '-' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

int List(Session& s, const CriticalOptions& o) {
  ApiClient* api = s.Api();
  if (!api) return 1;
  auto r = CallJson(*api, "GET", "/api/v1/critical" + (o.state.empty() ? "" : "?state=" + o.state));
  if (!r) return 1;
  if (s.as_json) {
    std::cout << r->dump(2) << "\n";
    return 0;
  }
  std::printf("%-12s %-10s %-10s %-15s %-16s %s\n", "OPENED", "MEMBER", "SIGNER", "STATE", "ACCESSION", "REPORT");
  for (const json& i : (*r)["items"]) {
    std::string state = i["state"].get<std::string>();
    if (i["escalated"].get<bool>()) state = "ESCALATED";
    std::printf("%-12s %-10s %-10s %-15s %-16s %s\n", ClockText(i["opened_ms"].get<int64_t>()).c_str(),
                i["member"].get<std::string>().c_str(), i["signer"].get<std::string>().c_str(), state.c_str(),
                i["accession_number"].get<std::string>().c_str(),
                i["report_sop_instance_uid"].get<std::string>().c_str());
    if (!i["acknowledged_by"].is_null()) {
      std::printf("             acknowledged %s by %s\n", ClockText(i["acknowledged_ms"].get<int64_t>()).c_str(),
                  i["acknowledged_by"].get<std::string>().c_str());
    }
  }
  return 0;
}

int Ack(Session& s, const CriticalOptions& o) {
  ApiClient* api = s.Api();
  if (!api) return 1;
  const json body{{"by", o.by}};
  auto r = CallJson(*api, "POST", "/api/v1/reports/" + UrlEncode(o.report) + "/acknowledge", body.dump(),
                    "application/json");
  if (!r) return 1;
  if (s.as_json) {
    std::cout << r->dump(2) << "\n";
  } else {
    std::cout << "critical result " << o.report << " acknowledged by " << o.by << "\n";
  }
  return 0;
}

}  // namespace

void AddCriticalCommands(CLI::App& app, Session& s) {
  auto o = std::make_shared<CriticalOptions>();
  CLI::App* critical = app.add_subcommand("critical", "Critical results and their acknowledgement by the member");
  critical->add_option("--state", o->state, "unacknowledged or acknowledged")
      ->check(CLI::IsMember({"unacknowledged", "acknowledged"}));
  CLI::App* ack = critical->add_subcommand("ack", "Acknowledge a critical result (member hospitals)");
  ack->add_option("report", o->report, "SOP Instance UID of the report")->required();
  ack->add_option("--by", o->by, "Name of the person who took the call")->required();
  critical->callback([&s, o, ack] {
    if (!*ack) s.exit_code = List(s, *o);
  });
  ack->callback([&s, o] { s.exit_code = Ack(s, *o); });
}

}  // namespace teleread::viewer
