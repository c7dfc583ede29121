/* SPDX-License-Identifier: Apache-2.0 */
/* knib-hook.c: libvirt's qemu hook: tells knib about domains, and keeps a
 * domain from starting on images that an offline knib backup has open.
 *
 * libvirtd runs it as "knib-hook DOMAIN OPERATION SUBOPERATION EXTRA"
 * with the domain XML on stdin, and waits for it.  So it never calls
 * libvirt (that deadlocks), writes nothing on stdout (for migrate and
 * restore stdout would replace the XML), finishes in well under a
 * second, and fails nothing but a start that would race an offline
 * backup: any other trouble is logged (syslog) and it exits 0. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/conf.h"
#include "common/error.h"
#include "common/util.h"
#include "domain/domain.h"
#include "hook-input.h"

/* How often a start that waits for an offline backup looks again. */
#define WAIT_POLL_MS 200

/* Exit statuses: libvirt refuses the start on anything but 0. */
enum { HOOK_OK = 0, HOOK_REFUSE = 1 };

static const char *domain_name = "?";

/* A line in syslog, or (tests) appended to $KNIB_HOOK_LOG. */
static void __attribute__ ((format (printf, 2, 3)))
hook_log (int prio, const char *fmt, ...)
{
  const char *file = getenv ("KNIB_HOOK_LOG");
  char *msg = NULL;
  va_list ap;

  va_start (ap, fmt);
  if (vasprintf (&msg, fmt, ap) == -1)
    msg = NULL;
  va_end (ap);
  if (msg == NULL)
    return;
  if (file != NULL && file[0] == '/') {
    FILE *fp = fopen (file, "ae");

    if (fp != NULL) {
      fprintf (fp, "knib-hook[%ld]: %s\n", (long) getpid (), msg);
      fclose (fp);
    }
  }
  else
    syslog (prio, "%s", msg);
  free (msg);
}

/* ---- knib's QMP socket directory ---- */

/* Who QEMU runs as: the XML's DAC label, else libvirt's default user. */
static void
qemu_owner (const struct domain_info *info, uid_t *uid, gid_t *gid)
{
  struct passwd *pw;

  if (info->dac_label) {
    *uid = info->qemu_uid;
    *gid = info->qemu_gid;
    return;
  }
  pw = getpwnam (DOMAIN_DEFAULT_QEMU_USER);
  *uid = pw ? pw->pw_uid : 0;
  *gid = pw ? pw->pw_gid : 0;
}

/* QEMU (another user) creates its socket in the directory: it must be
 * QEMU's, 0700.  /run is emptied at boot, so every start checks. */
static void
ensure_qmp_dir (const struct domain_info *info)
{
  CLEANUP_FREE char *dir = domain_qmp_dir ();
  struct stat st;
  uid_t uid;
  gid_t gid;

  if (info->qmp == NULL || dir == NULL)
    return;
  qemu_owner (info, &uid, &gid);
  if (domain_make_dir (dir, 0700) == -1 || lstat (dir, &st) == -1) {
    hook_log (LOG_ERR, "domain '%s': %s: QEMU cannot make knib's socket",
              domain_name, get_error ());
    return;
  }
  if (!S_ISDIR (st.st_mode)) {
    hook_log (LOG_ERR, "domain '%s': '%s' is not a directory", domain_name,
              dir);
    return;
  }
  if ((st.st_uid != uid || st.st_gid != gid) && chown (dir, uid, gid) == -1)
    hook_log (LOG_ERR, "domain '%s': chown '%s' to %ld:%ld: %m", domain_name,
              dir, (long) uid, (long) gid);
  if ((st.st_mode & 07777) != 0700 && chmod (dir, 0700) == -1)
    hook_log (LOG_ERR, "domain '%s': chmod '%s': %m", domain_name, dir);
}

/* ---- prepare: wait for, or refuse, a start on held images ---- */

static size_t
disk_paths (const struct domain_info *info, const char **paths)
{
  size_t i, n = 0;

  for (i = 0; i < info->disks.len; i++)
    if (info->disks.ptr[i].source != NULL)
      paths[n++] = info->disks.ptr[i].source;
  return n;
}

