#pragma once
// What every `teleread` subcommand shares: the profile and its API connection, --json, the
// error convention (one line on stderr naming what to do; exit 0 ok, 1 failure, 2 usage).
// Each group of subcommands registers itself on the CLI11 app with a callback that sets
// Session::exit_code.
#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/report.h"
#include "viewer/api_client.h"

namespace teleread::viewer {

using json = nlohmann::json;

class Session {
 public:
  std::string profile_path;
  bool as_json = false;
  int exit_code = 0;

  // The connection from the profile; nullptr (after printing why) when the profile is unusable.
  ApiClient* Api();
  // The loaded profile; nullopt (after printing why) when it is unusable.
  const Profile* LoadedProfile();

 private:
  std::optional<Profile> profile_;
  std::unique_ptr<ApiClient> api_;
};

// Prints "teleread: <message>" on stderr; returns 1.
int Fail(const std::string& message);

// Calls the API; prints the server's reason and returns nullopt on anything but 2xx.
std::optional<json> CallJson(ApiClient& api, const std::string& method, const std::string& target,
                             const std::string& body = "", const std::string& content_type = "");

// "MM-DD HH:MM" local time, "-" for 0.
std::string ClockText(int64_t ms);

// Colour only on a terminal: the escape sequence, or "" when stdout is not a TTY.
const char* Ansi(const char* code);

std::string DefaultProfilePath();
// $XDG_CACHE_HOME/teleread, else ~/.cache/teleread: fetched studies and report drafts.
std::filesystem::path DefaultCacheDir();

void AddReadingCommands(CLI::App& app, Session& session);
void AddImageCommands(CLI::App& app, Session& session);     // fetch, view
void AddReportCommands(CLI::App& app, Session& session);    // report ..., reports, outbox
void AddCriticalCommands(CLI::App& app, Session& session);  // critical, critical ack
// report_templates.cc: fills the empty sections of `content` from the study's template (or the
// one named); `editor_hints` gets its pick-lists as comment lines. False after printing why.
bool StartFromTemplate(Session& s, const std::string& study_uid, const std::string& name, ReportContent& content,
                       std::string* editor_hints);

}  // namespace teleread::viewer
