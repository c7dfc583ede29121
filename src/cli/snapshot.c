/* SPDX-License-Identifier: Apache-2.0 */
/* snapshot.c: "knib snapshot create|list|delete|revert": disk-only VM
 * snapshots that keep the VM's backups incremental. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "backup/backup.h"
#include "chain/chain.h"
#include "cli.h"
#include "common/error.h"
#include "common/util.h"
#include "libvirt.h"
#include "progress.h"
#include "quiesce.h"

#define MAX_IMAGES 64

static void
snapshot_usage (FILE *fp)
{
  fprintf (
    fp,
    "Usage: knib snapshot create (--qmp SOCKET --vm NAME | --image DISK=PATH...\n"
    "                             --vm NAME | --domain NAME) --repo DIR\n"
    "                             [--name NAME] [--quiesce[=try] [--qga SOCKET]]\n"
    "                             [--json]\n"
    "       knib snapshot list --vm NAME --repo DIR [--json]\n"
    "       knib snapshot delete --vm NAME --repo DIR [--qmp SOCKET |\n"
    "                            --domain NAME] [--json] NAME...\n"
    "       knib snapshot revert --vm NAME --repo DIR [--domain NAME] [--json]\n"
    "                            NAME\n"
    "\n"
    "Disk-only snapshots: every writable disk of the VM gets a new qcow2\n"
    "overlay beside its image, at one point in time (one QMP transaction\n"
    "for a running QEMU, libvirt's snapshot-create-as --disk-only --atomic\n"
    "for a domain, qemu-img for a stopped VM).  knib's dirty bitmaps go\n"
    "with them, so the next backup stays incremental after create, delete\n"
    "and revert.  The records are in the repository (snapshots.json).\n"
    "\n"
    "  create   take a snapshot (default name: the time, 20261204T230000Z)\n"
    "  list     the snapshots: name, time, state, each disk's layer and\n"
    "           its size, and the image each disk runs on\n"
    "  delete   the newest snapshot is merged into the current volume; one\n"
    "           that others depend on is marked removed and kept until it\n"
    "           can be merged (live with --qmp: QEMU's block-stream; a\n"
    "           running domain: libvirt's blockpull and blockcommit)\n"
    "  revert   with the VM stopped: each disk gets a fresh overlay on the\n"
    "           snapshot's layer; start the VM on the images it prints (a\n"
    "           domain's definition is pointed at them)\n"
    "\n"
    "  --qmp SOCKET       a running VM's QMP socket (knib's own monitor)\n"
    "  --image DISK=PATH  a stopped VM's disk and its current image\n"
    "  --domain NAME      a libvirt domain, running or stopped\n"
    "  --vm NAME          the VM's name in the repository (default: the\n"
    "                     domain's name)\n"
    "  --repo DIR         the repository\n"
    "  --name NAME        the snapshot's name (create)\n"
    "  --quiesce[=try]    freeze the guest's filesystems for the point in\n"
    "                     time (libvirt's guest agent channel, or --qga);\n"
    "                     =try: go on without, with a warning\n"
    "  --qga SOCKET       with --qmp: the guest agent's unix socket\n"
    "  --qga-timeout SECONDS\n"
    "                     how long the agent may take to answer at all\n"
    "  --timeout SECONDS  give up when QEMU is silent this long\n"
    "  --json             print JSON on stdout\n");
}

struct snap_opts {
  struct cli_common co;
  const char *sub; /* create, list, delete, revert */
  const char *domain;
  const char *quiesce;
  const char *qga;    /* --qga: the guest agent's socket */
  int qga_timeout_ms; /* --qga-timeout */
  const char *name;
  struct snapshot_options so;
  struct offline_image images[MAX_IMAGES];
  char *image_args[MAX_IMAGES];
  size_t nimages;
  char **names; /* the snapshots named (delete, revert) */
  size_t nnames;
};

