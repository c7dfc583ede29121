/* SPDX-License-Identifier: Apache-2.0 */
/* get.c: copy files and trees out of a backup, never outside the target directory. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/command.h"
#include "common/debug.h"
#include "common/error.h"
#include "internal.h"

struct get_ctx {
  struct files_session *s;
  const struct files_path *p;
  const struct files_get_options *o;
  struct files_get_status st;
  uint64_t file_start; /* bytes before the file being downloaded */
};

static void
report (struct get_ctx *c)
{
  if (c->o->progress != NULL)
    c->o->progress (&c->st, c->o->opaque);
}

/* libguestfs's progress events while one file downloads. */
static void
on_event (guestfs_h *g, void *opaque, uint64_t event, int handle, int flags,
          const char *buf, size_t len, const uint64_t *array, size_t alen)
{
  struct get_ctx *c = opaque;

  if (alen >= 4) {
    c->st.bytes = c->file_start + array[2];
    report (c);
  }
}

/* A name from the guest may become one component here, nothing else. */
static int
check_name (const char *name)
{
  if (name[0] == '\0' || strchr (name, '/') != NULL || strcmp (name, ".") == 0
      || strcmp (name, "..") == 0) {
    set_error (EINVAL, "refusing the name '%s': it is not one path component",
               name);
    return -1;
  }
  return 0;
}

/* Make room for name in dirfd: an existing entry is an error without
 * force; with it, a file or symlink is removed (a directory is kept
 * when keep_dir, else refused). */
