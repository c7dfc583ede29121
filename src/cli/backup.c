/* SPDX-License-Identifier: Apache-2.0 */
/* backup.c: "knib backup" and "knib recover". */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "chain/chain.h"
#include "backup/backup.h"
#include "cli.h"
#include "common/cleanup.h"
#include "common/error.h"
#include "common/util.h"
#include "common/vector.h"
#include "libvirt.h"
#include "qmp/agent.h"
#include "progress.h"
#include "quiesce.h"
#include "show.h"

/* How long the guest agent may take to freeze or thaw. */

static void
backup_usage (FILE *fp)
{
  fprintf (
    fp,
    "Usage: knib backup --qmp SOCKET --vm NAME --repo DIR [OPTIONS]\n"
    "       knib backup --image vda=PATH [--image vdb=PATH...] --vm NAME\n"
    "                   --repo DIR [OPTIONS]\n"
    "       knib backup --domain NAME --repo DIR [--quiesce[=try]] [OPTIONS]\n"
    "       knib backup --qmp SOCKET --qga SOCKET --quiesce[=try] --vm NAME\n"
    "                   --repo DIR [OPTIONS]\n"
    "\n"
    "Back up the disks of a running VM into the repository, all at one\n"
    "point in time: an incremental of the VM's last backup when its dirty\n"
    "bitmaps allow it, else a full backup (the output says why).\n"
    "\n"
    "With --image instead of --qmp the VM is stopped: knib opens its disk\n"
    "images in qemu-storage-daemon (which keeps the VM from starting on\n"
    "them meanwhile) and backs them up the same way, in the same chain:\n"
    "the dirty bitmaps live in the qcow2 images.  Raw and qcow2 v2 images\n"
    "cannot hold them, so every offline backup of those disks is full.\n"
    "\n"
    "  --qmp SOCKET       the VM's QMP socket (a monitor of knib's own)\n"
    "  --image DISK=PATH  a disk of the stopped VM and its image (repeat\n"
    "                     per disk; the format is what qemu-img info finds)\n"
    "  --image-format DISK=FORMAT\n"
    "                     open that image as raw or qcow2, whatever it\n"
    "                     holds (for raw images a guest may have written)\n"
    "  --domain NAME      a libvirt domain, running or stopped, as knib's\n"
    "                     libvirt hook recorded it (see knib libvirt)\n"
    "  --quiesce[=try]    freeze the guest's filesystems for the point in\n"
    "                     time (libvirt's domfsfreeze, through the guest\n"
    "                     agent); =try: go on without, with a warning\n"
    "  --qga SOCKET       with --qmp: freeze through the guest agent's\n"
    "                     unix socket itself (QEMU's chardev of the\n"
    "                     org.qemu.guest_agent.0 virtserialport)\n"
    "  --qga-timeout SECONDS\n"
    "                     how long the guest agent may take to answer\n"
    "                     at all (default 10)\n"
    "  --vm NAME          the VM's name in the repository (default: the\n"
    "                     domain's name)\n"
    "  --repo DIR         the repository (made when missing)\n"
    "  --auto             incremental when possible, else full (default)\n"
    "  --full             a full backup, starting a new chain\n"
    "  --incremental      an incremental backup, or fail saying why not\n"
    "  --isolated         a full backup outside the chain\n"
    "  --disk vda[,vdb]   only these disks (default: every writable disk)\n"
    "  --chain-size N     backups per chain (default: chain-size of the\n"
    "                     settings, 8; 1: every backup full; 0: unlimited)\n"
    "  --scratch DIR      fleecing images and sockets (default " KNIB_DEFAULT_SCRATCH
    ")\n"
    "  --group NAME       share the repository for reading with this group\n"
    "                     (directories 2750, files 0640); --group '' makes\n"
    "                     it private again (0700, 0600: the default)\n"
    "  --timeout SECONDS  give up when QEMU is silent this long\n"
    "  --compress TYPE    zstd, zlib or none: store every cluster that\n"
    "                     shrinks compressed (default: the compress\n"
    "                     setting, none unless knib.conf says otherwise)\n"
    "  --level N          compression level: zstd 1-22 (default 3), zlib\n"
    "                     1-9 (default 6)\n"
    "  --threads N        compression threads (default: the\n"
    "                     compression-threads setting; 0: one per core)\n"
    "  --rate-limit MBPS  write at most this many MiB/s (default: none, or\n"
    "                     compression-rate-limit when compressing)\n"
    "  --json             print one JSON summary on stdout\n"
    "  -q, --quiet        no progress bar\n");
}

