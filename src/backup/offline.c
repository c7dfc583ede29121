/* SPDX-License-Identifier: Apache-2.0 */
/* offline.c: a stopped VM's disks in qemu-storage-daemon, for the backup.
 *
 * DESIGN.md's "The backup, offline": the daemon opens the VM's images and
 * offers a QMP monitor, and the live flow runs against it unchanged.  The
 * daemon stores the persistent bitmaps in the images when it closes them,
 * which is how a chain goes on from a stopped VM to a running one and
 * back. */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "backup/internal.h"
#include "common/fs.h"
#include "common/util.h"
#include "common/cleanup.h"
#include "common/command.h"
#include "common/debug.h"
#include "common/error.h"

#define DAEMON_PROGRAM "qemu-storage-daemon"

/* How long one qemu-img info may take. */
#define PROBE_TIMEOUT_MS 60000

/* How often the start polls for the daemon's socket. */
#define START_POLL_MS 20

struct offline_disk {
  char *disk;
  char *path; /* absolute */
  char *format;
  bool persistent_bitmaps;
  char *node;      /* knib-disk-<disk> */
  char *file_node; /* knib-file-<disk> */
};

struct offline_daemon {
  struct offline_disk *disks;
  struct live_node_map *map;
  size_t n;
  char *socket;
  char *pid_file;
  struct command *cmd;
  struct qmp_client *c;
  bool stopped;
};

/* Whether QEMU's message (qemu-img's, the daemon's) says that another
 * process holds the image's lock. */
static bool
is_lock_error (const char *msg)
{
  return strstr (msg, "lock") != NULL
         && strstr (msg, "Is another process using the image") != NULL;
}

/* The error for an image that another process holds: most likely its
 * VM runs, and then it must be backed up live. */
static void
set_in_use_error (const struct offline_disk *od, const char *msg)
{
  set_error (-EBUSY,
             "disk '%s': image '%s' is in use by another process, which "
             "holds its lock (%s): if the VM is running, back it up live "
             "with --qmp SOCKET instead of --image",
             od->disk, od->path,
             strstr (msg, "shared \"write\" lock")
               ? "Failed to get shared \"write\" lock"
               : "Failed to get \"write\" lock");
}

/* What "qemu-img info" says of an image: its format (unless given: then
 * nothing is probed) and whether it can store persistent bitmaps (qcow2
 * v3).  -U: the image may be in use; locking it is the daemon's job, and
 * its error is the one to give. */
static int
probe_image (struct offline_disk *od)
{
  struct command *cmd = command_new ("qemu-img");
  json_t *info = NULL;
  const char *format, *compat;
  json_error_t jerr;
  int r = -1;

  if (cmd == NULL)
    return -1;
  command_add_args (cmd, "info", "-U", "--output=json", NULL);
  if (od->format != NULL)
    command_add_args (cmd, "-f", od->format, NULL);
  command_add_arg (cmd, od->path);
  command_capture_stdout (cmd, 0);
  command_set_timeout (cmd, PROBE_TIMEOUT_MS);
  if (command_run (cmd, NULL) == -1) {
    error_prepend ("image '%s'", od->path);
    goto out;
  }
  info = json_loads (command_get_stdout (cmd, NULL), 0, &jerr);
  format = json_string_value (json_object_get (info, "format"));
  if (format == NULL) {
    set_error (-EPROTO, "qemu-img info: no format in its output");
    goto out;
  }
  compat = json_string_value (json_object_get (
    json_object_get (json_object_get (info, "format-specific"), "data"),
    "compat"));
  if (od->format == NULL) {
    od->format = strdup (format);
    if (od->format == NULL) {
      set_error (errno, "strdup");
      goto out;
    }
  }
  od->persistent_bitmaps = strcmp (format, "qcow2") == 0
                           && (compat == NULL || strcmp (compat, "0.10") != 0);
  r = 0;
out:
  json_decref (info);
  command_free (cmd);
  return r;
}

/* QEMU's node names are letters, digits, '-', '.' and '_', at most 31
 * characters; the fleecing node "knib-fleece-<disk>" is the longest. */
static bool
node_name_ok (const char *disk)
{
  size_t i, n = strlen (disk);

  if (n + sizeof LIVE_FLEECE_PREFIX - 1 > 31)
    return false;
  for (i = 0; i < n; i++)
    if (!(isalnum ((unsigned char) disk[i]) || strchr ("-._", disk[i])))
      return false;
  return true;
}

