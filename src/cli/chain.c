/* SPDX-License-Identifier: Apache-2.0 */
/* chain.c: "knib chain end": end a VM's chain so that its next backup is full. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "backup/backup.h"
#include "cli.h"
#include "common/error.h"
#include "common/util.h"

enum { OPT_QMP = CLI_OPT_FIRST, OPT_REASON };

static void
chain_usage (FILE *fp)
{
  fprintf (
    fp, "Usage: knib chain end --repo DIR --vm VM [--qmp SOCKET] "
        "[--reason TEXT]\n"
        "\n"
        "End the VM's current chain: its next backup is full, and says why\n"
        "(\"the chain was ended: TEXT\").  With --qmp (the running VM's QMP\n"
        "socket) also remove knib's dirty bitmaps from its disks; a stopped\n"
        "VM's bitmaps go with its next backup.  The backups stay; they can\n"
        "be deleted as any other.\n"
        "\n"
        "Options:\n"
        "      --repo DIR         the repository\n"
        "      --vm VM            the VM\n"
        "      --qmp SOCKET       the running VM's QMP socket\n"
        "      --reason TEXT      why (default: \"knib chain end\")\n"
        "      --timeout SECONDS  give up when QEMU is silent this long\n"
        "  -h, --help             show this help\n");
}

/* 0, or -1 (said); --help stops the parse at once. */
static int
chain_parse (struct cli *cli, int argc, char **argv, struct cli_common *co,
             const char **reason, struct backup_options *eo)
{
  static const struct option opts[] = {
    CLI_COMMON_OPTIONS,
    { "qmp", required_argument, NULL, OPT_QMP },
    { "reason", required_argument, NULL, OPT_REASON },
    { NULL, 0, NULL, 0 },
  };
  int c, r;

  cli_common_init (cli, co);
  while ((r = cli_next_option ("chain", argc, argv, opts, co, &c)) > 0) {
    switch (c) {
    case OPT_QMP:
      eo->qmp_socket = optarg;
      break;
    case OPT_REASON:
      *reason = optarg;
      break;
    default:
      return cli_usage_error ("chain", "unknown option");
    }
  }
  if (r == -1)
    return -1;
  if (co->help)
    return 0;
  if (optind >= argc || strcmp (argv[optind], "end") != 0)
    return cli_usage_error ("chain", "the sub-command is 'knib chain end'");
  if (optind + 1 != argc)
    return cli_usage_error ("chain", "unexpected argument '%s'",
                            argv[optind + 1]);
  if (cli_common_check ("chain", co, true, true) == -1)
    return -1;
  eo->vm = co->vm;
  eo->timeout_ms = co->timeout_ms;
  return 0;
}

int
cmd_chain (struct cli *cli, int argc, char **argv)
{
  const char *reason = "knib chain end";
  struct cli_common co;
  struct backup_options eo = { .vm = NULL };
  chain_string_vector done = empty_vector;
  struct chain_repo *repo;
  int status, r;

  if (chain_parse (cli, argc, argv, &co, &reason, &eo) == -1)
    return EXIT_USAGE;
  if (co.help) {
    chain_usage (stdout);
    return EXIT_OK;
  }
  if (cli->parse_only)
    return EXIT_OK;
  repo = chain_repo_open (co.repo, false);
  if (repo == NULL) {
    cli_error ("chain end");
    return EXIT_FAILURE_;
  }
  r = backup_end_chain (repo, &eo, reason, &done);
  for (size_t i = 0; i < done.len; i++)
    printf ("%s\n", done.ptr[i]);
  if (r == -1)
    cli_error ("%s", "");
  status = r == 0 ? EXIT_OK : EXIT_FAILURE_;
  chain_string_vector_release (&done);
  chain_repo_free (repo);
  if (fflush (stdout) != 0)
    status = EXIT_FAILURE_;
  return status;
}
