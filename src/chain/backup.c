/* SPDX-License-Identifier: Apache-2.0 */
/* backup.c: a backup from <id>.partial/ to a committed <id>/, and recovery. */
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
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"
#include "internal.h"

#ifdef ENABLE_TEST_HOOKS
enum chain_crash_point chain_crash_point = CHAIN_CRASH_NONE;
#endif

struct chain_backup {
  struct chain_repo *repo;
  struct chain_lock *lock; /* borrowed: held until commit or abort */
  struct chain_manifest *m;
  struct chain_manifest *parent; /* NULL without a parent */
  char *partial;                 /* REPO/vms/<vm>/<id>.partial */
  char *final;                   /* REPO/vms/<vm>/<id> */
  char bitmap[CHAIN_BITMAP_MAX];
  char *uuid;
  char *definition;
  bool committed;
  bool aborted;
  bool crashed; /* the tests' simulated crash: leave everything */
};

static void
backup_error (const struct chain_backup *b)
{
  error_prepend ("backup '%s' of vm '%s'", b->m->id, b->m->vm);
}

/* The chain's tip must be the parent (chain_tip: the latest
 * non-isolated backup, a removed one too: a deleted chain tip stays the
 * parent, see chain_delete; or the backup the VM was restored from). */
static int
take_parent (struct chain_backup *b, const char *parent)
{
  chain_manifest_vector list = empty_vector;
  chain_string_vector problems = empty_vector;
  struct chain_vm *vm = NULL;
  const struct chain_manifest *tip;
  int r = -1;

  if (chain_backup_list (b->repo, b->lock->vm, &list, &problems) == -1)
    goto out;
  vm = chain_vm_load (b->repo, b->lock->vm);
  if (vm == NULL && errno != ENOENT)
    goto out;
  tip = chain_tip (&list, vm);
  if (tip == NULL || strcmp (tip->id, parent) != 0) {
    set_error (-EINVAL,
               "vm '%s': parent '%s' is not the backup that the chain "
               "continues from (%s%s%s is): decide again",
               b->lock->vm, parent, tip ? "'" : "", tip ? tip->id : "none",
               tip ? "'" : "");
    goto out;
  }
  for (size_t i = 0; i < list.len; i++)
    if (list.ptr[i] == tip) {
      b->parent = list.ptr[i];
      list.ptr[i] = NULL;
    }
  strcpy (b->m->parent, b->parent->id);
  strcpy (b->m->chain, b->parent->chain);
  b->m->position = b->parent->position + 1;
  r = 0;
out:
  chain_vm_free (vm);
  chain_manifest_vector_release (&list);
  chain_string_vector_release (&problems);
  return r;
}

/* Pick an id after every entry of the VM's directory and make its
 * partial directory. */
static int
make_partial (struct chain_backup *b, const char *vm_dir, int64_t now)
{
  char latest[CHAIN_ID_MAX];
  int64_t t = now, lt;
  unsigned seq = 1, ls;

  if (chain_vm_latest_id (b->repo, b->lock->vm, true, latest) == -1)
    return -1;
  if (latest[0] && chain_id_split (latest, &lt, &ls) == 0) {
    if (lt > t)
      t = lt; /* the clock went back: stay after what exists */
    if (lt == t)
      seq = ls + 1;
  }
  for (;;) {
    if (seq > CHAIN_ID_SEQ_MAX) {
      t++;
      seq = 1;
    }
    chain_id_make (t, seq, b->m->id);
    free (b->partial);
    b->partial = str_printf ("%s/%s" CHAIN_PARTIAL_SUFFIX, vm_dir, b->m->id);
    if (b->partial == NULL)
      return -1;
    if (mkdir (b->partial, 0700) == 0)
      break;
    if (errno != EEXIST) {
      set_error (errno, "vm '%s': cannot make '%s'", b->lock->vm, b->partial);
      return -1;
    }
    seq++;
  }
  b->final = str_printf ("%s/%s", vm_dir, b->m->id);
  return b->final ? 0 : -1;
}

