/* SPDX-License-Identifier: Apache-2.0 */
/* restore.c: a backup's disks as new qcow2 or raw images, through qemu-img. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <jansson.h>

#include "common/cleanup.h"
#include "common/command.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/testhook.h"
#include "common/util.h"
#include "internal.h"

/* How often a running conversion reports its progress. */
#define RESTORE_POLL_MS 500

/* One disk being restored. */
struct target {
  const struct chain_disk *disk; /* borrowed from the backup's manifest */
  char *image;                   /* the backup's image of the disk */
  char *source; /* the same with its chain given explicitly, for qemu-img
                   ("json:") */
  char *path;   /* where it goes */
  char *temp;   /* the file qemu-img writes, beside path */
  int temp_fd;  /* temp, open and flock()ed for as long as knib runs */
  enum chain_restore_format format;
  bool replace; /* path exists: replace it, keeping its owner and mode */
};

DEFINE_VECTOR_TYPE (target_vector, struct target)

struct restore {
  struct chain_repo *repo;
  const struct chain_restore_options *o;
  const struct chain_manifest *m; /* the backup, last of chain */
  chain_manifest_vector chain;
  target_vector targets;
  char *made_dir; /* the directory made for several disks, until done */
  bool journal;   /* RESTORE_JOURNAL is written (in place) */
};

const char *
chain_restore_format_name (enum chain_restore_format f)
{
  switch (f) {
  case CHAIN_RESTORE_QCOW2:
    return "qcow2";
  case CHAIN_RESTORE_RAW:
    return "raw";
  }
  return "?";
}

int
chain_restore_format_parse (const char *s, enum chain_restore_format *f)
{
  if (strcmp (s, "qcow2") == 0)
    *f = CHAIN_RESTORE_QCOW2;
  else if (strcmp (s, "raw") == 0)
    *f = CHAIN_RESTORE_RAW;
  else {
    set_error (-EINVAL, "unknown image format '%s': use qcow2 or raw", s);
    return -1;
  }
  return 0;
}

static void
restore_release (struct restore *r)
{
  for (size_t i = 0; i < r->targets.len; i++) {
    struct target *t = &r->targets.ptr[i];

    if (t->temp != NULL && unlink (t->temp) == -1 && errno != ENOENT)
      debug (DEBUG_CHAIN, "cannot remove '%s': %m", t->temp);
    if (t->temp_fd >= 0)
      close (t->temp_fd);
    free (t->image);
    free (t->source);
    free (t->path);
    free (t->temp);
  }
  target_vector_reset (&r->targets);
  /* Its temporary files are gone: the journal goes too. */
  if (r->journal && chain_restore_journal_remove (r->o->lock) == -1) {
    debug (DEBUG_CHAIN, "%s", get_error ());
    error_clear ();
  }
  chain_manifest_vector_release (&r->chain);
  if (r->made_dir != NULL && rmdir (r->made_dir) == -1)
    debug (DEBUG_CHAIN, "cannot remove '%s': %m", r->made_dir);
  free (r->made_dir);
}

/* The disk's images down its chain are there, linked as they must be
 * and (with hashes) still hold what was backed up. */
static int
check_disk_chain (struct restore *r, const struct chain_disk *top, bool hashes)
{
  if (chain_disk_check (r->repo, &r->chain, top->name, hashes) == -1) {
    error_prepend ("disk '%s': its chain is damaged (run 'knib verify')",
                   top->name);
    return -1;
  }
  return 0;
}

static bool
is_directory (const char *path)
{
  struct stat st;

  return stat (path, &st) == 0 && S_ISDIR (st.st_mode);
}

/* Where each disk goes: --to itself for one disk (or to/<disk>.<fmt>
 * when it is a directory), to/<disk>.<fmt> for several. */
static char *
target_path (struct restore *r, const struct chain_disk *disk, bool several)
{
  const char *to = r->o->to;
  const char *ext = chain_restore_format_name (r->o->format);

  if (several || is_directory (to))
    return str_printf ("%s%s%s.%s", to, to[strlen (to) - 1] == '/' ? "" : "/",
                       disk->name, ext);
  return str_printf ("%s", to);
}

