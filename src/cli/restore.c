/* SPDX-License-Identifier: Apache-2.0 */
/* restore.c: "knib restore": a backup's disks as new images, into a VM's
 * disks, as new volumes or a new domain; the consolidation of quick
 * restores (restore-vm.c does all but the first). */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "cli.h"
#include "common/error.h"
#include "common/util.h"
#include "progress.h"
#include "restore.h"

enum {
  OPT_DISK = CLI_OPT_FIRST,
  OPT_TO,
  OPT_FORMAT,
  OPT_FORCE,
  OPT_IMAGE,
  OPT_DOMAIN,
  OPT_QUICK,
  OPT_START,
  OPT_STOP,
  OPT_STOP_TIMEOUT,
  OPT_CONSOLIDATE,
  OPT_STATUS,
  OPT_QMP,
  OPT_WAIT,
  OPT_RATE_LIMIT_MIB,
  OPT_ATTACH,
  OPT_ATTACH_QMP,
  OPT_TARGET,
  OPT_NEW_DOMAIN,
  OPT_STORAGE,
  OPT_PRINT_XML,
  OPT_NO_VERIFY,
  OPT_DROP_SNAPSHOTS,
};

static void
restore_usage (FILE *fp)
{
  fprintf (
    fp,
    "Usage: knib restore --repo DIR [--vm VM] BACKUP --to PATH [OPTIONS]\n"
    "       knib restore --repo DIR [--vm VM] BACKUP --image DISK=PATH...\n"
    "                    [--quick] [--force] [--drop-snapshots] [--json]\n"
    "       knib restore --repo DIR [--vm VM] BACKUP --domain NAME\n"
    "                    [--disk DISK,...] [--quick] [--stop] [--start]\n"
    "                    [--drop-snapshots]\n"
    "       knib restore --repo DIR [--vm VM] BACKUP --disk DISK\n"
    "                    (--attach DOMAIN | --attach-qmp SOCKET)\n"
    "                    [--target DEV] [--to PATH] [--quick] [--start]\n"
    "                    [--wait]\n"
    "       knib restore --repo DIR [--vm VM] BACKUP --new-domain NAME\n"
    "                    [--storage DIR] [--print-xml] [--quick] [--start]\n"
    "       knib restore --repo DIR --consolidate|--status\n"
    "                    (--domain NAME | --qmp SOCKET --vm VM) [--wait]\n"
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
    "In place (--image for a plain QEMU VM, --domain for a libvirt domain):\n"
    "the VM must be stopped (--stop shuts a domain down, then destroys it\n"
    "after --stop-timeout seconds).  The backup's chain is verified first\n"
    "(--force restores one that fails).  Each disk is written beside its\n"
    "image, synced and renamed over it only when complete; it gets the\n"
    "empty bitmap knib-BACKUP, so the VM's next backup is an incremental\n"
    "of BACKUP (the chain becomes a tree).  With --quick each disk is a new\n"
    "qcow2 overlay whose backing file is the backup's image: the VM can\n"
    "start at once, and --consolidate pulls the data in (block-stream on\n"
    "the VM's QEMU); until then the backup is pinned (delete, prune, merge\n"
    "and compress refuse it).  --status shows each disk's consolidation.\n"
    "A VM with disk-only snapshots (knib snapshot) is refused: its disks\n"
    "are their layers.  --drop-snapshots removes the snapshots and their\n"
    "layers with the restore (every disk with layers must be restored).\n"
    "\n"
    "Options:\n"
    "      --repo DIR         the repository\n"
    "      --vm VM            the VM whose backup it is (when two VMs have\n"
    "                         that id)\n"
    "      --disk NAME        only this disk (vda)\n"
    "      --to PATH          where the disk(s) go\n"
    "      --format FORMAT    qcow2 (default) or raw\n"
    "      --force            replace files that exist (never directories);\n"
    "                         in place: restore a chain that fails\n"
    "                         verification\n"
    "      --no-verify        do not check the images against the hashes\n"
    "                         their manifests record\n"
    "      --image DISK=PATH  in place: DISK of the backup replaces the\n"
    "                         image PATH of a stopped VM (repeatable)\n"
    "      --domain NAME      in place into a libvirt domain's disks (the\n"
    "                         backup's, or those of --disk DISK,DISK)\n"
    "      --quick            overlays on the backup's images, no copy\n"
    "      --drop-snapshots   in place into a VM with snapshots: remove\n"
    "                         them and their layers\n"
    "      --stop             shut a running domain down first\n"
    "      --stop-timeout S   then destroy it after S seconds (default 120)\n"
    "      --start            start the domain afterwards (with --quick,\n"
    "                         and consolidate; with --attach, a stopped\n"
    "                         domain)\n"
    "      --consolidate      start or resume the consolidation of the\n"
    "                         VM's quick-restored disks\n"
    "      --status           show each disk's consolidation\n"
    "      --qmp SOCKET       the VM's QMP socket (a plain QEMU)\n"
    "      --attach DOMAIN    restore --disk to a new image (--to PATH, by\n"
    "                         default beside the domain's first disk) and\n"
    "                         attach it to the domain (live and persistent\n"
    "                         when it runs, persistent when it is stopped);\n"
    "                         the backup may be of another VM\n"
    "      --attach-qmp SOCKET  the same for a running plain QEMU\n"
    "                         (blockdev-add, device_add; --to is needed)\n"
    "      --target DEV       the device name it gets (default: DISK)\n"
    "      --new-domain NAME  define a new libvirt domain from the definition\n"
    "                         stored with the backup: new name, UUID and MAC\n"
    "                         addresses, knib's monitor enabled, its disks\n"
    "                         restored under --storage DIR (default: beside\n"
    "                         the original's first disk)\n"
    "      --print-xml        show that definition; restore and define\n"
    "                         nothing\n"
    "      --wait             wait until the consolidation completes\n"
    "      --rate-limit MIB   consolidate at most MIB MiB/s (0: no limit)\n"
    "      --json             print the result as JSON\n"
    "  -q, --quiet            no progress bar and no report\n"
    "  -h, --help             show this help\n");
}

