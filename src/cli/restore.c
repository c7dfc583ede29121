/* SPDX-License-Identifier: Apache-2.0 */
/* restore.c: "knib restore": a backup's disks as new qcow2 or raw images. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "cli.h"
#include "common/error.h"
#include "common/util.h"
#include "progress.h"

struct restore_opts {
  struct cli_common common;
  const char *id;
  struct chain_restore_options ro;
};

struct restore_state {
  struct progress *bar;
  bool quiet;
};

enum { OPT_DISK = CLI_OPT_FIRST, OPT_TO, OPT_FORMAT, OPT_FORCE, OPT_NO_VERIFY };

static void
restore_usage (FILE *fp)
{
  fprintf (
    fp,
    "Usage: knib restore --repo DIR [--vm VM] BACKUP --to PATH [OPTIONS]\n"
    "\n"
    "Write the disks of a backup, exactly as they were when it was taken,\n"
    "as new images: qemu-img reads the backup's image through its chain\n"
    "of backing files.  The chain is checked first (every image against\n"
    "the hash its manifest records) and deletes wait while the restore\n"
    "runs.  Each disk is written to a temporary file beside\n"
    "its target, synced, then renamed into place: a failure or ^C leaves\n"
    "nothing behind.  The new files are readable by their owner only.\n"
    "\n"
    "With one disk (or --disk), PATH is the new file (or a directory that\n"
    "receives DISK.FORMAT); with several, PATH is a directory (made when\n"
    "missing) that receives one DISK.FORMAT file per disk.\n"
    "\n"
    "Options:\n"
    "      --repo DIR         the repository\n"
    "      --vm VM            the VM whose backup it is (when two VMs have\n"
    "                         that id)\n"
    "      --disk NAME        only this disk (vda)\n"
    "      --to PATH          where the disk(s) go\n"
    "      --format FORMAT    qcow2 (default) or raw\n"
    "      --force            replace files that exist (never directories)\n"
    "      --no-verify        do not check the images against the hashes\n"
    "                         their manifests record\n"
    "  -q, --quiet            no progress bar and no report\n"
    "  -h, --help             show this help\n");
}

/* 0, or -1 (said); --help stops the parse at once. */
static int
restore_parse (struct cli *cli, int argc, char **argv, struct restore_opts *o)
{
  static const struct option opts[] = {
    CLI_COMMON_OPTIONS,
    { "disk", required_argument, NULL, OPT_DISK },
    { "to", required_argument, NULL, OPT_TO },
    { "format", required_argument, NULL, OPT_FORMAT },
    { "force", no_argument, NULL, OPT_FORCE },
    { "no-verify", no_argument, NULL, OPT_NO_VERIFY },
    { NULL, 0, NULL, 0 },
  };
  int c, r;

  cli_common_init (cli, &o->common);
  while ((r = cli_next_option ("restore", argc, argv, opts, &o->common, &c))
         > 0) {
    switch (c) {
    case OPT_DISK:
      if (!cli_name_ok ("disk", optarg))
        return -1;
      o->ro.disk = optarg;
      break;
    case OPT_TO:
      o->ro.to = optarg;
      break;
    case OPT_FORMAT:
      if (chain_restore_format_parse (optarg, &o->ro.format) == -1)
        return cli_usage_error ("restore", "--format: %s", get_error ());
      break;
    case OPT_FORCE:
      o->ro.force = true;
      break;
    case OPT_NO_VERIFY:
      o->ro.no_verify = true;
      break;
    default:
      return cli_usage_error ("restore", "unknown option");
    }
  }
  if (r == -1)
    return -1;
  if (o->common.help)
    return 0;
  if (optind >= argc)
    return cli_usage_error ("restore", "no BACKUP given");
  o->id = argv[optind++];
  if (optind < argc)
    return cli_usage_error ("restore", "unexpected argument '%s'",
                            argv[optind]);
  if (o->common.repo == NULL || o->ro.to == NULL)
    return cli_usage_error ("restore", "--repo and --to are required");
  o->ro.vm = o->common.vm;
  return 0;
}

static int
on_progress (const struct chain_restore_status *s, void *opaque)
{
  struct restore_state *st = opaque;

  if (cli_interrupted)
    return -1;
  if (!s->done) {
    progress_update (st->bar, s->disk, s->written, s->virtual_size);
    return 0;
  }
  /* Clear the bar before the report; the next disk gets a new one. */
  progress_free (st->bar);
  st->bar = progress_new (!st->quiet);
  if (!st->quiet)
    printf ("restored disk '%s' of backup '%s' of vm '%s' to '%s'\n", s->disk,
            s->backup, s->vm, s->path);
  fflush (stdout);
  return 0;
}

int
cmd_restore (struct cli *cli, int argc, char **argv)
{
  struct restore_opts o = { .id = NULL };
  struct restore_state st = { .bar = NULL };
  struct chain_repo *repo;
  int status;

  o.ro.format = CHAIN_RESTORE_QCOW2;
  if (restore_parse (cli, argc, argv, &o) == -1)
    return EXIT_USAGE;
  if (o.common.help) {
    restore_usage (stdout);
    return EXIT_OK;
  }
  st.quiet = o.common.quiet;
  st.bar = progress_new (!o.common.quiet);
  o.ro.progress = on_progress;
  o.ro.opaque = &st;
  cli_catch_signals ();
  repo = chain_repo_open (o.common.repo, false);
  if (repo == NULL || chain_restore (repo, o.id, &o.ro) == -1) {
    progress_free (st.bar);
    st.bar = NULL;
    cli_error ("%s", "");
    status = cli_exit_status_failed ();
  }
  else
    status = EXIT_OK;
  progress_free (st.bar);
  chain_repo_free (repo);
  return status;
}
