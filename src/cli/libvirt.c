/* SPDX-License-Identifier: Apache-2.0 */
/* libvirt.c: "knib libvirt enable|disable|status", and backups by domain.
 *
 * libvirt is reached only through virsh, run as an argv (never a shell),
 * and only from here: the hook never calls it. */
#include <config.h>

#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backup/backup.h"
#include "cli.h"
#include "common/cleanup.h"
#include "common/command.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"
#include "domain/domain.h"
#include "libvirt.h"

/* How long virsh may take for a query, and for a freeze or thaw (the
 * guest agent may be slow to answer). */
#define VIRSH_TIMEOUT_MS 60000
#define FREEZE_TIMEOUT_MS 120000

int
libvirt_virsh (char **out, const char *in, int timeout_ms, ...)
{
  struct command *cmd = command_new ("virsh");
  const char *arg;
  va_list ap;
  int r = -1;

  if (cmd == NULL)
    return -1;
  va_start (ap, timeout_ms);
  while ((arg = va_arg (ap, const char *)) != NULL)
    command_add_arg (cmd, arg);
  va_end (ap);
  if (in != NULL)
    command_set_stdin (cmd, in, strlen (in));
  if (out != NULL)
    command_capture_stdout (cmd, 0);
  command_set_timeout (cmd, timeout_ms);
  if (command_run (cmd, NULL) == 0) {
    if (out != NULL)
      *out = command_steal_stdout (cmd, NULL);
    r = out == NULL || *out != NULL ? 0 : -1;
  }
  command_free (cmd);
  return r;
}

/* The persistent definition, as "virsh define" takes it. */
static char *
dumpxml_inactive (const char *domain)
{
  char *xml = NULL;

  if (libvirt_virsh (&xml, NULL, VIRSH_TIMEOUT_MS, "dumpxml", "--inactive",
                     domain, NULL)
      == -1)
    return NULL;
  return xml;
}

int
libvirt_forget_backing (const char *domain)
{
  char *xml = dumpxml_inactive (domain), *edited = NULL;
  int r = -1;

  if (xml == NULL)
    return -1;
  if (domain_xml_drop_backing (xml, strlen (xml), &edited) == 0
      && (edited == NULL
          || libvirt_virsh (NULL, edited, VIRSH_TIMEOUT_MS, "define",
                            "/dev/stdin", NULL)
               == 0))
    r = 0;
  if (r == -1)
    error_prepend ("domain '%s': updating its definition", domain);
  free (xml);
  free (edited);
  return r;
}

int
libvirt_set_disk_file (const char *domain, const char *dev, const char *file)
{
  char *xml = dumpxml_inactive (domain), *edited = NULL;
  int r = -1;

  if (xml != NULL
      && domain_xml_set_disk_file (xml, strlen (xml), dev, file, &edited) == 0
      && libvirt_virsh (NULL, edited, VIRSH_TIMEOUT_MS, "define", "/dev/stdin",
                        NULL)
           == 0)
    r = 0;
  if (r == -1)
    error_prepend ("domain '%s': pointing disk %s at '%s'", domain, dev, file);
  free (xml);
  free (edited);
  return r;
}

/* ---- knib libvirt enable | disable | status ---- */

static void
libvirt_usage (FILE *fp)
{
  fprintf (
    fp,
    "Usage: knib libvirt enable DOMAIN\n"
    "       knib libvirt disable DOMAIN\n"
    "       knib libvirt status DOMAIN\n"
    "\n"
    "enable gives knib a QMP monitor of its own in the domain: it adds\n"
    "-qmp unix:" DOMAIN_RUN_DIR "/" DOMAIN_QMP_SUBDIR "/UUID.sock to the\n"
    "<qemu:commandline> of its persistent definition (virsh dumpxml\n"
    "--inactive, then virsh define).  It takes effect when the domain next\n"
    "starts, and libvirt then marks it as tainted by custom arguments.\n"
    "disable removes it.  Both change nothing when there is nothing to do.\n"
    "status shows what knib's libvirt hook recorded of the domain.\n"
    "\n"
    "Then 'knib backup --domain DOMAIN --repo DIR' backs the domain up,\n"
    "running (through that monitor) or stopped (its images).  The hook\n"
    "must be installed (" LIBVIRT_HOOK_DIR "/knib) and libvirtd restarted\n"
    "once after that: libvirtd reads its hooks when it starts.\n");
}