enum {
  OPT_QMP = CLI_OPT_FIRST,
  OPT_IMAGE,
  OPT_DOMAIN,
  OPT_NAME,
  OPT_QUIESCE,
  OPT_QGA,
  OPT_QGA_TIMEOUT,
};

static void
free_opts (struct snap_opts *so)
{
  for (size_t i = 0; i < so->nimages; i++)
    free (so->image_args[i]);
}

/* --image DISK=PATH; 0 or -1 (said). */
static int
add_image (struct snap_opts *so, const char *arg)
{
  char *copy, *eq;

  if (so->nimages + 1 >= MAX_IMAGES)
    return cli_usage_error ("snapshot", "--image: too many disks");
  copy = strdup (arg);
  if (copy == NULL)
    return cli_usage_error ("snapshot", "--image: out of memory");
  eq = strchr (copy, '=');
  if (eq == NULL || eq[1] == '\0') {
    free (copy);
    return cli_usage_error ("snapshot", "--image '%s': expected DISK=PATH",
                            arg);
  }
  *eq = '\0';
  if (name_check ("disk", copy) == -1) {
    free (copy);
    return cli_usage_error ("snapshot", "--image: %s", get_error ());
  }
  so->image_args[so->nimages] = copy;
  so->images[so->nimages].disk = copy;
  so->images[so->nimages].path = eq + 1;
  so->nimages++;
  so->so.images = so->images;
  so->so.n_images = so->nimages;
  return 0;
}

/* What each sub-command takes besides the common options. */
static int
check_opts (struct snap_opts *so)
{
  bool create = strcmp (so->sub, "create") == 0;
  bool revert = strcmp (so->sub, "revert") == 0;

  if (so->nimages > 0 && !create)
    return cli_usage_error ("snapshot", "--image is for 'create'");
  if ((so->name != NULL || so->quiesce != NULL || so->qga != NULL) && !create)
    return cli_usage_error ("snapshot", "--name and --quiesce are for "
                                        "'create'");
  if (so->domain != NULL && so->co.vm == NULL)
    so->co.vm = so->domain;
  if (cli_common_check ("snapshot", &so->co, true, true) == -1
      || !cli_name_ok ("snapshot", so->name))
    return -1;
  if (so->domain != NULL && (so->so.qmp_socket != NULL || so->nimages > 0))
    return cli_usage_error ("snapshot",
                            "--domain finds the QMP socket or the images "
                            "itself: leave out --qmp and --image");
  if (so->so.qmp_socket != NULL && so->nimages > 0)
    return cli_usage_error ("snapshot", "--qmp is for a running VM, --image "
                                        "for a stopped one: give one of them");
  if (create && so->so.qmp_socket == NULL && so->nimages == 0
      && so->domain == NULL)
    return cli_usage_error ("snapshot",
                            "create: --qmp SOCKET (a running VM), --image "
                            "DISK=PATH (a stopped one) or --domain NAME is "
                            "required");
  if (so->quiesce != NULL && strcmp (so->quiesce, "on") != 0
      && strcmp (so->quiesce, "try") != 0)
    return cli_usage_error ("snapshot",
                            "--quiesce=%s: expected --quiesce or "
                            "--quiesce=try",
                            so->quiesce);
  if (so->quiesce != NULL && so->domain == NULL && so->qga == NULL)
    return cli_usage_error ("snapshot",
                            "--quiesce freezes through a guest agent: give "
                            "--qga SOCKET (with --qmp) or --domain NAME");
  if (so->qga != NULL
      && (so->so.qmp_socket == NULL || so->quiesce == NULL || !create))
    return cli_usage_error ("snapshot", "--qga is for create --qmp SOCKET "
                                        "--quiesce[=try]");
  if (revert && so->so.qmp_socket != NULL)
    return cli_usage_error ("snapshot", "revert: the VM must be stopped: "
                                        "leave out --qmp");
  if (strcmp (so->sub, "delete") == 0 && so->nnames == 0)
    return cli_usage_error ("snapshot", "delete: name the snapshots");
  if (revert && so->nnames != 1)
    return cli_usage_error ("snapshot", "revert: name one snapshot");
  if ((create || strcmp (so->sub, "list") == 0) && so->nnames > 0)
    return cli_usage_error ("snapshot", "unexpected argument '%s'",
                            so->names[0]);
  for (size_t i = 0; i < so->nnames; i++)
    if (!cli_name_ok ("snapshot", so->names[i]))
      return -1;
  so->so.vm = so->co.vm;
  so->so.timeout_ms = so->co.timeout_ms;
  return 0;
}

