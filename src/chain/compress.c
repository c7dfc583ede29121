/* SPDX-License-Identifier: Apache-2.0 */
/* compress.c: "knib compress": a backup's images rewritten compressed. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "chain/chain.h"
#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/testhook.h"
#include "common/util.h"
#include "internal.h"
#include "qcow2/qcow2.h"

/* Beside each image, in the backup's directory (image names never start
 * with '.'). */
#define COMPRESSING_PREFIX ".compressing-" /* + image + ".XXXXXX" */
#define COMPRESSED_PREFIX ".compressed-"   /* + image.hash: ready */
#define JOURNAL_NAME ".compress-journal.json"

/* Bytes read from the image at a time. */
#define READ_CHUNK (1u << 20)

/* One call of a phase (or of both). */
struct job {
  struct chain_repo *repo;
  const char *id;
  const struct chain_compress_options *o;
  struct chain_compress_result *r;
  int64_t deadline;         /* monotonic ms, -1: none */
  char *dir;                /* REPO/vms/<vm>/<id> */
  chain_string_vector made; /* the ready copies this call wrote */
  bool swapping;            /* the journal is written: no way back */
};

void
chain_compress_result_release (struct chain_compress_result *r)
{
  for (size_t i = 0; i < r->disks.len; i++)
    free (r->disks.ptr[i].name);
  chain_compress_disk_vector_reset (&r->disks);
  chain_string_vector_release (&r->notes);
  free (r->vm);
  r->vm = NULL;
}

/* Stop on a signal or at the deadline. */
static int
check_stop (const struct job *j)
{
  if (j->o->cancel && *j->o->cancel) {
    set_error (-EINTR, "interrupted");
    return -1;
  }
  if (j->deadline >= 0 && deadline_remaining_ms (j->deadline) == 0) {
    set_error (-ETIMEDOUT, "timed out after %" PRId64 " s (--timeout)",
               j->o->timeout_ms / 1000);
    return -1;
  }
  return 0;
}

static struct chain_lock *
lock_vm (struct job *j, enum chain_lock_mode mode)
{
  struct chain_lock *lock = chain_lock_new (
    j->repo, j->r->vm, mode, "compress", deadline_remaining_ms (j->deadline));

  /* A conflict that outlived the deadline is a timeout. */
  if (lock == NULL && get_errno () == EWOULDBLOCK && j->deadline >= 0)
    set_error (-ETIMEDOUT, "%s", get_error ());
  return lock;
}

/* ---- Files beside the images ---- */

/* The ready copy of disk d, an uncompressed image: its name holds the
 * hash the manifest records for the image, so that a copy of an image
 * that changed since (a merge) is never swapped in. */
static char *
ready_path (const char *dir, const struct chain_disk *d)
{
  return str_printf ("%s/" COMPRESSED_PREFIX "%s.%s", dir, d->image, d->hash);
}

static bool
file_exists (const char *path)
{
  struct stat st;

  return lstat (path, &st) == 0;
}

/* An open file description lock on all of fd: held by the writer of a
 * partial copy for as long as it lives. */
static int
lock_file (int fd)
{
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

  return fcntl (fd, F_OFD_SETLK, &fl);
}

/* Make dir/.compressing-<image>.XXXXXX, locked.  *path gets its name. */
static int
make_partial (const char *dir, const char *image, char **path)
{
  struct stat a, b;
  int fd;

  *path = str_printf ("%s/" COMPRESSING_PREFIX "%s.XXXXXX", dir, image);
  if (*path == NULL)
    return -1;
  fd = mkostemp (*path, O_CLOEXEC);
  if (fd == -1) {
    set_error (errno, "cannot create a file in '%s'", dir);
    goto fail;
  }
  if (fchmod (fd, 0600) == -1 || lock_file (fd) == -1) {
    set_error (errno, "'%s'", *path);
    goto fail_fd;
  }
  /* A recovery that ran before the lock was taken may have removed it. */
  if (fstat (fd, &a) == -1 || stat (*path, &b) == -1 || a.st_ino != b.st_ino
      || a.st_dev != b.st_dev) {
    set_error (EAGAIN, "'%s' was removed as it was made: try again", *path);
    goto fail_fd;
  }
  return fd;
fail_fd:
  close (fd);
  unlink (*path);
fail:
  free (*path);
  *path = NULL;
  return -1;
}