struct chain_backup *
chain_backup_begin (struct chain_repo *repo, struct chain_lock *lock,
                    const struct chain_decision *d)
{
  struct chain_backup *b;
  int64_t now = chain_repo_now (repo);

  if (chain_lock_check_exclusive (lock, repo, "a backup") == -1)
    return NULL;
  b = calloc (1, sizeof *b);
  if (b == NULL || (b->m = chain_manifest_new ()) == NULL) {
    free (b);
    set_error (ENOMEM, "backup");
    return NULL;
  }
  b->repo = repo;
  b->lock = lock;
  b->m->kind = d->kind;
  b->m->state = CHAIN_STATE_COMPLETE;
  b->m->position = 1;
  b->m->created = now;
  b->m->vm = strdup (lock->vm);
  b->m->reason = strdup (d->reason ? d->reason : "");
  if (b->m->vm == NULL || b->m->reason == NULL) {
    set_error (ENOMEM, "backup");
    goto fail;
  }
  if (d->kind == CHAIN_KIND_INCREMENTAL && take_parent (b, d->parent) == -1)
    goto fail;
  if (make_partial (b, lock->dir, now) == -1)
    goto fail;
  if (d->kind != CHAIN_KIND_INCREMENTAL)
    strcpy (b->m->chain, b->m->id);
  chain_bitmap_name (lock->repo, b->m->id, b->bitmap);
  debug (DEBUG_CHAIN, "vm '%s': backup %s begins (%s%s%s): %s", lock->vm,
         b->m->id, chain_kind_name (b->m->kind),
         b->m->parent[0] ? ", parent " : "", b->m->parent, b->m->reason);
  return b;
fail:
  b->aborted = true; /* nothing to remove */
  chain_backup_free (b);
  return NULL;
}

void
chain_backup_free (struct chain_backup *b)
{
  if (b == NULL)
    return;
  if (!b->committed && !b->aborted && !b->crashed && b->partial != NULL) {
    int saved = errno;
    if (fs_remove_tree_quiet (b->partial) == -1)
      debug (DEBUG_CHAIN, "cannot remove '%s': %m", b->partial);
    errno = saved;
  }
  chain_manifest_free (b->m);
  chain_manifest_free (b->parent);
  free (b->partial);
  free (b->final);
  free (b->uuid);
  free (b->definition);
  free (b);
}

const char *
chain_backup_id (const struct chain_backup *b)
{
  return b->m->id;
}

const char *
chain_backup_bitmap (const struct chain_backup *b)
{
  return b->bitmap;
}

const struct chain_manifest *
chain_backup_manifest (const struct chain_backup *b)
{
  return b->m;
}

static char *
default_image (const char *disk)
{
  char *image;

  if (name_check ("disk", disk) == -1)
    return NULL;
  image = str_printf ("%s.qcow2", disk);
  if (image != NULL && name_check ("image", image) == -1) {
    free (image);
    return NULL;
  }
  return image;
}

char *
chain_backup_disk_path (struct chain_backup *b, const char *disk)
{
  CLEANUP_FREE char *image = default_image (disk);

  if (image == NULL)
    return NULL;
  return str_printf ("%s/%s", b->partial, image);
}

int
chain_backup_backing_file (struct chain_backup *b, const char *disk,
                           char **backing)
{
  const struct chain_disk *pd;

  *backing = NULL;
  if (name_check ("disk", disk) == -1)
    return -1;
  if (b->parent == NULL)
    return 0;
  pd = chain_manifest_find_disk (b->parent, disk);
  if (pd == NULL) {
    set_error (-ENOENT,
               "disk '%s' is not in parent backup '%s': it needs a full "
               "backup",
               disk, b->parent->id);
    return -1;
  }
  *backing = str_printf ("../%s/%s", b->parent->id, pd->image);
  return *backing ? 0 : -1;
}

