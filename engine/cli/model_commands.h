// sparkd-run's model commands: embed, rerank and generate with one model on the CPU backend.
#pragma once

namespace sparkd::cli {

// Whether `command` is one of the model commands.
bool is_model_command(const char* command);
// argv: sparkd-run MODEL_DIR COMMAND [options...]. Returns the process exit status.
int run_model_command(int argc, char** argv);

extern const char* const kModelCommandsUsage;

}  // namespace sparkd::cli