/* Remove the partial copies in dir whose writer is gone (its lock is
 * free). */
static int
remove_dead_partials (const char *dir, chain_string_vector *done)
{
  DIR *d = opendir (dir);
  struct dirent *e;
  int r = 0;

  if (d == NULL)
    return errno == ENOENT ? 0 : (set_error (errno, "'%s'", dir), -1);
  while (r == 0 && (e = readdir (d)) != NULL) {
    CLEANUP_FREE char *path = NULL;
    int fd;

    if (strncmp (e->d_name, COMPRESSING_PREFIX, strlen (COMPRESSING_PREFIX))
        != 0)
      continue;
    path = str_printf ("%s/%s", dir, e->d_name);
    if (path == NULL) {
      r = -1;
      break;
    }
    fd = open (path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd == -1)
      continue;
    if (lock_file (fd) == 0) {
      if (unlink (path) == -1)
        r = (set_error (errno, "cannot remove '%s'", path), -1);
      else
        chain_note_add (done, str_printf ("removed the partial compressed copy "
                                          "'%s' of a killed run",
                                          path));
    }
    close (fd);
  }
  closedir (d);
  return r;
}

/* ---- Finishing a killed finalize ---- */

static int
roll_forward (struct chain_repo *repo, const char *vm, const char *id,
              const char *dir, chain_string_vector *done)
{
  CLEANUP_FREE char *journal = str_printf ("%s/" JOURNAL_NAME, dir);
  CLEANUP_FREE char *manifest = str_printf ("%s/" CHAIN_MANIFEST_FILE, dir);
  struct chain_manifest *m, *old = NULL;
  int r = -1;

  if (journal == NULL || manifest == NULL || !file_exists (journal))
    return journal == NULL || manifest == NULL ? -1 : 0;
  m = chain_manifest_load (journal);
  if (m == NULL)
    return -1;
  if (strcmp (m->vm, vm) != 0 || strcmp (m->id, id) != 0) {
    set_error (EINVAL, "'%s' describes backup '%s' of vm '%s'", journal, m->id,
               m->vm);
    goto out;
  }
  /* The manifest still describes the images the journal replaces. */
  old = chain_manifest_load (manifest);
  if (old == NULL)
    goto out;
  for (size_t i = 0; i < m->disks.len; i++) {
    const struct chain_disk *d = &m->disks.ptr[i];
    const struct chain_disk *od = chain_manifest_find_disk (old, d->name);
    CLEANUP_FREE char *ready = NULL;
    CLEANUP_FREE char *image = chain_backup_image_path (repo, m, d);

    if (image == NULL)
      goto out;
    if (d->compression == CHAIN_COMPRESSION_NONE || od == NULL
        || od->compression != CHAIN_COMPRESSION_NONE)
      continue;
    ready = ready_path (dir, od);
    if (ready == NULL)
      goto out;
    if (file_exists (ready) && rename (ready, image) == -1) {
      set_error (errno, "cannot rename '%s' to '%s'", ready, image);
      goto out;
    }
  }
  if (fs_fsync_path (dir) == -1 || chain_manifest_commit (m, manifest) == -1)
    goto out;
  if (unlink (journal) == -1) {
    set_error (errno, "cannot remove '%s'", journal);
    goto out;
  }
  if (fs_fsync_path (dir) == -1)
    goto out;
  chain_note_add (done,
                  str_printf ("finished compressing backup '%s' of vm '%s' "
                              "(a killed run had begun to swap its images)",
                              id, vm));
  r = 0;
out:
  chain_manifest_free (m);
  chain_manifest_free (old);
  if (r == -1)
    error_prepend ("finishing the interrupted compression of backup '%s'", id);
  return r;
}

/* Remove the ready copies in backup id's directory that no disk can take
 * any more: its image was compressed or changed since. */