static int
disk_init (struct offline_disk *od, const struct offline_image *im)
{
  char *abs;

  if (!node_name_ok (im->disk)) {
    set_error (-EINVAL,
               "the name cannot be part of a QEMU node name: use at most %zu "
               "letters, digits, '-', '.' and '_'",
               31 - (sizeof LIVE_FLEECE_PREFIX - 1));
    return -1;
  }

  od->disk = strdup (im->disk);
  od->format = im->format ? strdup (im->format) : NULL;
  od->node = str_printf (OFFLINE_DISK_PREFIX "%s", im->disk);
  od->file_node = str_printf (OFFLINE_FILE_PREFIX "%s", im->disk);
  if (od->disk == NULL || (im->format && od->format == NULL) || od->node == NULL
      || od->file_node == NULL) {
    set_error (ENOMEM, "out of memory");
    return -1;
  }
  if (od->format && strcmp (od->format, "qcow2") != 0
      && strcmp (od->format, "raw") != 0) {
    set_error (-EINVAL, "image format '%s': knib reads qcow2 and raw images",
               od->format);
    return -1;
  }
  abs = realpath (im->path, NULL);
  if (abs == NULL) {
    set_error (errno, "image '%s'", im->path);
    return -1;
  }
  od->path = abs;
  if (probe_image (od) == -1)
    return -1;
  if (strcmp (od->format, "qcow2") != 0 && strcmp (od->format, "raw") != 0) {
    set_error (-EINVAL,
               "image '%s' is %s: knib reads qcow2 and raw images (convert "
               "it with qemu-img convert)",
               od->path, od->format);
    return -1;
  }
  return 0;
}

static void
disk_release (struct offline_disk *od)
{
  free (od->disk);
  free (od->path);
  free (od->format);
  free (od->node);
  free (od->file_node);
}

/* "--blockdev" in JSON (no escaping of commas in paths): the file node,
 * then the format node on it. */
static int
add_blockdevs (struct command *cmd, const struct offline_disk *od)
{
  json_t *file, *fmt;
  char *a = NULL, *b = NULL;
  int r = -1;

  file = json_pack ("{s:s, s:s, s:s, s:b}", "driver", "file", "node-name",
                    od->file_node, "filename", od->path, "read-only",
                    !od->persistent_bitmaps);
  fmt = json_pack ("{s:s, s:s, s:s, s:b}", "driver", od->format, "node-name",
                   od->node, "file", od->file_node, "read-only",
                   !od->persistent_bitmaps);
  if (file && fmt) {
    a = json_dumps (file, JSON_COMPACT);
    b = json_dumps (fmt, JSON_COMPACT);
  }
  if (a && b) {
    command_add_args (cmd, "--blockdev", a, "--blockdev", b, NULL);
    r = 0;
  }
  else
    set_error (ENOMEM, "out of memory");
  free (a);
  free (b);
  json_decref (file);
  json_decref (fmt);
  return r;
}

char *
backup_opts_escape (const char *s)
{
  size_t i, j, n = strlen (s);
  char *out = malloc (2 * n + 1);

  if (out == NULL) {
    set_error (errno, "malloc");
    return NULL;
  }
  for (i = j = 0; i < n; i++) {
    out[j++] = s[i];
    if (s[i] == ',')
      out[j++] = ',';
  }
  out[j] = '\0';
  return out;
}

static struct command *
build_command (const struct offline_daemon *d)
{
  struct command *cmd = command_new (DAEMON_PROGRAM);
  CLEANUP_FREE char *sock = backup_opts_escape (d->socket);
  size_t i;

  if (cmd == NULL || sock == NULL) {
    command_free (cmd);
    return NULL;
  }
  for (i = 0; i < d->n; i++)
    if (add_blockdevs (cmd, &d->disks[i]) == -1) {
      command_free (cmd);
      return NULL;
    }
  /* The daemon writes its pid file once every option is in place, and
   * only then may a client connect (before, the monitor may greet it
   * twice). */
  command_add_args (cmd, "--pidfile", d->pid_file, NULL);
  command_add_arg (cmd, "--chardev");
  command_add_argf (cmd, "socket,id=knib-qmp,path=%s,server=on,wait=off", sock);
  command_add_args (cmd, "--monitor", "chardev=knib-qmp", NULL);
  command_set_process_group (cmd, true);
  command_set_die_with_parent (cmd, true);
  command_set_kill_grace (cmd, OFFLINE_STOP_GRACE_MS);
  return cmd;
}

