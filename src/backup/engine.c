/* SPDX-License-Identifier: Apache-2.0 */
/* engine.c: a whole backup of a VM, and recovery after a kill.
 *
 * A running VM is backed up through its own QEMU; a stopped one through
 * a qemu-storage-daemon that opens its images (offline.c), with the same
 * steps (docs/design.md, "A backup, live"): lock, repair, decide, one
 * transaction, NBD reads into the qcow2 writer, commit, tear down, rotate
 * bitmaps. */
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
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "chain/chain.h"
#include "backup/backup.h"
#include "backup/internal.h"
#include "common/fs.h"
#include "common/scratch.h"
#include "common/util.h"
#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/testhook.h"
#include "nbd/nbd.h"
#include "qcow2/qcow2.h"
#include "qmp/qmp.h"

/* Default NBD connections per disk.  QEMU allows multi-conn on
 * read-only exports, but its NBD server runs in the main loop: on a
 * 2-core host one connection copied 1 GiB in 2.1 s, two in 3.3 s, four
 * in 3.8 s. */
#define BACKUP_CONNECTIONS 1u

/* Bytes asked per block status: twice nbd.h's default.  On an empty 1 TiB
 * overlay QEMU answered 1024 windows of 1 GiB in 0.23-0.58 s, 512 of
 * 2 GiB in 0.01-0.12 s: time follows data, not virtual size.  A window's
 * extents are held twice (one prefetched): at most 32768 clusters each. */
#define BACKUP_WINDOW (UINT64_C (2) << 30)

/* Reads in flight when the backup compresses (else nbd.h's default):
 * the compressors set the pace, and 32 reads of 256 KiB keep two of
 * them busy; with the stream's spare buffers that is 12 MiB, which
 * leaves the 32 MiB of peak RSS room for the compressors' slots and
 * contexts (48 reads put a 4 GiB disk's zstd backup at 32.7 MiB). */
#define BACKUP_COMPRESS_REQUESTS 32u

/* O_DIRECT writes of up to 2 MiB (a batch of reads) in flight.  A full
 * backup of the bench's 8 GiB disk with 2 GiB of data (medians of 4
 * interleaved rounds on a loaded 2-core machine): one write at a time
 * 3.31 s with the writer thread busy 2.2 s, four 2.39 s with it busy
 * 0.30 s; peak RSS 28.3 MiB alike. */
#define BACKUP_WRITE_DEPTH 4u

static void
disk_result_release (struct backup_disk_result *d)
{
  free (d->name);
  free (d->reason);
}

void
backup_result_release (struct backup_result *r)
{
  size_t i;

  for (i = 0; i < r->disks.len; i++)
    disk_result_release (&r->disks.ptr[i]);
  backup_disk_result_vector_reset (&r->disks);
  chain_string_vector_release (&r->notes);
  free (r->reason);
  r->reason = NULL;
}

static const char *
scratch_root (const struct backup_options *o)
{
  return o->scratch ? o->scratch : KNIB_DEFAULT_SCRATCH;
}

/* Scratch directories are "<vm>.<pid>.XXXXXX": remove those of runs
 * that are no longer alive.  The root is checked first: knib's own. */
static int
recover_scratch (const struct backup_options *o, chain_string_vector *done)
{
  const char *root = scratch_root (o);
  int fd = scratch_root_open (root);
  DIR *dir;
  struct dirent *e;

  if (fd == -1)
    return -1;
  dir = fdopendir (fd);
  if (dir == NULL) {
    set_error (errno, "scratch '%s'", root);
    close (fd);
    return -1;
  }
  while ((e = readdir (dir)) != NULL) {
    int64_t pid = scratch_run_pid (e->d_name, o->vm);
    CLEANUP_FREE char *path = NULL;

    if (pid == -1)
      continue;
    if (process_alive ((pid_t) pid))
      continue;
    path = str_printf ("%s/%s", root, e->d_name);
    /* Its qemu-storage-daemon must let go of the images first. */
    if (path == NULL || offline_daemon_reap (path, done) == -1
        || fs_remove_tree (path) == -1) {
      closedir (dir);
      return -1;
    }
    chain_note_add (
      done, str_printf ("removed scratch files of a killed run: %s", path));
  }
  closedir (dir);
  return 0;
}

/* The bitmap that backup m added: as its manifest records it (an older
 * version's "knib-<id>" stays that), else as this repository names it. */
static void
manifest_bitmap (const struct chain_repo *repo, const struct chain_manifest *m,
                 char name[CHAIN_BITMAP_MAX])
{
  if (m->disks.len > 0 && m->disks.ptr[0].bitmap != NULL)
    snprintf (name, CHAIN_BITMAP_MAX, "%s", m->disks.ptr[0].bitmap);
  else
    chain_bitmap_name (repo, m->id, name);
}

/* The bitmap of the chain's tip (chain_tip: the latest backup that is
 * part of a chain, or the one the VM was restored from), in whatever
 * state (a deleted tip kept as removed too): the one that must keep
 * recording.  *keep is "" when there is none.  With older, the bitmaps
 * of the other chain backups go there (live_recover leaves the frozen
 * one of them alone). */
static int
latest_bitmap (struct chain_repo *repo, const char *vm,
               char keep[CHAIN_BITMAP_MAX], chain_string_vector *older)
{
  chain_manifest_vector list = empty_vector;
  const struct chain_manifest *tip;
  struct chain_vm *info;
  size_t i;
  int r = 0;

  keep[0] = '\0';
  if (chain_backup_list (repo, vm, &list, NULL) == -1)
    return -1;
  info = chain_vm_load (repo, vm);
  if (info == NULL && errno != ENOENT) {
    chain_manifest_vector_release (&list);
    return -1;
  }
  tip = chain_tip (&list, info);
  if (tip != NULL)
    manifest_bitmap (repo, tip, keep);
  for (i = list.len; older != NULL && i > 0 && r == 0; i--) {
    const struct chain_manifest *m = list.ptr[i - 1];
    char *name;

    if (m->kind == CHAIN_KIND_ISOLATED || m == tip)
      continue;
    name = malloc (CHAIN_BITMAP_MAX);
    if (name != NULL)
      manifest_bitmap (repo, m, name);
    if (name == NULL || chain_string_vector_append (older, name) == -1) {
      free (name);
      set_error (ENOMEM, "bitmap names");
      r = -1;
    }
  }
  chain_vm_free (info);
  chain_manifest_vector_release (&list);
  return r;
}