static void
recover_usage (FILE *fp)
{
  fprintf (fp,
           "Usage: knib recover --vm NAME --repo DIR [--qmp SOCKET | --image "
           "DISK=PATH...]\n"
           "                    [--scratch DIR]\n"
           "\n"
           "Repair what a killed knib left behind: unfinished backups in the\n"
           "repository, scratch files, and with --qmp the exports, jobs,\n"
           "fleecing nodes and bitmaps in QEMU.  Bitmaps are merged, never\n"
           "dropped, so no guest write is lost from tracking; inconsistent\n"
           "ones (left by a QEMU that was killed) are removed.  With --image\n"
           "the same is done in the images of a stopped VM.  Every backup\n"
           "does this on its own first.  A compression that was killed is\n"
           "finished (or its partial copy removed), as the next 'knib\n"
           "compress' would; the temporary files of a killed restore in\n"
           "place are removed from beside the VM's images.\n");
}

static void
on_progress (void *opaque, const char *disk, uint64_t done, uint64_t total)
{
  progress_update (opaque, disk, done, total);
}

static json_t *
result_json (const char *vm, const struct backup_result *r)
{
  json_t *disks = json_array (), *notes = json_array ();
  size_t i;

  for (i = 0; i < r->disks.len; i++) {
    const struct backup_disk_result *d = &r->disks.ptr[i];
    json_array_append_new (
      disks,
      json_pack ("{s:s, s:s, s:s?, s:I, s:I, s:I, s:I, s:I, s:f, s:s}", "name",
                 d->name, "kind", chain_kind_name (d->kind), "reason",
                 d->reason, "virtual_size", (json_int_t) d->virtual_size,
                 "bytes_read", (json_int_t) d->bytes_read, "bytes_zero",
                 (json_int_t) d->bytes_zero, "bytes_written",
                 (json_int_t) d->bytes_written, "extents",
                 (json_int_t) d->extents, "seconds", d->seconds, "compression",
                 chain_compression_name (d->compression)));
  }
  for (i = 0; i < r->notes.len; i++)
    json_array_append_new (notes, json_string (r->notes.ptr[i]));
  return json_pack ("{s:s, s:s, s:s, s:s?, s:s, s:o, s:o, s:f}", "vm", vm, "id",
                    r->id, "kind", chain_kind_name (r->kind), "parent",
                    r->parent[0] ? r->parent : NULL, "reason",
                    r->reason ? r->reason : "", "disks", disks, "notes", notes,
                    "seconds", r->seconds);
}

static void
print_human (const char *vm, const struct backup_result *r)
{
  size_t i;

  printf ("backup %s of vm %s: %s", r->id, vm, chain_kind_name (r->kind));
  if (r->parent[0])
    printf (" of %s", r->parent);
  printf ("\n");
  if (r->reason && r->reason[0])
    printf ("  why: %s\n", r->reason);
  for (i = 0; i < r->disks.len; i++) {
    const struct backup_disk_result *d = &r->disks.ptr[i];
    char rd[32], wr[32];

    progress_format_bytes (d->bytes_read, rd, sizeof rd);
    progress_format_bytes (d->bytes_written, wr, sizeof wr);
    printf ("  %-6s %-11s read %10s  wrote %10s  %6llu extents  %6.1f s\n",
            d->name, chain_kind_name (d->kind), rd, wr,
            (unsigned long long) d->extents, d->seconds);
    if (d->reason)
      printf ("         full because %s\n", d->reason);
    if (d->compression != CHAIN_COMPRESSION_NONE)
      printf ("         compressed with %s\n",
              chain_compression_name (d->compression));
  }
  printf ("done in %.1f s\n", r->seconds);
}

DEFINE_VECTOR_TYPE (image_vector, struct offline_image)