/* 0, or -1 (said); --help stops the parse at once. */
static int
parse_opts (struct cli *cli, int argc, char **argv, struct snap_opts *so)
{
  static const struct option opts[] = {
    CLI_COMMON_OPTIONS,
    { "qmp", required_argument, NULL, OPT_QMP },
    { "image", required_argument, NULL, OPT_IMAGE },
    { "domain", required_argument, NULL, OPT_DOMAIN },
    { "name", required_argument, NULL, OPT_NAME },
    { "quiesce", optional_argument, NULL, OPT_QUIESCE },
    { "qga", required_argument, NULL, OPT_QGA },
    { "qga-timeout", required_argument, NULL, OPT_QGA_TIMEOUT },
    { NULL, 0, NULL, 0 },
  };
  int c, r;

  cli_common_init (cli, &so->co);
  so->qga_timeout_ms = QGA_SYNC_TIMEOUT_MS;
  while ((r = cli_next_option ("snapshot", argc, argv, opts, &so->co, &c))
         > 0) {
    switch (c) {
    case OPT_QMP:
      so->so.qmp_socket = optarg;
      break;
    case OPT_IMAGE:
      if (add_image (so, optarg) == -1)
        return -1;
      break;
    case OPT_DOMAIN:
      so->domain = optarg;
      break;
    case OPT_NAME:
      so->name = optarg;
      break;
    case OPT_QUIESCE:
      so->quiesce = optarg ? optarg : "on";
      break;
    case OPT_QGA:
      so->qga = optarg;
      break;
    case OPT_QGA_TIMEOUT:
      if (cli_parse_timeout ("snapshot", "--qga-timeout", optarg,
                             &so->qga_timeout_ms)
          == -1)
        return -1;
      break;
    default:
      return cli_usage_error ("snapshot", "unknown option");
    }
  }
  if (r == -1)
    return -1;
  if (so->co.help)
    return 0;
  if (optind >= argc)
    return cli_usage_error ("snapshot",
                            "expected create, list, delete or revert");
  so->sub = argv[optind];
  if (strcmp (so->sub, "create") != 0 && strcmp (so->sub, "list") != 0
      && strcmp (so->sub, "delete") != 0 && strcmp (so->sub, "revert") != 0)
    return cli_usage_error ("snapshot", "unknown sub-command '%s'", so->sub);
  so->names = argv + optind + 1;
  so->nnames = argc - optind - 1;
  return check_opts (so);
}

static void
print_done (const struct snap_opts *so, const chain_string_vector *done,
            bool ok)
{
  if (so->co.json && ok) {
    json_t *a = json_array (), *j;
    char *s;

    for (size_t i = 0; a && i < done->len; i++)
      json_array_append_new (a, json_string (done->ptr[i]));
    j = a ? json_pack ("{s:s, s:o}", "vm", so->co.vm, "done", a) : NULL;
    s = j ? json_dumps (j, JSON_COMPACT) : NULL;
    if (s)
      printf ("%s\n", s);
    free (s);
    json_decref (j);
    return;
  }
  for (size_t i = 0; i < done->len; i++)
    fprintf (ok ? stdout : stderr, "%s%s\n", ok ? "" : "knib: ", done->ptr[i]);
}

static int64_t
file_size (const char *path)
{
  struct stat st;

  return stat (path, &st) == 0 ? (int64_t) st.st_blocks * 512 : -1;
}

