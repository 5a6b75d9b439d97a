#pragma once

#include <CLI/CLI.hpp>

namespace waybill::ctl {

// Each command group lives in its own file (cmd_<group>.cc) and adds its subcommands here.
// A subcommand's callback reports its result with SetExitCode.
void RegisterAll(CLI::App& app);

// cmd_gnss.cc: gnss replay.
void RegisterGnss(CLI::App& app);
void RegisterOutbox(CLI::App& app);     // cmd_outbox.cc
void RegisterBridge(CLI::App& app);     // cmd_bridge.cc
void RegisterCa(CLI::App& app);         // cmd_ca.cc
void RegisterProvision(CLI::App& app);  // cmd_provision.cc
void RegisterStatus(CLI::App& app);     // cmd_status.cc

int ExitCode();
void SetExitCode(int code);

}  // namespace waybill::ctl
