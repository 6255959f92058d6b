// fetch, view.
#include "viewer/cli.h"

namespace teleread::viewer {

void AddImageCommands(CLI::App&, Session&) {}

}  // namespace teleread::viewer