/* The daemon failed to start: say why, in the user's terms. */
static void
start_failed (const struct offline_daemon *d, int status)
{
  const char *err = command_get_stderr (d->cmd);
  CLEANUP_FREE char *msg = NULL;
  const char *end;
  size_t i;

  if (is_lock_error (err)) {
    for (i = 0; i < d->n; i++) {
      CLEANUP_FREE char *bracketed = str_printf ("[%s]", d->disks[i].path);

      if (bracketed != NULL && strstr (err, bracketed) != NULL) {
        set_in_use_error (&d->disks[i], err);
        return;
      }
    }
  }
  /* Its first line holds QEMU's error; the rest is advice. */
  end = strchr (err, '\n');
  msg = end ? strndup (err, end - err) : strdup (err);
  set_error (-EIO, "%s exited with status %d: %s", DAEMON_PROGRAM, status,
             msg && msg[0] ? msg : "(no message)");
}

/* Wait until the daemon's monitor answers, or it exits. */
static int
wait_ready (struct offline_daemon *d, int timeout_ms)
{
  int64_t deadline = deadline_after_ms (timeout_ms);
  struct stat st;
  int status;

  for (;;) {
    if (command_wait (d->cmd, START_POLL_MS, &status) == 0) {
      if (command_term_signal (d->cmd) != 0)
        set_error (0, "%s was killed by signal %d", DAEMON_PROGRAM,
                   command_term_signal (d->cmd));
      else
        start_failed (d, status);
      d->stopped = true;
      return -1;
    }
    if (errno != ETIMEDOUT) /* command_wait sets errno, not get_errno */
      return -1;
    error_clear ();
    if (stat (d->pid_file, &st) == 0 && st.st_size > 0) {
      d->c = qmp_client_connect (d->socket, timeout_ms, NULL);
      return d->c ? 0 : -1;
    }
    if (deadline != -1 && deadline_remaining_ms (deadline) == 0) {
      set_error (ETIMEDOUT, "%s did not start in %d s", DAEMON_PROGRAM,
                 timeout_ms / 1000);
      return -1;
    }
  }
}

struct offline_daemon *
offline_daemon_start (const struct offline_image *images, size_t n,
                      const char *dir, const int *pass_fds, size_t npass,
                      int timeout_ms)
{
  struct offline_daemon *d = calloc (1, sizeof *d);
  size_t i;

  if (d == NULL) {
    set_error (errno, "calloc");
    return NULL;
  }
  d->disks = calloc (n, sizeof *d->disks);
  d->map = calloc (n, sizeof *d->map);
  d->socket = str_printf ("%s/" OFFLINE_QMP_SOCKET, dir);
  d->pid_file = str_printf ("%s/" OFFLINE_PID_FILE, dir);
  d->stopped = true;
  if (d->disks == NULL || d->map == NULL || d->socket == NULL
      || d->pid_file == NULL) {
    set_error (ENOMEM, "out of memory");
    goto fail;
  }
  for (i = 0; i < n; i++) {
    size_t j;

    d->n++;
    for (j = 0; j < i; j++)
      if (strcmp (images[j].disk, images[i].disk) == 0) {
        set_error (-EINVAL, "disk '%s' is named twice", images[i].disk);
        goto fail;
      }
    if (disk_init (&d->disks[i], &images[i]) == -1) {
      error_prepend ("disk '%s'", images[i].disk);
      goto fail;
    }
    d->map[i].disk = d->disks[i].disk;
    d->map[i].node = d->disks[i].node;
  }
  d->cmd = build_command (d);
  if (d->cmd == NULL)
    goto fail;
  for (i = 0; i < npass; i++)
    command_pass_fd (d->cmd, pass_fds[i]);
  if (command_start (d->cmd) == -1)
    goto fail;
  d->stopped = false;
  debug (DEBUG_CHAIN, "%s started (pid %ld) on %zu image(s)", DAEMON_PROGRAM,
         (long) command_pid (d->cmd), n);
  if (wait_ready (d, timeout_ms) == -1)
    goto fail;
  return d;

fail:
  offline_daemon_free (d);
  return NULL;
}

void
offline_daemon_explain (const struct offline_daemon *d)
{
  const char *err = get_error ();
  const struct offline_disk *raw = NULL;
  size_t i, nraw = 0;

  if (strstr (err, "Failed to get") == NULL || strstr (err, "lock") == NULL)
    return;
  for (i = 0; i < d->n; i++)
    if (strcmp (d->disks[i].format, "raw") == 0) {
      raw = &d->disks[i];
      nraw++;
    }
  if (nraw == 1) {
    CLEANUP_FREE char *msg = strdup (err);

    set_in_use_error (raw, msg ? msg : "");
  }
  else if (nraw > 1) {
    set_error (-EBUSY,
               "a raw image is in use by another process, which holds "
               "its lock: if the VM is running, back it up live with "
               "--qmp SOCKET instead of --image: %s",
               get_error ());
  }
}