static int
remove_stale_copies (struct chain_repo *repo, const char *vm, const char *id,
                     const char *dir, chain_string_vector *done)
{
  struct chain_manifest *m = chain_manifest_load_backup (repo, vm, id);
  DIR *d;
  struct dirent *e;
  int r = 0;

  if (m == NULL) {
    error_clear (); /* a broken backup is verify's business */
    return 0;
  }
  d = opendir (dir);
  if (d == NULL) {
    chain_manifest_free (m);
    return errno == ENOENT ? 0 : (set_error (errno, "'%s'", dir), -1);
  }
  while (r == 0 && (e = readdir (d)) != NULL) {
    CLEANUP_FREE char *path = NULL;
    bool wanted = false;

    if (strncmp (e->d_name, COMPRESSED_PREFIX, strlen (COMPRESSED_PREFIX)) != 0)
      continue;
    path = str_printf ("%s/%s", dir, e->d_name);
    if (path == NULL) {
      r = -1;
      break;
    }
    for (size_t i = 0; i < m->disks.len && !wanted; i++) {
      CLEANUP_FREE char *ready = ready_path (dir, &m->disks.ptr[i]);

      wanted = ready != NULL && strcmp (ready, path) == 0
               && m->disks.ptr[i].compression == CHAIN_COMPRESSION_NONE;
    }
    if (wanted)
      continue;
    if (unlink (path) == -1)
      r = (set_error (errno, "cannot remove '%s'", path), -1);
    else
      chain_note_add (done, str_printf ("removed the compressed copy '%s': its "
                                        "image was compressed or changed since",
                                        path));
  }
  closedir (d);
  chain_manifest_free (m);
  return r;
}

int
chain_compress_recover (struct chain_lock *lock, chain_string_vector *done)
{
  DIR *d;
  struct dirent *e;
  chain_string_vector ids = empty_vector;
  int r = 0;

  if (chain_lock_check_exclusive (lock, lock ? lock->repo : NULL,
                                  "compression recovery")
      == -1)
    return -1;
  d = opendir (lock->dir);
  if (d == NULL) {
    set_error (errno, "vm '%s': cannot read '%s'", lock->vm, lock->dir);
    return -1;
  }
  while ((e = readdir (d)) != NULL) {
    char *id;

    if (!chain_id_is_valid (e->d_name))
      continue;
    id = strdup (e->d_name);
    if (id == NULL || chain_string_vector_append (&ids, id) == -1) {
      free (id);
      set_error (ENOMEM, "compression recovery");
      r = -1;
      break;
    }
  }
  closedir (d);
  for (size_t i = 0; r == 0 && i < ids.len; i++) {
    CLEANUP_FREE char *dir = str_printf ("%s/%s", lock->dir, ids.ptr[i]);

    if (dir == NULL
        || roll_forward (lock->repo, lock->vm, ids.ptr[i], dir, done) == -1
        || remove_dead_partials (dir, done) == -1
        || remove_stale_copies (lock->repo, lock->vm, ids.ptr[i], dir, done)
             == -1)
      r = -1;
  }
  chain_string_vector_release (&ids);
  if (r == -1)
    error_prepend ("vm '%s'", lock->vm);
  return r;
}

/* ---- Both phases: the backup and its disks ---- */

static int
job_init (struct job *j, struct chain_repo *repo, const char *id,
          const struct chain_compress_options *o,
          struct chain_compress_result *r)
{
  struct chain_manifest *m;
  CLEANUP_FREE char *vmdir = NULL;

  memset (j, 0, sizeof *j);
  j->repo = repo;
  j->id = id;
  j->o = o;
  j->r = r;
  j->deadline = o->timeout_ms > 0 ? deadline_after_ms (o->timeout_ms) : -1;
  if (r->vm == NULL) {
    m = chain_backup_find (repo, o->vm, id);
    if (m == NULL)
      return -1;
    r->vm = strdup (m->vm);
    snprintf (r->id, sizeof r->id, "%s", m->id);
    chain_manifest_free (m);
    if (r->vm == NULL) {
      set_error (ENOMEM, "strdup");
      return -1;
    }
  }
  vmdir = chain_repo_vm_dir (repo, r->vm);
  if (vmdir == NULL)
    return -1;
  j->dir = str_printf ("%s/%s", vmdir, id);
  return j->dir ? 0 : -1;
}

