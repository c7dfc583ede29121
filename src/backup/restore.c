/* SPDX-License-Identifier: Apache-2.0 */
/* restore.c: restore into a VM's own disks, plainly or quickly, keeping
 * its chain going. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "backup.h"
#include "common/cleanup.h"
#include "common/command.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"
#include "internal.h"
#include "qmp/qmp.h"

/* No program holds the image: "qemu-img info" without -U takes QEMU's
 * image locks, which a running QEMU (or qemu-storage-daemon, qemu-nbd)
 * holds.  Fails with the reason when the image is in use. */
int
backup_image_check_unused (const char *disk, const char *path)
{
  struct command *cmd = command_new ("qemu-img");
  int r;

  if (cmd == NULL)
    return -1;
  command_add_args (cmd, "info", "--output=json", path, NULL);
  command_set_timeout (cmd, 60000);
  r = command_run (cmd, NULL);
  if (r == -1 && strstr (get_error (), "lock") != NULL)
    set_error (-EBUSY,
               "disk '%s': image '%s' is in use (the VM runs, or another "
               "program has it open): stop the VM first",
               disk, path);
  else if (r == -1)
    error_prepend ("disk '%s': image '%s'", disk, path);
  command_free (cmd);
  return r;
}

struct verify_state {
  char *first; /* the first error found */
};

static void
on_verified (const struct chain_verify_item *item, void *opaque)
{
  struct verify_state *st = opaque;

  if (st->first != NULL || item->errors->len == 0)
    return;
  st->first = str_printf ("%s%s%s", item->disk ? "disk " : "",
                          item->disk ? item->disk : "", item->disk ? ": " : "");
  if (st->first != NULL) {
    char *all = str_printf ("%s%s", st->first, item->errors->ptr[0]);

    free (st->first);
    st->first = all;
  }
}

/* The backup's chain passes "knib verify" (hashes and qemu-img check of
 * every image it reads), unless force. */
static int
verify_chain (struct chain_repo *repo, const char *vm, const char *id,
              bool force, int lock_timeout_ms, chain_string_vector *notes)
{
  struct verify_state st = { NULL };
  struct chain_verify_summary sum;

  if (chain_verify (repo, vm, id, lock_timeout_ms, on_verified, &st, &sum)
      == -1)
    return -1;
  if (sum.errors == 0)
    return 0;
  if (force) {
    chain_note_add (notes, str_printf ("warning: backup %s fails "
                                       "verification (%s): restored anyway "
                                       "(--force)",
                                       id, st.first ? st.first : "?"));
    free (st.first);
    return 0;
  }
  set_error (-EINVAL,
             "backup %s fails verification: %s: run 'knib verify' for the "
             "details (--force restores it anyway)",
             id, st.first ? st.first : "errors found");
  free (st.first);
  return -1;
}

/* Before a restore into a VM: a removed backup is restored with a note,
 * and its chain must pass verification (unless force). */
static int
check_backup (struct chain_repo *repo, const struct chain_manifest *m,
              bool force, int lock_timeout_ms, chain_string_vector *notes)
{
  if (m->state == CHAIN_STATE_REMOVED)
    chain_note_add (notes, str_printf ("backup %s was deleted (its files are "
                                       "kept for the backups that depend on "
                                       "it): restored all the same",
                                       m->id));
  return verify_chain (repo, m->vm, m->id, force, lock_timeout_ms, notes);
}

/* Did the restore cover every disk of the backup? */
static bool
all_disks (const struct chain_manifest *m,
           const struct backup_restore_options *o)
{
  for (size_t i = 0; i < m->disks.len; i++) {
    size_t k;

    for (k = 0; k < o->n_targets; k++)
      if (strcmp (o->targets[k].disk, m->disks.ptr[i].name) == 0)
        break;
    if (k == o->n_targets)
      return false;
  }
  return true;
}

/* After the disks are in place: pins for a quick restore, and the
 * chain's new tip (or, when only some disks were restored, its end: the
 * others still hold the VM's later bitmaps). */