/* Leftovers in the repository and the scratch directory (and the
 * daemons of killed offline runs, before this run starts its own). */
static int
recover_files (struct chain_lock *lock, const struct backup_options *o,
               chain_string_vector *done)
{
  /* A killed "knib compress" too: its partial copies go, a finalize it
   * journalled is rolled forward (copies still being written are locked
   * by their writer and left alone). */
  if (chain_repo_recover_vm (lock, done) == -1
      || recover_scratch (o, done) == -1
      || chain_compress_recover (lock, done) == -1)
    return -1;
  return 0;
}

/* Leftovers in QEMU, or in the images that the daemon opened. */
static int
recover_qemu (struct chain_repo *repo, struct qmp_client *c,
              const struct live_node_map *map, size_t nmap, const char *vm,
              live_disk_vector *found, chain_string_vector *done)
{
  char keep[CHAIN_BITMAP_MAX];
  chain_string_vector older = empty_vector;
  int r = -1;

  struct live_owner owner = { .repo = repo, .vm = vm };

  if (latest_bitmap (repo, vm, keep, &older) == 0)
    r = live_recover (c, map, nmap, &owner, keep[0] ? keep : NULL, &older,
                      found, done);
  chain_string_vector_release (&older);
  return r;
}

/* The run's private directory "<root>/<vm>.<pid>.XXXXXX" (*dir, made
 * 0700 by mkdtemp under a root that is knib's own). */
static int
make_scratch_dir (const struct backup_options *o, char **dir)
{
  CLEANUP_FREE char *prefix = str_printf ("%s.%ld.", o->vm, (long) getpid ());

  if (prefix == NULL)
    return -1;
  /* Its sockets: "nbd.sock", and the daemon's "qmp.sock". */
  return scratch_make_dir (scratch_root (o), prefix, "nbd.sock", dir);
}

static struct qmp_client *
connect_qmp (const struct backup_options *o)
{
  struct qmp_client *c = qmp_client_connect (
    o->qmp_socket, qmp_step_timeout_ms (o->timeout_ms), o->cancel);

  if (c == NULL)
    error_prepend ("QMP socket '%s'", o->qmp_socket);
  return c;
}

/* A snapshot operation that a killed knib left (its journal in
 * snapshots.json) is finished or undone first, as the next snapshot
 * command would: a backup must not read a chain in the middle of a
 * change, nor leave its leftovers to surprise the next snapshot. */
static int
recover_snapshots (struct chain_repo *repo, const struct backup_options *o,
                   chain_string_vector *done)
{
  struct snapshot_options so = {
    .vm = o->vm,
    .qmp_socket = o->qmp_socket,
    .images = o->images,
    .n_images = o->n_images,
    .domain = o->domain,
    .renames = o->renames,
    .n_renames = o->n_renames,
    .timeout_ms = o->timeout_ms,
    .cancel = o->cancel,
  };
  struct chain_snaps s;
  bool pending;

  if (chain_snaps_read (repo, o->vm, &s) == -1)
    return -1;
  pending = s.pending != NULL;
  chain_snaps_release (&s);
  if (!pending)
    return 0;
  if (snapshot_recover (repo, &so, done) == -1) {
    error_prepend ("repairing the snapshot operation that a killed knib "
                   "left (the next 'knib snapshot' command tries again)");
    return -1;
  }
  return 0;
}

int
backup_recover (struct chain_repo *repo, const struct backup_options *o,
                chain_string_vector *done)
{
  struct chain_lock *lock;
  struct qmp_client *c = NULL;
  struct offline_daemon *daemon = NULL;
  const struct live_node_map *map = NULL;
  size_t nmap = 0;
  char *scratch = NULL;
  int r = -1;

  if (name_check ("vm", o->vm) == -1 || recover_snapshots (repo, o, done) == -1)
    return -1;
  lock = chain_lock_new (repo, o->vm, CHAIN_LOCK_EXCLUSIVE, "recover", 0);
  if (lock == NULL)
    return -1;
  if (recover_files (lock, o, done) == -1)
    goto out;
  if (o->images) {
    if (make_scratch_dir (o, &scratch) == -1)
      goto out;
    daemon = offline_daemon_start (o->images, o->n_images, scratch, NULL, 0,
                                   o->timeout_ms);
    if (daemon == NULL)
      goto out;
    c = offline_daemon_qmp (daemon);
    map = offline_daemon_map (daemon, &nmap);
  }
  else if (o->qmp_socket && (c = connect_qmp (o)) == NULL)
    goto out;
  if (c != NULL && recover_qemu (repo, c, map, nmap, o->vm, NULL, done) == -1)
    goto out;
  /* The repairs are in the images once the daemon has closed them. */
  if (daemon != NULL && offline_daemon_stop (daemon) == -1)
    goto out;
  r = 0;
out:
  if (daemon != NULL)
    offline_daemon_free (daemon); /* it owns c */
  else
    qmp_client_free (c);
  if (scratch != NULL)
    fs_remove_tree_quiet (scratch);
  free (scratch);
  chain_lock_free (lock);
  return r;
}

/* ---- One run ---- */

struct disk_job {
  struct live_disk *disk;
  enum chain_kind kind;
  char *reason;
  char *fleece_path;
  int fleece_fd;     /* open from creation on: what QEMU gets (add-fd) */
  char *daemon_path; /* "/proc/self/fd/N": the daemon's (no add-fd) */
  struct backup_disk_result result;
};