static int
make_room (struct get_ctx *c, int dirfd, const char *name, const char *shown,
           bool keep_dir)
{
  struct stat sb;

  if (fstatat (dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == -1) {
    if (errno == ENOENT)
      return 0;
    set_error (errno, "'%s'", shown);
    return -1;
  }
  if (!c->o->force) {
    set_error (-EEXIST, "'%s' exists (--force replaces it)", shown);
    return -1;
  }
  if (S_ISDIR (sb.st_mode)) {
    if (keep_dir)
      return 1;
    set_error (-EISDIR, "'%s' is a directory here; it is never replaced",
               shown);
    return -1;
  }
  if (unlinkat (dirfd, name, 0) == -1) {
    set_error (errno, "cannot replace '%s'", shown);
    return -1;
  }
  return 0;
}

static int
copy_xattrs (struct get_ctx *c, int fd, const char *full, const char *shown)
{
  struct guestfs_xattr_list *xs;
  int r = 0;

  if (!c->o->xattrs)
    return 0;
  xs = guestfs_lgetxattrs (c->s->g, full);
  if (xs == NULL) {
    files_guestfs_error (c->s->g, shown);
    return -1;
  }
  for (size_t i = 0; r == 0 && i < xs->len; i++)
    if (fsetxattr (fd, xs->val[i].attrname, xs->val[i].attrval,
                   xs->val[i].attrval_len, 0)
        == -1) {
      set_error (errno, "'%s': extended attribute '%s'", shown,
                 xs->val[i].attrname);
      r = -1;
    }
  guestfs_free_xattr_list (xs);
  return r;
}

/* Owner (when allowed), then mode, then times, on an open fd. */
static int
set_meta_fd (int fd, const struct files_entry *e, const char *shown)
{
  struct timespec ts[2]
    = { { e->atime_sec, e->atime_nsec }, { e->mtime_sec, e->mtime_nsec } };

  if (fchown (fd, (uid_t) e->uid, (gid_t) e->gid) == -1
      && !(errno == EPERM && geteuid () != 0)) {
    set_error (errno, "'%s': cannot set its owner", shown);
    return -1;
  }
  if (fchmod (fd, e->mode) == -1 || futimens (fd, ts) == -1) {
    set_error (errno, "'%s': cannot set its mode and times", shown);
    return -1;
  }
  return 0;
}

static int
set_meta_at (int dirfd, const char *name, const struct files_entry *e,
             const char *shown, bool is_link)
{
  struct timespec ts[2]
    = { { e->atime_sec, e->atime_nsec }, { e->mtime_sec, e->mtime_nsec } };

  if (fchownat (dirfd, name, (uid_t) e->uid, (gid_t) e->gid,
                AT_SYMLINK_NOFOLLOW)
        == -1
      && !(errno == EPERM && geteuid () != 0)) {
    set_error (errno, "'%s': cannot set its owner", shown);
    return -1;
  }
  if ((!is_link && fchmodat (dirfd, name, e->mode, 0) == -1)
      || utimensat (dirfd, name, ts, AT_SYMLINK_NOFOLLOW) == -1) {
    set_error (errno, "'%s': cannot set its mode and times", shown);
    return -1;
  }
  return 0;
}

static int get_entry (struct get_ctx *c, int dirfd, const char *name,
                      const struct files_entry *e);

static int
get_file (struct get_ctx *c, int dirfd, const char *name,
          const struct files_entry *e, const char *full, const char *shown)
{
  CLEANUP_CLOSE int fd = -1;
  char dev[64];
  int r;

  if (make_room (c, dirfd, name, shown, false) == -1)
    return -1;
  fd = openat (dirfd, name,
               O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd == -1) {
    set_error (errno, "cannot create '%s'", shown);
    return -1;
  }
  snprintf (dev, sizeof dev, "/dev/fd/%d", fd);
  c->file_start = c->st.bytes;
  r = guestfs_download (c->s->g, full, dev);
  if (r == -1) {
    files_guestfs_error (c->s->g, shown);
    return -1;
  }
  c->st.bytes = c->file_start + (uint64_t) e->size;
  if (copy_xattrs (c, fd, full, shown) == -1
      || set_meta_fd (fd, e, shown) == -1)
    return -1;
  return 0;
}

static int
get_dir (struct get_ctx *c, int dirfd, const char *name,
         const struct files_entry *e, const char *shown)
{
  struct files_path sub = *c->p;
  files_entry_vector kids = empty_vector;
  CLEANUP_CLOSE int fd = -1;
  int r = 0, room;

  room = make_room (c, dirfd, name, shown, true);
  if (room == -1)
    return -1;
  if (room == 0 && mkdirat (dirfd, name, 0700) == -1) {
    set_error (errno, "cannot make directory '%s'", shown);
    return -1;
  }
  fd = openat (dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd == -1) {
    set_error (errno, "cannot open directory '%s'", shown);
    return -1;
  }
  sub.path = e->path;
  if (files_session_list (c->s, &sub, false, &kids) == -1)
    return -1;
  for (size_t i = 0; r == 0 && i < kids.len; i++) {
    const char *base = strrchr (kids.ptr[i].path, '/') + 1;

    r = get_entry (c, fd, base, &kids.ptr[i]);
  }
  files_entry_vector_release (&kids);
  if (r == -1)
    return -1;
  {
    CLEANUP_FREE char *full = files_join (c->p->root, e->path);

    if (full == NULL || copy_xattrs (c, fd, full, shown) == -1)
      return -1;
  }
  return set_meta_fd (fd, e, shown);
}

static int
get_entry (struct get_ctx *c, int dirfd, const char *name,
           const struct files_entry *e)
{
  CLEANUP_FREE char *full = files_join (c->p->root, e->path);
  const char *shown = e->path;
  int r = 0;

  if (full == NULL || check_name (name) == -1)
    return -1;
  c->st.path = e->path;
  switch (e->type) {
  case FILES_DIRECTORY:
    r = get_dir (c, dirfd, name, e, shown);
    break;
  case FILES_REGULAR:
    r = get_file (c, dirfd, name, e, full, shown);
    break;
  case FILES_SYMLINK:
    if (make_room (c, dirfd, name, shown, false) == -1)
      return -1;
    if (symlinkat (e->target, dirfd, name) == -1) {
      set_error (errno, "cannot make symlink '%s'", shown);
      return -1;
    }
    r = set_meta_at (dirfd, name, e, shown, true);
    break;
  case FILES_CHARDEV:
  case FILES_BLOCKDEV:
  case FILES_FIFO:
  case FILES_SOCKET: {
    mode_t kind = e->type == FILES_CHARDEV    ? S_IFCHR
                  : e->type == FILES_BLOCKDEV ? S_IFBLK
                  : e->type == FILES_FIFO     ? S_IFIFO
                                              : S_IFSOCK;

    if (make_room (c, dirfd, name, shown, false) == -1)
      return -1;
    if (mknodat (dirfd, name, kind | 0600, 0) == -1) {
      set_error (errno, "cannot make %s '%s'", files_type_name (e->type),
                 shown);
      return -1;
    }
    r = set_meta_at (dirfd, name, e, shown, false);
    break;
  }
  }
  if (r == 0) {
    c->st.files++;
    report (c);
  }
  return r;
}

/* Remove name below dirfd and everything in it (never following a
 * symlink).  Errors are ignored: this cleans up after a failure. */
static void
remove_tree_at (int at, const char *name)
{
  int fd = openat (at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  DIR *d;
  struct dirent *de;

  if (fd == -1) {
    unlinkat (at, name, 0);
    return;
  }
  d = fdopendir (fd);
  if (d == NULL) {
    close (fd);
    return;
  }
  while ((de = readdir (d)) != NULL)
    if (strcmp (de->d_name, ".") != 0 && strcmp (de->d_name, "..") != 0)
      remove_tree_at (dirfd (d), de->d_name);
  closedir (d);
  unlinkat (at, name, AT_REMOVEDIR);
}

/* A whole directory that is not in the target yet, in one stream: the
 * appliance's tar (one round trip, not one per file) into GNU tar, which
 * unpacks it in a new private directory inside the target (nothing
 * planted there: tar refuses ".." and absolute names and makes
 * dangerous symlinks last), then one rename puts it in place. */
static int
get_dir_stream (struct get_ctx *c, int dirfd, const char *name,
                const struct files_entry *e)
{
  CLEANUP_FREE char *full = files_join (c->p->root, e->path);
  char tmp[64], dev[64], dest[128];
  struct command *cmd = NULL;
  int fds[2] = { -1, -1 }, r = -1, st;
  char *made;

  snprintf (tmp, sizeof tmp, "/proc/self/fd/%d/.knib-get.XXXXXX", dirfd);
  made = mkdtemp (tmp);
  if (full == NULL || made == NULL) {
    set_error (errno, "cannot make a scratch directory in the target");
    return -1;
  }
  made = strrchr (tmp, '/') + 1;
  snprintf (dest, sizeof dest, "/proc/self/fd/%d/%s/d", dirfd, made);
  {
    char sub[96];

    snprintf (sub, sizeof sub, "%s/d", made);
    if (mkdirat (dirfd, sub, 0700) == -1) {
      set_error (errno, "scratch directory");
      goto out;
    }
  }
  if (pipe2 (fds, O_CLOEXEC) == -1) {
    set_error (errno, "pipe");
    goto out;
  }
  cmd = command_new ("tar");
  if (cmd == NULL)
    goto out;
  snprintf (dev, sizeof dev, "/dev/fd/%d", fds[0]);
  /* --ignore-zeros: read to the end of the stream (the appliance pads
   * it past the end-of-archive blocks), so that it never sees a broken
   * pipe. */
  command_add_args (cmd, "-x", "--ignore-zeros", "-f", dev, "-C", dest,
                    "--numeric-owner", "--same-permissions",
                    "--delay-directory-restore", NULL);
  command_add_arg (cmd, geteuid () == 0 ? "--same-owner" : "--no-same-owner");
  if (c->o->xattrs)
    command_add_args (cmd, "--xattrs", "--xattrs-include=*", "--acls", NULL);
  command_pass_fd (cmd, fds[0]);
  command_pass_fd (cmd, dirfd);
  if (command_start (cmd) == -1)
    goto out;
  close (fds[0]);
  fds[0] = -1;
  snprintf (dev, sizeof dev, "/dev/fd/%d", fds[1]);
  st = guestfs_tar_out_opts (
    c->s->g, full, dev, GUESTFS_TAR_OUT_OPTS_NUMERICOWNER, 1,
    GUESTFS_TAR_OUT_OPTS_XATTRS, c->o->xattrs ? 1 : 0,
    GUESTFS_TAR_OUT_OPTS_ACLS, c->o->xattrs ? 1 : 0, -1);
  if (st == -1)
    files_guestfs_error (c->s->g, e->path);
  close (fds[1]);
  fds[1] = -1;
  if (command_wait (cmd, -1, NULL) == -1 || st == -1)
    goto out;
  {
    char sub[96];

    snprintf (sub, sizeof sub, "%s/d", made);
    if (renameat2 (dirfd, sub, dirfd, name, RENAME_NOREPLACE) == -1) {
      set_error (errno, "cannot put '%s' in place", e->path);
      goto out;
    }
  }
  debug (DEBUG_CHAIN, "files: %s copied as one stream", e->path);
  r = 0;

out:
  if (fds[0] != -1)
    close (fds[0]);
  if (fds[1] != -1)
    close (fds[1]);
  command_free (cmd);
  remove_tree_at (dirfd, made);
  return r;
}

/* Count what a copy will do, for the progress report. */
static int
count (struct get_ctx *c, const struct files_entry *top)
{
  files_entry_vector all = empty_vector;
  struct files_path sub = *c->p;

  c->st.total_files = 1;
  c->st.total_bytes = top->type == FILES_REGULAR ? (uint64_t) top->size : 0;
  if (top->type != FILES_DIRECTORY || c->o->progress == NULL)
    return 0;
  sub.path = top->path;
  if (files_session_list (c->s, &sub, true, &all) == -1)
    return -1;
  for (size_t i = 0; i < all.len; i++) {
    c->st.total_files++;
    if (all.ptr[i].type == FILES_REGULAR)
      c->st.total_bytes += (uint64_t) all.ptr[i].size;
  }
  files_entry_vector_release (&all);
  return 0;
}

int
files_session_get (struct files_session *s, const struct files_path *p,
                   int dirfd, const struct files_get_options *o)
{
  struct get_ctx c = { s, p, o, { NULL }, 0 };
  struct files_entry top;
  struct stat sb;
  bool stream;
  int eh, r = 0;

  if (files_session_stat (s, p, &top) == -1)
    return -1;
  stream
    = strcmp (p->path, "/") != 0 && top.type == FILES_DIRECTORY
      && fstatat (dirfd, strrchr (top.path, '/') + 1, &sb, AT_SYMLINK_NOFOLLOW)
           == -1
      && errno == ENOENT;
  /* A stream needs no totals (one round trip less per directory). */
  if (!stream && count (&c, &top) == -1) {
    files_entry_release (&top);
    return -1;
  }
  eh = guestfs_set_event_callback (s->g, on_event, GUESTFS_EVENT_PROGRESS, 0,
                                   &c);
  if (strcmp (p->path, "/") == 0) {
    /* The root: its entries go straight into the target. */
    files_entry_vector kids = empty_vector;

    r = files_session_list (s, p, false, &kids);
    for (size_t i = 0; r == 0 && i < kids.len; i++)
      r = get_entry (&c, dirfd, strrchr (kids.ptr[i].path, '/') + 1,
                     &kids.ptr[i]);
    files_entry_vector_release (&kids);
  }
  else if (stream) {
    signal (SIGPIPE, SIG_IGN);
    r = get_dir_stream (&c, dirfd, strrchr (top.path, '/') + 1, &top);
    if (r == 0) {
      c.st.files = c.st.total_files = 1;
      report (&c);
    }
  }
  else
    r = get_entry (&c, dirfd, strrchr (top.path, '/') + 1, &top);
  if (eh >= 0)
    guestfs_delete_event_callback (s->g, eh);
  files_entry_release (&top);
  if (r == -1)
    error_prepend ("%s", p->display);
  return r;
}

int
files_session_tar (struct files_session *s, const struct files_path *p, int fd,
                   bool xattrs)
{
  CLEANUP_FREE char *full = files_join (p->root, p->path);
  struct files_entry e;
  char dev[64];

  if (full == NULL || files_session_stat (s, p, &e) == -1)
    return -1;
  files_entry_release (&e);
  if (e.type != FILES_DIRECTORY) {
    set_error (ENOTDIR,
               "'%s' is not a directory: --tar takes directories "
               "(--to DIR copies single files)",
               p->display);
    return -1;
  }
  snprintf (dev, sizeof dev, "/dev/fd/%d", fd);
  if (guestfs_tar_out_opts (s->g, full, dev, GUESTFS_TAR_OUT_OPTS_NUMERICOWNER,
                            1, GUESTFS_TAR_OUT_OPTS_XATTRS, xattrs ? 1 : 0,
                            GUESTFS_TAR_OUT_OPTS_ACLS, xattrs ? 1 : 0, -1)
      == -1) {
    files_guestfs_error (s->g, p->display);
    return -1;
  }
  return 0;
}

int
files_session_tar_paths (struct files_session *s, const struct files_path *ps,
                         size_t n, int fd, bool xattrs)
{
  struct files_get_options go = { false, xattrs, NULL, NULL };
  char tmpl[] = "/var/tmp/knib-tar.XXXXXX";
  CLEANUP_CLOSE int dirfd = -1;
  struct command *cmd = NULL;
  int r = -1;

  for (size_t i = 0; i < n; i++)
    if (strcmp (ps[i].path, "/") == 0) {
      set_error (-EINVAL,
                 "'%s' is a filesystem's root: with several paths each "
                 "goes into the archive under its own name",
                 ps[i].display);
      return -1;
    }
  if (mkdtemp (tmpl) == NULL) {
    set_error (errno, "cannot make a scratch directory in /var/tmp");
    return -1;
  }
  dirfd = open (tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd == -1) {
    set_error (errno, "%s", tmpl);
    goto out;
  }
  /* Each path copied out as "files get" does (safe against ".." and
   * symlinks), then one archive of them all, under their base names. */
  for (size_t i = 0; i < n; i++)
    if (files_session_get (s, &ps[i], dirfd, &go) == -1) {
      if (get_errno () == EEXIST)
        error_prepend ("two paths have the same name");
      goto out;
    }
  cmd = command_new ("tar");
  if (cmd == NULL)
    goto out;
  command_add_args (cmd, "--numeric-owner", "--format=posix", "-C", tmpl, NULL);
  if (xattrs)
    command_add_args (cmd, "--xattrs", "--xattrs-include=*", "--acls", NULL);
  command_add_argf (cmd, "--file=/dev/fd/%d", fd);
  command_add_args (cmd, "--create", "--", NULL);
  for (size_t i = 0; i < n; i++)
    command_add_arg (cmd, strrchr (ps[i].path, '/') + 1);
  command_pass_fd (cmd, fd);
  r = command_run (cmd, NULL);
out:
  if (r == -1)
    error_prepend ("tar of %zu paths", n);
  command_free (cmd);
  if (dirfd != -1) {
    remove_tree_at (AT_FDCWD, tmpl);
  }
  return r;
}