struct qmp_client *
offline_daemon_qmp (struct offline_daemon *d)
{
  return d->c;
}

const struct live_node_map *
offline_daemon_map (const struct offline_daemon *d, size_t *n)
{
  *n = d->n;
  return d->map;
}

int
offline_daemon_stop (struct offline_daemon *d)
{
  int r = 0;

  qmp_client_free (d->c);
  d->c = NULL;
  if (!d->stopped) {
    d->stopped = true;
    r = command_stop (d->cmd);
    if (r == -1)
      error_prepend ("%s did not close the images cleanly", DAEMON_PROGRAM);
    else
      debug (DEBUG_CHAIN, "%s stopped", DAEMON_PROGRAM);
  }
  return r;
}

void
offline_daemon_free (struct offline_daemon *d)
{
  size_t i;

  if (d == NULL)
    return;
  {
    /* Freeing must not clobber the caller's error. */
    struct error_saved err;

    error_save (&err);
    if (offline_daemon_stop (d) == -1)
      debug (DEBUG_CHAIN, "%s", get_error ());
    error_restore (&err);
  }
  command_free (d->cmd);
  for (i = 0; i < d->n; i++)
    disk_release (&d->disks[i]);
  free (d->disks);
  free (d->map);
  free (d->socket);
  free (d->pid_file);
  free (d);
}

/* ---- Leftovers of a killed knib ---- */

bool
backup_process_of (pid_t pid, const char *program, const char *dir)
{
  CLEANUP_FREE char *escaped = backup_opts_escape (dir);
  char path[64], buf[8192];
  ssize_t len, i;
  int fd;

  if (escaped == NULL)
    return false; /* out of memory: never signal what may not be ours */

  snprintf (path, sizeof path, "/proc/%ld/cmdline", (long) pid);
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd == -1)
    return false;
  len = read (fd, buf, sizeof buf - 1);
  close (fd);
  if (len <= 0)
    return false; /* a zombie has no arguments */
  buf[len] = '\0';
  for (i = 0; i < len; i++)
    if (buf[i] == '\0')
      buf[i] = ' ';
  return strstr (buf, program) != NULL && strstr (buf, escaped) != NULL;
}

bool
backup_process_wait_gone (pid_t pid, const char *program, const char *dir,
                          int ms)
{
  int64_t deadline = deadline_after_ms (ms);

  while (backup_process_of (pid, program, dir)) {
    if (deadline_remaining_ms (deadline) == 0)
      return false;
    usleep (20000);
  }
  return true;
}

int
offline_daemon_reap (const char *dir, chain_string_vector *done)
{
  CLEANUP_FREE char *pid_file = str_printf ("%s/" OFFLINE_PID_FILE, dir);
  char buf[32] = "";
  int64_t pid;
  ssize_t len;
  int fd;
  char *line;

  if (pid_file == NULL)
    return -1;
  fd = open (pid_file, O_RDONLY | O_CLOEXEC);
  if (fd == -1)
    return errno == ENOENT ? 0 : (set_error (errno, "'%s'", pid_file), -1);
  len = read (fd, buf, sizeof buf - 1);
  close (fd);
  buf[len > 0 ? len : 0] = '\0';
  buf[strcspn (buf, "\n")] = '\0';
  if (parse_int64 ("pid", buf, 2, INT32_MAX, &pid) == -1) {
    error_clear ();
    return 0; /* written half-way by a killed run: it is gone too */
  }
  if (!backup_process_of ((pid_t) pid, DAEMON_PROGRAM, dir))
    return 0;
  /* It got SIGTERM when its knib died and should be closing. */
  kill ((pid_t) pid, SIGTERM);
  if (!backup_process_wait_gone ((pid_t) pid, DAEMON_PROGRAM, dir,
                                 OFFLINE_STOP_GRACE_MS)) {
    kill ((pid_t) pid, SIGKILL);
    if (!backup_process_wait_gone ((pid_t) pid, DAEMON_PROGRAM, dir, 5000)) {
      set_error (-EBUSY, "%s (pid %ld) of a killed run does not stop",
                 DAEMON_PROGRAM, (long) pid);
      return -1;
    }
  }
  line = str_printf ("stopped the %s of a killed run (pid %ld)", DAEMON_PROGRAM,
                     (long) pid);
  if (line && chain_string_vector_append (done, line) == -1)
    free (line);
  return 0;
}
