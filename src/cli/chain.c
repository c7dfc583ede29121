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

enum { OPT_REPO = 256, OPT_VM, OPT_QMP, OPT_REASON, OPT_TIMEOUT };

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

static int
chain_parse (struct cli *cli, int argc, char **argv, const char **repo,
             const char **reason, struct backup_options *eo)
{
  static const struct option opts[] = {
    { "repo", required_argument, NULL, OPT_REPO },
    { "vm", required_argument, NULL, OPT_VM },
    { "qmp", required_argument, NULL, OPT_QMP },
    { "reason", required_argument, NULL, OPT_REASON },
    { "timeout", required_argument, NULL, OPT_TIMEOUT },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int64_t v;
  int c;

  eo->timeout_ms
    = cli->cfg.timeout > INT32_MAX / 1000 ? -1 : (int) cli->cfg.timeout * 1000;
  while ((c = getopt_long (argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case OPT_REPO:
      *repo = optarg;
      break;
    case OPT_VM:
      eo->vm = optarg;
      break;
    case OPT_QMP:
      eo->qmp_socket = optarg;
      break;
    case OPT_REASON:
      *reason = optarg;
      break;
    case OPT_TIMEOUT:
      if (parse_int64 ("--timeout", optarg, 1, 2000000, &v) == -1)
        return cli_usage_error ("chain", "%s", get_error ());
      eo->timeout_ms = (int) v * 1000;
      break;
    case 'h':
      chain_usage (stdout);
      return EXIT_OK;
    default:
      return cli_usage_error ("chain", "unknown option");
    }
  }
  if (optind >= argc || strcmp (argv[optind], "end") != 0)
    return cli_usage_error ("chain", "the sub-command is 'knib chain end'");
  if (optind + 1 != argc)
    return cli_usage_error ("chain", "unexpected argument '%s'",
                            argv[optind + 1]);
  if (*repo == NULL || eo->vm == NULL)
    return cli_usage_error ("chain", "--repo and --vm are required");
  if (!cli_name_ok ("vm", eo->vm))
    return EXIT_USAGE;
  return -1;
}

int
cmd_chain (struct cli *cli, int argc, char **argv)
{
  const char *repo_path = NULL, *reason = "knib chain end";
  struct backup_options eo = { .vm = NULL };
  chain_string_vector done = empty_vector;
  struct chain_repo *repo;
  int status, r;

  status = chain_parse (cli, argc, argv, &repo_path, &reason, &eo);
  if (status >= 0)
    return status;
  repo = chain_repo_open (repo_path, false);
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