/* Nothing is in the way of path, or force replaces a file there. */
static int
check_target (struct restore *r, const char *path)
{
  struct stat st;

  if (lstat (path, &st) == -1) {
    if (errno == ENOENT)
      return 0;
    set_error (errno, "restore target '%s'", path);
    return -1;
  }
  if (S_ISDIR (st.st_mode)) {
    set_error (-EISDIR, "restore target '%s' is a directory", path);
    return -1;
  }
  if (!S_ISREG (st.st_mode) && !S_ISLNK (st.st_mode)) {
    set_error (-EEXIST,
               "restore target '%s' exists and is not a regular file; knib "
               "only restores to new files",
               path);
    return -1;
  }
  if (!r->o->force) {
    set_error (-EEXIST,
               "restore target '%s' already exists: choose another path or "
               "force it to be replaced (--force)",
               path);
    return -1;
  }
  return 0;
}

/* An in-place target: a regular file (or a link to one). */
static int
check_in_place (const char *path)
{
  struct stat st;

  if (stat (path, &st) == -1) {
    set_error (errno, "image '%s'", path);
    return -1;
  }
  if (!S_ISREG (st.st_mode)) {
    set_error (-EINVAL,
               "image '%s' is not a regular file: knib restores in place "
               "onto image files only",
               path);
    return -1;
  }
  return 0;
}

static int
add_target (struct restore *r, const struct chain_disk *disk, bool several,
            const struct chain_restore_target *in_place)
{
  struct target t = { .disk = disk, .format = r->o->format, .temp_fd = -1 };

  /* A conversion checks the hashes after qemu-img has read the same
   * files (convert ()): the disk is read once. */
  if (check_disk_chain (r, disk, !r->o->no_verify && r->o->quick) == -1)
    return -1;
  t.image = chain_backup_image_path (r->repo, r->m, disk);
  t.source = chain_disk_qemu_spec (r->repo, &r->chain, disk->name);
  if (t.image == NULL || t.source == NULL)
    goto fail;
  if (in_place != NULL) {
    t.path = str_printf ("%s", in_place->path);
    t.format = r->o->quick ? CHAIN_RESTORE_QCOW2 : in_place->format;
    t.replace = true;
    if (t.path == NULL || check_in_place (t.path) == -1)
      goto fail;
  }
  else if ((t.path = target_path (r, disk, several)) == NULL
           || check_target (r, t.path) == -1)
    goto fail;
  if (target_vector_append (&r->targets, t) == -1) {
    set_error (ENOMEM, "restore");
    goto fail;
  }
  return 0;
fail:
  free (t.image);
  free (t.source);
  free (t.path);
  return -1;
}

/* "vda, vdb" (NULL when out of memory). */
static char *
disk_names (const struct chain_manifest *m)
{
  char *s = strdup ("");

  for (size_t i = 0; s != NULL && i < m->disks.len; i++) {
    char *more = NULL;

    if (asprintf (&more, "%s%s%s", s, i ? ", " : "", m->disks.ptr[i].name)
        == -1)
      more = NULL;
    free (s);
    s = more;
  }
  return s;
}

/* The disk of that name, or an error that names the disks there are. */
static const struct chain_disk *
find_disk (const struct chain_manifest *m, const char *name)
{
  const struct chain_disk *d;

  if (name_check ("disk", name) == -1)
    return NULL;
  d = chain_manifest_find_disk (m, name);
  if (d == NULL) {
    CLEANUP_FREE char *names = disk_names (m);

    set_error (-ENOENT, "it has no disk '%s' (it has %s)", name,
               names ? names : "others");
  }
  return d;
}

/* In place: each target names a disk of the backup and an image. */
static int
plan_in_place (struct restore *r)
{
  for (size_t i = 0; i < r->o->n_targets; i++) {
    const struct chain_restore_target *t = &r->o->targets[i];
    const struct chain_disk *d = find_disk (r->m, t->disk);

    if (d == NULL || add_target (r, d, false, t) == -1)
      return -1;
  }
  return 0;
}

/* Choose the disks and their targets, and check everything before any
 * byte is written. */