struct backup_cli_opts {
  struct cli_common common;
  struct backup_options eo;
  chain_string_vector disks;   /* --disk: names, NULL-terminated for eo */
  image_vector images;         /* --image: disk and path point into args */
  chain_string_vector args;    /* "vda\0PATH" and "vda\0raw" copies */
  chain_string_vector formats; /* --image-format: borrowed from args */
  struct cli_compression comp;
  const char *domain;  /* --domain */
  const char *quiesce; /* --quiesce: "on" or "try" */
  const char *qga;     /* --qga: the guest agent's socket */
  int qga_timeout_ms;  /* --qga-timeout */
  char *scratch;       /* --scratch, absolute */
  const char *group;   /* --group: share the repository; "": private */
};

enum {
  OPT_QMP = CLI_OPT_FIRST,
  OPT_AUTO,
  OPT_FULL,
  OPT_INCREMENTAL,
  OPT_ISOLATED,
  OPT_DISK,
  OPT_CHAIN_SIZE,
  OPT_SCRATCH,
  OPT_CONNECTIONS,
  OPT_IMAGE,
  OPT_IMAGE_FORMAT,
  OPT_DOMAIN,
  OPT_QUIESCE,
  OPT_QGA,
  OPT_QGA_TIMEOUT,
  OPT_GROUP,
};

/* "NAME=VALUE" kept in args as "NAME\0VALUE": *name and *value point
 * in.  0, or -1 (said). */
static int
split_assignment (const char *cmd, const char *opt, const char *arg,
                  chain_string_vector *args, const char **name,
                  const char **value)
{
  char *copy = strdup (arg), *eq;

  if (copy == NULL || chain_string_vector_append (args, copy) == -1) {
    free (copy);
    return cli_usage_error (cmd, "%s: out of memory", opt);
  }
  eq = strchr (copy, '=');
  if (eq == NULL || eq[1] == '\0')
    return cli_usage_error (cmd, "%s '%s': expected DISK=%s", opt, arg,
                            strcmp (opt, "--image") == 0 ? "PATH" : "FORMAT");
  *eq = '\0';
  *name = copy;
  *value = eq + 1;
  if (name_check ("disk", copy) == -1)
    return cli_usage_error (cmd, "%s: %s", opt, get_error ());
  return 0;
}

/* Give each --image-format to its --image.  0, or -1 (said). */
static int
apply_formats (const char *cmd, struct backup_cli_opts *co)
{
  size_t i, j;

  for (i = 0; i < co->formats.len; i++) {
    const char *name = co->formats.ptr[i];
    const char *format = name + strlen (name) + 1;

    if (strcmp (format, "raw") != 0 && strcmp (format, "qcow2") != 0)
      return cli_usage_error (cmd, "--image-format %s=%s: raw or qcow2", name,
                              format);
    for (j = 0; j < co->images.len; j++)
      if (strcmp (co->images.ptr[j].disk, name) == 0)
        break;
    if (j == co->images.len)
      return cli_usage_error (cmd, "--image-format %s: no --image %s=PATH",
                              name, name);
    co->images.ptr[j].format = format;
  }
  return 0;
}

/* --scratch DIR as an absolute path: QEMU, which opens the files in
 * it, does not run in knib's directory.  NULL with set_error when it
 * cannot be one QEMU takes (QMP carries paths as UTF-8 JSON text). */
static char *
scratch_path (const char *arg)
{
  CLEANUP_FREE char *cwd = NULL;
  char *path = NULL;
  json_t *text;

  if (arg[0] == '\0') {
    set_error (0, "--scratch: the directory name is empty");
    return NULL;
  }
  if (arg[0] != '/') {
    cwd = getcwd (NULL, 0);
    if (cwd == NULL) {
      set_error (errno, "--scratch '%s': cannot get the current directory",
                 arg);
      return NULL;
    }
  }
  if (asprintf (&path, "%s%s%s", cwd ? cwd : "", cwd ? "/" : "", arg) == -1) {
    set_error (ENOMEM, "--scratch");
    return NULL;
  }
  text = json_string (path);
  if (text == NULL) {
    free (path);
    set_error (0, "--scratch: the directory name is not valid UTF-8, which "
                  "QEMU cannot take: choose another directory");
    return NULL;
  }
  json_decref (text);
  return path;
}

