/* SPDX-License-Identifier: Apache-2.0 */
/* cli.h: what the sub-commands of the knib command share. */
#ifndef KNIB_CLI_H
#define KNIB_CLI_H

#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

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
  /* Parse only (the option parsers' fuzz target): no settings file is
   * read, nothing is printed on stderr, and each command returns
   * EXIT_OK where it would start to act. */
  bool parse_only;
};

/* The knib command: main's body (main.c); parse_only as in struct cli. */
int cli_main (int argc, char **argv, bool parse_only);

/* Parse only: no error or getopt message is printed (cli_main sets it
 * for its parse). */
void cli_set_quiet (bool on);

/* Parse only (the batch fuzz target): one line of "knib files batch
 * --repo /var/lib/knib --vm web01 BACKUP"'s stdin, read, split, parsed
 * and checked as the batch does it, nothing run or printed (after
 * cli_set_quiet (true)).  The exit status the batch gives the line. */
int cli_files_batch_parse (const char *line);

/* The options every sub-command takes (options.c).  A command's option
 * table starts with CLI_COMMON_OPTIONS; its loop hands each option to
 * cli_common_option first. */
enum {
  CLI_OPT_REPO = 0x1000,
  CLI_OPT_VM,
  CLI_OPT_JSON,
  CLI_OPT_TIMEOUT,
  /* CLI_COMPRESSION_OPTIONS */
  CLI_OPT_COMPRESS,
  CLI_OPT_LEVEL,
  CLI_OPT_THREADS,
  CLI_OPT_RATE_LIMIT,
  /* A command's own options number from here. */
  CLI_OPT_FIRST,
};

#define CLI_COMMON_OPTIONS                                                     \
  { "repo", required_argument, NULL, CLI_OPT_REPO },                           \
    { "vm", required_argument, NULL, CLI_OPT_VM },                             \
    { "json", no_argument, NULL, CLI_OPT_JSON },                               \
    { "timeout", required_argument, NULL, CLI_OPT_TIMEOUT },                   \
    { "quiet", no_argument, NULL, 'q' },                                       \
  {                                                                            \
    "help", no_argument, NULL, 'h'                                             \
  }

/* The short options of CLI_COMMON_OPTIONS, for getopt_long. */
#define CLI_COMMON_SHORT "qh"

struct cli_common {
  const char *repo; /* --repo DIR */
  const char *vm;   /* --vm NAME (checked: a valid name) */
  bool json;        /* --json: one JSON document on stdout */
  bool quiet;       /* -q, --quiet: no progress bar */
  bool help;        /* -h, --help */
  int timeout_ms;   /* --timeout SECONDS, else the timeout setting; -1 none */
  bool timeout_set; /* --timeout was given */
};

/* The longest timeout, in seconds (about 23 days). */
#define CLI_TIMEOUT_MAX_S 2000000

/* Seconds (a setting or an option) as milliseconds: <= 0 is no timeout
 * (-1), anything above CLI_TIMEOUT_MAX_S is that. */
int cli_timeout_ms (int64_t seconds);

/* Parse a timeout option's argument (1 to CLI_TIMEOUT_MAX_S seconds);
 * -1 after saying what is wrong (a usage error). */
int cli_parse_timeout (const char *cmd, const char *what, const char *arg,
                       int *ms) __attribute__ ((warn_unused_result));

/* The defaults: nothing given, the timeout from the settings. */
void cli_common_init (const struct cli *cli, struct cli_common *co);

/* Take option c with its argument if it is a common one: 1 taken, 0 not
 * a common option, -1 a bad argument (said: exit with EXIT_USAGE). */
int cli_common_option (const char *cmd, int c, const char *arg,
                       struct cli_common *co)
  __attribute__ ((warn_unused_result));

/* The next option of the command's own (opts starts with
 * CLI_COMMON_OPTIONS, which this takes on the way): 1 with it in *c and
 * its argument in optarg; 0 at the end of the options or once --help was
 * given (co->help); -1 after saying what is wrong. */
int cli_next_option (const char *cmd, int argc, char **argv,
                     const struct option *opts, struct cli_common *co, int *c)
  __attribute__ ((warn_unused_result));

/* After the options: -1 (said) unless --repo and --vm are there where
 * needed. */
