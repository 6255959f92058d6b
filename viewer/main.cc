// teleread: the radiologist's reading workstation and the hospital's report verifier.
// Exit codes: 0 ok, 1 failure, 2 usage.
#include "viewer/cli.h"
#include "viewer/reader.h"
#include "viewer/version.h"

#include "common/log.h"

using namespace teleread::viewer;

int main(int argc, char** argv) {
  // Our log (and DCMTK's, routed into it) on stderr, warnings and errors only.
  teleread::SetUpLogging("warn");
  CLI::App app{"TeleRead reading workstation"};
  app.set_version_flag("--version", VersionBanner());
  Session session;
  session.profile_path = DefaultProfilePath();
  app.add_option("--profile", session.profile_path, "Profile (TOML): server, certificate, key, ca");
  app.add_flag("--json", session.as_json, "Print JSON instead of a table");
  app.require_subcommand(1);
  // --profile and --json after the subcommand too (`teleread worklist --json`); subcommands
  // inherit this when they are created.
  app.fallthrough();
  AddReadingCommands(app, session);
  AddImageCommands(app, session);
  AddReaderCommand(app, session);
  AddReportCommands(app, session);
  AddCriticalCommands(app, session);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return session.exit_code;
}