static void
warn_missing_hook (void)
{
  if (access (LIBVIRT_HOOK_DIR "/knib", X_OK) == 0)
    return;
  fprintf (stderr,
           "knib: warning: knib's libvirt hook is not installed as '%s/knib': "
           "'knib backup --domain' needs its records (install it with make "
           "install, then restart libvirtd)\n",
           LIBVIRT_HOOK_DIR);
}

/* The socket directory exists and is QEMU's (the hook checks this at
 * every start too, since /run is emptied at boot). */
static void
make_qmp_dir (void)
{
  CLEANUP_FREE char *dir = domain_qmp_dir ();
  struct passwd *pw = getpwnam (DOMAIN_DEFAULT_QEMU_USER);
  struct stat st;

  if (dir == NULL || domain_make_dir (dir, 0700) == -1
      || stat (dir, &st) == -1) {
    fprintf (stderr, "knib: warning: %s\n", get_error ());
    return;
  }
  if (pw != NULL && st.st_uid == 0 && chown (dir, pw->pw_uid, pw->pw_gid) == -1)
    fprintf (stderr, "knib: warning: cannot give '%s' to user %s: %m\n", dir,
             DOMAIN_DEFAULT_QEMU_USER);
}

static int
libvirt_set (const char *domain, bool enable)
{
  CLEANUP_FREE char *xml = dumpxml_inactive (domain);
  CLEANUP_FREE char *socket = NULL;
  CLEANUP_FREE char *edited = NULL;
  struct domain_info info;

  if (xml == NULL) {
    cli_error ("domain '%s'", domain);
    return EXIT_FAILURE_;
  }
  if (domain_info_parse (xml, strlen (xml), &info) == -1) {
    cli_error ("domain '%s'", domain);
    return EXIT_FAILURE_;
  }
  socket = domain_qmp_socket (info.uuid);
  domain_info_release (&info);
  if (socket == NULL
      || domain_xml_set_qmp (xml, strlen (xml), socket, enable, &edited)
           == -1) {
    cli_error ("domain '%s'", domain);
    return EXIT_FAILURE_;
  }
  if (edited != NULL
      && libvirt_virsh (NULL, edited, VIRSH_TIMEOUT_MS, "define", "/dev/stdin",
                        NULL)
           == -1) {
    cli_error ("domain '%s'", domain);
    return EXIT_FAILURE_;
  }
  if (enable) {
    make_qmp_dir ();
    printf ("domain %s: %s knib's QMP monitor %s; it takes effect when the "
            "domain next starts (libvirt marks it tainted: custom-argv)\n",
            domain, edited ? "has" : "already has", socket);
    warn_missing_hook ();
  }
  else
    printf ("domain %s: %s knib's QMP monitor; it goes when the domain "
            "next starts\n",
            domain, edited ? "no longer has" : "does not have");
  return EXIT_OK;
}

static int
libvirt_status (const char *domain)
{
  struct domain_record *r = domain_record_load (domain);
  struct stat st;
  size_t i;

  if (r == NULL) {
    if (get_errno () == ENOENT)
      printf ("domain %s: no record (the hook records a domain when it "
              "starts or stops)\n",
              domain);
    else
      cli_error ("domain '%s'", domain);
    return r == NULL && get_errno () == ENOENT ? EXIT_OK : EXIT_FAILURE_;
  }
  printf ("domain %s: %s\n", domain,
          r->state == DOMAIN_STATE_RUNNING ? "running" : "stopped");
  printf ("  uuid   %s\n", r->info.uuid ? r->info.uuid : "-");
  printf ("  qmp    %s%s\n",
          r->info.qmp ? r->info.qmp
                      : "- (knib libvirt "
                        "enable)",
          r->info.qmp && r->state == DOMAIN_STATE_RUNNING
              && stat (r->info.qmp, &st) == -1
            ? " (missing)"
            : "");
  printf ("  agent  %s\n", r->info.agent ? "yes" : "no");
  for (i = 0; i < r->info.disks.len; i++) {
    const struct domain_disk *d = &r->info.disks.ptr[i];

    printf ("  disk   %-6s %-8s %-6s %s\n", d->target, d->device,
            d->format ? d->format : "-", d->source ? d->source : "-");
  }
  domain_record_free (r);
  return EXIT_OK;
}

