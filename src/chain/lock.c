/* SPDX-License-Identifier: Apache-2.0 */
/* lock.c: per-VM open file description locks that name their holder. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"
#include "internal.h"

/* Who holds an exclusive lock: written into the lock file by the holder,
 * read by whoever conflicts with it (F_OFD_GETLK reports no pid for open
 * file description locks, and none at all across NFS). */
struct holder {
  long pid;
  char host[256];
  char operation[64];
};

static void
our_host (char host[256])
{
  if (gethostname (host, 255) == -1)
    host[0] = '\0';
  host[255] = '\0';
}

/* The holder is written as one record of this size, padded with
 * blanks, so that the file is never truncated. */
#define HOLDER_RECORD 1024

/* Write text (NULL: nothing) over the holder record. */
static void
write_record (struct chain_lock *lock, const char *text)
{
  char record[HOLDER_RECORD];
  size_t len = text ? strlen (text) : 0;

  /* Only informative: a failure here costs a less precise message. */
  if (len >= sizeof record) {
    debug (DEBUG_CHAIN, "the holder of '%s/.lock' is too long to record",
           lock->dir);
    return;
  }
  memset (record, ' ', sizeof record);
  if (len > 0) /* memcpy's source must not be NULL, even for nothing */
    memcpy (record, text, len);
  record[sizeof record - 1] = '\n';
  if (pwrite (lock->fd, record, sizeof record, 0) != (ssize_t) sizeof record)
    debug (DEBUG_CHAIN, "cannot record the holder of '%s/.lock'", lock->dir);
}

static void
write_holder (struct chain_lock *lock, const char *operation)
{
  char host[256], since[CHAIN_TIME_MAX];
  CLEANUP_FREE char *text = NULL;
  json_t *j;

  our_host (host);
  chain_time_format ((int64_t) time (NULL), since);
  j = json_pack ("{s:I, s:s, s:s, s:s}", "pid", (json_int_t) getpid (), "host",
                 host, "operation", operation ? operation : "", "since", since);
  text = j ? json_dumps (j, 0) : NULL;
  json_decref (j);
  if (text != NULL)
    write_record (lock, text);
}

static bool
read_holder (int fd, struct holder *h)
{
  char buf[4096];
  ssize_t n = pread (fd, buf, sizeof buf - 1, 0);
  json_t *j;
  json_int_t pid = 0;
  const char *host = "", *op = "";

  if (n <= 0)
    return false;
  buf[n] = '\0';
  j = json_loads (buf, 0, NULL);
  if (j == NULL
      || json_unpack (j, "{s:I, s:s, s:s}", "pid", &pid, "host", &host,
                      "operation", &op)
           == -1
      || pid <= 0) {
    json_decref (j);
    return false;
  }
  h->pid = (long) pid;
  snprintf (h->host, sizeof h->host, "%s", host);
  snprintf (h->operation, sizeof h->operation, "%s", op);
  json_decref (j);
  return true;
}

static const char *
article (const char *word)
{
  return strchr ("aeiou", word[0]) && word[0] ? "an" : "a";
}

static void
set_conflict_error (const struct chain_lock *lock, int waited_ms)
{
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  struct holder h = { 0 };
  char who[400] = "", what[100], waited[64] = "", host[256];

  if (fcntl (lock->fd, F_OFD_GETLK, &fl) == 0 && fl.l_type == F_RDLCK) {
    set_error (-EWOULDBLOCK,
               "vm '%s' is being read by another knib (a restore, verify or "
               "validation is running): wait for it to finish",
               lock->vm);
    return;
  }
  our_host (host);
  if (read_holder (lock->fd, &h)) {
    if (h.host[0] && strcmp (h.host, host) != 0)
      snprintf (who, sizeof who, " (pid %ld on host '%s')", h.pid, h.host);
    else
      snprintf (who, sizeof who, " (pid %ld)", h.pid);
  }
  else if (fl.l_type == F_WRLCK && fl.l_pid > 0)
    snprintf (who, sizeof who, " (pid %ld)", (long) fl.l_pid);
  if (h.operation[0])
    snprintf (what, sizeof what, "%s %s is running", article (h.operation),
              h.operation);
  else
    snprintf (what, sizeof what, "a backup or delete is running");
  if (waited_ms > 0)
    snprintf (waited, sizeof waited, " (waited %.1f s)", waited_ms / 1000.0);
  set_error (-EWOULDBLOCK,
             "vm '%s' is locked by another knib%s: %s; wait for it to "
             "finish%s",
             lock->vm, who, what, waited);
}