/* Parse the options both commands share.  0, or -1 after saying what is
 * wrong (a usage error).  --help stops the parse at once. */
static int
parse_opts (struct cli *cli, const char *cmd, int argc, char **argv,
            struct backup_cli_opts *co)
{
  static const struct option opts[] = {
    CLI_COMMON_OPTIONS,
    { "qmp", required_argument, NULL, OPT_QMP },
    { "auto", no_argument, NULL, OPT_AUTO },
    { "full", no_argument, NULL, OPT_FULL },
    { "incremental", no_argument, NULL, OPT_INCREMENTAL },
    { "isolated", no_argument, NULL, OPT_ISOLATED },
    { "disk", required_argument, NULL, OPT_DISK },
    { "chain-size", required_argument, NULL, OPT_CHAIN_SIZE },
    { "scratch", required_argument, NULL, OPT_SCRATCH },
    { "connections", required_argument, NULL, OPT_CONNECTIONS },
    { "image", required_argument, NULL, OPT_IMAGE },
    { "image-format", required_argument, NULL, OPT_IMAGE_FORMAT },
    CLI_COMPRESSION_OPTIONS,
    { "domain", required_argument, NULL, OPT_DOMAIN },
    { "quiesce", optional_argument, NULL, OPT_QUIESCE },
    { "qga", required_argument, NULL, OPT_QGA },
    { "qga-timeout", required_argument, NULL, OPT_QGA_TIMEOUT },
    { "group", required_argument, NULL, OPT_GROUP },
    { NULL, 0, NULL, 0 },
  };
  bool is_backup = strcmp (cmd, "backup") == 0;
  int64_t v;
  int c, r;