static int64_t
start_wait_ms (void)
{
  struct knib_config cfg;
  const char *path = getenv ("KNIB_CONFIG");

  config_init (&cfg);
  if (config_load (&cfg, path ? path : KNIB_CONFIG_PATH, false) == -1) {
    hook_log (LOG_ERR, "%s: using the default hook-start-wait", get_error ());
    config_init (&cfg);
  }
  return cfg.hook_start_wait * 1000;
}

static int
on_prepare (const struct domain_info *info)
{
  const char **paths = calloc (info->disks.len + 1, sizeof *paths);
  struct domain_holder who;
  int64_t deadline = -1;
  size_t n;
  int r;

  ensure_qmp_dir (info);
  if (paths == NULL) {
    hook_log (LOG_ERR, "domain '%s': out of memory", domain_name);
    return HOOK_OK;
  }
  n = disk_paths (info, paths);
  while ((r = domain_hold_find (paths, n, &who)) == 1) {
    if (deadline == -1) {
      deadline = deadline_after_ms (start_wait_ms ());
      hook_log (LOG_INFO,
                "domain '%s': waiting for the offline backup of vm '%s' "
                "(pid %ld) that has image '%s' open",
                domain_name, who.vm, who.pid, who.image);
    }
    if (deadline_remaining_ms (deadline) == 0)
      break;
    usleep (WAIT_POLL_MS * 1000);
  }
  free (paths);
  if (r == -1)
    hook_log (LOG_ERR, "domain '%s': offline backups: %s", domain_name,
              get_error ());
  if (r != 1)
    return HOOK_OK;
  fprintf (stderr,
           "knib: domain '%s' cannot start now: knib is backing it up offline "
           "(vm '%s', pid %ld) and has its image '%s' open; start it when "
           "the backup ends, or stop the backup (kill %ld)\n",
           domain_name, who.vm, who.pid, who.image, who.pid);
  hook_log (LOG_WARNING,
            "domain '%s': start refused: knib's offline backup (pid %ld) "
            "has image '%s' open",
            domain_name, who.pid, who.image);
  return HOOK_REFUSE;
}

/* ---- started, reconnect, stopped, release: the records ---- */

/* Tell knibd, if it runs, in one datagram that never blocks: no agent
 * (ENOENT, ECONNREFUSED) or a full queue (EAGAIN) loses the notice,
 * never the domain's start. */
static void
notify_agent (const char *name, enum domain_state state)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  char msg[256];
  int fd, n;

  n = snprintf (msg, sizeof msg, "%s %s",
                state == DOMAIN_STATE_RUNNING ? "running" : "stopped", name);
  if (n < 0 || (size_t) n >= sizeof msg
      || (size_t) snprintf (addr.sun_path, sizeof addr.sun_path,
                            "%s/" DOMAIN_AGENT_NOTIFY, domain_run_dir ())
           >= sizeof addr.sun_path)
    return;
  fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd == -1)
    return;
  if (sendto (fd, msg, n, MSG_NOSIGNAL, (struct sockaddr *) &addr, sizeof addr)
        == -1
      && errno != ENOENT && errno != ECONNREFUSED)
    hook_log (LOG_INFO, "domain '%s': knibd not told: %m", domain_name);
  close (fd);
}

static void
record (struct domain_info *info, enum domain_state state, const char *xml,
        size_t len)
{
  struct domain_record r = { .state = state, .updated = time (NULL) };

  /* The record owns the info while it is saved. */
  r.info = *info;
  if (domain_record_save (&r) == -1
      || domain_xml_save (info->name, xml, len) == -1)
    hook_log (LOG_ERR, "domain '%s': %s", domain_name, get_error ());
  notify_agent (info->name, state);
}

static int
remove_entry (const char *path, const struct stat *st, int flag,
              struct FTW *ftw)
{
  (void) st;
  (void) ftw;
  return flag == FTW_DP ? rmdir (path) : unlink (path);
}

static bool
pid_alive (long pid)
{
  return pid > 0 && (kill ((pid_t) pid, 0) == 0 || errno != ESRCH);
}