/* After a failure before any image was swapped: remove the ready
 * copies this call wrote (under the shared lock, so never under a
 * finalize; when it cannot be had, they stay for a later run). */
static void
job_undo (struct job *j)
{
  struct chain_lock *lock;

  if (j->swapping || j->made.len == 0)
    return;
  lock = chain_lock_new (j->repo, j->r->vm, CHAIN_LOCK_SHARED, "compress", 0);
  if (lock == NULL)
    return;
  for (size_t i = 0; i < j->made.len; i++)
    if (unlink (j->made.ptr[i]) == -1)
      debug (DEBUG_CHAIN, "cannot remove '%s': %m", j->made.ptr[i]);
  chain_lock_free (lock);
}

static void
job_release (struct job *j)
{
  chain_string_vector_release (&j->made);
  free (j->dir);
}

/* The result entry of disk d (made when missing). */
static struct chain_compress_disk *
result_disk (struct job *j, const struct chain_disk *d)
{
  struct chain_compress_disk cd = { .before = d->compression };

  for (size_t i = 0; i < j->r->disks.len; i++)
    if (strcmp (j->r->disks.ptr[i].name, d->name) == 0)
      return &j->r->disks.ptr[i];
  cd.name = strdup (d->name);
  cd.after = d->compression != CHAIN_COMPRESSION_NONE ? d->compression
                                                      : j->o->compression;
  cd.bytes_before = d->bytes_written;
  if (d->compression != CHAIN_COMPRESSION_NONE) {
    if (d->bytes_before_compression != 0)
      cd.bytes_before = d->bytes_before_compression;
    cd.bytes_after = d->bytes_written;
  }
  if (cd.name == NULL
      || chain_compress_disk_vector_append (&j->r->disks, cd) == -1) {
    free (cd.name);
    set_error (ENOMEM, "compression result");
    return NULL;
  }
  return &j->r->disks.ptr[j->r->disks.len - 1];
}

static enum qcow2_compression
qcow2_type (enum chain_compression c)
{
  return c == CHAIN_COMPRESSION_ZSTD ? QCOW2_COMPRESSION_ZSTD
                                     : QCOW2_COMPRESSION_ZLIB;
}

static enum chain_compression
chain_type (enum qcow2_compression c)
{
  switch (c) {
  case QCOW2_COMPRESSION_ZLIB:
    return CHAIN_COMPRESSION_ZLIB;
  case QCOW2_COMPRESSION_ZSTD:
    return CHAIN_COMPRESSION_ZSTD;
  }
  return CHAIN_COMPRESSION_NONE;
}

/* The compression type a ready copy at path has, or NONE when it is not
 * a usable image. */
static enum chain_compression
ready_type (const char *path)
{
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  struct qcow2_info info;
  enum chain_compression c;

  if (fd == -1 || qcow2_probe (fd, &info) == -1) {
    error_clear ();
    return CHAIN_COMPRESSION_NONE;
  }
  c = info.dirty || info.corrupt ? CHAIN_COMPRESSION_NONE
                                 : chain_type (info.compression);
  qcow2_info_release (&info);
  return c;
}

/* ---- The start phase ---- */

/* Free space of the backup's file system against min_free times the
 * backup's size. */
static int
check_free_space (struct job *j, const struct chain_manifest *m)
{
  struct statvfs sv;
  uint64_t used, avail;
  double need;

  if (chain_backup_disk_usage (j->repo, m, &used) == -1)
    return -1;
  if (statvfs (j->dir, &sv) == -1) {
    set_error (errno, "free space of '%s'", j->dir);
    return -1;
  }
  avail = (uint64_t) sv.f_bavail * sv.f_frsize;
  need = j->o->min_free * (double) used;
  debug (DEBUG_CHAIN, "compress: %" PRIu64 " bytes free, %.0f needed", avail,
         need);
  if ((double) avail < need) {
    set_error (ENOSPC,
               "not enough free space: '%s' has %" PRIu64
               " bytes free, and %.2f (--min-free) times the backup's %" PRIu64
               " bytes is %.0f: free some space or lower --min-free",
               j->dir, avail, j->o->min_free, used, need);
    return -1;
  }
  return 0;
}