  cli_common_init (cli, &co->common);
  co->eo.mode = CHAIN_MODE_AUTO;
  co->eo.chain_size = cli->cfg.chain_size;
  co->qga_timeout_ms = QGA_SYNC_TIMEOUT_MS;
  cli_compression_init (cli, &co->comp, false);
  while ((r = cli_next_option (cmd, argc, argv, opts, &co->common, &c)) > 0) {
    if (is_backup) {
      int taken = cli_compression_option (cmd, c, optarg, &co->comp);

      if (taken == -1)
        return -1;
      if (taken)
        continue;
    }
    switch (c) {
    case OPT_QMP:
      co->eo.qmp_socket = optarg;
      break;
    case OPT_AUTO:
      co->eo.mode = CHAIN_MODE_AUTO;
      break;
    case OPT_FULL:
      co->eo.mode = CHAIN_MODE_FULL;
      break;
    case OPT_INCREMENTAL:
      co->eo.mode = CHAIN_MODE_INCREMENTAL;
      break;
    case OPT_ISOLATED:
      co->eo.mode = CHAIN_MODE_ISOLATED;
      break;
    case OPT_DISK:
      if (cli_split_list ("disk", optarg, &co->disks) == -1)
        return cli_usage_error (cmd, "--disk: %s", get_error ());
      break;
    case OPT_CHAIN_SIZE:
      if (parse_int64 ("--chain-size", optarg, -1, 1000000, &v) == -1)
        return cli_usage_error (cmd, "%s", get_error ());
      co->eo.chain_size = v;
      break;
    case OPT_SCRATCH:
      free (co->scratch);
      co->scratch = scratch_path (optarg);
      if (co->scratch == NULL)
        return cli_usage_error (cmd, "%s", get_error ());
      co->eo.scratch = co->scratch;
      break;
    case OPT_CONNECTIONS:
      if (parse_int64 ("--connections", optarg, 1, 16, &v) == -1)
        return cli_usage_error (cmd, "%s", get_error ());
      co->eo.connections = (unsigned) v;
      break;
    case OPT_IMAGE: {
      struct offline_image im = { .format = NULL };

      if (split_assignment (cmd, "--image", optarg, &co->args, &im.disk,
                            &im.path)
          == -1)
        return -1;
      if (image_vector_append (&co->images, im) == -1)
        return cli_usage_error (cmd, "--image: out of memory");
      break;
    }
    case OPT_IMAGE_FORMAT: {
      const char *name, *format;

      if (split_assignment (cmd, "--image-format", optarg, &co->args, &name,
                            &format)
          == -1)
        return -1;
      if (chain_string_vector_append (&co->formats, (char *) name) == -1)
        return cli_usage_error (cmd, "--image-format: out of memory");
      break;
    }
    case OPT_DOMAIN:
    case OPT_QUIESCE:
      if (!is_backup)
        return cli_usage_error (cmd, "unknown option");
      if (c == OPT_DOMAIN)
        co->domain = optarg;
      else
        co->quiesce = optarg ? optarg : "on";
      break;
    case OPT_QGA:
    case OPT_QGA_TIMEOUT:
      if (!is_backup)
        return cli_usage_error (cmd, "unknown option");
      if (c == OPT_QGA)
        co->qga = optarg;
      else if (cli_parse_timeout (cmd, "--qga-timeout", optarg,
                                  &co->qga_timeout_ms)
               == -1)
        return -1;
      break;
    case OPT_GROUP:
      if (!is_backup)
        return cli_usage_error (cmd, "unknown option");
      co->group = optarg;
      break;
    default:
      return cli_usage_error (cmd, "unknown option");
    }
  }
  if (r == -1)
    return -1;
  if (co->common.help)
    return 0;
  if (optind != argc)
    return cli_usage_error (cmd, "unexpected argument '%s'", argv[optind]);
  if (co->domain != NULL && (co->eo.qmp_socket != NULL || co->images.len > 0))
    return cli_usage_error (cmd, "--domain finds the QMP socket or the "
                                 "images itself: leave out --qmp and --image");
  if (co->quiesce != NULL && strcmp (co->quiesce, "on") != 0
      && strcmp (co->quiesce, "try") != 0)
    return cli_usage_error (cmd,
                            "--quiesce=%s: expected --quiesce or "
                            "--quiesce=try",
                            co->quiesce);
  if (co->qga != NULL && co->domain != NULL)
    return cli_usage_error (cmd, "--domain freezes through libvirt's guest "
                                 "agent channel: leave out --qga");
  if (co->qga != NULL && co->eo.qmp_socket == NULL)
    return cli_usage_error (cmd, "--qga is for a running VM: give --qmp");
  if (co->qga != NULL && co->quiesce == NULL)
    return cli_usage_error (cmd, "--qga is for --quiesce: give --quiesce or "
                                 "--quiesce=try");
  if (co->domain != NULL && co->common.vm == NULL) {
    if (!cli_name_ok ("vm", co->domain))
      return -1;
    co->common.vm = co->domain;
  }
  if (cli_common_check (cmd, &co->common, true, true) == -1)
    return -1;
  if (co->eo.qmp_socket != NULL && co->images.len > 0)
    return cli_usage_error (cmd, "--qmp is for a running VM, --image for a "
                                 "stopped one: give one of them");
  if (apply_formats (cmd, co) == -1
      || cli_compression_check (cmd, &co->comp) == -1)
    return -1;
  if (co->disks.len > 0) {
    /* The backup takes a NULL-terminated list. */
    if (chain_string_vector_append (&co->disks, NULL) == -1)
      return cli_usage_error (cmd, "--disk: out of memory");
    co->disks.len--;
    co->eo.disks = (const char **) co->disks.ptr;
  }
  co->eo.images = co->images.ptr;
  co->eo.n_images = co->images.len;
  co->eo.vm = co->common.vm;
  co->eo.timeout_ms = co->common.timeout_ms;
  co->eo.compression = co->comp.type;
  co->eo.compression_level = co->comp.level;
  co->eo.compression_threads = co->comp.threads;
  co->eo.rate_limit = co->comp.rate_limit;
  return 0;
}

static void
free_opts (struct backup_cli_opts *co)
{
  chain_string_vector_release (&co->disks);
  chain_string_vector_release (&co->args);
  /* formats borrows from args. */
  chain_string_vector_reset (&co->formats);
  image_vector_reset (&co->images);
  free (co->scratch);
}