struct run {
  struct chain_repo *repo;
  const struct backup_options *o;
  struct backup_result *r;
  struct chain_lock *lock;
  struct qmp_client *c;            /* owned by daemon when there is one */
  struct offline_daemon *daemon;   /* a stopped VM's images */
  const struct live_node_map *map; /* which node is which disk there */
  size_t nmap;
  live_disk_vector before; /* the disks before recovery repaired them */
  live_disk_vector disks;
  struct disk_job *jobs;
  struct live_target *targets;
  size_t n;
  struct chain_decision d;
  struct chain_backup *b;
  char *scratch;
  /* A daemon's fleecing images, one per image (o->images), created
   * before it starts so that it inherits them open. */
  int *daemon_fleece_fds;
  char *nbd_socket;
  char keep[CHAIN_BITMAP_MAX];
  bool server_started;
  bool live_started;
  bool cbw; /* fleecing through copy-before-write filters */
};

static struct live_disk *
find_disk (live_disk_vector *disks, const char *name)
{
  size_t i;

  for (i = 0; i < disks->len; i++)
    if (strcmp (disks->ptr[i].name, name) == 0)
      return &disks->ptr[i];
  return NULL;
}

static char *
disk_names (const live_disk_vector *disks)
{
  size_t i, len = 1;
  char *s;

  for (i = 0; i < disks->len; i++)
    len += strlen (disks->ptr[i].name) + 2;
  s = calloc (1, len);
  if (s == NULL)
    return NULL;
  for (i = 0; i < disks->len; i++) {
    if (i > 0)
      strcat (s, ", ");
    strcat (s, disks->ptr[i].name);
  }
  return s;
}

/* Which disks: those asked for, else every writable disk (offline:
 * every image, some of which are opened read-only). */
static int
select_disks (struct run *run)
{
  const struct backup_options *o = run->o;
  size_t i, n = 0;

  if (run->daemon != NULL)
    for (i = 0; i < run->disks.len; i++)
      run->disks.ptr[i].read_only = false;
  if (o->disks)
    for (n = 0; o->disks[n]; n++)
      ;
  else
    for (i = 0; i < run->disks.len; i++)
      n += !run->disks.ptr[i].read_only;
  if (n == 0) {
    set_error (ENOENT, "vm '%s' has no writable disk to back up", o->vm);
    return -1;
  }
  run->jobs = calloc (n, sizeof *run->jobs);
  run->targets = calloc (n, sizeof *run->targets);
  if (run->jobs == NULL || run->targets == NULL) {
    set_error (errno, "calloc");
    return -1;
  }
  for (i = 0; i < n; i++)
    run->jobs[i].fleece_fd = -1;
  if (o->disks) {
    for (i = 0; i < n; i++) {
      struct live_disk *d = find_disk (&run->disks, o->disks[i]);
      size_t j;

      if (d == NULL) {
        CLEANUP_FREE char *have = disk_names (&run->disks);
        set_error (ENOENT, "vm '%s' has no disk '%s' (it has: %s)", o->vm,
                   o->disks[i], have ? have : "?");
        return -1;
      }
      for (j = 0; j < run->n; j++)
        if (run->jobs[j].disk == d) {
          set_error (EINVAL, "disk '%s' is named twice", d->name);
          return -1;
        }
      run->jobs[run->n++].disk = d;
    }
  }
  else {
    for (i = 0; i < run->disks.len; i++)
      if (!run->disks.ptr[i].read_only)
        run->jobs[run->n++].disk = &run->disks.ptr[i];
  }
  return 0;
}

static int
make_full (struct disk_job *job, char *why)
{
  job->kind = CHAIN_KIND_FULL;
  job->reason = why;
  return 0;
}

/* An inconsistent bitmap of this repository's that disk d had before
 * recovery, or NULL. */
static const struct live_bitmap *
inconsistent_bitmap (struct run *run, const struct live_disk *d)
{
  struct live_owner owner = { .repo = run->repo, .vm = run->o->vm };
  size_t i;

  for (i = 0; d != NULL && i < d->bitmaps.len; i++)
    if (d->bitmaps.ptr[i].inconsistent
        && live_bitmap_is_ours (&owner, d->bitmaps.ptr[i].name))
      return &d->bitmaps.ptr[i];
  return NULL;
}

/* live_bitmap_usable, except that a bitmap that recovery has just
 * removed (it was inconsistent) is reported as it was found, and one
 * that a crashed QEMU never stored says so. */
static bool
bitmap_usable (struct run *run, const struct live_disk *d, const char *name,
               char **why)
{
  const struct live_disk *old;
  const struct live_bitmap *stale;
  char *old_why = NULL;

  if (live_bitmap_usable (d, name, why))
    return true;
  old = find_disk (&run->before, d->name);
  if (old == NULL || live_disk_find_bitmap (d, name) != NULL)
    return false;
  stale = inconsistent_bitmap (run, old);
  if (live_disk_find_bitmap (old, name) != NULL) {
    if (live_bitmap_usable (old, name, &old_why))
      return false;
  }
  else if (stale != NULL)
    old_why = str_printf ("bitmap %s of %s is missing: QEMU did not shut "
                          "down cleanly (it left bitmap %s inconsistent) "
                          "and lost the bitmaps it added since it started",
                          name, d->name, stale->name);
  if (old_why != NULL) {
    free (*why);
    *why = old_why;
  }
  return false;
}

/* Why a disk of a stopped VM must be full whatever the chain says: its
 * image cannot store the bitmap.  NULL when it can. */
static char *
offline_full_reason (struct run *run, const struct live_disk *d, bool *oom)
{
  CLEANUP_FREE char *vol = NULL;
  char *why;

  *oom = false;
  if (run->daemon == NULL || d->persistent_bitmaps)
    return NULL;
  vol = live_disk_volatile_why (d);
  why = vol ? str_printf ("%s: every backup of it while the VM is "
                          "stopped is full",
                          vol)
            : NULL;
  *oom = why == NULL;
  return why;
}

/* An incremental decision none of whose disks can be incremental is a
 * full backup, for the reason of the first disk. */