int
cmd_libvirt (struct cli *cli, int argc, char **argv)
{
  const char *sub;

  if (argc >= 2
      && (strcmp (argv[1], "-h") == 0 || strcmp (argv[1], "--help") == 0)) {
    libvirt_usage (stdout);
    return EXIT_OK;
  }
  if (argc != 3) {
    cli_usage_error ("libvirt", "expected enable, disable or status and a "
                                "domain");
    return EXIT_USAGE;
  }
  sub = argv[1];
  if (strcmp (sub, "enable") == 0 || strcmp (sub, "disable") == 0)
    return cli->parse_only ? EXIT_OK
                           : libvirt_set (argv[2], strcmp (sub, "enable") == 0);
  if (strcmp (sub, "status") == 0) {
    if (name_check ("domain", argv[2]) == -1) {
      cli_error ("%s", "");
      return EXIT_USAGE;
    }
    return cli->parse_only ? EXIT_OK : libvirt_status (argv[2]);
  }
  cli_usage_error ("libvirt", "unknown sub-command '%s'", sub);
  return EXIT_USAGE;
}

/* ---- knib backup --domain ---- */

/* Freeze the guest's filesystems through libvirt, which owns the guest
 * agent's channel. */
static int
freeze (void *opaque)
{
  struct libvirt_backup *lb = opaque;

  if (!lb->info.agent)
    set_error (0,
               "quiesce: domain '%s' has no guest agent: add a channel "
               "<channel type='unix'><target type='virtio' "
               "name='org.qemu.guest_agent.0'/></channel> and run "
               "qemu-guest-agent in the guest, or use --quiesce=try",
               lb->domain);
  else if (libvirt_virsh (NULL, NULL, FREEZE_TIMEOUT_MS, "domfsfreeze",
                          lb->domain, NULL)
           == 0) {
    lb->frozen = true;
    return 0;
  }
  else
    error_prepend ("quiesce: domain '%s': the guest agent did not freeze "
                   "the filesystems (is qemu-guest-agent running in the "
                   "guest? --quiesce=try goes on without it)",
                   lb->domain);
  if (!lb->quiesce_try)
    return -1;
  fprintf (stderr, "knib: warning: %s: the backup is not quiesced\n",
           get_error ());
  error_clear ();
  return 0;
}

static int
thaw (void *opaque)
{
  struct libvirt_backup *lb = opaque;

  if (!lb->frozen)
    return 0;
  lb->frozen = false;
  if (libvirt_virsh (NULL, NULL, FREEZE_TIMEOUT_MS, "domfsthaw", lb->domain,
                     NULL)
      == -1) {
    error_prepend ("domain '%s': the guest's filesystems may still be "
                   "frozen: run 'virsh domfsthaw %s'",
                   lb->domain, lb->domain);
    return -1;
  }
  return 0;
}

/* Is the domain running, says libvirt (when the hook has no record)? */
static bool
libvirt_says_running (const char *domain)
{
  CLEANUP_FREE char *state = NULL;

  if (libvirt_virsh (&state, NULL, VIRSH_TIMEOUT_MS, "domstate", domain, NULL)
      == -1) {
    error_clear ();
    return false;
  }
  return strncmp (state, "running", 7) == 0 || strncmp (state, "paused", 6) == 0
         || strncmp (state, "in shutdown", 11) == 0;
}