static int
plan (struct restore *r)
{
  const chain_disk_vector *disks = &r->m->disks;
  const char *to = r->o->to;
  bool several;

  if (r->m->state == CHAIN_STATE_REMOVED && r->o->removed_ok)
    debug (DEBUG_CHAIN, "restoring removed backup %s", r->m->id);
  else if (r->m->state == CHAIN_STATE_REMOVED) {
    set_error (-ENOENT,
               "it was deleted (its files are kept only for the backups "
               "that depend on it)");
    return -1;
  }
  if (r->o->targets != NULL)
    return plan_in_place (r);
  if (r->o->disk != NULL) {
    const struct chain_disk *d = find_disk (r->m, r->o->disk);

    return d == NULL ? -1 : add_target (r, d, false, NULL);
  }
  several = disks->len > 1;
  if (several && !is_directory (to)) {
    struct stat st;

    if (lstat (to, &st) == 0) {
      set_error (-ENOTDIR,
                 "it has %zu disks: '%s' must be a directory (or choose one "
                 "disk)",
                 disks->len, to);
      return -1;
    }
    if (mkdir (to, 0700) == -1) {
      set_error (errno, "cannot make directory '%s'", to);
      return -1;
    }
    r->made_dir = str_printf ("%s", to);
    if (r->made_dir == NULL)
      return -1;
  }
  for (size_t i = 0; i < disks->len; i++)
    if (add_target (r, &disks->ptr[i], several, NULL) == -1)
      return -1;
  return 0;
}

/* Remove the temporary files of dir/base that restores killed with
 * SIGKILL left (".knib-restore-<base>.XXXXXX", ours, a regular file):
 * a running restore holds a flock() on its own, a dead one's is free. */
static void
remove_stale_temps (const char *dir, const char *base)
{
  CLEANUP_FREE char *prefix = str_printf (".knib-restore-%s.", base);
  DIR *d;
  struct dirent *e;

  if (prefix == NULL || (d = opendir (dir)) == NULL)
    return;
  while ((e = readdir (d)) != NULL) {
    struct stat st;
    int fd;

    if (strncmp (e->d_name, prefix, strlen (prefix)) != 0
        || strlen (e->d_name) != strlen (prefix) + 6)
      continue;
    fd = openat (dirfd (d), e->d_name,
                 O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd == -1)
      continue;
    if (fstat (fd, &st) == 0 && S_ISREG (st.st_mode) && st.st_uid == geteuid ()
        && flock (fd, LOCK_EX | LOCK_NB) == 0) {
      if (unlinkat (dirfd (d), e->d_name, 0) == 0)
        debug (DEBUG_CHAIN, "removed '%s/%s', left by a killed restore", dir,
               e->d_name);
    }
    close (fd);
  }
  closedir (d);
}

/* A new empty file beside t->path for qemu-img to write, locked for as
 * long as knib runs (what a killed restore left, the next one removes). */
static int
make_temp (struct target *t)
{
  CLEANUP_FREE char *dir_copy = strdup (t->path);
  CLEANUP_FREE char *base_copy = strdup (t->path);
  const char *dir, *base;
  int fd;

  if (dir_copy == NULL || base_copy == NULL) {
    set_error (ENOMEM, "restore");
    return -1;
  }
  dir = dirname (dir_copy);
  base = basename (base_copy);
  remove_stale_temps (dir, base);
  t->temp = str_printf ("%s/" CHAIN_RESTORE_TEMP_PREFIX "%s.XXXXXX", dir, base);
  if (t->temp == NULL)
    return -1;
  fd = mkostemp (t->temp, O_CLOEXEC);
  if (fd == -1 || flock (fd, LOCK_EX | LOCK_NB) == -1) {
    set_error (errno, "cannot create a file beside '%s'", t->path);
    if (fd != -1) {
      unlink (t->temp);
      close (fd);
    }
    free (t->temp);
    t->temp = NULL;
    return -1;
  }
  t->temp_fd = fd;
  return 0;
}

static int
progress (struct restore *r, const struct target *t, bool done)
{
  struct chain_restore_status s = { .vm = r->m->vm,
                                    .backup = r->m->id,
                                    .disk = t->disk->name,
                                    .path = t->path,
                                    .virtual_size = t->disk->virtual_size,
                                    .done = done };
  struct stat st;

  if (r->o->progress == NULL)
    return 0;
  if (stat (done ? t->path : t->temp, &st) == 0)
    s.written = (uint64_t) st.st_blocks * 512;
  return r->o->progress (&s, r->o->opaque);
}

/* Can the temporary file be written with O_DIRECT (ramfs, and tmpfs
 * before Linux 6.6, refuse it)? */
static bool
direct_ok (const struct target *t)
{
  int fd = open (t->temp, O_WRONLY | O_DIRECT | O_CLOEXEC);

  if (fd == -1) {
    debug (DEBUG_CHAIN,
           "restore: '%s' cannot be opened with O_DIRECT (%m): qemu-img "
           "writes through the page cache",
           t->temp);
    return false;
  }
  close (fd);
  debug (DEBUG_CHAIN, "restore: qemu-img writes '%s' with O_DIRECT (-t none)",
         t->temp);
  return true;
}