/* One option of restore's own; 0, or -1 (said). */
static int
restore_option (int c, struct restore_opts *o)
{
  switch (c) {
  case OPT_DISK:
    o->ro.disk = optarg;
    return 0;
  case OPT_TO:
    o->ro.to = optarg;
    return 0;
  case OPT_FORMAT:
    if (chain_restore_format_parse (optarg, &o->ro.format) == -1)
      return cli_usage_error ("restore", "--format: %s", get_error ());
    return 0;
  case OPT_NO_VERIFY:
    o->ro.no_verify = true;
    return 0;
  case OPT_FORCE:
    o->ro.force = true;
    return 0;
  case OPT_DROP_SNAPSHOTS:
    o->drop_snapshots = true;
    return 0;
  case OPT_IMAGE:
    return restore_add_image (o, optarg);
  case OPT_DOMAIN:
    o->domain = optarg;
    return 0;
  case OPT_QUICK:
    o->quick = true;
    return 0;
  case OPT_START:
    o->start = true;
    return 0;
  case OPT_STOP:
    o->stop = true;
    return 0;
  case OPT_STOP_TIMEOUT:
    if (parse_int64 ("--stop-timeout", optarg, 0, 86400, &o->stop_timeout)
        == -1)
      return cli_usage_error ("restore", "%s", get_error ());
    return 0;
  case OPT_CONSOLIDATE:
    o->consolidate = true;
    return 0;
  case OPT_STATUS:
    o->status = true;
    return 0;
  case OPT_QMP:
    o->qmp = optarg;
    return 0;
  case OPT_WAIT:
    o->wait = true;
    return 0;
  case OPT_RATE_LIMIT_MIB:
    if (parse_int64 ("--rate-limit", optarg, 0, INT64_MAX >> 20, &o->rate_limit)
        == -1)
      return cli_usage_error ("restore", "%s", get_error ());
    return 0;
  case OPT_ATTACH:
    o->attach = optarg;
    return 0;
  case OPT_ATTACH_QMP:
    o->attach_qmp = optarg;
    return 0;
  case OPT_TARGET:
    o->target = optarg;
    return 0;
  case OPT_NEW_DOMAIN:
    o->new_domain = optarg;
    return 0;
  case OPT_STORAGE:
    o->storage = optarg;
    return 0;
  case OPT_PRINT_XML:
    o->print_xml = true;
    return 0;
  }
  return cli_usage_error ("restore", "unknown option");
}

