// waybillctl: the command-line tool for fleet techs and bridge operators.
//
// Each command group lives in its own file and registers itself here.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"waybillctl: inspect and operate Waybill devices and bridges"};
  app.require_subcommand(1);
  app.set_version_flag("--version", WAYBILL_VERSION);
  waybill::ctl::RegisterAll(app);
  CLI11_PARSE(app, argc, argv);
  return waybill::ctl::ExitCode();
}
