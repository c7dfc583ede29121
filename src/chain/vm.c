/* SPDX-License-Identifier: Apache-2.0 */
/* vm.c: vm.json, what knib last knew of a VM, and ending its chain. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/util.h"
#include "internal.h"

/* "restored" is written only once the VM was restored in place (files
 * of earlier versions have none). */
static const char *const vm_keys[] = {
  "name", "uuid", "disks", "definition", "updated", "chain-end", NULL,
};
static const char *const vm_keys_restored[] = {
  "name",    "uuid",      "disks",    "definition",
  "updated", "chain-end", "restored", NULL,
};
static const char *const disk_keys[] = { "name", "virtual-size", NULL };
static const char *const end_keys[] = { "reason", "after", NULL };
static const char *const restored_keys[] = { "from", "after", NULL };

void
chain_vm_free (struct chain_vm *vm)
{
  if (vm == NULL)
    return;
  for (size_t i = 0; i < vm->disks.len; i++)
    free (vm->disks.ptr[i].name);
  chain_vm_disk_vector_reset (&vm->disks);
  free (vm->name);
  free (vm->uuid);
  free (vm->definition);
  free (vm->chain_end_reason);
  free (vm);
}

static bool
dup_or_null (const char *s, char **out)
{
  *out = s ? strdup (s) : NULL;
  return s == NULL || *out != NULL;
}

static int
disks_from_json (struct chain_vm *vm, const json_t *disks)
{
  if (!json_is_array (disks))
    return jsonutil_invalid ("'disks' must be an array");
  for (size_t i = 0; i < json_array_size (disks); i++) {
    const json_t *o = json_array_get (disks, i);
    struct chain_vm_disk d = { 0 };
    const char *name;
    int64_t size;
    char where[32];

    snprintf (where, sizeof where, "disk %zu: ", i + 1);
    if (!json_is_object (o))
      return jsonutil_invalid ("%snot a JSON object", where);
    if (jsonutil_check_keys (o, disk_keys, where) == -1
        || jsonutil_get_string (o, "name", where, false, &name) == -1
        || jsonutil_get_int (o, "virtual-size", where, 0, INT64_MAX,
                             "a non-negative integer", &size)
             == -1)
      return -1;
    if (name_check ("disk", name) == -1)
      return -1;
    d.virtual_size = (uint64_t) size;
    if (!dup_or_null (name, &d.name)
        || chain_vm_disk_vector_append (&vm->disks, d) == -1) {
      free (d.name);
      set_error (ENOMEM, "vm disks");
      return -1;
    }
  }
  return 0;
}

static int
chain_end_from_json (struct chain_vm *vm, const json_t *end)
{
  const char *reason, *after;

  if (json_is_null (end))
    return 0;
  if (!json_is_object (end))
    return jsonutil_invalid ("'chain-end' must be an object or null");
  if (jsonutil_check_keys (end, end_keys, "chain-end: ") == -1
      || jsonutil_get_string (end, "reason", "chain-end: ", false, &reason)
           == -1
      || jsonutil_get_string (end, "after", "chain-end: ", true, &after) == -1)
    return -1;
  if (after != NULL && !chain_id_is_valid (after))
    return jsonutil_invalid ("chain-end: 'after' is not a backup id: '%s'",
                             after);
  snprintf (vm->chain_end_after, CHAIN_ID_MAX, "%s", after ? after : "");
  if (!dup_or_null (reason, &vm->chain_end_reason)) {
    set_error (ENOMEM, "strdup");
    return -1;
  }
  return 0;
}

/* "restored": {"from": ID, "after": ID or null}, or null. */
static int
restored_from_json (struct chain_vm *vm, const json_t *o)
{
  const char *from, *after;

  if (o == NULL || json_is_null (o))
    return 0;
  if (!json_is_object (o))
    return jsonutil_invalid ("'restored' must be an object or null");
  if (jsonutil_check_keys (o, restored_keys, "restored: ") == -1
      || jsonutil_get_string (o, "from", "restored: ", false, &from) == -1
      || jsonutil_get_string (o, "after", "restored: ", true, &after) == -1)
    return -1;
  if (!chain_id_is_valid (from)
      || (after != NULL && !chain_id_is_valid (after)))
    return jsonutil_invalid ("restored: not a backup id");
  strcpy (vm->restored_from, from);
  snprintf (vm->restored_after, CHAIN_ID_MAX, "%s", after ? after : "");
  return 0;
}

