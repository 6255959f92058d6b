// report new|sign|submit|amend|get|verify, reports, outbox.
#include "viewer/cli.h"

namespace teleread::viewer {

void AddReportCommands(CLI::App&, Session&) {}

}  // namespace teleread::viewer
