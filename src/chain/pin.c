/* SPDX-License-Identifier: Apache-2.0 */
/* pin.c: backups that quick-restored disks and validations still read, and
 * who reads them. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/jsonutil.h"
#include "common/util.h"
#include "internal.h"

/* vms/<vm>/pins.json:
 *   {"pins": [{"backup", "disk", "holder", "image", "owner"?}]}
 * A pin counts while its image (the overlay that a quick restore or a
 * validation made) records the backup's image in the repository as its
 * backing file: block-stream drops the backing file when the data is
 * in, so a pin never outlives its use, even when knib was killed
 * meanwhile.  A pin with an owner (a validation's) counts only while
 * some process holds an fcntl lock on that file: a killed validation's
 * overlay left in its scratch directory pins nothing.
 *
 * The file is read, changed and replaced under PIN_LOCK_FILE, so pins
 * can be added under the VM's shared lock (two validations at once);
 * delete, merge and compression check them under the exclusive one, so
 * no pin appears while they run. */
#define PIN_FILE "pins.json"
#define PIN_LOCK_FILE ".pins.lock"

static const char *const pin_keys[] = {
  "backup", "disk", "holder", "image", NULL,
};
static const char *const owned_pin_keys[] = {
  "backup", "disk", "holder", "image", "owner", NULL,
};

static json_t *
pins_load (struct chain_repo *repo, const char *vm, char **path_out)
{
  CLEANUP_FREE char *dir = chain_repo_vm_dir (repo, vm);
  char *path = dir ? str_printf ("%s/" PIN_FILE, dir) : NULL;
  json_t *j;

  if (path == NULL)
    return NULL;
  j = jsonutil_load (path, "pin file");
  if (j == NULL && errno == ENOENT) {
    error_clear ();
    j = json_pack ("{s:[]}", "pins");
  }
  if (j != NULL && !json_is_array (json_object_get (j, "pins"))) {
    set_error (EINVAL, "pin file '%s': 'pins' must be an array", path);
    json_decref (j);
    j = NULL;
  }
  if (path_out != NULL && j != NULL)
    *path_out = path;
  else
    free (path);
  return j;
}

struct pin {
  const char *backup, *disk, *holder, *image;
  const char *owner; /* NULL: none */
};

static int
pin_get (const json_t *o, struct pin *p)
{
  bool owned = json_object_get (o, "owner") != NULL;

  if (!json_is_object (o)
      || jsonutil_check_keys (o, owned ? owned_pin_keys : pin_keys, "pin: ")
           == -1
      || jsonutil_get_string (o, "backup", "pin: ", false, &p->backup) == -1
      || jsonutil_get_string (o, "disk", "pin: ", false, &p->disk) == -1
      || jsonutil_get_string (o, "holder", "pin: ", false, &p->holder) == -1
      || jsonutil_get_string (o, "image", "pin: ", false, &p->image) == -1)
    return -1;
  p->owner = NULL;
  if (owned
      && jsonutil_get_string (o, "owner", "pin: ", false, &p->owner) == -1)
    return -1;
  if (!chain_id_is_valid (p->backup) || name_check ("disk", p->disk) == -1)
    return jsonutil_invalid ("pin: bad backup id or disk name");
  return 0;
}

/* Does some process hold a lock on path? */
static bool
owner_locked (const char *path)
{
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_CLOEXEC);

  return fd >= 0 && fcntl (fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
}

/* Does the pin's overlay still read the backup's image? */
static int
pin_live (struct chain_repo *repo, const char *vm, const struct pin *p,
          bool *live)
{
  struct chain_manifest *m;
  const struct chain_disk *d;
  CLEANUP_FREE char *image = NULL, *backing = NULL, *want = NULL;
  CLEANUP_FREE char *got = NULL;
  struct stat st;

  *live = false;
  if (p->owner != NULL && !owner_locked (p->owner))
    return 0; /* its process is gone */
  if (stat (p->image, &st) == -1)
    return 0; /* gone */
  if (chain_image_backing_file (p->image, &backing) == -1) {
    error_clear (); /* not a qcow2 image any more: replaced */
    return 0;
  }
  if (backing == NULL)
    return 0; /* consolidated */
  m = chain_backup_find (repo, vm, p->backup);
  if (m == NULL) {
    error_clear ();
    return 0;
  }
  d = chain_manifest_find_disk (m, p->disk);
  image = d ? chain_backup_image_path (repo, m, d) : NULL;
  chain_manifest_free (m);
  if (image == NULL) {
    error_clear ();
    return 0;
  }
  want = realpath (image, NULL);
  got = realpath (backing, NULL);
  *live = want != NULL && got != NULL && strcmp (want, got) == 0;
  return 0;
}

/* Is id the backup pinned or one of its ancestors? */
static int
pin_covers (struct chain_repo *repo, const char *vm, const char *pinned,
            const char *id, bool *covers)
{
  chain_manifest_vector chain = empty_vector;

  *covers = strcmp (pinned, id) == 0;
  if (*covers)
    return 0;
  if (chain_backup_chain (repo, vm, pinned, &chain) == -1) {
    error_clear (); /* a broken chain: the pin's own backup still counts */
    return 0;
  }
  for (size_t i = 0; i < chain.len; i++)
    if (strcmp (chain.ptr[i]->id, id) == 0)
      *covers = true;
  chain_manifest_vector_release (&chain);
  return 0;
}