static int
record (struct chain_lock *lock, const struct chain_manifest *m,
        const struct backup_restore_options *o, chain_string_vector *notes)
{
  for (size_t i = 0; o->quick && i < o->n_targets; i++)
    if (chain_pin_add (lock, m->id, o->targets[i].disk,
                       o->holder ? o->holder : m->vm, o->targets[i].path)
        == -1)
      return -1;
  if (all_disks (m, o)) {
    if (chain_vm_record_restore (lock, m->id) == -1)
      return -1;
    chain_note_add (notes, str_printf ("the next backup of vm '%s' is an "
                                       "incremental of backup %s",
                                       m->vm, m->id));
    return 0;
  }
  {
    CLEANUP_FREE char *why
      = str_printf ("some disks were restored in place from backup %s", m->id);

    if (why == NULL || chain_vm_end_chain (lock, why) == -1)
      return -1;
  }
  chain_note_add (notes, str_printf ("not every disk of backup %s was "
                                     "restored: the next backup of vm '%s' "
                                     "is full",
                                     m->id, m->vm));
  return 0;
}

static int
restore_locked (struct chain_repo *repo, struct chain_lock *lock,
                const struct chain_manifest *m,
                const struct backup_restore_options *o,
                chain_string_vector *notes)
{
  struct chain_restore_options ro = {
    .vm = m->vm,
    .targets = o->targets,
    .n_targets = o->n_targets,
    .lock = lock,
    .quick = o->quick,
    .bitmap = true,
    .removed_ok = true,
    .progress = o->progress,
    .opaque = o->opaque,
  };
  chain_string_vector done = empty_vector;
  int r;

  /* What a killed restore in place left beside the images goes; pins
   * of quick restores that have been consolidated go. */
  if (chain_restore_recover (lock, notes) == -1
      || chain_pin_prune (lock, &done) == -1) {
    chain_string_vector_release (&done);
    return -1;
  }
  chain_string_vector_release (&done);
  if (chain_restore (repo, m->id, &ro) == -1)
    return -1;
  r = record (lock, m, o, notes);
  if (r == 0 && o->drop_snapshots)
    r = snapshot_drop (lock, o->targets, o->n_targets, notes);
  if (r == -1)
    error_prepend ("the disks are restored, but");
  return r;
}

int
backup_restore_in_place (struct chain_repo *repo, const char *id,
                         const struct backup_restore_options *o,
                         chain_string_vector *notes)
{
  struct chain_manifest *m;
  struct chain_lock *lock = NULL;
  int r = -1;

  if (o->n_targets == 0) {
    set_error (EINVAL, "restore: no disk to restore");
    return -1;
  }
  m = chain_backup_find (repo, o->vm, id);
  if (m == NULL)
    return -1;
  for (size_t i = 0; i < o->n_targets; i++)
    if (chain_manifest_find_disk (m, o->targets[i].disk) == NULL) {
      set_error (-ENOENT, "backup %s has no disk '%s'", m->id,
                 o->targets[i].disk);
      goto out;
    }
  if (snapshot_restore_check (repo, m->vm, o->targets, o->n_targets,
                              o->drop_snapshots)
        == -1
      || check_backup (repo, m, o->force, o->lock_timeout_ms, notes) == -1)
    goto out;
  if (o->prepare != NULL && o->prepare (o->prepare_opaque) == -1)
    goto out;
  for (size_t i = 0; i < o->n_targets; i++)
    if (backup_image_check_unused (o->targets[i].disk, o->targets[i].path)
        == -1)
      goto out;
  lock = chain_lock_new (repo, m->vm, CHAIN_LOCK_EXCLUSIVE, "restore",
                         o->lock_timeout_ms);
  if (lock == NULL)
    goto out;
  r = restore_locked (repo, lock, m, o, notes);
out:
  if (r == -1)
    error_prepend ("restore of backup '%s' of vm '%s'", id, m->vm);
  chain_lock_free (lock);
  chain_manifest_free (m);
  return r;
}