static int
snapshot_list (struct chain_repo *repo, const struct snap_opts *so)
{
  struct chain_snaps s;
  size_t i, j;

  if (chain_snaps_read (repo, so->co.vm, &s) == -1) {
    cli_error ("snapshots of vm '%s'", so->co.vm);
    return EXIT_FAILURE_;
  }
  if (so->co.json) {
    json_t *snaps = json_array (), *tops = json_object (), *out;
    char *text;

    for (i = 0; i < s.snaps.len; i++) {
      const struct chain_snap *n = &s.snaps.ptr[i];
      json_t *disks = json_array ();
      char t[CHAIN_TIME_MAX];

      chain_time_format (n->time, t);
      for (j = 0; j < n->layers.len; j++)
        json_array_append_new (
          disks, json_pack ("{s:s, s:s, s:I}", "disk", n->layers.ptr[j].disk,
                            "layer", n->layers.ptr[j].file, "size",
                            (json_int_t) file_size (n->layers.ptr[j].file)));
      json_array_append_new (
        snaps,
        json_pack ("{s:s, s:s, s:s, s:o}", "name", n->name, "time", t, "state",
                   n->removed ? "removed" : "active", "disks", disks));
    }
    for (i = 0; i < s.tops.len; i++)
      json_object_set_new (
        tops, s.tops.ptr[i].disk,
        json_pack ("{s:s, s:I}", "image", s.tops.ptr[i].file, "size",
                   (json_int_t) file_size (s.tops.ptr[i].file)));
    out = json_pack ("{s:s, s:o, s:o}", "vm", so->co.vm, "snapshots", snaps,
                     "disks", tops);
    text = out ? json_dumps (out, JSON_COMPACT) : NULL;
    if (text)
      printf ("%s\n", text);
    free (text);
    json_decref (out);
  }
  else {
    printf ("%-20s %-20s %-8s %-6s %10s  %s\n", "NAME", "TIME", "STATE", "DISK",
            "SIZE", "LAYER");
    for (i = 0; i < s.snaps.len; i++) {
      const struct chain_snap *n = &s.snaps.ptr[i];
      char t[CHAIN_TIME_MAX];

      chain_time_format (n->time, t);
      for (j = 0; j < n->layers.len; j++) {
        char sz[32];

        progress_format_bytes (file_size (n->layers.ptr[j].file), sz,
                               sizeof sz);
        printf ("%-20s %-20s %-8s %-6s %10s  %s\n", j ? "" : n->name,
                j ? "" : t, j ? "" : (n->removed ? "removed" : "active"),
                n->layers.ptr[j].disk, sz, n->layers.ptr[j].file);
      }
    }
    for (i = 0; i < s.tops.len; i++) {
      char sz[32];

      progress_format_bytes (file_size (s.tops.ptr[i].file), sz, sizeof sz);
      printf ("%-20s %-20s %-8s %-6s %10s  %s\n", "(current)", "", "",
              s.tops.ptr[i].disk, sz, s.tops.ptr[i].file);
    }
  }
  chain_snaps_release (&s);
  return fflush (stdout) == 0 ? EXIT_OK : EXIT_FAILURE_;
}

/* After a revert: the domain's definition points each disk at the image
 * it now runs on. */
static int
domain_follows (struct chain_repo *repo, const struct snap_opts *so)
{
  struct chain_snaps s;
  int r = 0;

  if (chain_snaps_read (repo, so->co.vm, &s) == -1)
    return -1;
  for (size_t i = 0; i < s.tops.len && r == 0; i++)
    r = libvirt_set_disk_file (so->domain, s.tops.ptr[i].disk,
                               s.tops.ptr[i].file);
  chain_snaps_release (&s);
  return r;
}

static void
on_progress (void *opaque, const char *disk, uint64_t done, uint64_t total)
{
  progress_update (opaque, disk, done, total);
}