static int
fill_from_json (struct chain_vm *vm, const json_t *j, const char *expect)
{
  const char *name, *uuid, *definition, *updated;

  if (jsonutil_check_keys (
        j, json_object_get (j, "restored") ? vm_keys_restored : vm_keys, "")
        == -1
      || jsonutil_get_string (j, "name", "", false, &name) == -1
      || jsonutil_get_string (j, "uuid", "", true, &uuid) == -1
      || jsonutil_get_string (j, "definition", "", true, &definition) == -1
      || jsonutil_get_string (j, "updated", "", false, &updated) == -1)
    return -1;
  if (strcmp (name, expect) != 0)
    return jsonutil_invalid ("it describes vm '%s', not '%s'", name, expect);
  if (chain_time_parse (updated, &vm->updated) == -1) {
    error_prepend ("'updated'");
    return -1;
  }
  if (!dup_or_null (name, &vm->name) || !dup_or_null (uuid, &vm->uuid)
      || !dup_or_null (definition, &vm->definition)) {
    set_error (ENOMEM, "strdup");
    return -1;
  }
  if (disks_from_json (vm, json_object_get (j, "disks")) == -1
      || chain_end_from_json (vm, json_object_get (j, "chain-end")) == -1
      || restored_from_json (vm, json_object_get (j, "restored")) == -1)
    return -1;
  return 0;
}

struct chain_vm *
chain_vm_load (struct chain_repo *repo, const char *name)
{
  CLEANUP_FREE char *dir = chain_repo_vm_dir (repo, name);
  CLEANUP_FREE char *path = NULL;
  struct chain_vm *vm;
  json_t *j;

  if (dir == NULL)
    return NULL;
  path = str_printf ("%s/" CHAIN_VM_FILE, dir);
  if (path == NULL)
    return NULL;
  j = jsonutil_load (path, "vm file");
  if (j == NULL)
    return NULL;
  vm = calloc (1, sizeof *vm);
  if (vm == NULL) {
    set_error (errno, "calloc");
    json_decref (j);
    return NULL;
  }
  if (fill_from_json (vm, j, name) == -1) {
    error_prepend ("vm file '%s'", path);
    errno = get_errno () ? get_errno () : EINVAL; /* corrupt, not missing */
    chain_vm_free (vm);
    vm = NULL;
  }
  json_decref (j);
  return vm;
}

static json_t *
vm_to_json (const struct chain_vm *vm)
{
  char updated[CHAIN_TIME_MAX];
  json_t *disks = json_array ();
  json_t *end = NULL, *restored = NULL;

  if (disks == NULL)
    return NULL;
  for (size_t i = 0; i < vm->disks.len; i++)
    if (json_array_append_new (
          disks, json_pack ("{s:s, s:I}", "name", vm->disks.ptr[i].name,
                            "virtual-size",
                            (json_int_t) vm->disks.ptr[i].virtual_size))
        == -1) {
      json_decref (disks);
      return NULL;
    }
  if (vm->chain_end_reason != NULL) {
    end = json_pack ("{s:s, s:s?}", "reason", vm->chain_end_reason, "after",
                     vm->chain_end_after[0] ? vm->chain_end_after : NULL);
    if (end == NULL) {
      json_decref (disks);
      return NULL;
    }
  }
  else
    end = json_null ();
  if (vm->restored_from[0]) {
    restored = json_pack ("{s:s, s:s?}", "from", vm->restored_from, "after",
                          vm->restored_after[0] ? vm->restored_after : NULL);
    if (restored == NULL) {
      json_decref (disks);
      json_decref (end);
      return NULL;
    }
  }
  chain_time_format (vm->updated, updated);
  if (restored == NULL)
    return json_pack ("{s:s, s:s?, s:o, s:s?, s:s, s:o}", "name", vm->name,
                      "uuid", vm->uuid, "disks", disks, "definition",
                      vm->definition, "updated", updated, "chain-end", end);
  return json_pack ("{s:s, s:s?, s:o, s:s?, s:s, s:o, s:o}", "name", vm->name,
                    "uuid", vm->uuid, "disks", disks, "definition",
                    vm->definition, "updated", updated, "chain-end", end,
                    "restored", restored);
}

int
chain_vm_save (struct chain_lock *lock, const struct chain_vm *vm)
{
  json_t *j;
  int r;

  if (chain_lock_check_exclusive (lock, lock ? lock->repo : NULL,
                                  "writing vm.json")
      == -1)
    return -1;
  j = vm_to_json (vm);
  if (j == NULL) {
    set_error (ENOMEM, "vm file '%s/" CHAIN_VM_FILE "'", lock->dir);
    return -1;
  }
  r = jsonutil_commit (j, lock->dir, CHAIN_VM_FILE, "vm file");
  json_decref (j);
  return r;
}

/* The VM's vm.json, or a new description when it has none. */
struct chain_vm *
chain_vm_load_or_new (struct chain_repo *repo, const char *name)
{
  struct chain_vm *vm = chain_vm_load (repo, name);

  if (vm != NULL || errno != ENOENT)
    return vm;
  vm = calloc (1, sizeof *vm);
  if (vm == NULL || (vm->name = strdup (name)) == NULL) {
    free (vm);
    set_error (ENOMEM, "vm");
    return NULL;
  }
  return vm;
}

