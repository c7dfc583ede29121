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
  const char *repo;
  const char *id;
  struct chain_restore_options ro;
  bool quiet;
};

struct restore_state {
  struct progress *bar;
  bool quiet;
};

enum { OPT_REPO = 256, OPT_VM, OPT_DISK, OPT_TO, OPT_FORMAT, OPT_FORCE };

static volatile sig_atomic_t interrupted;

static void
restore_usage (FILE *fp)
{
  fprintf (
    fp,
    "Usage: knib restore --repo DIR [--vm VM] BACKUP --to PATH [OPTIONS]\n"
    "\n"
    "Write the disks of a backup, exactly as they were when it was taken,\n"
    "as new images: qemu-img reads the backup's image through its chain\n"
    "of backing files.  The chain is checked first and deletes wait while\n"
    "the restore runs.  Each disk is written to a temporary file beside\n"
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
    "  -q, --quiet            no progress bar and no report\n"
    "  -h, --help             show this help\n");
}

static int
restore_parse (int argc, char **argv, struct restore_opts *o)
{
  static const struct option opts[] = {
    { "repo", required_argument, NULL, OPT_REPO },
    { "vm", required_argument, NULL, OPT_VM },
    { "disk", required_argument, NULL, OPT_DISK },
    { "to", required_argument, NULL, OPT_TO },
    { "format", required_argument, NULL, OPT_FORMAT },
    { "force", no_argument, NULL, OPT_FORCE },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int c;

  while ((c = getopt_long (argc, argv, "qh", opts, NULL)) != -1) {
    switch (c) {
    case OPT_REPO:
      o->repo = optarg;
      break;
    case OPT_VM:
      o->ro.vm = optarg;
      break;
    case OPT_DISK:
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
    case 'q':
      o->quiet = true;
      break;
    case 'h':
      restore_usage (stdout);
      return EXIT_OK;
    default:
      return cli_usage_error ("restore", "unknown option");
    }
  }
  if (optind >= argc)
    return cli_usage_error ("restore", "no BACKUP given");
  o->id = argv[optind++];
  if (optind < argc)
    return cli_usage_error ("restore", "unexpected argument '%s'",
                            argv[optind]);
  if (o->repo == NULL || o->ro.to == NULL)
    return cli_usage_error ("restore", "--repo and --to are required");
  if (!cli_name_ok ("vm", o->ro.vm) || !cli_name_ok ("disk", o->ro.disk))
    return EXIT_USAGE;
  return -1;
}

static void
on_signal (int sig)
{
  interrupted = sig;
}

/* ^C, SIGTERM and SIGHUP stop the restore cleanly (the progress
 * callback sees the flag within half a second), unless they were
 * ignored (nohup). */
static void
catch_signals (void)
{
  static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
  struct sigaction sa, old;

  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset (&sa.sa_mask);
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    if (sigaction (sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
      sigaction (sigs[i], &sa, NULL);
}

static int
on_progress (const struct chain_restore_status *s, void *opaque)
{
  struct restore_state *st = opaque;

  if (interrupted)
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
  struct restore_opts o = { .repo = NULL };
  struct restore_state st = { .bar = NULL };
  struct chain_repo *repo;
  int status;

  o.ro.format = CHAIN_RESTORE_QCOW2;
  status = restore_parse (argc, argv, &o);
  if (status >= 0)
    return status;
  st.quiet = o.quiet;
  st.bar = progress_new (!o.quiet);
  o.ro.progress = on_progress;
  o.ro.opaque = &st;
  catch_signals ();
  repo = chain_repo_open (o.repo, false);
  if (repo == NULL || chain_restore (repo, o.id, &o.ro) == -1) {
    progress_free (st.bar);
    st.bar = NULL;
    cli_error ("%s", "");
    status = interrupted ? 128 + interrupted : EXIT_FAILURE_;
  }
  else
    status = EXIT_OK;
  progress_free (st.bar);
  chain_repo_free (repo);
  return status;
}