int
cmd_backup (struct cli *cli, int argc, char **argv)
{
  struct backup_cli_opts co = { .domain = NULL };
  struct backup_result r;
  struct chain_repo *repo = NULL;
  struct progress *bar = NULL;
  struct libvirt_backup lb = { .domain = NULL };
  struct qga_quiesce qq = { .what = "backup" };
  int status = EXIT_USAGE;

  if (parse_opts (cli, "backup", argc, argv, &co) == -1)
    goto out;
  if (co.common.help) {
    backup_usage (stdout);
    status = EXIT_OK;
    goto out;
  }
  if (co.eo.qmp_socket == NULL && co.images.len == 0 && co.domain == NULL) {
    cli_usage_error ("backup", "--qmp SOCKET (a running VM), --image "
                               "DISK=PATH (a stopped one) or --domain NAME "
                               "(libvirt's) is required");
    goto out;
  }
  if (cli->parse_only) {
    status = EXIT_OK;
    goto out;
  }
  status = EXIT_FAILURE_;
  repo = chain_repo_open (co.common.repo, true);
  if (repo == NULL) {
    cli_error ("%s", "");
    goto out;
  }
  if (co.group != NULL && chain_repo_share (repo, co.group) == -1) {
    cli_error ("--group");
    goto out;
  }
  /* A libvirt domain: its socket or images; an offline backup tells
   * libvirt's hook which images it holds. */
  if (libvirt_backup_begin (&lb, co.domain, co.qga ? NULL : co.quiesce, &co.eo)
      == -1) {
    cli_error ("backup of vm '%s'", co.eo.vm);
    goto out;
  }
  co.eo.domain = co.domain;
  if (co.qga != NULL) {
    qq.socket = co.qga;
    qq.sync_timeout_ms = co.qga_timeout_ms;
    qq.quiesce_try = strcmp (co.quiesce, "try") == 0;
    co.eo.freeze = cli_qga_freeze;
    co.eo.thaw = cli_qga_thaw;
    co.eo.quiesce_opaque = &qq;
  }
  cli_catch_signals ();
  bar = progress_new (!co.common.json && !co.common.quiet);
  co.eo.progress = on_progress;
  co.eo.opaque = bar;
  co.eo.cancel = &cli_interrupted;
  if (backup_run (repo, &co.eo, &r) == -1) {
    progress_free (bar);
    bar = NULL;
    show_problems (&r.notes);
    cli_error ("%s", "");
    backup_result_release (&r);
    status = cli_exit_status_failed ();
    goto out;
  }
  progress_free (bar);
  bar = NULL;
  show_problems (&r.notes);
  if (co.common.json) {
    json_t *j = result_json (co.eo.vm, &r);

    if (j == NULL) {
      set_error (ENOMEM, "json");
      cli_error ("backup %s of vm '%s' is committed, but", r.id, co.eo.vm);
      backup_result_release (&r);
      goto out;
    }
    show_json (j, true);
    json_decref (j);
  }
  else
    print_human (co.eo.vm, &r);
  backup_result_release (&r);
  status = fflush (stdout) == 0 ? EXIT_OK : EXIT_FAILURE_;
out:
  progress_free (bar);
  qga_client_free (qq.agent);
  libvirt_backup_end (&lb);
  chain_repo_free (repo);
  free_opts (&co);
  return status;
}

int
cmd_recover (struct cli *cli, int argc, char **argv)
{
  struct backup_cli_opts co = { .domain = NULL };
  chain_string_vector done = empty_vector;
  struct chain_repo *repo = NULL;
  int status = EXIT_USAGE;
  size_t i;

  if (parse_opts (cli, "recover", argc, argv, &co) == -1)
    goto out;
  if (co.common.help) {
    recover_usage (stdout);
    status = EXIT_OK;
    goto out;
  }
  if (cli->parse_only) {
    status = EXIT_OK;
    goto out;
  }
  status = EXIT_FAILURE_;
  repo = chain_repo_open (co.common.repo, false);
  if (repo == NULL) {
    cli_error ("%s", "");
    goto out;
  }
  if (backup_recover (repo, &co.eo, &done) == -1) {
    show_problems (&done);
    cli_error ("%s", "");
    goto out;
  }
  for (i = 0; i < done.len; i++)
    printf ("%s\n", done.ptr[i]);
  if (done.len == 0)
    printf ("vm %s: nothing to recover\n", co.eo.vm);
  status = EXIT_OK;
out:
  chain_string_vector_release (&done);
  chain_repo_free (repo);
  free_opts (&co);
  return status;
}
