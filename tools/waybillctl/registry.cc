#include "commands.h"

namespace waybill::ctl {

namespace {
int g_exit_code = 0;
}  // namespace

int ExitCode() { return g_exit_code; }
void SetExitCode(int code) { g_exit_code = code; }

void RegisterAll(CLI::App& app) {
  RegisterGnss(app);
  RegisterOutbox(app);
  RegisterBridge(app);
  RegisterCa(app);
  RegisterProvision(app);
  RegisterStatus(app);
}

}  // namespace waybill::ctl