/* A running domain: knib's QMP socket, and libvirt's aliases as names. */
static int
setup_running (struct libvirt_backup *lb, struct backup_options *eo)
{
  struct stat st;
  size_t i, n = 0;

  if (lb->info.qmp == NULL) {
    set_error (0,
               "domain '%s' runs without knib's QMP monitor: run 'knib "
               "libvirt enable %s', then shut the domain down and start it "
               "again",
               lb->domain, lb->domain);
    return -1;
  }
  if (stat (lb->info.qmp, &st) == -1 || !S_ISSOCK (st.st_mode)) {
    set_error (errno,
               "domain '%s': knib's QMP socket '%s' is missing (did QEMU "
               "start with it? shut the domain down and start it again)",
               lb->domain, lb->info.qmp);
    return -1;
  }
  eo->qmp_socket = lb->info.qmp;
  lb->renames = calloc (lb->info.disks.len + 1, sizeof *lb->renames);
  if (lb->renames == NULL) {
    set_error (errno, "calloc");
    return -1;
  }
  for (i = 0; i < lb->info.disks.len; i++) {
    const struct domain_disk *d = &lb->info.disks.ptr[i];

    if (d->alias != NULL) {
      lb->renames[n].device = d->alias;
      lb->renames[n++].disk = d->target;
    }
  }
  eo->renames = lb->renames;
  eo->n_renames = n;
  return 0;
}

static bool
selected (const struct backup_options *eo, const char *target)
{
  size_t i;

  if (eo->disks == NULL)
    return true;
  for (i = 0; eo->disks[i]; i++)
    if (strcmp (eo->disks[i], target) == 0)
      return true;
  return false;
}

/* Which disks of a stopped domain knib backs up: every writable disk
 * (not a CD-ROM or floppy), or those of --disk. */
static int
offline_disk (const struct libvirt_backup *lb, const struct backup_options *eo,
              const struct domain_disk *d, bool *take)
{
  *take = false;
  if (!selected (eo, d->target))
    return 0;
  if (eo->disks == NULL
      && (d->readonly || strcmp (d->device, "disk") != 0 || d->source == NULL))
    return 0;
  if (d->source == NULL) {
    set_error (EINVAL,
               "domain '%s': disk '%s' is of type '%s': knib backs up file "
               "and block disks of a stopped domain (leave it out with "
               "--disk)",
               lb->domain, d->target, d->type ? d->type : "?");
    return -1;
  }
  *take = true;
  return 0;
}

/* A stopped domain: its images, from its definition. */
static int
setup_stopped (struct libvirt_backup *lb, struct backup_options *eo)
{
  const char **paths;
  size_t i, n = 0;

  lb->images = calloc (lb->info.disks.len + 1, sizeof *lb->images);
  paths = calloc (lb->info.disks.len + 1, sizeof *paths);
  if (lb->images == NULL || paths == NULL) {
    set_error (ENOMEM, "calloc");
    free (paths);
    return -1;
  }
  for (i = 0; i < lb->info.disks.len; i++) {
    const struct domain_disk *d = &lb->info.disks.ptr[i];
    bool take;

    if (offline_disk (lb, eo, d, &take) == -1) {
      free (paths);
      return -1;
    }
    if (!take)
      continue;
    lb->images[n].disk = d->target;
    lb->images[n].path = d->source;
    lb->images[n].format = d->format;
    paths[n++] = d->source;
  }
  eo->images = lb->images;
  eo->n_images = n;
  /* Tell the hook before the images are opened: a start now waits.
   * Without it the image locks still keep QEMU off, less clearly. */
  lb->hold = domain_hold_take (eo->vm, paths, n);
  free (paths);
  if (lb->hold == NULL) {
    fprintf (stderr,
             "knib: warning: domain '%s': %s: a start of the domain during "
             "the backup fails on the image locks, without knib's message\n",
             lb->domain, get_error ());
    error_clear ();
  }
  return 0;
}

