/* SPDX-License-Identifier: Apache-2.0 */
/* scratch.c: the scratch root, private to knib's user, and run directories. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/error.h"
#include "common/scratch.h"
#include "common/util.h"

int
scratch_root_open (const char *root)
{
  struct stat st;
  int fd;

  if (mkdir (root, 0700) == -1 && errno != EEXIST) {
    set_error (errno, "scratch directory '%s'", root);
    return -1;
  }
  fd = open (root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd == -1) {
    struct stat lst;

    if ((errno == ELOOP || errno == ENOTDIR) && lstat (root, &lst) == 0)
      set_error (-EPERM,
                 "scratch directory '%s' is %s: refusing it (knib needs a "
                 "directory of its own)",
                 root,
                 S_ISLNK (lst.st_mode) ? "a symbolic link" : "not a directory");
    else
      set_error (errno, "scratch directory '%s'", root);
    return -1;
  }
  if (fstat (fd, &st) == -1) {
    set_error (errno, "scratch directory '%s'", root);
    close (fd);
    return -1;
  }
  if (st.st_uid != geteuid ()) {
    set_error (-EPERM,
               "scratch directory '%s' belongs to user %ld, not to knib's "
               "user %ld: refusing it",
               root, (long) st.st_uid, (long) geteuid ());
    close (fd);
    return -1;
  }
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    set_error (-EPERM,
               "scratch directory '%s' has mode %04o, which lets others "
               "write: refusing it (chmod 700 it)",
               root, (unsigned) (st.st_mode & 07777));
    close (fd);
    return -1;
  }
  return fd;
}

int
scratch_make_dir (const char *root, const char *prefix, const char *longest,
                  char **dir)
{
  char *path;
  int fd = scratch_root_open (root);

  if (fd == -1)
    return -1;
  close (fd);
  path = str_printf ("%s/%sXXXXXX", root, prefix);
  if (path == NULL)
    return -1;
  /* Its sockets must fit in a sockaddr_un. */
  if (strlen (path) + 1 + strlen (longest) + 1
      > sizeof ((struct sockaddr_un *) 0)->sun_path) {
    set_error (ENAMETOOLONG,
               "scratch directory '%s' is too long for a unix socket path: "
               "use a shorter --scratch",
               root);
    free (path);
    return -1;
  }
  if (mkdtemp (path) == NULL) {
    set_error (errno, "scratch directory '%s'", root);
    free (path);
    return -1;
  }
  *dir = path;
  return 0;
}

int
scratch_root_share (const char *root)
{
  struct stat st;
  int fd = scratch_root_open (root);
  int r = 0;

  if (fd == -1)
    return -1;
  if (fstat (fd, &st) == -1
      || ((st.st_mode & S_IXOTH) == 0
          && fchmod (fd, (st.st_mode & 07777) | S_IXOTH) == -1)) {
    set_error (errno, "scratch directory '%s'", root);
    r = -1;
  }
  close (fd);
  return r;
}

int64_t
scratch_run_pid (const char *name, const char *vm)
{
  size_t vmlen = strlen (vm), n;
  const char *p, *dot;
  char digits[16];
  int64_t pid;

  if (strncmp (name, vm, vmlen) != 0 || name[vmlen] != '.')
    return -1;
  p = name + vmlen + 1;
  dot = strchr (p, '.');
  if (dot != NULL && strlen (dot + 1) != 6)
    return -1;
  n = dot ? (size_t) (dot - p) : strlen (p);
  if (n >= sizeof digits)
    return -1;
  memcpy (digits, p, n);
  digits[n] = '\0';
  if (parse_int64 ("pid", digits, 1, INT32_MAX, &pid) == -1) {
    error_clear ();
    return -1;
  }
  return pid;
}