/* qemu-img convert the disk's image (with its backing chain) into the
 * temporary file, reporting progress while it runs.  Where the file
 * system takes O_DIRECT the image is written around the page cache
 * ("-t none"): it does not push the host's cached data out, and on a
 * busy host writing gigabytes into new page-cache pages is the slowest
 * part of a restore; install () syncs the file all the same. */
static int
convert (struct restore *r, struct target *t)
{
  CLEANUP_FREE char *dst = chain_qemu_path (t->temp);
  struct command *cmd;
  int ret = -1;

  if (dst == NULL || (cmd = command_new ("qemu-img")) == NULL)
    return -1;
  command_add_args (cmd, "convert", "-O", chain_restore_format_name (t->format),
                    NULL);
  if (direct_ok (t))
    command_add_args (cmd, "-t", "none", NULL);
  command_add_args (cmd, t->source, dst, NULL);
  command_set_process_group (cmd, true);
  command_set_die_with_parent (cmd, true);
  if (command_start (cmd) == -1)
    goto out;
  for (;;) {
    if (command_wait (cmd, RESTORE_POLL_MS, NULL) == 0)
      break;
    if (errno != ETIMEDOUT) {
      struct error_saved err;

      /* qemu-img failed: where a stored hash does not match, that is
       * the reason to give ("the image changed after the backup"). */
      error_save (&err);
      if (r->o->no_verify || check_disk_chain (r, t->disk, true) == 0)
        error_restore (&err);
      else
        free (err.msg); /* the hash's error stands */
      goto out;
    }
    if (progress (r, t, false) == -1) {
      if (command_stop (cmd) == -1)
        debug (DEBUG_CHAIN, "stopping qemu-img: %s", get_error ());
      set_error (-ECANCELED, "the restore was interrupted");
      goto out;
    }
  }
  /* The chain's hashes, once qemu-img has read the files: they are in
   * the page cache then, so the disk is read once.  (Beside qemu-img
   * it read them twice: the hash drops the pages it has read.)  The
   * file qemu-img wrote is installed only when they match. */
  if (!r->o->no_verify && check_disk_chain (r, t->disk, true) == -1)
    goto out;
  ret = 0;
out:
  command_free (cmd);
  return ret;
}

/* Run qemu-img with the arguments (NULL-terminated); its stdout in *out
 * when out is not NULL. */
static int
qemu_img (char **out, ...)
{
  struct command *cmd = command_new ("qemu-img");
  const char *arg;
  va_list ap;
  int r = -1;

  if (cmd == NULL)
    return -1;
  va_start (ap, out);
  while ((arg = va_arg (ap, const char *)) != NULL)
    command_add_arg (cmd, arg);
  va_end (ap);
  if (out != NULL)
    command_capture_stdout (cmd, 0);
  command_set_die_with_parent (cmd, true);
  if (command_run (cmd, NULL) == 0) {
    if (out != NULL)
      *out = command_steal_stdout (cmd, NULL);
    r = out == NULL || *out != NULL ? 0 : -1;
  }
  command_free (cmd);
  return r;
}

/* Quick: a new overlay whose backing file is the backup's image. */
static int
create_overlay (struct target *t)
{
  CLEANUP_FREE char *backing = realpath (t->image, NULL);
  CLEANUP_FREE char *dst = chain_qemu_path (t->temp);
  CLEANUP_FREE char *size = str_printf ("%" PRIu64, t->disk->virtual_size);

  if (backing == NULL) {
    set_error (errno, "image '%s'", t->image);
    return -1;
  }
  if (dst == NULL || size == NULL)
    return -1;
  return qemu_img (NULL, "create", "-q", "-f", "qcow2", "-o", "compat=1.1",
                   "-b", backing, "-F", "qcow2", dst, size, NULL);
}

/* The empty persistent bitmap knib-<id>, so that the next backup of the
 * VM can be an incremental of this one. */
static int
add_bitmap (struct restore *r, struct target *t)
{
  CLEANUP_FREE char *dst = chain_qemu_path (t->temp);
  char name[CHAIN_BITMAP_MAX];

  /* The name the backup's manifest records (knib-<repository id>-<id>,
   * or an older repository's knib-<id>). */
  if (t->disk->bitmap != NULL)
    snprintf (name, sizeof name, "%s", t->disk->bitmap);
  else
    chain_bitmap_name (r->repo, r->m->id, name);
  if (dst == NULL)
    return -1;
  return qemu_img (NULL, "bitmap", "--add", "-g", "65536", "-f", "qcow2", dst,
                   name, NULL);
}

