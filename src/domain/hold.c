/* SPDX-License-Identifier: Apache-2.0 */
/* hold.c: an offline backup tells the hook which images it has open.
 *
 * The file "<run>/offline/<vm>.<pid>.hold" reads
 *   pid 1234
 *   vm web01
 *   image /var/lib/libvirt/images/web01.qcow2
 * and the backup keeps a write lock (fcntl) on it while it runs.  A file
 * without a lock is what a killed backup left: it holds nothing. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/util.h"
#include "domain/domain.h"
#include "domain/internal.h"

#define HOLD_SUFFIX ".hold"
#define MAX_HOLD (1024u * 1024)

struct domain_hold {
  char *path;
  int fd;
};

static char *
hold_dir (void)
{
  char *s;

  if (asprintf (&s, "%s/" DOMAIN_HOLD_SUBDIR, domain_run_dir ()) == -1) {
    set_error (ENOMEM, "out of memory");
    return NULL;
  }
  return s;
}

/* realpath, or a copy of path when it cannot be resolved. */
static char *
resolve (const char *path)
{
  char *r = realpath (path, NULL);

  return r ? r : strdup (path);
}

static int
write_str (int fd, const char *s)
{
  return write_all (fd, s, strlen (s));
}

static int
write_hold (int fd, const char *vm, const char *const *paths, size_t n)
{
  char line[64];
  size_t i;

  snprintf (line, sizeof line, "pid %ld\n", (long) getpid ());
  if (write_str (fd, line) == -1 || write_str (fd, "vm ") == -1
      || write_str (fd, vm) == -1 || write_str (fd, "\n") == -1)
    return -1;
  for (i = 0; i < n; i++) {
    CLEANUP_FREE char *real = resolve (paths[i]);

    if (real == NULL) {
      errno = ENOMEM;
      return -1;
    }
    if (strchr (real, '\n') != NULL) {
      errno = EINVAL;
      return -1;
    }
    if (write_str (fd, "image ") == -1 || write_str (fd, real) == -1
        || write_str (fd, "\n") == -1)
      return -1;
  }
  return 0;
}

/* Remove the holds of dead processes ("<vm>.<pid>.hold" whose pid is
 * gone): killed backups left them, and they hold nothing. */
static void
sweep (const char *dir)
{
  DIR *d = opendir (dir);
  struct dirent *e;

  if (d == NULL)
    return;
  while ((e = readdir (d)) != NULL) {
    size_t len = strlen (e->d_name), slen = strlen (HOLD_SUFFIX);
    CLEANUP_FREE char *path = NULL;
    const char *dot;
    char *end;
    long pid;

    if (len <= slen || strcmp (e->d_name + len - slen, HOLD_SUFFIX) != 0)
      continue;
    for (dot = e->d_name + len - slen; dot > e->d_name && dot[-1] != '.'; dot--)
      ;
    pid = strtol (dot, &end, 10);
    if (dot == e->d_name || end != e->d_name + len - slen || pid <= 0
        || process_alive ((pid_t) pid))
      continue;
    if (asprintf (&path, "%s/%s", dir, e->d_name) == -1)
      path = NULL;
    else
      unlink (path);
  }
  closedir (d);
}

struct domain_hold *
domain_hold_take (const char *vm, const char *const *paths, size_t n)
{
  CLEANUP_FREE char *dir = hold_dir ();
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  struct domain_hold *h;
  char suffix[64];

  if (dir == NULL || domain_make_dir (dir, 0700) == -1)
    return NULL;
  sweep (dir);
  h = calloc (1, sizeof *h);
  if (h == NULL) {
    set_error (errno, "calloc");
    return NULL;
  }
  h->fd = -1;
  snprintf (suffix, sizeof suffix, ".%ld" HOLD_SUFFIX, (long) getpid ());
  h->path = domain_path (domain_run_dir (), DOMAIN_HOLD_SUBDIR, vm, suffix);
  if (h->path == NULL)
    goto fail;
  h->fd
    = open (h->path, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (h->fd == -1 || fcntl (h->fd, F_SETLK, &fl) == -1
      || write_hold (h->fd, vm, paths, n) == -1) {
    set_error (errno, "hold '%s'", h->path);
    if (h->fd != -1)
      unlink (h->path);
    goto fail;
  }
  return h;
fail:
  if (h->fd != -1)
    close (h->fd);
  free (h->path);
  free (h);
  return NULL;
}

void
domain_hold_release (struct domain_hold *h)
{
  if (h == NULL)
    return;
  unlink (h->path);
  close (h->fd);
  free (h->path);
  free (h);
}

/* The pid that holds the lock on fd, or 0 when nobody (else) does. */
static long
lock_holder (int fd)
{
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

  if (fcntl (fd, F_GETLK, &fl) == -1 || fl.l_type == F_UNLCK)
    return 0;
  return fl.l_pid > 0 ? (long) fl.l_pid : 1;
}

/* Whether the hold file at path (live) names one of the images. */
static int
check_file (const char *path, char **images, size_t n,
            struct domain_holder *who)
{
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  CLEANUP_FREE char *text = NULL;
  char *line, *save = NULL;
  long pid;
  size_t i;

  if (fd == -1)
    return 0; /* gone meanwhile: its backup ended */
  pid = lock_holder (fd);
  if (pid == 0)
    return 0;
  text = domain_read_file (path, MAX_HOLD, NULL);
  if (text == NULL)
    return errno == ENOENT ? 0 : -1;
  memset (who, 0, sizeof *who);
  who->pid = pid;
  for (line = strtok_r (text, "\n", &save); line;
       line = strtok_r (NULL, "\n", &save)) {
    if (strncmp (line, "vm ", 3) == 0)
      snprintf (who->vm, sizeof who->vm, "%s", line + 3);
    if (strncmp (line, "image ", 6) != 0)
      continue;
    for (i = 0; i < n; i++)
      if (strcmp (line + 6, images[i]) == 0) {
        snprintf (who->image, sizeof who->image, "%s", line + 6);
        return 1;
      }
  }
  return 0;
}

static int
scan (const char *dir, char **images, size_t n, struct domain_holder *who)
{
  DIR *d = opendir (dir);
  struct dirent *e;
  int r = 0;

  if (d == NULL)
    return errno == ENOENT ? 0 : (set_error (errno, "'%s'", dir), -1);
  while (r == 0 && (e = readdir (d)) != NULL) {
    size_t len = strlen (e->d_name);
    CLEANUP_FREE char *path = NULL;

    if (len <= strlen (HOLD_SUFFIX)
        || strcmp (e->d_name + len - strlen (HOLD_SUFFIX), HOLD_SUFFIX) != 0)
      continue;
    if (asprintf (&path, "%s/%s", dir, e->d_name) == -1) {
      path = NULL;
      set_error (ENOMEM, "out of memory");
      r = -1;
      break;
    }
    r = check_file (path, images, n, who);
  }
  closedir (d);
  return r;
}

int
domain_hold_find (const char *const *paths, size_t n, struct domain_holder *who)
{
  CLEANUP_FREE char *dir = hold_dir ();
  char **images;
  size_t i;
  int r = -1;

  if (dir == NULL)
    return -1;
  images = calloc (n + 1, sizeof *images);
  if (images == NULL) {
    set_error (errno, "calloc");
    return -1;
  }
  for (i = 0; i < n; i++)
    if ((images[i] = resolve (paths[i])) == NULL) {
      set_error (ENOMEM, "out of memory");
      goto out;
    }
  r = scan (dir, images, n, who);
out:
  for (i = 0; i < n; i++)
    free (images[i]);
  free (images);
  return r;
}
