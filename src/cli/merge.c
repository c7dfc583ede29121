/* SPDX-License-Identifier: Apache-2.0 */
/* merge.c: "knib merge": make a backup standalone, shortening its chain. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "cli.h"
#include "common/error.h"
#include "common/util.h"
#include "delete.h"

static void
merge_usage (FILE *fp)
{
  fprintf (
    fp, "Usage: knib merge --repo DIR [--vm VM] BACKUP\n"
        "\n"
        "Rewrite BACKUP's images as standalone images of the same point in\n"
        "time ('qemu-img convert' of its chain into a temporary file, made\n"
        "durable, then renamed over the image), so that it no longer depends\n"
        "on the backups before it: it becomes a full backup, the first of its\n"
        "own chain, and the backups after it move to that chain.  Backups\n"
        "before it that were deleted (removed) and that nothing needs any\n"
        "more are then deleted.  An interrupted merge is finished by running\n"
        "it again.  It holds the VM's lock: no backup, delete, restore or\n"
        "verify of that VM runs meanwhile.\n"
        "\n"
        "Options:\n"
        "      --repo DIR   the repository\n"
        "      --vm VM      the VM (default: whichever VM has the backup)\n"
        "  -h, --help       show this help\n");
}

/* 0, or -1 (said); --help stops the parse at once. */
static int
merge_parse (struct cli *cli, int argc, char **argv, struct cli_common *co,
             const char **id)
{
  static const struct option opts[] = {
    CLI_COMMON_OPTIONS,
    { NULL, 0, NULL, 0 },
  };
  int c, r;

  cli_common_init (cli, co);
  r = cli_next_option ("merge", argc, argv, opts, co, &c);
  if (r == 1)
    return cli_usage_error ("merge", "unknown option");
  if (r == -1)
    return -1;
  if (co->help)
    return 0;
  if (optind + 1 != argc)
    return cli_usage_error ("merge", "name one backup to merge");
  *id = argv[optind];
  return cli_common_check ("merge", co, true, false);
}

int
cmd_merge (struct cli *cli, int argc, char **argv)
{
  const char *vm, *id = NULL;
  struct cli_common co;
  chain_string_vector done = empty_vector;
  chain_delete_step_vector deleted = empty_vector;
  struct chain_repo *repo;
  int status, r;

  if (merge_parse (cli, argc, argv, &co, &id) == -1)
    return EXIT_USAGE;
  if (co.help) {
    merge_usage (stdout);
    return EXIT_OK;
  }
  if (cli->parse_only)
    return EXIT_OK;
  vm = co.vm;
  repo = chain_repo_open (co.repo, false);
  if (repo == NULL) {
    cli_error ("merge");
    return EXIT_FAILURE_;
  }
  r = chain_merge (repo, vm, id, &done, &deleted);
  for (size_t i = 0; i < done.len; i++)
    printf ("%s\n", done.ptr[i]);
  if (cli_steps_report (vm ? vm : "", &deleted, false, NULL) == -1 || r == -1)
    cli_error ("%s", "");
  status = r == 0 ? EXIT_OK : EXIT_FAILURE_;
  chain_string_vector_release (&done);
  chain_delete_step_vector_reset (&deleted);
  chain_repo_free (repo);
  if (fflush (stdout) != 0)
    status = EXIT_FAILURE_;
  return status;
}