static int
decide_all_full (struct run *run, const char *first_reason)
{
  char *why = str_printf ("no disk can be incremental: %s", first_reason);

  if (why == NULL)
    return -1;
  free (run->d.reason);
  run->d.reason = why;
  run->d.kind = CHAIN_KIND_FULL;
  run->d.parent[0] = '\0';
  run->d.chain[0] = '\0';
  run->d.position = 1;
  return 0;
}

/* Per disk: can it be an incremental of the parent? */
static int
decide_disks (struct run *run)
{
  CLEANUP_FREE char *first_reason = NULL;
  struct chain_manifest *parent = NULL;
  size_t i;
  int r = -1;

  if (run->d.kind == CHAIN_KIND_INCREMENTAL) {
    parent = chain_backup_find (run->repo, run->o->vm, run->d.parent);
    if (parent == NULL)
      return -1;
  }
  for (i = 0; i < run->n; i++) {
    struct disk_job *job = &run->jobs[i];
    const struct live_disk *d = job->disk;
    const struct chain_disk *pd;
    char *why = NULL;
    bool oom;

    if ((why = offline_full_reason (run, d, &oom)) != NULL || oom)
      make_full (job, why);
    else if (parent == NULL) {
      job->kind = CHAIN_KIND_FULL;
      continue;
    }
    else if ((pd = chain_manifest_find_disk (parent, d->name)) == NULL)
      make_full (
        job, str_printf ("disk %s is not in backup %s", d->name, parent->id));
    else if (pd->virtual_size != d->virtual_size)
      make_full (job, str_printf ("disk %s was resized from %" PRIu64
                                  " to %" PRIu64 " bytes",
                                  d->name, pd->virtual_size, d->virtual_size));
    else if (live_bitmap_fold (run->c, d, pd->bitmap, &why) == -1)
      goto out;
    else if (why != NULL) /* snapshots broke the run of layers */
      make_full (job, why);
    else if (!bitmap_usable (run, d, pd->bitmap, &why))
      make_full (job, why ? why : str_printf ("bitmap %s", pd->bitmap));
    else
      job->kind = CHAIN_KIND_INCREMENTAL;
    if (job->kind == CHAIN_KIND_FULL && job->reason == NULL) {
      set_error (ENOMEM, "out of memory");
      goto out;
    }
    if (job->kind == CHAIN_KIND_FULL && first_reason == NULL)
      first_reason = strdup (job->reason);
  }
  if (parent != NULL && first_reason
      && run->o->mode == CHAIN_MODE_INCREMENTAL) {
    set_error (-EINVAL, "an incremental backup is not possible: %s",
               first_reason);
    goto out;
  }
  for (i = 0; i < run->n && run->jobs[i].kind != CHAIN_KIND_INCREMENTAL; i++)
    ;
  if (parent != NULL && i == run->n
      && decide_all_full (run, first_reason ? first_reason : "?") == -1)
    goto out;
  r = 0;
out:
  chain_manifest_free (parent);
  return r;
}

/* An empty qcow2 image of the disk's size: the fleecing overlay that
 * keeps the point in time while the guest writes on. */
/* The fleecing image's path in the run's directory. */
static char *
fleece_path (const struct run *run, const char *disk)
{
  return str_printf ("%s/fleece-%s.qcow2", run->scratch, disk);
}

/* An empty file for the image, created here, open read-write (read too:
 * the digest reads back the header's segment); -1 with set_error. */