int
chain_backup_add_disk (struct chain_backup *b, const struct chain_disk *disk)
{
  CLEANUP_FREE char *image = NULL;
  struct chain_disk copy = *disk;

  if (name_check ("disk", disk->name) == -1)
    return -1;
  if (disk->image == NULL) {
    image = default_image (disk->name);
    if (image == NULL)
      return -1;
    copy.image = image;
  }
  else if (name_check ("image", disk->image) == -1)
    return -1;
  if (disk->bitmap == NULL)
    copy.bitmap = b->bitmap;
  if (chain_manifest_find_disk (b->m, disk->name) != NULL) {
    set_error (-EEXIST, "disk '%s' was already added to backup '%s'",
               disk->name, b->m->id);
    return -1;
  }
  return chain_manifest_add_disk (b->m, &copy);
}

static int
dup_into (char **dst, const char *src)
{
  char *s;

  if (src == NULL)
    return 0;
  s = strdup (src);
  if (s == NULL) {
    set_error (ENOMEM, "strdup");
    return -1;
  }
  free (*dst);
  *dst = s;
  return 0;
}

int
chain_backup_set_vm_info (struct chain_backup *b, const char *uuid,
                          const char *definition)
{
  if (dup_into (&b->uuid, uuid) == -1
      || dup_into (&b->definition, definition) == -1)
    return -1;
  return 0;
}

int
chain_backup_write_file (struct chain_backup *b, const char *name,
                         const char *data, size_t len)
{
  CLEANUP_FREE char *path = NULL;
  CLEANUP_CLOSE int fd = -1;

  if (name_check ("file", name) == -1
      || (path = str_printf ("%s/%s", b->partial, name)) == NULL)
    return -1;
  fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd == -1) {
    set_error (errno, "cannot create '%s'", path);
    return -1;
  }
  if (write_all (fd, data, len) == -1) {
    set_error (errno, "cannot write '%s'", path);
    return -1;
  }
  if (fsync (fd) == -1 || close (STEAL_FD (fd)) == -1) {
    set_error (errno, "cannot write '%s'", path);
    return -1;
  }
  return 0;
}

/* An incremental backup with no incremental disk depends on nothing: it
 * starts a chain of its own. */
static void
normalize_kind (struct chain_backup *b)
{
  struct chain_manifest *m = b->m;

  if (m->kind != CHAIN_KIND_INCREMENTAL)
    return;
  for (size_t i = 0; i < m->disks.len; i++)
    if (m->disks.ptr[i].kind == CHAIN_KIND_INCREMENTAL)
      return;
  m->kind = CHAIN_KIND_FULL;
  m->parent[0] = '\0';
  strcpy (m->chain, m->id);
  m->position = 1;
}

static int
check_disks (struct chain_backup *b)
{
  if (b->m->disks.len == 0) {
    set_error (-EINVAL, "no disk was added");
    return -1;
  }
  for (size_t i = 0; i < b->m->disks.len; i++) {
    const struct chain_disk *d = &b->m->disks.ptr[i];

    if (d->kind == CHAIN_KIND_INCREMENTAL
        && (b->parent == NULL
            || chain_manifest_find_disk (b->parent, d->name) == NULL)) {
      set_error (-EINVAL,
                 "disk '%s' is incremental but the backup's parent has no "
                 "such disk",
                 d->name);
      return -1;
    }
  }
  return 0;
}

/* Step 1: hash what has no hash yet, and make every image durable. */
static int
sync_images (struct chain_backup *b)
{
  for (size_t i = 0; i < b->m->disks.len; i++) {
    struct chain_disk *d = &b->m->disks.ptr[i];
    CLEANUP_FREE char *path = str_printf ("%s/%s", b->partial, d->image);
    CLEANUP_CLOSE int fd = -1;
    struct stat st;

    if (path == NULL)
      return -1;
    fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd == -1 || fstat (fd, &st) == -1) {
      set_error (errno, "disk '%s': image '%s'", d->name, path);
      return -1;
    }
    if (!S_ISREG (st.st_mode)) {
      set_error (-EINVAL, "disk '%s': image '%s' is not a regular file",
                 d->name, path);
      return -1;
    }
    if (d->hash[0] == '\0' && chain_hash_fd (fd, d->hash_kind, d->hash) == -1) {
      error_prepend ("disk '%s': hash of '%s'", d->name, path);
      return -1;
    }
    if (fsync (fd) == -1) {
      set_error (errno, "disk '%s': cannot sync '%s'", d->name, path);
      return -1;
    }
  }
  return fs_fsync_path (b->partial);
}

