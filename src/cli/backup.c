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
#include "chain/compress.h"
#include "chain/engine.h"
#include "cli.h"
#include "common/cleanup.h"
#include "common/error.h"
#include "common/util.h"
#include "libvirt.h"
#include "qmp/agent.h"
#include "progress.h"

#define MAX_DISKS 64

/* How long the guest agent may take to freeze or thaw. */
#define QGA_FREEZE_TIMEOUT_MS 60000

/* Counts the signals: the first stops the backup, and each one
 * interrupts whatever knib waits for then (a second one cuts the cleanup
 * after the first short). */
static volatile sig_atomic_t cancelled;

static void
on_signal (int sig)
{
  (void) sig;
  if (cancelled < SIG_ATOMIC_MAX)
    cancelled++;
}

/* SIGINT, SIGTERM and SIGHUP stop the backup cleanly: it fails, rolls
 * back in QEMU and leaves nothing behind. */
static void
catch_signals (void)
{
  struct sigaction sa = { .sa_handler = on_signal };

  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGHUP, &sa, NULL);
  signal (SIGPIPE, SIG_IGN);
  /* A file size limit (ulimit -f) is a write error, not a kill. */
  signal (SIGXFSZ, SIG_IGN);
}

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
    "  --scratch DIR      fleecing images and sockets (default " ENGINE_DEFAULT_SCRATCH
    ")\n"
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
           "compress' would.\n");
}

static void
on_progress (void *opaque, const char *disk, uint64_t done, uint64_t total)
{
  progress_update (opaque, disk, done, total);
}

static void
print_notes (const chain_string_vector *notes)
{
  size_t i;

  for (i = 0; i < notes->len; i++)
    fprintf (stderr, "knib: %s\n", notes->ptr[i]);
}

