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

enum { OPT_REPO = 256, OPT_VM };

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

static int
merge_parse (int argc, char **argv, const char **repo, const char **vm,
             const char **id)
{
  static const struct option opts[] = {
    { "repo", required_argument, NULL, OPT_REPO },
    { "vm", required_argument, NULL, OPT_VM },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int c;

  while ((c = getopt_long (argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case OPT_REPO:
      *repo = optarg;
      break;
    case OPT_VM:
      *vm = optarg;
      break;
    case 'h':
      merge_usage (stdout);
      return EXIT_OK;
    default:
      return cli_usage_error ("merge", "unknown option");
    }
  }
  if (optind + 1 != argc)
    return cli_usage_error ("merge", "name one backup to merge");
  *id = argv[optind];
  if (*repo == NULL)
    return cli_usage_error ("merge", "--repo is required");
  if (!cli_name_ok ("vm", *vm))
    return EXIT_USAGE;
  return -1;
}

int
cmd_merge (struct cli *cli, int argc, char **argv)
{
  const char *repo_path = NULL, *vm = NULL, *id = NULL;
  chain_string_vector done = empty_vector;
  chain_delete_step_vector deleted = empty_vector;
  struct chain_repo *repo;
  int status, r;

  (void) cli;
  status = merge_parse (argc, argv, &repo_path, &vm, &id);
  if (status >= 0)
    return status;
  repo = chain_repo_open (repo_path, false);
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
