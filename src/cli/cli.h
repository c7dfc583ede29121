/* cli.h: what the sub-commands of the knib command share. */
#ifndef KNIB_CLI_H
#define KNIB_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "chain/chain.h"
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

/* For option parsers: true when name is NULL or a valid WHAT name;
 * otherwise print why ("knib: invalid vm name ...") and return false. */
bool cli_name_ok (const char *what, const char *name);

/* The exit status for a QEMU error class (NULL: not a QEMU error). */
int cli_exit_for_qemu_class (const char *cls);

/* --compress, --level, --threads and --rate-limit, which "knib backup"
 * and "knib compress" share (compress.c). */
struct cli_compression {
  enum chain_compression type;
  int level;          /* 0: the library's default */
  unsigned threads;   /* 0: one per core */
  int64_t rate_limit; /* MiB/s; < 1: none */
  bool rate_limit_set;
};

/* The defaults from the settings: compress (for a deferred compression
 * "none" means zstd), compression-threads, compression-rate-limit. */
void cli_compression_init (const struct cli *cli, struct cli_compression *c,
                           bool deferred);

/* Take option name ("compress", "level", "threads", "rate-limit") with
 * its argument.  Returns -1 when it is fine, else EXIT_USAGE (said). */
int cli_compression_option (const char *cmd, const char *name, const char *arg,
                            struct cli_compression *c);

/* After the options: check --level against the type; without
 * compression the rate limit is --rate-limit alone.  -1 or EXIT_USAGE. */
int cli_compression_check (const char *cmd, struct cli_compression *c);

int cmd_qmp (struct cli *cli, int argc, char **argv);
int cmd_backup (struct cli *cli, int argc, char **argv);
int cmd_recover (struct cli *cli, int argc, char **argv);
int cmd_list (struct cli *cli, int argc, char **argv);
int cmd_info (struct cli *cli, int argc, char **argv);
int cmd_verify (struct cli *cli, int argc, char **argv);
int cmd_restore (struct cli *cli, int argc, char **argv);
int cmd_compress (struct cli *cli, int argc, char **argv);
int cmd_delete (struct cli *cli, int argc, char **argv);
int cmd_prune (struct cli *cli, int argc, char **argv);
int cmd_merge (struct cli *cli, int argc, char **argv);
int cmd_chain (struct cli *cli, int argc, char **argv);
int cmd_libvirt (struct cli *cli, int argc, char **argv);
int cmd_snapshot (struct cli *cli, int argc, char **argv);

#endif