int
backup_restore_volume (struct chain_repo *repo, const char *id,
                       const struct backup_volume_options *o,
                       chain_string_vector *notes)
{
  struct chain_restore_options ro = {
    .disk = o->disk,
    .to = o->path,
    .format = CHAIN_RESTORE_QCOW2,
    .quick = o->quick,
    .removed_ok = true,
    .progress = o->progress,
    .opaque = o->opaque,
  };
  struct chain_manifest *m = chain_backup_find (repo, o->vm, id);
  struct chain_lock *lock = NULL;
  int r = -1;

  if (m == NULL)
    return -1;
  ro.vm = m->vm;
  if (chain_manifest_find_disk (m, o->disk) == NULL) {
    set_error (-ENOENT, "backup %s has no disk '%s'", m->id, o->disk);
    goto out;
  }
  if (check_backup (repo, m, o->force, o->lock_timeout_ms, notes) == -1)
    goto out;
  /* A quick restore writes its pin: the VM's exclusive lock. */
  if (o->quick) {
    lock = chain_lock_new (repo, m->vm, CHAIN_LOCK_EXCLUSIVE, "restore",
                           o->lock_timeout_ms);
    if (lock == NULL)
      goto out;
    ro.lock = lock;
  }
  if (chain_restore (repo, m->id, &ro) == -1)
    goto out;
  if (o->quick
      && chain_pin_add (lock, m->id, o->disk, o->holder ? o->holder : "?",
                        o->path)
           == -1) {
    struct error_saved err;

    error_save (&err);
    if (unlink (o->path) == -1)
      debug (DEBUG_CHAIN, "cannot remove '%s': %m", o->path);
    error_restore (&err);
    goto out;
  }
  r = 0;
out:
  if (r == -1)
    error_prepend ("restore of disk '%s' of backup '%s' of vm '%s'", o->disk,
                   id, m->vm);
  chain_lock_free (lock);
  chain_manifest_free (m);
  return r;
}

int
backup_attach_qmp (const char *qmp_socket, const char *path, const char *target,
                   int timeout_ms)
{
  CLEANUP_FREE char *node = str_printf ("restored-%s", target);
  live_disk_vector disks = empty_vector;
  struct qmp_client *c;
  int r = -1;

  if (node == NULL || name_check ("disk", target) == -1)
    return -1;
  c = qmp_client_connect (qmp_socket, timeout_ms, NULL);
  if (c == NULL) {
    error_prepend ("QMP socket '%s'", qmp_socket);
    return -1;
  }
  if (live_disks_query (c, NULL, 0, &disks) == -1)
    goto out;
  for (size_t i = 0; i < disks.len; i++)
    if (strcmp (disks.ptr[i].name, target) == 0) {
      set_error (-EEXIST,
                 "the VM has a disk '%s' already: choose another name with "
                 "--target",
                 target);
      goto out;
    }
  if (qmp_client_execute (c, "blockdev-add",
                          json_pack ("{s:s, s:s, s:{s:s, s:s}}", "driver",
                                     "qcow2", "node-name", node, "file",
                                     "driver", "file", "filename", path),
                          NULL)
      == -1)
    goto out;
  if (qmp_client_execute (c, "device_add",
                          json_pack ("{s:s, s:s, s:s}", "driver",
                                     "virtio-blk-pci", "drive", node, "id",
                                     target),
                          NULL)
      == -1) {
    struct error_saved err;

    error_save (&err);
    if (qmp_client_execute (c, "blockdev-del",
                            json_pack ("{s:s}", "node-name", node), NULL)
        == -1)
      debug (DEBUG_QMP, "blockdev-del %s: %s", node, get_error ());
    error_restore (&err);
    goto out;
  }
  r = 0;
out:
  if (r == -1)
    error_prepend ("attaching '%s' as disk '%s'", path, target);
  live_disk_vector_release (&disks);
  qmp_client_free (c);
  return r;
}