/* Everything the copy of one disk holds. */
struct copy {
  struct job *j;
  const struct chain_disk *d;
  struct chain_compress_disk *cd;
  char *image;
  int ifd;
  struct qcow2_reader *rd;
  char *partial;
  int pfd;
  struct qcow2_writer *w;
  struct qcow2_pipeline *p;
  unsigned char *buf;
};

static void
copy_release (struct copy *c)
{
  qcow2_pipeline_free (c->p);
  qcow2_writer_free (c->w);
  qcow2_reader_free (c->rd);
  if (c->partial != NULL && unlink (c->partial) == -1)
    debug (DEBUG_CHAIN, "cannot remove '%s': %m", c->partial);
  if (c->pfd >= 0)
    close (c->pfd);
  if (c->ifd >= 0)
    close (c->ifd);
  free (c->partial);
  free (c->image);
  free (c->buf);
}

static int
copy_open (struct copy *c)
{
  const struct qcow2_info *info;
  struct qcow2_writer_options wo = { 0 };
  struct qcow2_pipeline_options po = {
    .compress = true,
    .level = c->j->o->level,
    .threads = c->j->o->threads,
    .rate_limit = c->j->o->rate_limit,
  };
  struct stat st;

  c->ifd = open (c->image, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (c->ifd == -1 || fstat (c->ifd, &st) == -1) {
    set_error (errno, "image '%s'", c->image);
    return -1;
  }
  c->cd->bytes_before = (uint64_t) st.st_size;
  /* What is rewritten must be what was backed up: a damaged image would
   * otherwise get a fresh hash that hides the damage. */
  if (chain_image_check_hash (c->image, c->d) == -1)
    return -1;
  c->rd = qcow2_reader_new (c->ifd);
  if (c->rd == NULL) {
    error_prepend ("image '%s'", c->image);
    return -1;
  }
  info = qcow2_reader_info (c->rd);
  if (info->virtual_size != c->d->virtual_size
      || info->cluster_size != c->d->cluster_size) {
    set_error (EINVAL,
               "image '%s' has %" PRIu64 " bytes in clusters of %" PRIu32
               ", its manifest says %" PRIu64 " in clusters of %" PRIu32
               ": run 'knib verify'",
               c->image, info->virtual_size, info->cluster_size,
               c->d->virtual_size, c->d->cluster_size);
    return -1;
  }
  c->pfd = make_partial (c->j->dir, c->d->image, &c->partial);
  if (c->pfd == -1)
    return -1;
  wo.virtual_size = info->virtual_size;
  wo.cluster_size = info->cluster_size;
  wo.backing_file = info->backing_file;
  wo.backing_format = info->backing_format;
  wo.compression = qcow2_type (c->j->o->compression);
  c->buf = malloc (READ_CHUNK);
  if (c->buf == NULL) {
    set_error (ENOMEM, "allocating a read buffer");
    return -1;
  }
  c->w = qcow2_writer_new (c->pfd, &wo);
  if (c->w == NULL)
    return -1;
  c->p = qcow2_pipeline_new (c->w, &po);
  return c->p ? 0 : -1;
}

/* One extent of the image into the pipeline. */
static int
copy_extent (struct copy *c, const struct qcow2_extent *e)
{
  switch (e->kind) {
  case QCOW2_EXTENT_UNALLOCATED:
    return 0;
  case QCOW2_EXTENT_ZERO:
    return qcow2_pipeline_zero (c->p, e->offset, e->length);
  case QCOW2_EXTENT_DATA:
    if (qcow2_reader_read (c->rd, e, 0, c->buf, e->length) == -1) {
      error_prepend ("image '%s'", c->image);
      return -1;
    }
    return qcow2_pipeline_write (c->p, e->offset, c->buf, e->length);
  case QCOW2_EXTENT_COMPRESSED:
    set_error (EINVAL,
               "image '%s' already holds compressed clusters (at guest offset "
               "%" PRIu64 ")",
               c->image, e->offset);
    return -1;
  }
  return 0;
}

static int
copy_clusters (struct copy *c)
{
  const struct chain_compress_options *o = c->j->o;
  uint64_t size = c->d->virtual_size, off = 0;
  bool first = true;

  while (off < size) {
    struct qcow2_extent e;

    if (check_stop (c->j) == -1)
      return -1;
    if (qcow2_reader_map (c->rd, off, READ_CHUNK, &e) == -1) {
      error_prepend ("image '%s'", c->image);
      return -1;
    }
    if (copy_extent (c, &e) == -1)
      return -1;
    off += e.length;
    if (first && c->j->r->disks.ptr == c->cd)
      test_stop_point ("compress");
    first = false;
    if (o->progress)
      o->progress (o->opaque, c->d->name, off, size);
  }
  return 0;
}

/* Rename the finished partial copy to the ready name, under the shared
 * lock: a finalize never sees a ready copy change under it. */
static int
copy_ready (struct copy *c)
{
  CLEANUP_FREE char *ready = ready_path (c->j->dir, c->d);
  struct chain_lock *lock;
  int r = -1;

  if (ready == NULL)
    return -1;
  lock = lock_vm (c->j, CHAIN_LOCK_SHARED);
  if (lock == NULL)
    return -1;
  if (rename (c->partial, ready) == -1)
    set_error (errno, "cannot rename '%s' to '%s'", c->partial, ready);
  else {
    free (c->partial);
    c->partial = NULL;
    if (chain_string_vector_append (&c->j->made, ready) == 0)
      ready = NULL; /* the job owns it */
    if (fs_fsync_path (c->j->dir) == 0)
      r = 0;
  }
  chain_lock_free (lock);
  return r;
}

static int
compress_disk (struct job *j, const struct chain_manifest *m,
               const struct chain_disk *d, struct chain_compress_disk *cd)
{
  struct copy c = { .j = j, .d = d, .cd = cd, .ifd = -1, .pfd = -1 };
  struct qcow2_writer_stats ws;
  double start = monotonic_seconds ();
  int r = -1;

  c.image = chain_backup_image_path (j->repo, m, d);
  if (c.image == NULL || copy_open (&c) == -1 || copy_clusters (&c) == -1
      || qcow2_pipeline_flush (c.p) == -1 || qcow2_writer_finish (c.w) == -1)
    goto out;
  qcow2_writer_get_stats (c.w, &ws);
  if (copy_ready (&c) == -1)
    goto out;
  cd->bytes_after = ws.file_size;
  cd->done = true;
  cd->seconds = monotonic_seconds () - start;
  debug (DEBUG_CHAIN,
         "compress: disk %s: %" PRIu64 " -> %" PRIu64 " bytes, %" PRIu64
         " clusters compressed, %" PRIu64 " raw",
         d->name, cd->bytes_before, ws.file_size, ws.compressed_clusters,
         ws.data_clusters);
  r = 0;
out:
  if (r == -1)
    error_prepend ("disk '%s'", d->name);
  copy_release (&c);
  return r;
}

/* Which disks the start phase rewrites: the uncompressed ones without a
 * ready copy of the type asked for. */
static int
plan_start (struct job *j, const struct chain_manifest *m, bool *todo,
            bool *any)
{
  *any = false;
  for (size_t i = 0; i < m->disks.len; i++) {
    const struct chain_disk *d = &m->disks.ptr[i];
    CLEANUP_FREE char *ready = ready_path (j->dir, d);

    if (ready == NULL || result_disk (j, d) == NULL)
      return -1;
    todo[i] = d->compression == CHAIN_COMPRESSION_NONE
              && ready_type (ready) != j->o->compression;
    *any |= todo[i];
  }
  return 0;
}

static int
start_phase (struct job *j)
{
  struct chain_lock *lock;
  struct chain_manifest *m = NULL;
  CLEANUP_FREE bool *todo = NULL;
  bool any;
  int r = -1;

  lock = lock_vm (j, CHAIN_LOCK_EXCLUSIVE);
  if (lock == NULL)
    return -1;
  if (chain_compress_recover (lock, &j->r->notes) == -1)
    goto out;
  m = chain_manifest_load_backup (j->repo, j->r->vm, j->id);
  if (m == NULL)
    goto out;
  todo = calloc (m->disks.len, sizeof *todo);
  if (todo == NULL) {
    set_error (ENOMEM, "calloc");
    goto out;
  }
  if (plan_start (j, m, todo, &any) == -1
      || (any && check_free_space (j, m) == -1))
    goto out;
  /* The long part runs unlocked: backups of the VM go on. */
  chain_lock_free (lock);
  lock = NULL;
  for (size_t i = 0; i < m->disks.len; i++) {
    struct chain_compress_disk *cd = result_disk (j, &m->disks.ptr[i]);

    if (todo[i]
        && (cd == NULL || compress_disk (j, m, &m->disks.ptr[i], cd) == -1))
      goto out;
  }
  r = 0;
out:
  chain_lock_free (lock);
  chain_manifest_free (m);
  return r;
}

/* ---- The finalize phase ---- */

/* The backing file the qcow2 image at path records (NULL: none). */
static int
image_backing (const char *path, char **backing, enum chain_compression *type,
               uint64_t *size, uint32_t *cluster, uint64_t *file_size)
{
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  struct qcow2_info info;

  if (fd == -1 || qcow2_probe (fd, &info) == -1) {
    error_prepend ("image '%s'", path);
    return -1;
  }
  *backing = info.backing_file;
  info.backing_file = NULL;
  *type = info.dirty || info.corrupt ? CHAIN_COMPRESSION_NONE
                                     : chain_type (info.compression);
  *size = info.virtual_size;
  *cluster = info.cluster_size;
  *file_size = info.file_size;
  qcow2_info_release (&info);
  return 0;
}

/* Check the ready copy of d against its image and update d to describe
 * it (the manifest is not written here). */
static int
check_ready (struct job *j, const struct chain_manifest *m,
             struct chain_disk *d, const char *ready)
{
  CLEANUP_FREE char *image = chain_backup_image_path (j->repo, m, d);
  CLEANUP_FREE char *ib = NULL, *rb = NULL;
  enum chain_compression it, rt;
  uint64_t isize, rsize, ifile, rfile;
  uint32_t icl, rcl;
  char hash[CHAIN_HASH_HEX_LEN + 1];

  if (image == NULL
      || image_backing (image, &ib, &it, &isize, &icl, &ifile) == -1
      || image_backing (ready, &rb, &rt, &rsize, &rcl, &rfile) == -1)
    return -1;
  if (rt == CHAIN_COMPRESSION_NONE || isize != rsize || icl != rcl
      || (ib == NULL) != (rb == NULL) || (ib && strcmp (ib, rb) != 0)) {
    set_error (EINVAL,
               "the compressed copy '%s' does not match image '%s' (size, "
               "clusters or backing file): remove it and run the start "
               "phase again",
               ready, image);
    return -1;
  }
  if (chain_hash_file (ready, CHAIN_HASH_SEGMENTS, hash) == -1)
    return -1;
  if (d->bytes_before_compression == 0)
    d->bytes_before_compression = ifile;
  d->bytes_written = rfile;
  d->compression = rt;
  memcpy (d->hash, hash, sizeof d->hash);
  d->hash_kind = CHAIN_HASH_SEGMENTS;
  return 0;
}

/* Swap the ready copies in (ready[i]: disk i's, or NULL), the journal
 * first. */
static int
swap_in (struct job *j, struct chain_manifest *m, char *const *ready)
{
  CLEANUP_FREE char *journal = str_printf ("%s/" JOURNAL_NAME, j->dir);
  CLEANUP_FREE char *manifest = str_printf ("%s/" CHAIN_MANIFEST_FILE, j->dir);

  if (journal == NULL || manifest == NULL
      || chain_manifest_commit (m, journal) == -1)
    return -1;
  j->swapping = true;
  test_stop_point ("finalize");
  for (size_t i = 0; i < m->disks.len; i++) {
    CLEANUP_FREE char *image = NULL;

    if (ready[i] == NULL)
      continue;
    image = chain_backup_image_path (j->repo, m, &m->disks.ptr[i]);
    if (image == NULL)
      return -1;
    if (rename (ready[i], image) == -1) {
      set_error (errno, "cannot rename '%s' to '%s' (the next run finishes it)",
                 ready[i], image);
      return -1;
    }
  }
  if (fs_fsync_path (j->dir) == -1 || chain_manifest_commit (m, manifest) == -1)
    return -1;
  if (unlink (journal) == -1) {
    set_error (errno, "cannot remove '%s'", journal);
    return -1;
  }
  return fs_fsync_path (j->dir);
}

/* The ready copy of each uncompressed disk, checked, in ready[]; m's
 * disks are updated to describe them. */
static int
plan_finalize (struct job *j, struct chain_manifest *m, char **ready, bool *any)
{
  *any = false;
  for (size_t i = 0; i < m->disks.len; i++) {
    struct chain_disk *d = &m->disks.ptr[i];
    struct chain_compress_disk *cd = result_disk (j, d);

    if (cd == NULL)
      return -1;
    if (d->compression != CHAIN_COMPRESSION_NONE)
      continue;
    ready[i] = ready_path (j->dir, d);
    if (ready[i] == NULL)
      return -1;
    if (!file_exists (ready[i])) {
      set_error (ENOENT,
                 "disk '%s' has no compressed copy to swap in: run the start "
                 "phase first",
                 d->name);
      return -1;
    }
    if (check_ready (j, m, d, ready[i]) == -1) {
      error_prepend ("disk '%s'", d->name);
      return -1;
    }
    cd->after = d->compression;
    cd->bytes_before = d->bytes_before_compression;
    cd->bytes_after = d->bytes_written;
    *any = true;
  }
  return 0;
}

static int
finalize_phase (struct job *j)
{
  struct chain_lock *lock;
  struct chain_manifest *m = NULL;
  char **ready = NULL;
  bool any;
  int r = -1;

  lock = lock_vm (j, CHAIN_LOCK_EXCLUSIVE);
  if (lock == NULL)
    return -1;
  if (chain_compress_recover (lock, &j->r->notes) == -1)
    goto out;
  if (chain_pin_refuse (j->repo, j->r->vm, j->id) == -1)
    goto out;
  m = chain_manifest_load_backup (j->repo, j->r->vm, j->id);
  if (m == NULL)
    goto out;
  ready = calloc (m->disks.len, sizeof *ready);
  if (ready == NULL) {
    set_error (ENOMEM, "calloc");
    goto out;
  }
  if (plan_finalize (j, m, ready, &any) == -1
      || (any && swap_in (j, m, ready) == -1))
    goto out;
  r = 0;
out:
  for (size_t i = 0; ready && i < m->disks.len; i++)
    free (ready[i]);
  free (ready);
  chain_manifest_free (m);
  chain_lock_free (lock);
  return r;
}

/* ---- Entry points ---- */

typedef int (*phase_fn) (struct job *j);

static int
run_phases (struct chain_repo *repo, const char *id,
            const struct chain_compress_options *o,
            struct chain_compress_result *r, phase_fn first, phase_fn second)
{
  struct job j;
  int ret = -1;

  memset (r, 0, sizeof *r);
  if (o->compression != CHAIN_COMPRESSION_ZLIB
      && o->compression != CHAIN_COMPRESSION_ZSTD) {
    set_error (EINVAL, "compress backup '%s': compress with zstd or zlib", id);
    return -1;
  }
  if (job_init (&j, repo, id, o, r) == -1) {
    job_release (&j);
    return -1;
  }
  if (first (&j) == 0 && (second == NULL || second (&j) == 0))
    ret = 0;
  else {
    struct error_saved err;

    error_save (&err);
    job_undo (&j);
    error_restore (&err);
    error_prepend ("compress backup '%s' of vm '%s'", id, r->vm);
  }
  job_release (&j);
  return ret;
}

int
chain_compress_start (struct chain_repo *repo, const char *id,
                      const struct chain_compress_options *o,
                      struct chain_compress_result *r)
{
  return run_phases (repo, id, o, r, start_phase, NULL);
}

int
chain_compress_finalize (struct chain_repo *repo, const char *id,
                         const struct chain_compress_options *o,
                         struct chain_compress_result *r)
{
  return run_phases (repo, id, o, r, finalize_phase, NULL);
}

int
chain_compress (struct chain_repo *repo, const char *id,
                const struct chain_compress_options *o,
                struct chain_compress_result *r)
{
  return run_phases (repo, id, o, r, start_phase, finalize_phase);
}