static json_t *
result_json (const char *vm, const struct engine_result *r)
{
  json_t *disks = json_array (), *notes = json_array ();
  size_t i;

  for (i = 0; i < r->disks.len; i++) {
    const struct engine_disk_result *d = &r->disks.ptr[i];
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
print_human (const char *vm, const struct engine_result *r)
{
  size_t i;

  printf ("backup %s of vm %s: %s", r->id, vm, chain_kind_name (r->kind));
  if (r->parent[0])
    printf (" of %s", r->parent);
  printf ("\n");
  if (r->reason && r->reason[0])
    printf ("  why: %s\n", r->reason);
  for (i = 0; i < r->disks.len; i++) {
    const struct engine_disk_result *d = &r->disks.ptr[i];
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

/* "vda,vdb" appended to disks[]. */
static int
add_disks (const char *arg, const char **disks, size_t *n, char **copies,
           size_t *ncopies)
{
  char *list = strdup (arg), *save = NULL, *tok;

  if (list == NULL)
    return -1;
  copies[(*ncopies)++] = list;
  for (tok = strtok_r (list, ",", &save); tok;
       tok = strtok_r (NULL, ",", &save)) {
    if (*n + 1 >= MAX_DISKS)
      return -1;
    disks[(*n)++] = tok;
  }
  disks[*n] = NULL;
  return 0;
}

struct common_opts {
  const char *repo;
  struct engine_options eo;
  bool json;
  bool quiet;
  const char *disks[MAX_DISKS];
  size_t ndisks;
  char *copies[MAX_DISKS];
  size_t ncopies;
  struct offline_image images[MAX_DISKS];
  size_t nimages;
  char *image_args[MAX_DISKS];  /* "vda\0PATH": images point in */
  char *format_args[MAX_DISKS]; /* "vda\0raw" */
  size_t nformats;
  struct cli_compression comp;
  const char *domain;  /* --domain */
  const char *quiesce; /* --quiesce: "on" or "try" */
  const char *qga;     /* --qga: the guest agent's socket */
  int qga_timeout_ms;  /* --qga-timeout */
  char *scratch;       /* --scratch, absolute */
};

enum {
  OPT_QMP = 256,
  OPT_VM,
  OPT_REPO,
  OPT_AUTO,
  OPT_FULL,
  OPT_INCREMENTAL,
  OPT_ISOLATED,
  OPT_DISK,
  OPT_CHAIN_SIZE,
  OPT_SCRATCH,
  OPT_TIMEOUT,
  OPT_CONNECTIONS,
  OPT_JSON,
  OPT_IMAGE,
  OPT_IMAGE_FORMAT,
  OPT_COMPRESS,
  OPT_LEVEL,
  OPT_THREADS,
  OPT_RATE_LIMIT,
  OPT_DOMAIN,
  OPT_QUIESCE,
  OPT_QGA,
  OPT_QGA_TIMEOUT,
};

/* "NAME=VALUE" copied into *copy as "NAME\0VALUE"; *value points in. */
static int
split_assignment (const char *cmd, const char *opt, const char *arg,
                  char **copy, const char **value)
{
  char *eq;

  *copy = strdup (arg);
  if (*copy == NULL)
    return cli_usage_error (cmd, "%s: out of memory", opt);
  eq = strchr (*copy, '=');
  if (eq == NULL || eq[1] == '\0')
    return cli_usage_error (cmd, "%s '%s': expected DISK=%s", opt, arg,
                            strcmp (opt, "--image") == 0 ? "PATH" : "FORMAT");
  *eq = '\0';
  *value = eq + 1;
  if (name_check ("disk", *copy) == -1)
    return cli_usage_error (cmd, "%s: %s", opt, get_error ());
  return -1;
}

/* Give each --image-format to its --image. */
static int
apply_formats (const char *cmd, struct common_opts *co)
{
  size_t i, j;

  for (i = 0; i < co->nformats; i++) {
    const char *name = co->format_args[i];
    const char *format = name + strlen (name) + 1;

    if (strcmp (format, "raw") != 0 && strcmp (format, "qcow2") != 0)
      return cli_usage_error (cmd, "--image-format %s=%s: raw or qcow2", name,
                              format);
    for (j = 0; j < co->nimages; j++)
      if (strcmp (co->images[j].disk, name) == 0)
        break;
    if (j == co->nimages)
      return cli_usage_error (cmd, "--image-format %s: no --image %s=PATH",
                              name, name);
    co->images[j].format = format;
  }
  return -1;
}

/* Parse the options both commands share; returns -1 on success, or an
 * exit status to return. */
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

static int
parse_opts (struct cli *cli, const char *cmd, int argc, char **argv,
            struct common_opts *co, void (*usage) (FILE *))
{
  static const struct option opts[] = {
    { "qmp", required_argument, NULL, OPT_QMP },
    { "vm", required_argument, NULL, OPT_VM },
    { "repo", required_argument, NULL, OPT_REPO },
    { "auto", no_argument, NULL, OPT_AUTO },
    { "full", no_argument, NULL, OPT_FULL },
    { "incremental", no_argument, NULL, OPT_INCREMENTAL },
    { "isolated", no_argument, NULL, OPT_ISOLATED },
    { "disk", required_argument, NULL, OPT_DISK },
    { "chain-size", required_argument, NULL, OPT_CHAIN_SIZE },
    { "scratch", required_argument, NULL, OPT_SCRATCH },
    { "timeout", required_argument, NULL, OPT_TIMEOUT },
    { "connections", required_argument, NULL, OPT_CONNECTIONS },
    { "json", no_argument, NULL, OPT_JSON },
    { "image", required_argument, NULL, OPT_IMAGE },
    { "image-format", required_argument, NULL, OPT_IMAGE_FORMAT },
    { "compress", required_argument, NULL, OPT_COMPRESS },
    { "level", required_argument, NULL, OPT_LEVEL },
    { "threads", required_argument, NULL, OPT_THREADS },
    { "rate-limit", required_argument, NULL, OPT_RATE_LIMIT },
    { "domain", required_argument, NULL, OPT_DOMAIN },
    { "quiesce", optional_argument, NULL, OPT_QUIESCE },
    { "qga", required_argument, NULL, OPT_QGA },
    { "qga-timeout", required_argument, NULL, OPT_QGA_TIMEOUT },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int64_t v;
  int c;

  co->eo.mode = CHAIN_MODE_AUTO;
  co->eo.chain_size = cli->cfg.chain_size;
  co->eo.timeout_ms
    = cli->cfg.timeout > INT32_MAX / 1000 ? -1 : (int) cli->cfg.timeout * 1000;
  co->qga_timeout_ms = QGA_SYNC_TIMEOUT_MS;
  cli_compression_init (cli, &co->comp, false);
  while ((c = getopt_long (argc, argv, "qh", opts, NULL)) != -1) {
    switch (c) {
    case OPT_QMP:
      co->eo.qmp_socket = optarg;
      break;
    case OPT_VM:
      co->eo.vm = optarg;
      break;
    case OPT_REPO:
      co->repo = optarg;
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
      if (add_disks (optarg, co->disks, &co->ndisks, co->copies, &co->ncopies)
          == -1)
        return cli_usage_error (cmd, "--disk: too many disks");
      co->eo.disks = co->disks;
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
    case OPT_TIMEOUT:
      if (parse_int64 ("--timeout", optarg, 1, 2000000, &v) == -1)
        return cli_usage_error (cmd, "%s", get_error ());
      co->eo.timeout_ms = (int) v * 1000;
      break;
    case OPT_CONNECTIONS:
      if (parse_int64 ("--connections", optarg, 1, 16, &v) == -1)
        return cli_usage_error (cmd, "%s", get_error ());
      co->eo.connections = (unsigned) v;
      break;
    case OPT_JSON:
      co->json = true;
      break;
    case OPT_IMAGE: {
      struct offline_image *im = &co->images[co->nimages];
      int st;

      if (co->nimages + 1 >= MAX_DISKS)
        return cli_usage_error (cmd, "--image: too many disks");
      st = split_assignment (cmd, "--image", optarg,
                             &co->image_args[co->nimages], &im->path);
      im->disk = co->image_args[co->nimages++];
      if (st != -1)
        return st;
      co->eo.images = co->images;
      co->eo.n_images = co->nimages;
      break;
    }
    case OPT_IMAGE_FORMAT: {
      const char *format;
      int st;

      if (co->nformats + 1 >= MAX_DISKS)
        return cli_usage_error (cmd, "--image-format: too many disks");
      st = split_assignment (cmd, "--image-format", optarg,
                             &co->format_args[co->nformats++], &format);
      if (st != -1)
        return st;
      break;
    }
    case OPT_COMPRESS:
    case OPT_LEVEL:
    case OPT_THREADS:
    case OPT_RATE_LIMIT: {
      static const char *const names[]
        = { "compress", "level", "threads", "rate-limit" };
      int st;

      if (strcmp (cmd, "backup") != 0)
        return cli_usage_error (cmd, "unknown option");
      st = cli_compression_option (cmd, names[c - OPT_COMPRESS], optarg,
                                   &co->comp);
      if (st != -1)
        return st;
      break;
    }
    case OPT_DOMAIN:
    case OPT_QUIESCE:
      if (strcmp (cmd, "backup") != 0)
        return cli_usage_error (cmd, "unknown option");
      if (c == OPT_DOMAIN)
        co->domain = optarg;
      else
        co->quiesce = optarg ? optarg : "on";
      break;
    case OPT_QGA:
    case OPT_QGA_TIMEOUT:
      if (strcmp (cmd, "backup") != 0)
        return cli_usage_error (cmd, "unknown option");
      if (c == OPT_QGA)
        co->qga = optarg;
      else if (parse_int64 ("--qga-timeout", optarg, 1, 3600, &v) == -1)
        return cli_usage_error (cmd, "%s", get_error ());
      else
        co->qga_timeout_ms = (int) v * 1000;
      break;
    case 'q':
      co->quiet = true;
      break;
    case 'h':
      usage (stdout);
      return EXIT_OK;
    default:
      return cli_usage_error (cmd, "unknown option");
    }
  }
  if (optind != argc)
    return cli_usage_error (cmd, "unexpected argument '%s'", argv[optind]);
  if (co->domain != NULL && (co->eo.qmp_socket != NULL || co->nimages > 0))
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
  if (co->domain != NULL && co->eo.vm == NULL)
    co->eo.vm = co->domain;
  if (co->eo.vm == NULL || co->repo == NULL)
    return cli_usage_error (cmd, "--vm and --repo are required");
  if (co->eo.qmp_socket != NULL && co->nimages > 0)
    return cli_usage_error (cmd, "--qmp is for a running VM, --image for a "
                                 "stopped one: give one of them");
  if (apply_formats (cmd, co) != -1)
    return EXIT_USAGE;
  if (cli_compression_check (cmd, &co->comp) != -1)
    return EXIT_USAGE;
  co->eo.compression = co->comp.type;
  co->eo.compression_level = co->comp.level;
  co->eo.compression_threads = co->comp.threads;
  co->eo.rate_limit = co->comp.rate_limit;
  if (!cli_name_ok ("vm", co->eo.vm))
    return EXIT_USAGE;
  return -1;
}

static void
free_opts (struct common_opts *co)
{
  size_t i;

  free (co->scratch);
  for (i = 0; i < co->ncopies; i++)
    free (co->copies[i]);
  for (i = 0; i < co->nimages; i++)
    free (co->image_args[i]);
  for (i = 0; i < co->nformats; i++)
    free (co->format_args[i]);
}

/* --quiesce --qga: freeze through the guest agent's socket itself. */
struct qga_quiesce {
  const char *socket;
  int sync_timeout_ms;
  bool quiesce_try;
  struct qga_client *agent; /* kept from freeze to thaw */
  bool frozen;              /* thaw is due */
};

static int qga_thaw (void *opaque);

static int
qga_freeze (void *opaque)
{
  struct qga_quiesce *q = opaque;
  json_t *ret = NULL;

  q->agent = qga_client_connect (q->socket, q->sync_timeout_ms,
                                 QGA_FREEZE_TIMEOUT_MS, &cancelled);
  if (q->agent != NULL) {
    if (qga_client_execute (q->agent, "guest-fsfreeze-freeze", NULL, &ret)
        == 0) {
      json_decref (ret);
      q->frozen = true;
      return 0;
    }
    /* An error reply: the agent thawed what it had frozen.  No reply:
     * it may have frozen them, so thaw anyway, on a new connection. */
    if (get_errno () != EREMOTEIO)
      q->frozen = true;
    error_prepend ("the guest agent did not freeze the filesystems");
  }
  error_prepend ("quiesce");
  if (!q->quiesce_try) {
    CLEANUP_FREE char *err = strdup (get_error ());
    int errnum = get_errno ();

    /* The engine thaws only after a freeze that worked. */
    if (q->frozen && qga_thaw (q) == -1)
      fprintf (stderr, "knib: warning: %s\n", get_error ());
    set_error (0, "%s (--quiesce=try goes on without)",
               err ? err : "quiesce failed");
    error_set_errno (errnum);
    return -1;
  }
  fprintf (stderr, "knib: warning: %s: the backup is not quiesced\n",
           get_error ());
  error_clear ();
  return 0;
}

static int
qga_thaw (void *opaque)
{
  struct qga_quiesce *q = opaque;

  if (!q->frozen)
    return 0;
  q->frozen = false;
  if (q->agent == NULL
      || qga_client_execute (q->agent, "guest-fsfreeze-thaw", NULL, NULL)
           == -1) {
    /* Once more on a new connection: the old one may be unusable. */
    qga_client_free (q->agent);
    q->agent = qga_client_connect (q->socket, q->sync_timeout_ms,
                                   QGA_FREEZE_TIMEOUT_MS, &cancelled);
    if (q->agent == NULL
        || qga_client_execute (q->agent, "guest-fsfreeze-thaw", NULL, NULL)
             == -1) {
      error_prepend ("the guest's filesystems may still be frozen: run "
                     "guest-fsfreeze-thaw on the guest agent socket %s",
                     q->socket);
      return -1;
    }
  }
  return 0;
}

int
cmd_backup (struct cli *cli, int argc, char **argv)
{
  struct common_opts co = { .repo = NULL };
  struct engine_result r;
  struct chain_repo *repo = NULL;
  struct progress *bar = NULL;
  struct libvirt_backup lb = { .domain = NULL };
  struct qga_quiesce qq = { .socket = NULL };
  int status;

  status = parse_opts (cli, "backup", argc, argv, &co, backup_usage);
  if (status != -1)
    goto out;
  status = EXIT_FAILURE_;
  if (co.eo.qmp_socket == NULL && co.nimages == 0 && co.domain == NULL) {
    status
      = cli_usage_error ("backup", "--qmp SOCKET (a running VM), --image "
                                   "DISK=PATH (a stopped one) or --domain NAME "
                                   "(libvirt's) is required");
    goto out;
  }
  repo = chain_repo_open (co.repo, true);
  if (repo == NULL) {
    cli_error ("%s", "");
    goto out;
  }
  /* A libvirt domain: its socket or images; an offline backup tells
   * libvirt's hook which images it holds. */
  if (libvirt_backup_begin (&lb, co.domain, co.qga ? NULL : co.quiesce, &co.eo)
      == -1) {
    cli_error ("backup of vm '%s'", co.eo.vm);
    goto out;
  }
  if (co.qga != NULL) {
    qq.socket = co.qga;
    qq.sync_timeout_ms = co.qga_timeout_ms;
    qq.quiesce_try = strcmp (co.quiesce, "try") == 0;
    co.eo.freeze = qga_freeze;
    co.eo.thaw = qga_thaw;
    co.eo.quiesce_opaque = &qq;
  }
  catch_signals ();
  bar = progress_new (!co.json && !co.quiet);
  co.eo.progress = on_progress;
  co.eo.opaque = bar;
  co.eo.cancel = &cancelled;
  if (engine_backup (repo, &co.eo, &r) == -1) {
    progress_free (bar);
    bar = NULL;
    print_notes (&r.notes);
    cli_error ("%s", "");
    engine_result_release (&r);
    goto out;
  }
  progress_free (bar);
  bar = NULL;
  print_notes (&r.notes);
  if (co.json) {
    json_t *j = result_json (co.eo.vm, &r);
    char *s = j ? json_dumps (j, JSON_COMPACT) : NULL;

    if (s != NULL)
      printf ("%s\n", s);
    free (s);
    json_decref (j);
  }
  else
    print_human (co.eo.vm, &r);
  engine_result_release (&r);
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
  struct common_opts co = { .repo = NULL };
  chain_string_vector done = empty_vector;
  struct chain_repo *repo = NULL;
  int status;
  size_t i;

  status = parse_opts (cli, "recover", argc, argv, &co, recover_usage);
  if (status != -1)
    goto out;
  status = EXIT_FAILURE_;
  repo = chain_repo_open (co.repo, false);
  if (repo == NULL) {
    cli_error ("%s", "");
    goto out;
  }
  if (engine_recover (repo, &co.eo, &done) == -1) {
    print_notes (&done);
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
