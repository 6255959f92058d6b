// teleread: the radiologist's reading workstation. Reading commands arrive with the reading API.
#include <CLI/CLI.hpp>
#include <iostream>

#include "viewer/version.h"

int main(int argc, char** argv) {
  CLI::App app{"TeleRead reading workstation"};
  bool version = false;
  app.add_flag("--version", version, "Print the version and exit");
  CLI11_PARSE(app, argc, argv);
  std::cout << teleread::viewer::VersionBanner() << "\n";
  return 0;
}