static int
open_lock_file (struct chain_lock *lock)
{
  CLEANUP_FREE char *path = str_printf ("%s/" CHAIN_LOCK_FILE, lock->dir);
  struct stat st;

  if (path == NULL)
    return -1;
  if (lock->mode == CHAIN_LOCK_EXCLUSIVE) {
    CLEANUP_FREE char *vms = str_printf ("%s/" CHAIN_VMS_DIR, lock->repo->path);
    if (vms == NULL || fs_mkdir (vms) == -1 || fs_mkdir (lock->dir) == -1)
      return -1;
  }
  else if (stat (lock->dir, &st) == -1) {
    if (errno == ENOENT) {
      set_error (-ENOENT, "vm '%s' has no backups in repository '%s'", lock->vm,
                 lock->repo->path);
    }
    else
      set_error (errno, "vm '%s': '%s'", lock->vm, lock->dir);
    return -1;
  }
  /* Never through a symbolic link, never blocking on a FIFO, never
   * truncating: the lock file may have been replaced by something that
   * is not knib's. */
  lock->fd
    = open (path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
  if (lock->fd == -1 && lock->mode == CHAIN_LOCK_SHARED
      && (errno == EROFS || errno == EACCES))
    lock->fd = open (path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (lock->fd == -1 && errno == ELOOP) {
    set_error (-ELOOP,
               "vm '%s': lock file '%s' is a symbolic link: remove it (knib "
               "makes a new one)",
               lock->vm, path);
    return -1;
  }
  if (lock->fd == -1) {
    set_error (errno, "vm '%s': cannot open lock file '%s'", lock->vm, path);
    return -1;
  }
  if (fstat (lock->fd, &st) == -1) {
    set_error (errno, "vm '%s': lock file '%s'", lock->vm, path);
    return -1;
  }
  if (!S_ISREG (st.st_mode) || st.st_nlink != 1) {
    set_error (-EINVAL,
               "vm '%s': lock file '%s' is not a plain file of its own (%s): "
               "remove it (knib makes a new one)",
               lock->vm, path,
               !S_ISREG (st.st_mode) ? "not a regular file" : "hard-linked");
    return -1;
  }
  return 0;
}

/* One attempt.  1: locked, 0: someone else holds it, -1: error. */
static int
try_lock (struct chain_lock *lock)
{
  struct flock fl = {
    .l_type = lock->mode == CHAIN_LOCK_EXCLUSIVE ? F_WRLCK : F_RDLCK,
    .l_whence = SEEK_SET,
  };

  if (fcntl (lock->fd, F_OFD_SETLK, &fl) == 0)
    return 1;
  if (errno == EAGAIN || errno == EACCES || errno == EINTR)
    return 0;
  set_error (errno, "vm '%s': cannot lock '%s/" CHAIN_LOCK_FILE "'", lock->vm,
             lock->dir);
  return -1;
}

static int
acquire (struct chain_lock *lock, const char *operation, int timeout_ms)
{
  int64_t start = monotonic_ms ();
  int64_t deadline = deadline_after_ms (timeout_ms);
  int r;

  while ((r = try_lock (lock)) == 0) {
    int left = deadline_remaining_ms (deadline);
    struct timespec ts = { 0, CHAIN_LOCK_RETRY_MS * 1000000L };

    if (left == 0) {
      set_conflict_error (lock,
                          timeout_ms > 0 ? (int) (monotonic_ms () - start) : 0);
      return -1;
    }
    if (left > 0 && left < CHAIN_LOCK_RETRY_MS)
      ts.tv_nsec = left * 1000000L;
    nanosleep (&ts, NULL);
  }
  if (r == -1)
    return -1;
  if (lock->mode == CHAIN_LOCK_EXCLUSIVE)
    write_holder (lock, operation);
  debug (DEBUG_CHAIN, "locked vm '%s' (%s, %s)", lock->vm,
         lock->mode == CHAIN_LOCK_EXCLUSIVE ? "exclusive" : "shared",
         operation ? operation : "");
  return 0;
}

struct chain_lock *
chain_lock_new (struct chain_repo *repo, const char *vm,
                enum chain_lock_mode mode, const char *operation,
                int timeout_ms)
{
  struct chain_lock *lock;

  if (name_check ("vm", vm) == -1)
    return NULL;
  lock = calloc (1, sizeof *lock);
  if (lock == NULL) {
    set_error (errno, "calloc");
    return NULL;
  }
  lock->repo = repo;
  lock->mode = mode;
  lock->fd = -1;
  lock->vm = strdup (vm);
  lock->dir = chain_repo_vm_dir (repo, vm);
  if (lock->vm == NULL || lock->dir == NULL) {
    set_error (ENOMEM, "lock");
    goto fail;
  }
  if (open_lock_file (lock) == -1
      || acquire (lock, operation, timeout_ms) == -1)
    goto fail;
  return lock;
fail:
  if (lock->fd >= 0)
    close (lock->fd);
  free (lock->vm);
  free (lock->dir);
  free (lock);
  return NULL;
}

void
chain_lock_free (struct chain_lock *lock)
{
  int saved = errno;

  if (lock == NULL)
    return;
  if (lock->mode == CHAIN_LOCK_EXCLUSIVE)
    write_record (lock, NULL);
  /* What this run wrote gets the shared repository's group and modes
   * before others may see it (new entries are 0700/0600 until then). */
  if (lock->repo->gid != (gid_t) -1
      && chain_share_apply (lock->dir, lock->repo->gid) == -1)
    debug (DEBUG_CHAIN, "%s", get_error ());
  close (lock->fd); /* releases the lock */
  debug (DEBUG_CHAIN, "unlocked vm '%s'", lock->vm);
  free (lock->vm);
  free (lock->dir);
  free (lock);
  errno = saved;
}

int
chain_lock_check_exclusive (const struct chain_lock *lock,
                            const struct chain_repo *repo, const char *what)
{
  if (lock == NULL || lock->repo != repo
      || lock->mode != CHAIN_LOCK_EXCLUSIVE) {
    set_error (-EINVAL, "%s needs the exclusive lock of the vm", what);
    return -1;
  }
  return 0;
}