static int
fleece_open_new (const char *path)
{
  int fd
    = open (path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

  if (fd == -1)
    set_error (errno, "fleecing image '%s'", path);
  return fd;
}

/* Write an empty qcow2 image of size into the new file fd (taken). */
static int
create_fleece_fd (int fd, const char *path, uint64_t size)
{
  /* Scratch: a crash leaves it to recovery, which deletes it. */
  struct qcow2_writer_options wo = { .virtual_size = size, .no_sync = true };
  struct qcow2_writer *w;
  int r = -1;

  w = qcow2_writer_new (fd, &wo);
  if (w != NULL && qcow2_writer_finish (w) == 0)
    r = 0;
  qcow2_writer_free (w);
  if (close (fd) == -1 && r == 0) {
    set_error (errno, "close '%s'", path);
    r = -1;
  }
  if (r == -1)
    error_prepend ("fleecing image '%s'", path);
  return r;
}

/* The empty image of job's disk, written through (a copy of) fd, which
 * stays open. */
static int
write_fleece (int fd, const struct disk_job *job)
{
  int copy = fcntl (fd, F_DUPFD_CLOEXEC, 3);

  if (copy == -1) {
    set_error (errno, "fleecing image '%s'", job->fleece_path);
    return -1;
  }
  return create_fleece_fd (copy, job->fleece_path, job->disk->virtual_size);
}

/* The file of the daemon's fleecing image for disk, made before it
 * started (its descriptor, -1 with set_error when there is none). */
static int
daemon_fleece_fd (const struct run *run, const char *disk)
{
  for (size_t i = 0; i < run->o->n_images; i++)
    if (strcmp (run->o->images[i].disk, disk) == 0)
      return run->daemon_fleece_fds[i];
  set_error (-ENOENT, "disk '%s': no fleecing image for the daemon", disk);
  return -1;
}

/* QEMU may run as another user than knib (libvirt's "libvirt-qemu"):
 * it makes the NBD socket in the run's directory.  Then that directory
 * (still 0700) becomes QEMU's, and the scratch root lets others pass
 * (o+x).  The fleecing images stay knib's: QEMU gets them as open
 * files.  QEMU's user is the owner of the QMP socket, which QEMU made. */
static int
share_scratch (struct run *run)
{
  struct stat sock;

  if (run->daemon != NULL || run->o->qmp_socket == NULL || geteuid () != 0
      || stat (run->o->qmp_socket, &sock) == -1 || sock.st_uid == geteuid ())
    return 0;
  if (scratch_root_share (scratch_root (run->o)) == -1
      || chown (run->scratch, sock.st_uid, sock.st_gid) == -1) {
    if (get_errno () != EPERM)
      set_error (errno, "scratch directory '%s': cannot let QEMU (user %ld) in",
                 run->scratch, (long) sock.st_uid);
    return -1;
  }
  return 0;
}

/* The fleecing images receive the old data of every cluster the guest
 * overwrites while the backup runs: at worst every cluster of every
 * disk, so their virtual sizes plus qcow2's metadata (an L2 entry of 8
 * bytes per 64 KiB cluster, refcounts, headers).  A stopped VM's images
 * are written by no one: nothing to check. */
static int
check_scratch_space (struct run *run)
{
  uint64_t need = 0, avail;
  struct statvfs sv;
  size_t i;

  if (run->daemon != NULL)
    return 0;
  for (i = 0; i < run->n; i++) {
    uint64_t size = run->jobs[i].disk->virtual_size;

    need += size + size / 4096 + 1024 * 1024;
  }
  if (statvfs (run->scratch, &sv) == -1) {
    set_error (errno, "free space of '%s'", run->scratch);
    return -1;
  }
  avail = (uint64_t) sv.f_bavail * sv.f_frsize;
  debug (DEBUG_CHAIN, "scratch: %" PRIu64 " bytes free, %" PRIu64 " needed",
         avail, need);
  if (avail < need) {
    set_error (-ENOSPC,
               "not enough free space for the fleecing images: '%s' has "
               "%" PRIu64 " bytes free, and the worst case (the guest "
               "overwrites every cluster of the disks while the backup "
               "runs: their virtual sizes plus qcow2 metadata) needs %" PRIu64
               ": give --scratch a directory on a larger file system",
               scratch_root (run->o), avail, need);
    return -1;
  }
  return 0;
}

static int
make_scratch (struct run *run)
{
  size_t i;

  /* An offline run made it already, for the daemon's socket. */
  if (run->scratch == NULL && make_scratch_dir (run->o, &run->scratch) == -1)
    return -1;
  if (check_scratch_space (run) == -1)
    return -1;
  run->nbd_socket = str_printf ("%s/nbd.sock", run->scratch);
  if (run->nbd_socket == NULL)
    return -1;
  for (i = 0; i < run->n; i++) {
    struct disk_job *job = &run->jobs[i];

    job->fleece_path = fleece_path (run, job->disk->name);
    if (job->fleece_path == NULL)
      return -1;
    /* knib's own qemu-storage-daemon has no add-fd: it inherited the
     * image's file, empty, and opens it as its own descriptor. */
    if (run->daemon != NULL) {
      int fd = daemon_fleece_fd (run, job->disk->name);

      if (fd == -1 || write_fleece (fd, job) == -1)
        return -1;
      job->daemon_path = str_printf ("/proc/self/fd/%d", fd);
      if (job->daemon_path == NULL)
        return -1;
      continue;
    }
    /* Open from its creation on: QEMU gets this file (add-fd). */
    job->fleece_fd = fleece_open_new (job->fleece_path);
    if (job->fleece_fd == -1 || write_fleece (job->fleece_fd, job) == -1)
      return -1;
  }
  return share_scratch (run);
}

static void
fill_targets (struct run *run)
{
  size_t i;
  bool isolated = run->d.kind == CHAIN_KIND_ISOLATED;

  for (i = 0; i < run->n; i++) {
    struct disk_job *job = &run->jobs[i];
    struct live_target *t = &run->targets[i];
    bool keep_usable
      = run->keep[0] && live_bitmap_usable (job->disk, run->keep, NULL);

    t->disk = job->disk;
    t->fleece_path = job->daemon_path ? job->daemon_path : job->fleece_path;
    t->fleece_fd = job->fleece_fd;
    /* No guest writes a read-only disk: blockdev-backup, in the same
     * transaction, serves it (a filter needs a writable node). */
    t->cbw = run->cbw && !job->disk->read_only;
    /* A bitmap that the image cannot store is kept while QEMU runs (the
     * next backup may be incremental), but a daemon's is no use. */
    t->new_bitmap = isolated || (run->daemon && !job->disk->persistent_bitmaps)
                      ? NULL
                      : chain_backup_bitmap (run->b);
    t->transient_bitmap = !job->disk->persistent_bitmaps;
    /* The chain's bitmap is frozen at the point in time: it is what an
     * incremental reads, and what a failure merges the new one back
     * into. */
    t->old_bitmap = !isolated && keep_usable ? run->keep : NULL;
    t->export_bitmap = job->kind == CHAIN_KIND_INCREMENTAL ? run->keep : NULL;
  }
}

struct copy_state {
  struct run *run;
  struct disk_job *job;
  struct qcow2_writer *w;
  struct qcow2_pipeline *p;      /* in front of w: compression, rate limit */
  uint64_t end;                  /* where the previous chunk ended */
  enum nbd_range_kind last_kind; /* and its kind */
};

/* Each chunk, before the writer thread gets it (stream.c). */
static int
copy_chunk (void *opaque, struct nbd_chunk *chunk)
{
  struct copy_state *cs = opaque;
  const struct backup_options *o = cs->run->o;

  if (o->cancel && *o->cancel) {
    set_error (EINTR, "interrupted");
    return -1;
  }
  /* Chunks of one extent arrive back to back; count extents. */
  if (cs->job->result.extents == 0 || chunk->offset != cs->end
      || chunk->kind != cs->last_kind)
    cs->job->result.extents++;
  if (cs->end == 0 && cs->job == &cs->run->jobs[0])
    test_stop_point ("copy");
  cs->end = chunk->offset + chunk->length;
  cs->last_kind = chunk->kind;
  if (o->progress)
    o->progress (o->opaque, cs->job->disk->name, chunk->offset + chunk->length,
                 cs->job->disk->virtual_size);
  return 0;
}

static int
copy_disk (struct run *run, struct disk_job *job)
{
  const struct live_disk *d = job->disk;
  CLEANUP_FREE char *path = chain_backup_disk_path (run->b, d->name);
  CLEANUP_FREE char *backing = NULL;
  struct qcow2_writer_options wo = {
    .virtual_size = d->virtual_size,
    .cluster_size = LIVE_GRANULARITY,
    .compression = run->o->compression == CHAIN_COMPRESSION_ZSTD
                     ? QCOW2_COMPRESSION_ZSTD
                     : QCOW2_COMPRESSION_ZLIB,
    /* The image stays out of the page cache: nothing reads it soon, and
     * its digest is computed as it is written.  Compressed clusters are
     * packed byte by byte: buffered, flushed and dropped. */
    .io = run->o->compression == CHAIN_COMPRESSION_NONE ? QCOW2_IO_DIRECT
                                                        : QCOW2_IO_DROP,
    .digest = true,
    /* The disk stays busy while the next reads land; the stream keeps
     * the read buffers until their writes complete. */
    .write_depth = BACKUP_WRITE_DEPTH,
  };
  struct qcow2_pipeline_options po = {
    .compress = run->o->compression != CHAIN_COMPRESSION_NONE,
    .level = run->o->compression_level,
    .threads = run->o->compression_threads,
    .rate_limit = run->o->rate_limit,
  };
  struct nbd_source_options so = {
    .socket = run->nbd_socket,
    .export_name = d->name,
    .bitmap = job->kind == CHAIN_KIND_INCREMENTAL ? run->keep : NULL,
    .connections
    = run->o->connections ? run->o->connections : BACKUP_CONNECTIONS,
    .timeout_ms = run->o->timeout_ms,
    .cancel = run->o->cancel,
  };
  struct nbd_read_options ro = {
    .cluster_size = LIVE_GRANULARITY,
    .window_size = BACKUP_WINDOW,
    .timeout_ms = run->o->timeout_ms,
    /* Compression, not the reads, sets the pace: fewer reads in flight
     * leave room under 32 MiB for the compressors. */
    .max_requests = run->o->compression != CHAIN_COMPRESSION_NONE
                      ? BACKUP_COMPRESS_REQUESTS
                      : 0,
    .cancel = run->o->cancel,
  };
  struct nbd_copy_stats stats = { 0 };
  struct qcow2_writer_stats ws;
  struct copy_state cs = { .run = run, .job = job };
  struct nbd_source *src = NULL;
  struct chain_disk cd = { 0 };
  double start = monotonic_seconds ();
  int fd = -1, r = -1;

  if (path == NULL)
    return -1;
  if (job->kind == CHAIN_KIND_INCREMENTAL) {
    if (chain_backup_backing_file (run->b, d->name, &backing) == -1)
      return -1;
    wo.backing_file = backing;
    wo.backing_format = "qcow2";
  }
  /* Read too: the digest reads back the header's segment. */
  fd = open (path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd == -1) {
    set_error (errno, "backup image '%s'", path);
    return -1;
  }
  cs.w = qcow2_writer_new (fd, &wo);
  if (cs.w == NULL)
    goto out;
  cs.p = qcow2_pipeline_new (cs.w, &po);
  if (cs.p == NULL)
    goto out;
  src = nbd_source_connect (&so);
  if (src == NULL)
    goto out;
  if (nbd_source_size (src) != d->virtual_size) {
    set_error (EIO, "the NBD export has %" PRIu64 " bytes, the disk %" PRIu64,
               nbd_source_size (src), d->virtual_size);
    goto out;
  }
  if (backup_stream_copy (src, &ro, cs.p, copy_chunk, &cs, &stats) == -1)
    goto out;
  if (qcow2_pipeline_flush (cs.p) == -1 || qcow2_writer_finish (cs.w) == -1)
    goto out;
  qcow2_writer_get_stats (cs.w, &ws);

  job->result.bytes_read = stats.bytes_read;
  job->result.bytes_zero = stats.bytes_zero;
  job->result.bytes_written = ws.file_size;
  job->result.seconds = monotonic_seconds () - start;
  job->result.compression = run->o->compression;

  cd.name = d->name;
  cd.kind = job->kind;
  cd.virtual_size = d->virtual_size;
  cd.cluster_size = LIVE_GRANULARITY;
  cd.bytes_read = stats.bytes_read;
  cd.bytes_written = ws.file_size;
  cd.extents = job->result.extents;
  cd.compression = run->o->compression;
  cd.reason = job->reason;
  cd.hash_kind = CHAIN_HASH_SEGMENTS;
  if (qcow2_writer_digest (cs.w, cd.hash) == -1)
    goto out;
  if (chain_backup_add_disk (run->b, &cd) == -1)
    goto out;
  r = 0;
out:
  if (r == -1)
    error_prepend ("disk %s", d->name);
  nbd_source_free (src);
  qcow2_pipeline_free (cs.p);
  qcow2_writer_free (cs.w);
  if (close (fd) == -1 && r == 0) {
    set_error (errno, "disk %s: close '%s'", d->name, path);
    r = -1;
  }
  return r;
}

static int
fill_result (struct run *run)
{
  const struct chain_manifest *m = chain_backup_manifest (run->b);
  struct backup_result *r = run->r;
  size_t i;

  snprintf (r->id, sizeof r->id, "%s", m->id);
  snprintf (r->parent, sizeof r->parent, "%s", m->parent);
  r->kind = m->kind;
  r->reason = strdup (m->reason ? m->reason : "");
  if (r->reason == NULL)
    goto nomem;
  for (i = 0; i < run->n; i++) {
    struct backup_disk_result dr = run->jobs[i].result;

    dr.name = strdup (run->jobs[i].disk->name);
    dr.kind = run->jobs[i].kind;
    dr.virtual_size = run->jobs[i].disk->virtual_size;
    dr.reason = run->jobs[i].reason ? strdup (run->jobs[i].reason) : NULL;
    if (dr.name == NULL
        || backup_disk_result_vector_append (&r->disks, dr) == -1) {
      disk_result_release (&dr);
      goto nomem;
    }
  }
  return 0;
nomem:
  set_error (ENOMEM, "out of memory");
  return -1;
}

/* The VM's definition (libvirt's domain XML): in vm.json, and beside
 * the images of this backup. */
static int
store_definition (struct run *run)
{
  const struct backup_options *o = run->o;

  if (chain_backup_set_vm_info (run->b, o->uuid, o->definition) == -1)
    return -1;
  if (o->definition != NULL
      && chain_backup_write_file (run->b, BACKUP_DEFINITION_FILE, o->definition,
                                  strlen (o->definition))
           == -1)
    return -1;
  return 0;
}

/* --quiesce: freeze the guest's filesystems, or thaw them (a failed
 * thaw is a warning, and leaves the last error alone). */
static int
quiesce (struct run *run, bool freeze)
{
  const struct backup_options *o = run->o;
  struct error_saved err;

  if (freeze)
    return o->freeze ? o->freeze (o->quiesce_opaque) : 0;
  if (o->thaw == NULL)
    return 0;
  error_save (&err);
  if (o->thaw (o->quiesce_opaque) == -1)
    chain_note_add (&run->r->notes, str_printf ("warning: %s", get_error ()));
  error_restore (&err);
  return 0;
}

/* How a running QEMU fleeces: through copy-before-write filters that
 * let the guest's writes win over a full scratch (QEMU 7.1 and later,
 * each disk a guest device), or blockdev-backup sync=none, whose
 * fleecing writes fail the guest's writes when the scratch is full. */
static int
choose_fleecing (struct run *run)
{
  size_t i;

  run->cbw = false;
  if (run->daemon != NULL)
    return 0;
  for (i = 0; i < run->n; i++) {
    if (run->jobs[i].disk->qdev == NULL) {
      debug (DEBUG_CHAIN, "fleecing: blockdev-backup (disk %s has no device)",
             run->jobs[i].disk->name);
      return 0;
    }
    /* A snapshot-access node reports the clusters that the disk's top
     * image leaves to its backing file (and those no image of the chain
     * has) as holes that are not zero: a full backup would read and
     * store the whole virtual size. */
    if (run->jobs[i].disk->backing != NULL) {
      debug (DEBUG_CHAIN,
             "fleecing: blockdev-backup (disk %s has a backing file, whose "
             "allocation a copy-before-write snapshot does not show)",
             run->jobs[i].disk->name);
      return 0;
    }
  }
  if (test_flag ("no-cbw"))
    debug (DEBUG_CHAIN, "fleecing: copy-before-write not tried (test flag)");
  else if (live_cbw_supported (run->c, &run->cbw) == -1)
    return -1;
  debug (DEBUG_CHAIN, "fleecing: %s",
         run->cbw ? "copy-before-write filters (on-cbw-error=break-snapshot)"
                  : "blockdev-backup sync=none (this QEMU has no "
                    "copy-before-write filter with on-cbw-error)");
  return 0;
}

/* A read of a copy-before-write snapshot fails once the snapshot broke:
 * when the scratch is full, that is why (the guest's write that found no
 * room for the old data went on). */
static void
explain_broken_snapshot (struct run *run)
{
  struct statvfs sv;
  CLEANUP_FREE char *why = NULL;

  if (statvfs (run->scratch, &sv) == -1
      || (uint64_t) sv.f_bfree * sv.f_frsize >= 4 * 1024 * 1024)
    return;
  why = strdup (get_error ());
  set_error (-ENOSPC,
             "the scratch '%s' filled up during the backup: it had no room "
             "left for the old data of a cluster that the guest overwrote; "
             "the guest's writes went on; this backup is incomplete (%s): "
             "give --scratch a directory on a larger file system",
             scratch_root (run->o), why ? why : "reads failed");
}

/* Everything after the decision; run->b exists. */
static int
backup_disks (struct run *run)
{
  size_t i;
  int st;

  if (store_definition (run) == -1 || make_scratch (run) == -1
      || choose_fleecing (run) == -1)
    return -1;
  fill_targets (run);
  if (quiesce (run, true) == -1)
    return -1;
  st = live_start (run->c, run->targets, run->n, run->nbd_socket,
                   &run->server_started);
  quiesce (run, false);
  if (st == -1) {
    if (run->daemon != NULL)
      offline_daemon_explain (run->daemon);
    return -1;
  }
  run->live_started = true;
  for (i = 0; i < run->n; i++)
    if (copy_disk (run, &run->jobs[i]) == -1) {
      if (run->cbw)
        explain_broken_snapshot (run);
      return -1;
    }
  if (run->o->cancel && *run->o->cancel) {
    set_error (EINTR, "interrupted");
    return -1;
  }
  if (fill_result (run) == -1)
    return -1;
  test_stop_point ("commit");
  return chain_backup_commit (run->b);
}

static void
finish_qemu (struct run *run, bool success)
{
  struct live_owner owner = { .repo = run->repo, .vm = run->o->vm };
  size_t i;

  if (run->live_started
      && live_stop (run->c, run->targets, run->n, run->server_started, success)
           == -1)
    chain_note_add (&run->r->notes, str_printf ("warning: %s (knib recover "
                                                "repairs it)",
                                                get_error ()));
  if (!success || run->d.kind == CHAIN_KIND_ISOLATED)
    return;
  for (i = 0; i < run->n; i++)
    if (live_bitmaps_prune (run->c, run->jobs[i].disk, &owner,
                            chain_backup_bitmap (run->b),
                            run->targets[i].old_bitmap, NULL)
        == -1)
      chain_note_add (
        &run->r->notes,
        str_printf ("warning: %s (the next backup repairs it)", get_error ()));
}

static int
check_socket (const char *path)
{
  struct stat st;

  if (stat (path, &st) == -1) {
    set_error (errno, "QMP socket '%s'", path);
    return -1;
  }
  if (!S_ISSOCK (st.st_mode)) {
    set_error (ENOTSOCK, "QMP socket '%s': not a socket", path);
    return -1;
  }
  return 0;
}

/* Where the backup talks QMP: the VM's QEMU, or a qemu-storage-daemon
 * that this run starts on a stopped VM's images. */
static int
open_qemu (struct run *run)
{
  const struct backup_options *o = run->o;

  if (o->images == NULL) {
    run->c = connect_qmp (o);
    return run->c ? 0 : -1;
  }
  if (make_scratch_dir (o, &run->scratch) == -1)
    return -1;
  /* Every image's, though --disk may pick fewer: the daemon starts
   * before the disks are chosen. */
  run->daemon_fleece_fds = malloc (o->n_images * sizeof (int));
  if (run->daemon_fleece_fds == NULL) {
    set_error (errno, "malloc");
    return -1;
  }
  for (size_t i = 0; i < o->n_images; i++)
    run->daemon_fleece_fds[i] = -1;
  for (size_t i = 0; i < o->n_images; i++) {
    CLEANUP_FREE char *path = fleece_path (run, o->images[i].disk);

    if (path == NULL)
      return -1;
    run->daemon_fleece_fds[i] = fleece_open_new (path);
    if (run->daemon_fleece_fds[i] == -1)
      return -1;
  }
  run->daemon
    = offline_daemon_start (o->images, o->n_images, run->scratch,
                            run->daemon_fleece_fds, o->n_images, o->timeout_ms);
  if (run->daemon == NULL)
    return -1;
  run->c = offline_daemon_qmp (run->daemon);
  qmp_client_set_cancel (run->c, o->cancel);
  run->map = offline_daemon_map (run->daemon, &run->nmap);
  return 0;
}

/* The daemon closes the images, which stores the bitmaps in them. */
static void
stop_daemon (struct run *run)
{
  if (run->daemon == NULL)
    return;
  run->c = NULL; /* the daemon's */
  if (offline_daemon_stop (run->daemon) == -1)
    chain_note_add (&run->r->notes,
                    str_printf ("warning: %s: the next backup of these disks "
                                "may be full",
                                get_error ()));
  offline_daemon_free (run->daemon);
  run->daemon = NULL;
}

static void
run_release (struct run *run)
{
  size_t i;

  stop_daemon (run);
  for (i = 0; run->jobs && i < run->n; i++) {
    free (run->jobs[i].reason);
    free (run->jobs[i].fleece_path);
    free (run->jobs[i].daemon_path);
    if (run->jobs[i].fleece_fd >= 0)
      close (run->jobs[i].fleece_fd);
  }
  for (i = 0; run->daemon_fleece_fds && i < run->o->n_images; i++)
    if (run->daemon_fleece_fds[i] >= 0)
      close (run->daemon_fleece_fds[i]);
  free (run->daemon_fleece_fds);
  free (run->jobs);
  free (run->targets);
  live_disk_vector_release (&run->before);
  live_disk_vector_release (&run->disks);
  chain_decision_release (&run->d);
  chain_backup_free (run->b);
  if (run->scratch)
    fs_remove_tree_quiet (run->scratch);
  free (run->scratch);
  free (run->nbd_socket);
  qmp_client_free (run->c);
  chain_lock_free (run->lock);
}

int
backup_run (struct chain_repo *repo, const struct backup_options *o,
            struct backup_result *r)
{
  struct run run = { .repo = repo, .o = o, .r = r };
  double start = monotonic_seconds ();
  bool committed = false;
  int ret = -1;

  memset (r, 0, sizeof *r);
  if (name_check ("vm", o->vm) == -1)
    return -1;
  /* A wrong socket path must not leave a new VM's directory behind.
   * (Connecting waits for the lock: QEMU serves one client per monitor,
   * and a second knib must fail on the lock at once, not wait on QEMU.) */
  if (o->images == NULL && check_socket (o->qmp_socket) == -1)
    goto out;
  if (recover_snapshots (repo, o, &r->notes) == -1)
    goto out;
  run.lock = chain_lock_new (repo, o->vm, CHAIN_LOCK_EXCLUSIVE, "backup", 0);
  /* The bitmaps this backup adds carry the repository's id. */
  if (run.lock == NULL || chain_repo_ensure_id (repo) == -1)
    goto out;
  if (recover_files (run.lock, o, &r->notes) == -1 || open_qemu (&run) == -1)
    goto out;
  if (live_check_foreign_jobs (run.c) == -1
      || quick_check_no_stream (run.c, chain_repo_path (repo), o) == -1)
    goto out;
  /* Recovery removes inconsistent bitmaps: keep what they said. */
  if (live_disks_query (run.c, run.map, run.nmap, &run.before) == -1
      || live_disks_rename (&run.before, o->renames, o->n_renames) == -1
      || recover_qemu (repo, run.c, run.map, run.nmap, o->vm, &run.disks,
                       &r->notes)
           == -1)
    goto out;
  if (latest_bitmap (repo, o->vm, run.keep, NULL) == -1)
    goto out;
  /* Recovery hands the disks over unless it changed a bitmap. */
  if ((run.disks.len == 0
       && live_disks_query (run.c, run.map, run.nmap, &run.disks) == -1)
      || live_disks_rename (&run.disks, o->renames, o->n_renames) == -1
      || select_disks (&run) == -1)
    goto out;
  if (chain_vm_decide (repo, o->vm, o->chain_size, o->mode, &run.d, NULL) == -1
      || decide_disks (&run) == -1)
    goto out;
  run.b = chain_backup_begin (repo, run.lock, &run.d);
  if (run.b == NULL)
    goto out;
  debug (DEBUG_CHAIN, "backup %s of vm %s: %s (%s)", chain_backup_id (run.b),
         o->vm, chain_kind_name (run.d.kind), run.d.reason);
  committed = backup_disks (&run) == 0;
  if (!committed) {
    struct error_saved err;

    error_save (&err);
    finish_qemu (&run, false);
    if (chain_backup_abort (run.b) == -1)
      chain_note_add (&r->notes, str_printf ("warning: %s", get_error ()));
    error_restore (&err);
    goto out;
  }
  finish_qemu (&run, true);
  stop_daemon (&run);
  r->seconds = monotonic_seconds () - start;
  ret = 0;
out:
  if (ret == -1)
    error_prepend ("backup of vm '%s'", o->vm);
  {
    /* Releasing must not clobber the error being returned. */
    struct error_saved err;

    error_save (&err);
    run_release (&run);
    error_restore (&err);
  }
  return ret;
}