int
chain_vm_end_chain (struct chain_lock *lock, const char *reason)
{
  struct chain_vm *vm;
  char latest[CHAIN_ID_MAX];
  int r;

  if (chain_lock_check_exclusive (lock, lock ? lock->repo : NULL,
                                  "ending a chain")
      == -1)
    return -1;
  if (chain_vm_latest_id (lock->repo, lock->vm, false, latest) == -1)
    return -1;
  vm = chain_vm_load_or_new (lock->repo, lock->vm);
  if (vm == NULL)
    return -1;
  free (vm->chain_end_reason);
  vm->chain_end_reason = strdup (reason);
  if (vm->chain_end_reason == NULL) {
    set_error (ENOMEM, "strdup");
    chain_vm_free (vm);
    return -1;
  }
  strcpy (vm->chain_end_after, latest);
  vm->updated = chain_repo_now (lock->repo);
  r = chain_vm_save (lock, vm);
  chain_vm_free (vm);
  return r;
}

/* The latest backup that is not isolated, or NULL. */
static const struct chain_manifest *
latest_chained (const chain_manifest_vector *backups)
{
  const struct chain_manifest *last = NULL;

  for (size_t i = 0; i < backups->len; i++) {
    const struct chain_manifest *m = backups->ptr[i];

    if (m->kind != CHAIN_KIND_ISOLATED
        && (last == NULL || chain_id_compare (m->id, last->id) > 0))
      last = m;
  }
  return last;
}

const struct chain_manifest *
chain_tip (const chain_manifest_vector *backups, const struct chain_vm *vm)
{
  const struct chain_manifest *last = latest_chained (backups);

  if (vm == NULL || vm->restored_from[0] == '\0' || last == NULL)
    return last;
  /* A backup taken since the restore continues the restored branch. */
  if (vm->restored_after[0] != '\0'
      && chain_id_compare (last->id, vm->restored_after) > 0)
    return last;
  if (vm->restored_after[0] == '\0'
      && chain_id_compare (last->id, vm->restored_from) > 0)
    return last;
  for (size_t i = 0; i < backups->len; i++)
    if (strcmp (backups->ptr[i]->id, vm->restored_from) == 0)
      return backups->ptr[i];
  return last; /* the restored backup is gone */
}

bool
chain_tip_is_restore (const chain_manifest_vector *backups,
                      const struct chain_vm *vm)
{
  const struct chain_manifest *tip = chain_tip (backups, vm);

  return tip != NULL && vm != NULL && strcmp (tip->id, vm->restored_from) == 0;
}

int
chain_vm_record_restore (struct chain_lock *lock, const char *id)
{
  chain_manifest_vector backups = empty_vector;
  const struct chain_manifest *last;
  struct chain_vm *vm = NULL;
  int r = -1;

  if (chain_lock_check_exclusive (lock, lock ? lock->repo : NULL,
                                  "recording a restore")
      == -1)
    return -1;
  if (chain_backup_list (lock->repo, lock->vm, &backups, NULL) == -1)
    goto out;
  vm = chain_vm_load_or_new (lock->repo, lock->vm);
  if (vm == NULL)
    goto out;
  last = latest_chained (&backups);
  snprintf (vm->restored_from, CHAIN_ID_MAX, "%s", id);
  snprintf (vm->restored_after, CHAIN_ID_MAX, "%s", last ? last->id : id);
  /* The restored disks are the backup's point exactly: an ended chain
   * does not concern them. */
  free (vm->chain_end_reason);
  vm->chain_end_reason = NULL;
  vm->chain_end_after[0] = '\0';
  vm->updated = chain_repo_now (lock->repo);
  r = chain_vm_save (lock, vm);
out:
  chain_vm_free (vm);
  chain_manifest_vector_release (&backups);
  return r;
}

static const struct chain_manifest *
find_backup (const chain_manifest_vector *backups, const char *id)
{
  for (size_t i = 0; i < backups->len; i++)
    if (strcmp (backups->ptr[i]->id, id) == 0)
      return backups->ptr[i];
  return NULL;
}

enum chain_branch
chain_branch_of (const chain_manifest_vector *backups,
                 const struct chain_vm *vm, const char *id)
{
  const struct chain_manifest *m = chain_tip (backups, vm);

  if (m != NULL && strcmp (m->id, id) == 0)
    return CHAIN_BRANCH_TIP;
  for (size_t hops = 0; m != NULL && hops <= backups->len; hops++) {
    if (strcmp (m->id, id) == 0)
      return CHAIN_BRANCH_ON;
    if (m->kind != CHAIN_KIND_INCREMENTAL || m->parent[0] == '\0')
      break;
    m = find_backup (backups, m->parent);
  }
  return CHAIN_BRANCH_OFF;
}

const char *
chain_branch_name (enum chain_branch b)
{
  switch (b) {
  case CHAIN_BRANCH_OFF:
    return "-";
  case CHAIN_BRANCH_ON:
    return "on";
  case CHAIN_BRANCH_TIP:
    return "tip";
  }
  return "?";
}