/* After the options: which restore it is, and its checks. */
static int
restore_check (struct restore_opts *o, int argc, char **argv)
{
  if (o->drop_snapshots
      && ((o->images.len == 0 && o->domain == NULL) || o->consolidate
          || o->status || o->attach != NULL || o->new_domain != NULL))
    return cli_usage_error ("restore", "--drop-snapshots goes with a restore "
                                       "in place (--image or --domain)");
  if (o->consolidate || o->status)
    return restore_check_consolidate (o, argc, argv);
  if (optind >= argc)
    return cli_usage_error ("restore", "no BACKUP given");
  o->id = argv[optind++];
  if (optind < argc)
    return cli_usage_error ("restore", "unexpected argument '%s'",
                            argv[optind]);
  if (o->common.repo == NULL)
    return cli_usage_error ("restore", "--repo is required");
  if (o->new_domain != NULL)
    return restore_check_new_domain (o);
  if (o->storage != NULL || o->print_xml)
    return cli_usage_error ("restore", "--storage and --print-xml go with "
                                       "--new-domain");
  if (o->attach != NULL || o->attach_qmp != NULL)
    return restore_check_attach (o);
  if (o->target != NULL)
    return cli_usage_error ("restore", "--target goes with --attach or "
                                       "--attach-qmp");
  if (o->images.len > 0 || o->domain != NULL)
    return restore_check_in_place (o);
  if (o->quick || o->start || o->stop || o->wait || o->qmp || o->common.json)
    return cli_usage_error ("restore", "--quick, --start, --stop, --wait, "
                                       "--qmp and --json go with --image or "
                                       "--domain");
  if (o->ro.to == NULL)
    return cli_usage_error ("restore", "give where to restore: --to PATH, "
                                       "--image DISK=PATH or --domain NAME");
  if (!cli_name_ok ("disk", o->ro.disk))
    return -1;
  return 0;
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
    { "image", required_argument, NULL, OPT_IMAGE },
    { "domain", required_argument, NULL, OPT_DOMAIN },
    { "quick", no_argument, NULL, OPT_QUICK },
    { "start", no_argument, NULL, OPT_START },
    { "stop", no_argument, NULL, OPT_STOP },
    { "stop-timeout", required_argument, NULL, OPT_STOP_TIMEOUT },
    { "consolidate", no_argument, NULL, OPT_CONSOLIDATE },
    { "status", no_argument, NULL, OPT_STATUS },
    { "qmp", required_argument, NULL, OPT_QMP },
    { "wait", no_argument, NULL, OPT_WAIT },
    { "rate-limit", required_argument, NULL, OPT_RATE_LIMIT_MIB },
    { "attach", required_argument, NULL, OPT_ATTACH },
    { "attach-qmp", required_argument, NULL, OPT_ATTACH_QMP },
    { "target", required_argument, NULL, OPT_TARGET },
    { "new-domain", required_argument, NULL, OPT_NEW_DOMAIN },
    { "storage", required_argument, NULL, OPT_STORAGE },
    { "print-xml", no_argument, NULL, OPT_PRINT_XML },
    { "no-verify", no_argument, NULL, OPT_NO_VERIFY },
    { "drop-snapshots", no_argument, NULL, OPT_DROP_SNAPSHOTS },
    { NULL, 0, NULL, 0 },
  };
  int c, r;

  cli_common_init (cli, &o->common);
  while ((r = cli_next_option ("restore", argc, argv, opts, &o->common, &c))
         > 0)
    if (restore_option (c, o) == -1)
      return -1;
  if (r == -1)
    return -1;
  if (o->common.help)
    return 0;
  o->ro.vm = o->common.vm;
  return restore_check (o, argc, argv);
}

void
restore_opts_release (struct restore_opts *o)
{
  for (size_t i = 0; i < o->images.len; i++)
    free ((char *) o->images.ptr[i].disk);
  restore_target_vector_reset (&o->images);
}

int
restore_on_progress (const struct chain_restore_status *s, void *opaque)
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

/* The restore to new files. */
static int
restore_to_files (struct restore_opts *o)
{
  struct restore_state st = { .bar = NULL };
  struct chain_repo *repo;
  int status;

  st.quiet = o->common.quiet;
  st.bar = progress_new (!o->common.quiet);
  o->ro.progress = restore_on_progress;
  o->ro.opaque = &st;
  cli_catch_signals ();
  repo = chain_repo_open (o->common.repo, false);
  if (repo == NULL || chain_restore (repo, o->id, &o->ro) == -1) {
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

int
cmd_restore (struct cli *cli, int argc, char **argv)
{
  struct restore_opts o = { .id = NULL };
  int status;

  o.ro.format = CHAIN_RESTORE_QCOW2;
  o.stop_timeout = 120;
  if (restore_parse (cli, argc, argv, &o) == -1)
    status = EXIT_USAGE;
  else if (o.common.help) {
    restore_usage (stdout);
    status = EXIT_OK;
  }
  else if (cli->parse_only)
    status = EXIT_OK;
  else if (o.consolidate || o.status)
    status = restore_consolidate (cli, &o);
  else if (o.new_domain != NULL)
    status = restore_new_domain (cli, &o);
  else if (o.attach != NULL || o.attach_qmp != NULL)
    status = restore_attach (cli, &o);
  else if (o.images.len > 0 || o.domain != NULL)
    status = restore_in_place (cli, &o);
  else
    status = restore_to_files (&o);
  restore_opts_release (&o);
  return status;
}