int
chain_pin_find (struct chain_repo *repo, const char *vm, const char *id,
                char **who)
{
  json_t *j = pins_load (repo, vm, NULL);
  json_t *pins;
  int r = 0;

  *who = NULL;
  if (j == NULL)
    return -1;
  pins = json_object_get (j, "pins");
  for (size_t i = 0; r == 0 && i < json_array_size (pins); i++) {
    struct pin p;
    bool live, covers;

    if (pin_get (json_array_get (pins, i), &p) == -1
        || pin_live (repo, vm, &p, &live) == -1
        || pin_covers (repo, vm, p.backup, id, &covers) == -1) {
      r = -1;
      break;
    }
    if (!live || !covers)
      continue;
    if (p.owner != NULL)
      *who = str_printf ("%s reads backup %s (disk '%s', through '%s'): wait "
                         "until it ends",
                         p.holder, p.backup, p.disk, p.image);
    else
      *who = str_printf ("disk '%s' of vm '%s' ('%s') reads backup %s (a "
                         "quick restore not yet consolidated): run 'knib "
                         "restore --consolidate' for it and wait until it "
                         "completes",
                         p.disk, p.holder, p.image, p.backup);
    r = *who ? 1 : -1;
  }
  json_decref (j);
  return r;
}

int
chain_pin_refuse (struct chain_repo *repo, const char *vm, const char *id)
{
  CLEANUP_FREE char *who = NULL;
  int r = chain_pin_find (repo, vm, id, &who);

  if (r == 1) {
    set_error (-EBUSY, "backup %s is pinned: %s", id, who);
    return -1;
  }
  return r;
}

/* Lock the pin file for a change (waits: others hold it briefly). */
static int
pins_lock (struct chain_lock *lock)
{
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  CLEANUP_FREE char *path = str_printf ("%s/" PIN_LOCK_FILE, lock->dir);
  int fd;

  if (path == NULL)
    return -1;
  fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd == -1) {
    set_error (errno, "'%s'", path);
    return -1;
  }
  while (fcntl (fd, F_OFD_SETLKW, &fl) == -1)
    if (errno != EINTR) {
      set_error (errno, "lock '%s'", path);
      close (fd);
      return -1;
    }
  return fd;
}

/* A lock of the VM, shared or exclusive, is needed to change its pins. */
static int
check_locked (const struct chain_lock *lock, const char *what)
{
  if (lock == NULL) {
    set_error (-EINVAL, "%s needs the VM's lock", what);
    return -1;
  }
  return 0;
}

static int
pins_save (struct chain_lock *lock, json_t *j)
{
  CLEANUP_FREE char *path = str_printf ("%s/" PIN_FILE, lock->dir);

  if (path == NULL)
    return -1;
  if (json_array_size (json_object_get (j, "pins")) == 0) {
    if (unlink (path) == -1 && errno != ENOENT) {
      set_error (errno, "pin file '%s'", path);
      return -1;
    }
    return fs_fsync_path (lock->dir);
  }
  return jsonutil_commit (j, lock->dir, PIN_FILE, "pin file");
}

int
chain_pin_add (struct chain_lock *lock, const char *id, const char *disk,
               const char *holder, const char *image)
{
  return chain_pin_add_owned (lock, id, disk, holder, image, NULL);
}

int
chain_pin_add_owned (struct chain_lock *lock, const char *id, const char *disk,
                     const char *holder, const char *image, const char *owner)
{
  CLEANUP_FREE char *real = realpath (image, NULL);
  CLEANUP_FREE char *real_owner = NULL;
  CLEANUP_CLOSE int fd = -1;
  json_t *j, *pin;
  int r = -1;

  if (check_locked (lock, "pinning") == -1)
    return -1;
  if (real == NULL) {
    set_error (errno, "image '%s'", image);
    return -1;
  }
  if (owner != NULL && (real_owner = realpath (owner, NULL)) == NULL) {
    set_error (errno, "lock file '%s'", owner);
    return -1;
  }
  fd = pins_lock (lock);
  if (fd == -1)
    return -1;
  j = pins_load (lock->repo, lock->vm, NULL);
  if (j == NULL)
    return -1;
  pin = json_pack ("{s:s, s:s, s:s, s:s}", "backup", id, "disk", disk, "holder",
                   holder, "image", real);
  if (pin != NULL && real_owner != NULL
      && json_object_set_new (pin, "owner", json_string (real_owner)) == -1) {
    json_decref (pin);
    pin = NULL;
  }
  if (pin != NULL
      && json_array_append_new (json_object_get (j, "pins"), pin) == 0)
    r = pins_save (lock, j);
  else
    set_error (ENOMEM, "pin");
  json_decref (j);
  return r;
}

int
chain_pin_prune (struct chain_lock *lock, chain_string_vector *done)
{
  CLEANUP_CLOSE int fd = -1;
  json_t *j, *pins;
  int r = 0;
  bool changed = false;

  if (check_locked (lock, "dropping pins") == -1)
    return -1;
  fd = pins_lock (lock);
  if (fd == -1)
    return -1;
  j = pins_load (lock->repo, lock->vm, NULL);
  if (j == NULL)
    return -1;
  pins = json_object_get (j, "pins");
  for (size_t i = 0; r == 0 && i < json_array_size (pins);) {
    struct pin p;
    bool live;

    if (pin_get (json_array_get (pins, i), &p) == -1
        || pin_live (lock->repo, lock->vm, &p, &live) == -1) {
      r = -1;
      break;
    }
    if (live) {
      i++;
      continue;
    }
    chain_note_add (done, p.owner
                            ? str_printf ("backup %s is no longer read by %s",
                                          p.backup, p.holder)
                            : str_printf ("backup %s is no longer read by "
                                          "disk '%s' of vm '%s' ('%s')",
                                          p.backup, p.disk, p.holder, p.image));
    json_array_remove (pins, i);
    changed = true;
  }
  if (r == 0 && changed)
    r = pins_save (lock, j);
  json_decref (j);
  return r;
}
