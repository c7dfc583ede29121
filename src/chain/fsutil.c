/* fsutil.c: directories, fsync, atomic JSON files and tree removal. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "internal.h"

char *
chain_sprintf (const char *fmt, ...)
{
  va_list ap;
  char *s;
  int r;

  va_start (ap, fmt);
  r = vasprintf (&s, fmt, ap);
  va_end (ap);
  if (r == -1) {
    set_error (ENOMEM, "asprintf");
    return NULL;
  }
  return s;
}

int
chain_mkdir (const char *path)
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
chain_fsync_path (const char *path)
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

/* Read a whole small file; NUL-terminated. */
static char *
read_file (const char *path, const char *what, size_t *len)
{
  /* Non-blocking: a FIFO in place of the file must not hang knib at
   * open; it is refused below. */
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
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
    set_error (0, "%s '%s': not a regular file", what, path);
    errno = EINVAL;
    return NULL;
  }
  for (;;) {
    if (n + 1 >= cap) {
      char *nb;
      if (cap >= CHAIN_JSON_MAX) {
        set_error (EFBIG, "%s '%s': larger than %u bytes", what, path,
                   CHAIN_JSON_MAX);
        return NULL;
      }
      cap = cap ? cap * 2 : 4096;
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

json_t *
chain_json_load (const char *path, const char *what)
{
  CLEANUP_FREE char *text = NULL;
  json_error_t err;
  json_t *j;
  size_t len;

  text = read_file (path, what, &len);
  if (text == NULL)
    return NULL;
  if (len == 0) {
    set_error (0, "%s '%s': the file is empty", what, path);
    errno = EINVAL;
    return NULL;
  }
  j = json_loadb (text, len, JSON_REJECT_DUPLICATES, &err);
  if (j == NULL) {
    set_error (0, "%s '%s': invalid JSON at line %d: %s", what, path, err.line,
               err.text);
    errno = EINVAL;
    return NULL;
  }
  if (!json_is_object (j)) {
    json_decref (j);
    set_error (0, "%s '%s': not a JSON object", what, path);
    errno = EINVAL;
    return NULL;
  }
  return j;
}

static int
write_all (int fd, const char *buf, size_t len)
{
  while (len > 0) {
    ssize_t r = write (fd, buf, len);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return -1;
    buf += r;
    len -= r;
  }
  return 0;
}

int
chain_json_commit (const json_t *j, const char *dir, const char *name,
                   const char *what)
{
  CLEANUP_FREE char *text = NULL;
  CLEANUP_FREE char *tmp = NULL;
  CLEANUP_FREE char *path = NULL;
  CLEANUP_CLOSE int fd = -1;

  path = chain_sprintf ("%s/%s", dir, name);
  tmp = chain_sprintf ("%s/" CHAIN_TEMP_PREFIX "%s.XXXXXX", dir, name);
  text = json_dumps (j, JSON_INDENT (2));
  if (path == NULL || tmp == NULL)
    return -1;
  if (text == NULL) {
    set_error (ENOMEM, "%s '%s/%s': json_dumps", what, dir, name);
    return -1;
  }
  fd = mkostemp (tmp, O_CLOEXEC);
  if (fd == -1) {
    set_error (errno, "%s '%s': cannot create a temporary file in '%s'", what,
               path, dir);
    return -1;
  }
  if (write_all (fd, text, strlen (text)) == -1 || write_all (fd, "\n", 1) == -1
      || fsync (fd) == -1) {
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
  if (chain_fsync_path (dir) == -1) {
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
chain_remove_tree_quiet (const char *path)
{
  return remove_at (AT_FDCWD, path, path, NULL);
}

int
chain_remove_tree (const char *path)
{
  CLEANUP_FREE char *failed = NULL;

  if (remove_at (AT_FDCWD, path, path, &failed) == 0)
    return 0;
  set_error (errno, "cannot remove '%s'", failed ? failed : path);
  return -1;
}

bool
chain_is_temp_name (const char *name)
{
  return strncmp (name, CHAIN_TEMP_PREFIX, strlen (CHAIN_TEMP_PREFIX)) == 0;
}
