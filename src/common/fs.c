/* SPDX-License-Identifier: Apache-2.0 */
/* fs.c: directories, fsync, atomic file replacement and tree removal. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/util.h"

int
fs_mkdir (const char *path)
{
  struct stat st;

  if (mkdir (path, 0700) == 0)
    return 0;
  if (errno == EEXIST && stat (path, &st) == 0 && S_ISDIR (st.st_mode))
    return 0;
  if (errno == EEXIST)
    errno = ENOTDIR;
  set_error (errno, "cannot make directory '%s'", path);
  return -1;
}

int
fs_fsync_path (const char *path)
{
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd == -1) {
    set_error (errno, "cannot open '%s' to sync it", path);
    return -1;
  }
  if (fsync (fd) == -1) {
    set_error (errno, "cannot sync '%s'", path);
    return -1;
  }
  return 0;
}

char *
fs_read_file (const char *path, const char *what, size_t max, size_t *len)
{
  /* O_NONBLOCK: a FIFO in place of the file must not block the reader;
   * O_NOFOLLOW: a symbolic link in its place is not followed out. */
  CLEANUP_CLOSE int fd
    = open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
  CLEANUP_FREE char *buf = NULL;
  size_t cap = 0, n = 0;
  struct stat st;
  ssize_t r;

  if (fd == -1) {
    set_error (errno, "%s '%s': cannot open", what, path);
    return NULL;
  }
  if (fstat (fd, &st) == -1) {
    set_error (errno, "%s '%s': stat", what, path);
    return NULL;
  }
  if (!S_ISREG (st.st_mode)) {
    set_error (-EINVAL, "%s '%s': not a regular file", what, path);
    return NULL;
  }
  for (;;) {
    if (n + 1 >= cap) {
      char *nb;
      if (cap >= max) {
        set_error (EFBIG, "%s '%s': larger than %zu bytes", what, path, max);
        return NULL;
      }
      cap = cap ? cap * 2 : 4096;
      if (cap > max)
        cap = max;
      nb = realloc (buf, cap);
      if (nb == NULL) {
        set_error (errno, "%s '%s'", what, path);
        return NULL;
      }
      buf = nb;
    }
    r = read (fd, buf + n, cap - n - 1);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1) {
      set_error (errno, "%s '%s': read", what, path);
      return NULL;
    }
    if (r == 0)
      break;
    n += r;
  }
  buf[n] = '\0';
  *len = n;
  return STEAL_PTR (buf);
}

int
fs_replace_file (const char *dir, const char *name, const void *data,
                 size_t len, const char *what)
{
  CLEANUP_FREE char *tmp = NULL;
  CLEANUP_FREE char *path = NULL;
  CLEANUP_CLOSE int fd = -1;

  path = str_printf ("%s/%s", dir, name);
  tmp = str_printf ("%s/" FS_TEMP_PREFIX "%s.XXXXXX", dir, name);
  if (path == NULL || tmp == NULL)
    return -1;
  fd = mkostemp (tmp, O_CLOEXEC);
  if (fd == -1) {
    set_error (errno, "%s '%s': cannot create a temporary file in '%s'", what,
               path, dir);
    return -1;
  }
  if (write_all (fd, data, len) == -1 || fsync (fd) == -1) {
    set_error (errno, "%s '%s': cannot write '%s'", what, path, tmp);
    unlink (tmp);
    return -1;
  }
  if (close (STEAL_FD (fd)) == -1) {
    set_error (errno, "%s '%s': cannot write '%s'", what, path, tmp);
    unlink (tmp);
    return -1;
  }
  if (rename (tmp, path) == -1) {
    set_error (errno, "%s '%s': cannot rename '%s' to it", what, path, tmp);
    unlink (tmp);
    return -1;
  }
  if (fs_fsync_path (dir) == -1) {
    error_prepend ("%s '%s'", what, path);
    return -1;
  }
  return 0;
}

/* rm -r without recording errors: -1 with errno, and the path that
 * failed in *failed (when not NULL and memory allows). */
static int remove_at (int dirfd, const char *name, const char *path,
                      char **failed);

static int
fail_at (const char *path, char **failed)
{
  int e = errno;

  if (failed != NULL && *failed == NULL)
    *failed = strdup (path);
  errno = e;
  return -1;
}

/* Remove everything inside the directory open as fd (which it closes). */
static int
empty_dir (int fd, const char *path, char **failed)
{
  DIR *d = fdopendir (fd);
  struct dirent *e;
  int r = 0, saved = 0;

  if (d == NULL) {
    close (fd);
    return fail_at (path, failed);
  }
  errno = 0;
  while (r == 0 && (e = readdir (d)) != NULL) {
    CLEANUP_FREE char *sub = NULL;

    if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
      continue;
    if (asprintf (&sub, "%s/%s", path, e->d_name) == -1) {
      sub = NULL;
      errno = ENOMEM;
      r = fail_at (path, failed);
    }
    else
      r = remove_at (dirfd (d), e->d_name, sub, failed);
    saved = r == -1 ? errno : 0;
    errno = 0;
  }
  if (r == 0 && errno != 0) {
    saved = errno;
    r = fail_at (path, failed);
  }
  closedir (d);
  errno = saved;
  return r;
}

static int
remove_at (int dirfd, const char *name, const char *path, char **failed)
{
  struct stat st;
  int fd;

  if (fstatat (dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1)
    return errno == ENOENT ? 0 : fail_at (path, failed);
  if (S_ISDIR (st.st_mode)) {
    fd = openat (dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd == -1 || empty_dir (fd, path, failed) == -1)
      return fail_at (path, failed);
  }
  if (unlinkat (dirfd, name, S_ISDIR (st.st_mode) ? AT_REMOVEDIR : 0) == -1
      && errno != ENOENT)
    return fail_at (path, failed);
  return 0;
}

int
fs_remove_tree_quiet (const char *path)
{
  return remove_at (AT_FDCWD, path, path, NULL);
}

int
fs_remove_tree (const char *path)
{
  CLEANUP_FREE char *failed = NULL;

  if (remove_at (AT_FDCWD, path, path, &failed) == 0)
    return 0;
  set_error (errno, "cannot remove '%s'", failed ? failed : path);
  return -1;
}