int cli_common_check (const char *cmd, const struct cli_common *co,
                      bool need_repo, bool need_vm)
  __attribute__ ((warn_unused_result));

/* Append each name of the comma-separated list arg ("vda,vdb"), checked
 * as a WHAT name, to out (as copies).  -1 with set_error. */
int cli_split_list (const char *what, const char *arg, chain_string_vector *out)
  __attribute__ ((warn_unused_result));

/* Signals (signals.c): SIGINT, SIGTERM and SIGHUP count in
 * cli_interrupted (unless they were ignored, as under nohup), which long
 * operations watch as their cancel flag: the first stops them cleanly, a
 * later one also cuts their cleanup short.  SIGPIPE and SIGXFSZ are
 * ignored (a closed pipe or ulimit -f is a write error). */
extern volatile sig_atomic_t cli_interrupted;
void cli_catch_signals (void);

/* The exit status of a failed command: 128 + the signal that stopped
 * it, else EXIT_FAILURE_. */
int cli_exit_status_failed (void);

/* Print "knib: CONTEXT: <last error>" on stderr. */
void cli_error (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

/* Print "knib: MESSAGE" and a hint to use --help; returns -1 (a parser
 * returns it; the command then exits with EXIT_USAGE). */
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

/* The options of struct cli_compression, for an option table. */
#define CLI_COMPRESSION_OPTIONS                                                \
  { "compress", required_argument, NULL, CLI_OPT_COMPRESS },                   \
    { "level", required_argument, NULL, CLI_OPT_LEVEL },                       \
    { "threads", required_argument, NULL, CLI_OPT_THREADS },                   \
  {                                                                            \
    "rate-limit", required_argument, NULL, CLI_OPT_RATE_LIMIT                  \
  }

/* Take option c with its argument if it is one of
 * CLI_COMPRESSION_OPTIONS: 1 taken, 0 not one of them, -1 after saying
 * what is wrong (a usage error). */
int cli_compression_option (const char *cmd, int c, const char *arg,
                            struct cli_compression *comp)
  __attribute__ ((warn_unused_result));

/* After the options: check --level against the type; without
 * compression the rate limit is --rate-limit alone.  0, or -1 (said). */
int cli_compression_check (const char *cmd, struct cli_compression *c);

/* QMP arguments from command-line words: one JSON object, or KEY=VALUE
 * words (a dotted key nests, a value that is valid JSON is taken as
 * such); *out NULL when there are none.  0, or -1 with set_error
 * (qmp.c, which "knib job submit" shares). */
int cli_args_build (int argc, char **argv, json_t **out)
  __attribute__ ((warn_unused_result));

/* knibd's socket when neither --agent SOCKET nor $KNIB_AGENT names one. */
#define CLI_DEFAULT_AGENT "/run/knib/knibd.sock"

/* agent-submit.c: "knib COMMAND --agent[=SOCKET] [--wait]" runs COMMAND
 * as a job of knibd.  cli_agent_requested: argv (a sub-command's) asks
 * for it. */
bool cli_agent_requested (int argc, char **argv);
int cli_agent_run (struct cli *cli, const char *cmd, int argc, char **argv);

struct qmp_client;

/* How cli_agent_follow follows a job and says how it ended. */
struct cli_follow {
  bool json;                /* print the result (or the row) as JSON */
  bool quiet;               /* no bar, no "succeeded" line */
  bool cancel_on_interrupt; /* Ctrl-C cancels the job */
  bool print_row;           /* with json: the job's row, not its result */
  int64_t deadline;         /* monotonic ms to give up at (-1: none) */
};

/* Follow knibd's job id to its end with a progress bar; the exit status
 * (the job's knib's when it failed; said). */
int cli_agent_follow (struct qmp_client *c, int64_t id,
                      const struct cli_follow *f);

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
int cmd_validate (struct cli *cli, int argc, char **argv);
int cmd_jobs (struct cli *cli, int argc, char **argv);
int cmd_job (struct cli *cli, int argc, char **argv);
int cmd_agent (struct cli *cli, int argc, char **argv);
int cmd_files (struct cli *cli, int argc, char **argv);
int cmd_export (struct cli *cli, int argc, char **argv);

#endif