/* Step 2: vm.json describes the VM as this backup saw it. */
static int
update_vm (struct chain_backup *b)
{
  struct chain_vm *vm = chain_vm_load_or_new (b->repo, b->lock->vm);
  int r = -1;

  if (vm == NULL)
    return -1;
  for (size_t i = 0; i < vm->disks.len; i++)
    free (vm->disks.ptr[i].name);
  vm->disks.len = 0;
  for (size_t i = 0; i < b->m->disks.len; i++) {
    struct chain_vm_disk d
      = { .name = strdup (b->m->disks.ptr[i].name),
          .virtual_size = b->m->disks.ptr[i].virtual_size };
    if (d.name == NULL || chain_vm_disk_vector_append (&vm->disks, d) == -1) {
      free (d.name);
      set_error (ENOMEM, "vm disks");
      goto out;
    }
  }
  if (dup_into (&vm->uuid, b->uuid) == -1
      || dup_into (&vm->definition, b->definition) == -1)
    goto out;
  vm->updated = b->m->finished;
  r = chain_vm_save (b->lock, vm);
out:
  chain_vm_free (vm);
  return r;
}

#ifdef ENABLE_TEST_HOOKS
static int
crash (struct chain_backup *b)
{
  b->crashed = true;
  set_error (0, "simulated crash");
  return -1;
}

/* Stop as if killed at point (the tests' fault injection). */
#define CRASH_AT(b, point)                                                     \
  do {                                                                         \
    if (chain_crash_point == (point))                                          \
      return crash (b);                                                        \
  } while (0)
#else
#define CRASH_AT(b, point)                                                     \
  do {                                                                         \
  } while (0)
#endif

static int
commit (struct chain_backup *b)
{
  CLEANUP_FREE char *manifest = NULL;
  int64_t now = chain_repo_now (b->repo);

  normalize_kind (b);
  if (check_disks (b) == -1 || sync_images (b) == -1)
    return -1;
  CRASH_AT (b, CHAIN_CRASH_AFTER_IMAGES);
  b->m->finished = now > b->m->created ? now : b->m->created;
  if (chain_manifest_validate (b->m) == -1 || update_vm (b) == -1)
    return -1;
  manifest = str_printf ("%s/" CHAIN_MANIFEST_FILE, b->partial);
  if (manifest == NULL || chain_manifest_commit (b->m, manifest) == -1)
    return -1;
  CRASH_AT (b, CHAIN_CRASH_AFTER_MANIFEST);
  if (rename (b->partial, b->final) == -1) {
    set_error (errno, "cannot rename '%s' to '%s'", b->partial, b->final);
    return -1;
  }
  b->committed = true; /* the commit point */
  CRASH_AT (b, CHAIN_CRASH_AFTER_RENAME);
  if (fs_fsync_path (b->lock->dir) == -1) {
    error_prepend ("committed, but");
    return -1;
  }
  debug (DEBUG_CHAIN, "vm '%s': backup %s committed (%s, position %lld)",
         b->m->vm, b->m->id, chain_kind_name (b->m->kind),
         (long long) b->m->position);
  return 0;
}

int
chain_backup_commit (struct chain_backup *b)
{
  if (b->committed || b->aborted || b->crashed) {
    set_error (-EINVAL, "backup '%s' of vm '%s' was already %s", b->m->id,
               b->m->vm, b->committed ? "committed" : "aborted");
    return -1;
  }
  if (commit (b) == -1) {
    backup_error (b);
    return -1;
  }
  return 0;
}

int
chain_backup_abort (struct chain_backup *b)
{
  if (b->committed) {
    set_error (-EINVAL,
               "backup '%s' of vm '%s' is committed: delete it instead",
               b->m->id, b->m->vm);
    return -1;
  }
  if (b->aborted)
    return 0;
  b->aborted = true;
  if (fs_remove_tree (b->partial) == -1 || fs_fsync_path (b->lock->dir) == -1) {
    backup_error (b);
    return -1;
  }
  debug (DEBUG_CHAIN, "vm '%s': backup %s aborted", b->m->vm, b->m->id);
  return 0;
}