/* The bytes that a conversion of the disk needs ("qemu-img measure"). */
static int
measure (struct target *t, uint64_t *bytes)
{
  CLEANUP_FREE char *src = chain_qemu_path (t->image);
  CLEANUP_FREE char *out = NULL;
  json_t *j, *req;
  int r = -1;

  if (src == NULL
      || qemu_img (&out, "measure", "--output=json", "-f", "qcow2", "-O",
                   chain_restore_format_name (t->format), src, NULL)
           == -1)
    return -1;
  j = json_loads (out, 0, NULL);
  req = j ? json_object_get (j, "required") : NULL;
  if (json_is_integer (req) && json_integer_value (req) >= 0) {
    *bytes = (uint64_t) json_integer_value (req);
    r = 0;
  }
  else
    set_error (EINVAL, "qemu-img measure printed no 'required' size");
  json_decref (j);
  return r;
}

/* Free space: every target's file system must hold what is written
 * there (the old images of an in-place restore stay until the end). */
static int
check_space (struct restore *r)
{
  uint64_t need[64] = { 0 };
  dev_t dev[64];
  size_t ndev = 0;

  for (size_t i = 0; i < r->targets.len; i++) {
    struct target *t = &r->targets.ptr[i];
    CLEANUP_FREE char *dir_copy = strdup (t->path);
    const char *dir = dir_copy ? dirname (dir_copy) : NULL;
    struct statvfs vfs;
    struct stat st;
    uint64_t bytes, avail;
    size_t k;

    if (dir == NULL) {
      set_error (ENOMEM, "restore");
      return -1;
    }
    /* Advice only: an image qemu-img cannot measure fails the
     * conversion itself, with its own words. */
    if (measure (t, &bytes) == -1) {
      debug (DEBUG_CHAIN, "disk '%s': no free-space check: %s", t->disk->name,
             get_error ());
      error_clear ();
      continue;
    }
    if (stat (dir, &st) == -1 || statvfs (dir, &vfs) == -1) {
      set_error (errno, "directory '%s'", dir);
      return -1;
    }
    for (k = 0; k < ndev && dev[k] != st.st_dev; k++)
      ;
    if (k == ndev && ndev < 64)
      dev[ndev++] = st.st_dev;
    if (k == 64)
      k = 63;
    need[k] += bytes;
    avail = (uint64_t) vfs.f_bavail * vfs.f_frsize;
    if (need[k] > avail) {
      set_error (-ENOSPC,
                 "disk '%s': '%s' has %" PRIu64 " bytes free, the restore "
                 "needs %" PRIu64 ": free space there or restore elsewhere",
                 t->disk->name, dir, avail, need[k]);
      return -1;
    }
  }
  return 0;
}

/* rename, but without force never over a file that appeared since the
 * plan was checked (where the file system can tell). */