/* Whether the qemu-storage-daemon of a scratch directory still runs. */
static bool
daemon_alive (const char *dir)
{
  CLEANUP_FREE char *path = NULL;
  char buf[32] = "";
  FILE *fp;

  if (asprintf (&path, "%s/daemon.pid", dir) == -1)
    return true; /* out of memory: touch nothing */
  fp = fopen (path, "re");
  if (fp == NULL)
    return false;
  if (fgets (buf, sizeof buf, fp) == NULL)
    buf[0] = '\0';
  fclose (fp);
  return pid_alive (strtol (buf, NULL, 10));
}

/* Scratch directories "<vm>.<pid>" of knib runs that died: fleecing
 * images and sockets nobody will use.  Live runs' are left alone. */
static void
clean_scratch (const char *name)
{
  const char *root = getenv ("KNIB_SCRATCH_DIR");
  size_t len = strlen (name);
  struct dirent *e;
  DIR *d;

  if (root == NULL || root[0] != '/')
    root = KNIB_DEFAULT_SCRATCH;
  d = opendir (root);
  if (d == NULL)
    return;
  while ((e = readdir (d)) != NULL) {
    CLEANUP_FREE char *path = NULL;
    int64_t pid;

    if (strncmp (e->d_name, name, len) != 0 || e->d_name[len] != '.'
        || parse_int64 ("pid", e->d_name + len + 1, 1, INT32_MAX, &pid) == -1) {
      error_clear ();
      continue;
    }
    if (pid_alive (pid) || asprintf (&path, "%s/%s", root, e->d_name) == -1)
      continue;
    if (daemon_alive (path))
      continue;
    if (nftw (path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == -1)
      hook_log (LOG_ERR, "domain '%s': cannot remove '%s': %m", domain_name,
                path);
    else
      hook_log (LOG_INFO, "domain '%s': removed knib's leftovers '%s'",
                domain_name, path);
  }
  closedir (d);
}

static void
on_stopped (struct domain_info *info, const char *xml, size_t len)
{
  struct stat st;

  record (info, DOMAIN_STATE_STOPPED, xml, len);
  if (info->qmp != NULL && lstat (info->qmp, &st) == 0 && S_ISSOCK (st.st_mode)
      && unlink (info->qmp) == -1)
    hook_log (LOG_ERR, "domain '%s': cannot remove '%s': %m", domain_name,
              info->qmp);
  clean_scratch (info->name);
}

/* ---- Dispatch ---- */

static int
run (enum hook_action act)
{
  struct domain_info info;
  CLEANUP_FREE char *xml = NULL;
  size_t len = 0;
  int r = HOOK_OK;

  if (hook_input_read_domain (STDIN_FILENO, domain_name, &xml, &len, &info)
      == -1) {
    hook_log (LOG_ERR, "domain '%s': %s", domain_name, get_error ());
    return HOOK_OK;
  }
  switch (act) {
  case HOOK_ACT_PREPARE:
    r = on_prepare (&info);
    break;
  case HOOK_ACT_START:
    ensure_qmp_dir (&info);
    break;
  case HOOK_ACT_RUNNING:
    record (&info, DOMAIN_STATE_RUNNING, xml, len);
    break;
  case HOOK_ACT_STOPPED:
    on_stopped (&info, xml, len);
    break;
  case HOOK_ACT_NONE:
    break;
  }
  domain_info_release (&info);
  return r;
}

int
main (int argc, char **argv)
{
  enum hook_action act;

  openlog ("knib-hook", LOG_PID, LOG_DAEMON);
  /* Whatever happens, nothing goes to stdout. */
  if (freopen ("/dev/null", "w", stdout) == NULL)
    fclose (stdout);
  if (argc >= 2)
    domain_name = argv[1];
  if (hook_input_action (argc, argv, &act) == -1) {
    hook_log (argc < 4 ? LOG_ERR : LOG_WARNING, "%s", get_error ());
    return HOOK_OK;
  }
  if (act == HOOK_ACT_NONE)
    return HOOK_OK;
  return run (act);
}