/* The domain as the hook recorded it, else as libvirt defines it. */
static int
load_domain (struct libvirt_backup *lb, bool *running)
{
  struct domain_record *r = domain_record_load (lb->domain);
  CLEANUP_FREE char *saved = NULL;
  const char *xml;

  lb->definition = dumpxml_inactive (lb->domain);
  if (lb->definition == NULL)
    debug (DEBUG_CMD, "%s", get_error ());
  if (r != NULL) {
    lb->info = r->info;
    memset (&r->info, 0, sizeof r->info);
    *running = r->state == DOMAIN_STATE_RUNNING;
    domain_record_free (r);
    if (*running || lb->definition == NULL)
      return 0;
    /* Stopped: its definition may have changed since it stopped. */
    domain_info_release (&lb->info);
  }
  else if (get_errno () != ENOENT)
    return -1;
  else if (libvirt_says_running (lb->domain)) {
    set_error (0,
               "domain '%s' runs, but knib's libvirt hook has not recorded "
               "it: install the hook (" LIBVIRT_HOOK_DIR "/knib), restart "
               "libvirtd, then shut the domain down and start it again",
               lb->domain);
    return -1;
  }
  *running = false;
  xml = lb->definition;
  if (xml == NULL)
    xml = saved = domain_xml_load (lb->domain);
  if (xml == NULL) {
    error_prepend ("domain '%s': neither libvirt nor knib's hook knows it",
                   lb->domain);
    return -1;
  }
  return domain_info_parse (xml, strlen (xml), &lb->info);
}

static int
setup_domain (struct libvirt_backup *lb, struct backup_options *eo)
{
  bool running;

  if (name_check ("domain", lb->domain) == -1
      || load_domain (lb, &running) == -1)
    return -1;
  if (lb->definition == NULL) {
    /* libvirt did not answer: the XML the hook saw is the next best. */
    lb->definition = domain_xml_load (lb->domain);
    if (lb->definition == NULL)
      error_clear ();
  }
  eo->uuid = lb->info.uuid;
  eo->definition = lb->definition;
  if (running) {
    if (setup_running (lb, eo) == -1)
      return -1;
    if (lb->quiesce) {
      eo->freeze = freeze;
      eo->thaw = thaw;
      eo->quiesce_opaque = lb;
    }
    return 0;
  }
  return setup_stopped (lb, eo);
}

int
libvirt_backup_begin (struct libvirt_backup *lb, const char *domain,
                      const char *quiesce, struct backup_options *eo)
{
  memset (lb, 0, sizeof *lb);
  lb->domain = domain;
  if (quiesce != NULL) {
    lb->quiesce = true;
    lb->quiesce_try = strcmp (quiesce, "try") == 0;
    if (!lb->quiesce_try && strcmp (quiesce, "on") != 0) {
      set_error (EINVAL, "--quiesce=%s: expected --quiesce or --quiesce=try",
                 quiesce);
      return -1;
    }
    if (domain == NULL) {
      set_error (EINVAL, "--quiesce: knib freezes a guest through its guest "
                         "agent: give --qga SOCKET (the agent's socket) or "
                         "--domain NAME (libvirt's channel)");
      return -1;
    }
  }
  if (domain != NULL)
    return setup_domain (lb, eo);
  if (eo->images != NULL) {
    const char **paths = calloc (eo->n_images + 1, sizeof *paths);
    size_t i;

    for (i = 0; paths && i < eo->n_images; i++)
      paths[i] = eo->images[i].path;
    /* Best effort: the image locks keep the VM off anyway; the hold only
     * lets libvirt's hook say why. */
    lb->hold = paths ? domain_hold_take (eo->vm, paths, eo->n_images) : NULL;
    if (lb->hold == NULL)
      debug (DEBUG_CMD, "no hold for the libvirt hook: %s", get_error ());
    free (paths);
    error_clear ();
  }
  return 0;
}

void
libvirt_backup_end (struct libvirt_backup *lb)
{
  domain_hold_release (lb->hold);
  lb->hold = NULL;
  domain_info_release (&lb->info);
  free (lb->definition);
  free (lb->renames);
  free (lb->images);
  memset (lb, 0, sizeof *lb);
}