/* ---- Recovery ---- */

static int
note (chain_string_vector *removed, char *line)
{
  if (line == NULL || chain_string_vector_append (removed, line) == -1) {
    free (line);
    set_error (ENOMEM, "recovery");
    return -1;
  }
  debug (DEBUG_CHAIN, "%s", line);
  return 0;
}

/* Remove the .tmp-* files directly inside dir. */
static int
remove_temp_files (const char *dir, chain_string_vector *removed)
{
  chain_string_vector names = empty_vector;
  DIR *d = opendir (dir);
  struct dirent *e;
  int r = 0;

  if (d == NULL) {
    set_error (errno, "cannot read '%s'", dir);
    return -1;
  }
  while ((e = readdir (d)) != NULL) {
    char *name;
    if (!chain_is_temp_name (e->d_name))
      continue;
    name = strdup (e->d_name);
    if (name == NULL || chain_string_vector_append (&names, name) == -1) {
      free (name);
      r = -1;
      set_error (ENOMEM, "recovery");
      break;
    }
  }
  closedir (d);
  for (size_t i = 0; r == 0 && i < names.len; i++) {
    CLEANUP_FREE char *path = str_printf ("%s/%s", dir, names.ptr[i]);
    if (path == NULL || fs_remove_tree (path) == -1)
      r = -1;
    else
      r = note (removed, str_printf ("removed temporary file '%s'", path));
  }
  chain_string_vector_release (&names);
  return r;
}

static int
recover_entry (struct chain_lock *lock, const char *name,
               chain_string_vector *removed)
{
  CLEANUP_FREE char *path = str_printf ("%s/%s", lock->dir, name);
  size_t n = strlen (name), sl = strlen (CHAIN_PARTIAL_SUFFIX);
  char id[CHAIN_ID_MAX];
  struct stat st;

  if (path == NULL || lstat (path, &st) == -1 || !S_ISDIR (st.st_mode))
    return path == NULL ? -1 : 0;
  if (n > sl && n - sl < CHAIN_ID_MAX
      && strcmp (name + n - sl, CHAIN_PARTIAL_SUFFIX) == 0) {
    memcpy (id, name, n - sl);
    id[n - sl] = '\0';
    if (!chain_id_is_valid (id))
      return 0;
    if (fs_remove_tree (path) == -1)
      return -1;
    return note (
      removed,
      str_printf ("removed unfinished backup '%s' of vm '%s'", id, lock->vm));
  }
  if (chain_id_is_valid (name))
    return remove_temp_files (path, removed);
  return 0;
}

int
chain_repo_recover_vm (struct chain_lock *lock, chain_string_vector *removed)
{
  chain_string_vector names = empty_vector;
  size_t before = removed->len;
  DIR *d;
  struct dirent *e;
  int r = 0;

  if (chain_lock_check_exclusive (lock, lock ? lock->repo : NULL, "recovery")
      == -1)
    return -1;
  d = opendir (lock->dir);
  if (d == NULL) {
    set_error (errno, "vm '%s': cannot read '%s'", lock->vm, lock->dir);
    return -1;
  }
  while ((e = readdir (d)) != NULL) {
    char *name;
    if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
      continue;
    name = strdup (e->d_name);
    if (name == NULL || chain_string_vector_append (&names, name) == -1) {
      free (name);
      set_error (ENOMEM, "recovery");
      r = -1;
      break;
    }
  }
  closedir (d);
  for (size_t i = 0; r == 0 && i < names.len; i++)
    r = recover_entry (lock, names.ptr[i], removed);
  if (r == 0)
    r = remove_temp_files (lock->dir, removed);
  if (r == 0)
    r = chain_restore_recover (lock, removed);
  if (r == 0 && removed->len > before)
    r = fs_fsync_path (lock->dir);
  chain_string_vector_release (&names);
  if (r == -1)
    error_prepend ("recovery of vm '%s'", lock->vm);
  return r;
}