int
cmd_snapshot (struct cli *cli, int argc, char **argv)
{
  struct snap_opts so = { .sub = NULL };
  struct libvirt_backup lb = { .domain = NULL };
  struct backup_options eo = { .vm = NULL };
  struct qga_quiesce qq = { .what = "snapshot" };
  struct progress *bar = NULL;
  chain_string_vector done = empty_vector;
  struct chain_repo *repo = NULL;
  const char *sub;
  char defname[CHAIN_ID_MAX];
  int status = EXIT_FAILURE_, r = -1;

  if (parse_opts (cli, argc, argv, &so) == -1) {
    free_opts (&so);
    return EXIT_USAGE;
  }
  if (so.co.help) {
    snapshot_usage (stdout);
    free_opts (&so);
    return EXIT_OK;
  }
  if (cli->parse_only) {
    free_opts (&so);
    return EXIT_OK;
  }
  sub = so.sub;
  cli_catch_signals ();
  so.so.cancel = &cli_interrupted;
  repo = chain_repo_open (so.co.repo, strcmp (sub, "create") == 0);
  if (repo == NULL) {
    cli_error ("%s", "");
    goto out;
  }
  if (strcmp (sub, "list") == 0) {
    status = snapshot_list (repo, &so);
    goto out;
  }
  /* A libvirt domain: its QMP socket (running) or images (stopped). */
  if (so.domain != NULL) {
    eo.vm = so.so.vm;
    if (libvirt_backup_begin (&lb, so.domain, so.quiesce, &eo) == -1) {
      cli_error ("snapshot of vm '%s'", so.so.vm);
      goto out;
    }
    so.so.domain = so.domain;
    so.so.qmp_socket = eo.qmp_socket;
    so.so.images = eo.images;
    so.so.n_images = eo.n_images;
    so.so.renames = eo.renames;
    so.so.n_renames = eo.n_renames;
    so.so.freeze = eo.freeze;
    so.so.thaw = eo.thaw;
    so.so.quiesce_opaque = eo.quiesce_opaque;
  }
  if (so.qga != NULL) {
    qq.socket = so.qga;
    qq.sync_timeout_ms = so.qga_timeout_ms;
    qq.quiesce_try = strcmp (so.quiesce, "try") == 0;
    so.so.freeze = cli_qga_freeze;
    so.so.thaw = cli_qga_thaw;
    so.so.quiesce_opaque = &qq;
  }
  if (strcmp (sub, "create") == 0) {
    if (so.name == NULL) {
      struct tm tm;
      time_t now = time (NULL);

      gmtime_r (&now, &tm);
      strftime (defname, sizeof defname, "%Y%m%dT%H%M%SZ", &tm);
      so.name = defname;
    }
    r = snapshot_create (repo, &so.so, so.name, &done);
  }
  else if (strcmp (sub, "delete") == 0) {
    bar = progress_new (!so.co.json && !so.co.quiet);
    so.so.progress = on_progress;
    so.so.opaque = bar;
    r = snapshot_delete (repo, &so.so, (const char *const *) so.names,
                         so.nnames, &done);
    progress_free (bar);
    bar = NULL;
    if (r == 0 && so.domain != NULL && libvirt_forget_backing (so.domain) == -1)
      r = -1;
  }
  else {
    if (so.domain != NULL && so.so.qmp_socket != NULL) {
      set_error (EBUSY, "domain '%s' runs: shut it off first", so.domain);
      cli_error ("reverting vm '%s'", so.so.vm);
      goto out;
    }
    r = snapshot_revert (repo, &so.so, so.names[0], &done);
    if (r == 0 && so.domain != NULL && domain_follows (repo, &so) == -1)
      r = -1;
  }
  print_done (&so, &done, r == 0);
  if (r == -1) {
    cli_error ("%s", "");
    goto out;
  }
  status = fflush (stdout) == 0 ? EXIT_OK : EXIT_FAILURE_;
out:
  progress_free (bar);
  qga_client_free (qq.agent);
  chain_string_vector_release (&done);
  libvirt_backup_end (&lb);
  chain_repo_free (repo);
  free_opts (&so);
  return status;
}