static int
rename_into_place (const char *from, const char *to, bool force)
{
  struct stat st;

  if (force)
    return rename (from, to);
  if (renameat2 (AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
    return 0;
  if (errno != EINVAL && errno != ENOSYS)
    return -1;
  if (lstat (to, &st) == 0) { /* no RENAME_NOREPLACE here (NFS) */
    errno = EEXIST;
    return -1;
  }
  return rename (from, to);
}

/* Make the temporary file durable and put it in place. */
static int
install (struct restore *r, struct target *t)
{
  CLEANUP_FREE char *dir_copy = strdup (t->path);
  CLEANUP_CLOSE int fd = open (t->temp, O_RDONLY | O_CLOEXEC);
  struct stat old;

  if (dir_copy == NULL) {
    set_error (ENOMEM, "restore");
    return -1;
  }
  if (fd == -1 || fsync (fd) == -1) {
    set_error (errno, "cannot sync '%s'", t->temp);
    return -1;
  }
  /* The image keeps its owner and mode (QEMU may run as another user). */
  if (t->replace
      && (stat (t->path, &old) == -1
          || fchown (fd, old.st_uid, old.st_gid) == -1
          || fchmod (fd, old.st_mode & 07777) == -1)) {
    set_error (errno, "cannot give '%s' the owner and mode of '%s'", t->temp,
               t->path);
    return -1;
  }
  if (rename_into_place (t->temp, t->path, r->o->force || t->replace) == -1) {
    set_error (errno, "cannot rename '%s' to '%s'", t->temp, t->path);
    return -1;
  }
  free (t->temp);
  t->temp = NULL;
  return fs_fsync_path (dirname (dir_copy));
}

/* In place (under the VM's exclusive lock): the images whose temporary
 * files are being written, or (installing) renamed over them. */
static int
journal_write (struct restore *r, const char *phase)
{
  char **images;
  int ret = -1;

  if (r->o->targets == NULL || r->o->lock == NULL)
    return 0;
  images = calloc (r->targets.len + 1, sizeof *images);
  if (images == NULL) {
    set_error (ENOMEM, "restore journal");
    return -1;
  }
  /* Absolute, as given (the temporary file is beside that name, also
   * when it is a link): the record is read from anywhere. */
  for (size_t i = 0; i < r->targets.len; i++) {
    const char *path = r->targets.ptr[i].path;
    CLEANUP_FREE char *cwd = path[0] == '/' ? NULL : getcwd (NULL, 0);

    images[i] = path[0] == '/' ? strdup (path)
                : cwd          ? str_printf ("%s/%s", cwd, path)
                               : NULL;
    if (images[i] == NULL) {
      set_error (errno, "image '%s'", path);
      goto out;
    }
  }
  ret = chain_restore_journal_write (
    r->o->lock, r->m->id, phase, (const char *const *) images, r->targets.len);
out:
  for (size_t i = 0; i < r->targets.len; i++)
    free (images[i]);
  free (images);
  if (ret == 0)
    r->journal = true;
  return ret;
}

static int
run (struct restore *r)
{
  if (!r->o->quick && !r->o->no_space_check && check_space (r) == -1)
    return -1;
  if (journal_write (r, "writing") == -1)
    return -1;
  /* Every disk into its temporary file first, then all of them into
   * place: a failure leaves none half done. */
  for (size_t i = 0; i < r->targets.len; i++) {
    struct target *t = &r->targets.ptr[i];

    debug (DEBUG_CHAIN, "restore: vm '%s' backup %s disk '%s' to '%s'",
           r->m->vm, r->m->id, t->disk->name, t->path);
    if (make_temp (t) == -1
        || (r->o->quick ? create_overlay (t) : convert (r, t)) == -1
        || (r->o->bitmap && t->format == CHAIN_RESTORE_QCOW2
            && add_bitmap (r, t) == -1)) {
      error_prepend ("disk '%s'", t->disk->name);
      return -1;
    }
  }
  test_stop_point ("restore");
  if (r->journal && journal_write (r, "installing") == -1)
    return -1;
  for (size_t i = 0; i < r->targets.len; i++) {
    struct target *t = &r->targets.ptr[i];

    if (install (r, t) == -1) {
      error_prepend ("disk '%s'", t->disk->name);
      return -1;
    }
    progress (r, t, true); /* it is done: too late to stop */
    if (i == 0 && r->targets.len > 1)
      test_stop_point ("restore-install"); /* one image replaced */
  }
  free (r->made_dir); /* it holds the restored disks: keep it */
  r->made_dir = NULL;
  if (!r->journal)
    return 0;
  r->journal = false;
  return chain_restore_journal_remove (r->o->lock);
}

int
chain_restore (struct chain_repo *repo, const char *id,
               const struct chain_restore_options *o)
{
  struct restore r
    = { .repo = repo, .o = o, .chain = empty_vector, .targets = empty_vector };
  struct chain_manifest *found;
  struct chain_lock *lock;
  int ret = -1;

  if (o->targets == NULL && (o->to == NULL || o->to[0] == '\0')) {
    set_error (EINVAL, "restore: no target path given");
    return -1;
  }
  found = chain_backup_find (repo, o->vm, id);
  if (found == NULL)
    return -1;
  lock = o->lock != NULL ? o->lock
                         : chain_lock_new (repo, found->vm, CHAIN_LOCK_SHARED,
                                           "restore", o->lock_timeout_ms);
  /* Under the lock, read the chain again: it may have changed. */
  if (lock != NULL
      && chain_backup_chain (repo, found->vm, found->id, &r.chain) == 0) {
    r.m = r.chain.ptr[r.chain.len - 1];
    ret = plan (&r) == 0 && run (&r) == 0 ? 0 : -1;
  }
  if (ret == -1)
    error_prepend ("restore of backup '%s' of vm '%s'", found->id, found->vm);
  restore_release (&r);
  if (lock != o->lock)
    chain_lock_free (lock);
  chain_manifest_free (found);
  return ret;
}
