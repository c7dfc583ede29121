/* cli.h: what the sub-commands of the knib command share. */
#ifndef KNIB_CLI_H
#define KNIB_CLI_H

#include <stdbool.h>

#include "common/conf.h"

/* Exit statuses (knib(1) lists them). */
enum {
  EXIT_OK = 0,
  EXIT_FAILURE_ = 1,
  EXIT_USAGE = 2,
  EXIT_QEMU_GENERIC = 10,
  EXIT_QEMU_COMMAND_NOT_FOUND = 11,
  EXIT_QEMU_DEVICE_NOT_FOUND = 12,
  EXIT_QEMU_DEVICE_NOT_ACTIVE = 13,
  EXIT_QEMU_KVM_MISSING_CAP = 14,
  EXIT_QEMU_OTHER = 15,
};

struct cli {
  struct knib_config cfg;
  const char *config_path;
  bool verbose;
};

/* Print "knib: CONTEXT: <last error>" on stderr. */
void cli_error (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

/* Print "knib: MESSAGE" and a hint to use --help; returns EXIT_USAGE. */
int cli_usage_error (const char *cmd, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

/* The exit status for a QEMU error class (NULL: not a QEMU error). */
int cli_exit_for_qemu_class (const char *cls);

int cmd_qmp (struct cli *cli, int argc, char **argv);
int cmd_backup (struct cli *cli, int argc, char **argv);
int cmd_recover (struct cli *cli, int argc, char **argv);
int cmd_list (struct cli *cli, int argc, char **argv);
int cmd_info (struct cli *cli, int argc, char **argv);
int cmd_verify (struct cli *cli, int argc, char **argv);
int cmd_restore (struct cli *cli, int argc, char **argv);

#endif
