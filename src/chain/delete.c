/* SPDX-License-Identifier: Apache-2.0 */
/* delete.c: deleting backups without breaking a chain, and retention. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"
#include "internal.h"

/* ---- Planning (pure) ---- */

/* What the planner knows of one backup. */
struct node {
  const struct chain_manifest *m;
  int parent;  /* index of its parent among the backups, or -1 */
  bool asked;  /* named by the caller */
  bool live;   /* after the delete: complete, or the tip */
  int needed;  /* index of a live descendant, or -1 */
  size_t step; /* index of its step + 1, or 0 */
};

struct plan {
  struct node *nodes; /* sorted by id */
  size_t n;
  int tip;           /* index of the chain tip, or -1 */
  bool tip_restored; /* the tip is a restore point (chain_tip_is_restore) */
};

static int
compare_nodes (const void *a, const void *b)
{
  const struct node *na = a, *nb = b;

  return chain_id_compare (na->m->id, nb->m->id);
}

static int
find_node (const struct plan *p, const char *id)
{
  for (size_t i = 0; i < p->n; i++)
    if (strcmp (p->nodes[i].m->id, id) == 0)
      return (int) i;
  return -1;
}

/* The chain's tip (chain_tip), unless the chain was ended after it. */
static int
find_tip (const struct plan *p, const chain_manifest_vector *backups,
          const struct chain_vm *vm)
{
  const struct chain_manifest *m = chain_tip (backups, vm);

  if (m == NULL)
    return -1;
  if (vm != NULL && vm->chain_end_reason != NULL
      && vm->chain_end_after[0] != '\0'
      && chain_id_compare (m->id, vm->chain_end_after) <= 0)
    return -1;
  return find_node (p, m->id);
}

/* The backup before the tip whose bitmap was frozen when the tip was
 * taken: its parent, or for a full the latest non-isolated before it. */
static int
predecessor (const struct plan *p, int x)
{
  if (p->nodes[x].m->kind == CHAIN_KIND_INCREMENTAL)
    return p->nodes[x].parent;
  for (int i = x - 1; i >= 0; i--)
    if (p->nodes[i].m->kind != CHAIN_KIND_ISOLATED)
      return i;
  return -1;
}

static int
plan_init (struct plan *p, const chain_manifest_vector *backups,
           const struct chain_vm *vm)
{
  p->n = backups->len;
  p->nodes = calloc (p->n ? p->n : 1, sizeof *p->nodes);
  if (p->nodes == NULL) {
    set_error (ENOMEM, "delete plan");
    return -1;
  }
  for (size_t i = 0; i < p->n; i++)
    p->nodes[i].m = backups->ptr[i];
  if (p->n > 1)
    qsort (p->nodes, p->n, sizeof *p->nodes, compare_nodes);
  for (size_t i = 0; i < p->n; i++) {
    const struct chain_manifest *m = p->nodes[i].m;

    p->nodes[i].parent = m->kind == CHAIN_KIND_INCREMENTAL && m->parent[0]
                           ? find_node (p, m->parent)
                           : -1;
    p->nodes[i].needed = -1;
  }
  p->tip = find_tip (p, backups, vm);
  /* A restored tip: the VM's disks hold its bitmap only, so no backup
   * before it can take over. */
  p->tip_restored = chain_tip_is_restore (backups, vm);
  return 0;
}

static int
add_step (chain_delete_step_vector *steps, struct plan *p, int x,
          enum chain_delete_action action, enum chain_delete_reason reason,
          int other)
{
  struct chain_delete_step s
    = { .action = action, .reason = reason, .asked = p->nodes[x].asked };

  strcpy (s.id, p->nodes[x].m->id);
  if (other >= 0)
    strcpy (s.other, p->nodes[other].m->id);
  if (chain_delete_step_vector_append (steps, s) == -1) {
    set_error (ENOMEM, "delete plan");
    return -1;
  }
  p->nodes[x].step = steps->len;
  return 0;
}

/* The tip, when asked for: does its predecessor take over? */
static enum chain_delete_reason
tip_fate (const struct plan *p, int *pred)
{
  *pred = p->tip_restored ? -1 : predecessor (p, p->tip);
  if (*pred < 0)
    return CHAIN_DELETE_TIP_FIRST;
  if (p->nodes[*pred].m->state != CHAIN_STATE_COMPLETE)
    return CHAIN_DELETE_TIP_PRED_REMOVED;
  if (p->nodes[*pred].asked)
    return CHAIN_DELETE_TIP_PRED_GOES;
  return CHAIN_DELETE_TIP_HANDED_OVER;
}

/* Mark every ancestor of a live backup as needed (by its oldest live
 * descendant). */
static void
mark_needed (struct plan *p)
{
  for (size_t j = 0; j < p->n; j++) {
    if (!p->nodes[j].live)
      continue;
    for (int a = p->nodes[j].parent, hops = 0; a >= 0 && hops <= (int) p->n;
         a = p->nodes[a].parent, hops++)
      if (p->nodes[a].needed < 0)
        p->nodes[a].needed = (int) j;
  }
}

/* The step of one backup that is asked for or removed already. */
static int
plan_one (struct plan *p, int x, enum chain_delete_reason tip_reason, int pred,
          chain_delete_step_vector *steps)
{
  struct node *nd = &p->nodes[x];
  enum chain_delete_action keep = nd->m->state == CHAIN_STATE_COMPLETE
                                    ? CHAIN_DELETE_MARK
                                    : CHAIN_DELETE_KEEP;

  if (x == p->tip && nd->live)
    return nd->asked ? add_step (steps, p, x, keep, tip_reason, pred) : 0;
  if (x == p->tip && nd->asked)
    return add_step (steps, p, x, CHAIN_DELETE_FILES, tip_reason, pred);
  if (nd->needed >= 0)
    return nd->asked
             ? add_step (steps, p, x, keep, CHAIN_DELETE_NEEDED, nd->needed)
             : 0;
  return add_step (
    steps, p, x, CHAIN_DELETE_FILES,
    nd->asked ? CHAIN_DELETE_NOTHING_NEEDS : CHAIN_DELETE_UNNEEDED, -1);
}

static int
plan_steps (struct plan *p, const char *const *ids, size_t n,
            chain_delete_step_vector *steps)
{
  enum chain_delete_reason tip_reason = CHAIN_DELETE_TIP_FIRST;
  int pred = -1;

  if (p->tip >= 0 && p->nodes[p->tip].asked)
    tip_reason = tip_fate (p, &pred);
  for (size_t i = 0; i < p->n; i++) {
    struct node *nd = &p->nodes[i];

    nd->live = nd->m->state == CHAIN_STATE_COMPLETE && !nd->asked;
    if ((int) i == p->tip)
      nd->live = !nd->asked || tip_reason != CHAIN_DELETE_TIP_HANDED_OVER;
  }
  mark_needed (p);
  /* The asked ones in the caller's order, then what goes along. */
  for (size_t k = 0; k < n; k++) {
    int x = find_node (p, ids[k]);

    if (p->nodes[x].step == 0 && plan_one (p, x, tip_reason, pred, steps) == -1)
      return -1;
  }
  for (size_t i = p->n; i > 0; i--) {
    struct node *nd = &p->nodes[i - 1];

    if (nd->step == 0 && !nd->asked && nd->m->state == CHAIN_STATE_REMOVED
        && plan_one (p, (int) i - 1, tip_reason, pred, steps) == -1)
      return -1;
  }
  return 0;
}

int
chain_delete_plan (const chain_manifest_vector *backups,
                   const struct chain_vm *vm, const char *const *ids, size_t n,
                   chain_delete_step_vector *steps)
{
  struct plan p = { NULL, 0, -1, false };
  size_t before = steps->len;
  int r = -1;

  if (plan_init (&p, backups, vm) == -1)
    return -1;
  for (size_t k = 0; k < n; k++) {
    int x = find_node (&p, ids[k]);

    if (x < 0) {
      set_error (-ENOENT, "no backup '%s'", ids[k]);
      goto out;
    }
    p.nodes[x].asked = true;
  }
  r = plan_steps (&p, ids, n, steps);
out:
  if (r == -1)
    steps->len = before;
  free (p.nodes);
  return r;
}

char *
chain_delete_step_describe (const struct chain_delete_step *s)
{
  const char *kept = s->action == CHAIN_DELETE_MARK
                       ? "marked removed, its files kept"
                       : "already removed, its files kept";
  char *text = NULL;
  int n = -1;

  switch (s->reason) {
  case CHAIN_DELETE_NOTHING_NEEDS:
    n = asprintf (&text, "backup %s: deleted", s->id);
    break;
  case CHAIN_DELETE_TIP_HANDED_OVER:
    n = asprintf (&text,
                  "backup %s: deleted; it was the chain's latest backup: "
                  "the next backup continues the chain from %s when the "
                  "chain rules and the VM's bitmaps allow it",
                  s->id, s->other);
    break;
  case CHAIN_DELETE_UNNEEDED:
    n = asprintf (&text,
                  "backup %s: deleted (it was removed and no backup needs "
                  "it any more)",
                  s->id);
    break;
  case CHAIN_DELETE_NEEDED:
    n = asprintf (&text, "backup %s: %s: backup %s depends on it", s->id, kept,
                  s->other);
    break;
  case CHAIN_DELETE_TIP_FIRST:
    n = asprintf (&text,
                  "backup %s: %s: it is the chain's latest backup and no "
                  "backup before it can take its place, so the next "
                  "backup is an incremental of it",
                  s->id, kept);
    break;
  case CHAIN_DELETE_TIP_PRED_REMOVED:
  case CHAIN_DELETE_TIP_PRED_GOES:
    n = asprintf (&text,
                  "backup %s: %s: it is the chain's latest backup and the "
                  "backup before it, %s, %s, so the next backup is an "
                  "incremental of it",
                  s->id, kept, s->other,
                  s->reason == CHAIN_DELETE_TIP_PRED_GOES ? "is deleted too"
                                                          : "was deleted");
    break;
  }
  return n == -1 ? NULL : text;
}

/* ---- Doing it ---- */

static int
mark_removed (struct chain_lock *lock, const char *id)
{
  CLEANUP_FREE char *path
    = str_printf ("%s/%s/" CHAIN_MANIFEST_FILE, lock->dir, id);
  struct chain_manifest *m;
  int r;

  if (path == NULL)
    return -1;
  m = chain_manifest_load_backup (lock->repo, lock->vm, id);
  if (m == NULL)
    return -1;
  m->state = CHAIN_STATE_REMOVED;
  r = chain_manifest_commit (m, path);
  chain_manifest_free (m);
  return r;
}

/* The backup stops existing with one rename (a crash after it leaves a
 * temporary directory that recovery removes), then its files go. */
static int
remove_backup (struct chain_lock *lock, const char *id)
{
  CLEANUP_FREE char *dir = str_printf ("%s/%s", lock->dir, id);
  CLEANUP_FREE char *gone
    = str_printf ("%s/" CHAIN_TEMP_PREFIX "deleted-%s", lock->dir, id);

  if (dir == NULL || gone == NULL || fs_remove_tree (gone) == -1)
    return -1;
  if (rename (dir, gone) == -1) {
    set_error (errno, "cannot rename '%s' to '%s'", dir, gone);
    return -1;
  }
  if (fs_fsync_path (lock->dir) == -1)
    return -1;
  return fs_remove_tree (gone);
}

static int
compare_steps_newest_first (const void *a, const void *b)
{
  const struct chain_delete_step *const *sa = a, *const *sb = b;

  return chain_id_compare ((*sb)->id, (*sa)->id);
}

/* Ids must never come back: when the VM's latest backup was deleted in
 * the second its id names, hold the lock until that second is over, so
 * that the next backup's id sorts after it (and its bitmap name is new).
 * A clock that does not move (a test's) is waited for at most 2 s. */
static void
wait_past (struct chain_lock *lock, const char *deleted)
{
  char latest[CHAIN_ID_MAX];
  int64_t t;
  unsigned seq;

  if (chain_vm_latest_id (lock->repo, lock->vm, true, latest) == -1
      || chain_id_split (deleted, &t, &seq) == -1) {
    error_clear ();
    return;
  }
  if (latest[0] && chain_id_compare (latest, deleted) > 0)
    return;
  for (int i = 0; i < 40 && chain_repo_now (lock->repo) <= t; i++) {
    struct timespec ts = { 0, 50 * 1000000L };
    nanosleep (&ts, NULL);
  }
}

/* Marks first; then files, newest first (children before parents). */
static int
apply_steps (struct chain_lock *lock, const struct chain_delete_step *steps,
             size_t n)
{
  CLEANUP_FREE const struct chain_delete_step **order = NULL;
  size_t nfiles = 0;

  for (size_t i = 0; i < n; i++) {
    if (steps[i].action != CHAIN_DELETE_MARK)
      continue;
    if (mark_removed (lock, steps[i].id) == -1) {
      error_prepend ("backup '%s'", steps[i].id);
      return -1;
    }
    debug (DEBUG_CHAIN, "vm '%s': backup %s marked removed", lock->vm,
           steps[i].id);
  }
  order = calloc (n ? n : 1, sizeof *order);
  if (order == NULL) {
    set_error (ENOMEM, "delete");
    return -1;
  }
  for (size_t i = 0; i < n; i++)
    if (steps[i].action == CHAIN_DELETE_FILES)
      order[nfiles++] = &steps[i];
  if (nfiles > 1)
    qsort (order, nfiles, sizeof *order, compare_steps_newest_first);
  for (size_t i = 0; i < nfiles; i++) {
    if (remove_backup (lock, order[i]->id) == -1) {
      error_prepend ("backup '%s'", order[i]->id);
      return -1;
    }
    debug (DEBUG_CHAIN, "vm '%s': backup %s deleted", lock->vm, order[i]->id);
  }
  if (nfiles > 0)
    wait_past (lock, order[0]->id);
  return 0;
}

/* Plan on what the repository holds and (unless dry_run) do it; the
 * VM's exclusive lock is held. */
static int
delete_locked (struct chain_lock *lock, const char *const *ids, size_t n,
               bool dry_run, chain_delete_step_vector *steps)
{
  chain_manifest_vector backups = empty_vector;
  struct chain_vm *vm = NULL;
  size_t before = steps->len;
  int r = -1;

  /* A backup that a quick-restored disk reads (or one it depends on)
   * stays as it is. */
  for (size_t k = 0; k < n; k++)
    if (chain_pin_refuse (lock->repo, lock->vm, ids[k]) == -1)
      return -1;
  if (chain_backup_list (lock->repo, lock->vm, &backups, NULL) == -1)
    goto out;
  vm = chain_vm_load (lock->repo, lock->vm);
  if (vm == NULL && errno != ENOENT)
    goto out;
  if (chain_delete_plan (&backups, vm, ids, n, steps) == -1)
    goto out;
  /* No new step: nothing to do (and steps->ptr may be NULL). */
  r = dry_run || steps->len == before
        ? 0
        : apply_steps (lock, steps->ptr + before, steps->len - before);
out:
  chain_vm_free (vm);
  chain_manifest_vector_release (&backups);
  return r;
}

int
chain_delete (struct chain_repo *repo, const char *vm, const char *const *ids,
              size_t n, bool dry_run, chain_delete_step_vector *steps)
{
  struct chain_lock *lock;
  int r;

  if (name_check ("vm", vm) == -1)
    return -1;
  for (size_t i = 0; i < n; i++)
    if (!chain_id_is_valid (ids[i])) {
      set_error (-EINVAL,
                 "invalid backup id '%s': ids look like 20261123T203015Z",
                 ids[i]);
      return -1;
    }
  lock = chain_lock_new (repo, vm, CHAIN_LOCK_EXCLUSIVE, "delete", 0);
  if (lock == NULL)
    return -1;
  r = delete_locked (lock, ids, n, dry_run, steps);
  chain_lock_free (lock);
  if (r == -1)
    error_prepend ("delete in vm '%s'", vm);
  return r;
}

/* Removed backups that nothing needs any more (after a merge). */
int
chain_delete_unneeded (struct chain_lock *lock, chain_delete_step_vector *steps)
{
  return delete_locked (lock, NULL, 0, false, steps);
}

/* ---- Retention ---- */

#define DAY_SECONDS INT64_C (86400)

static int64_t
day_of (int64_t t)
{
  return t >= 0 ? t / DAY_SECONDS : -((-t + DAY_SECONDS - 1) / DAY_SECONDS);
}

/* Weeks from Monday to Sunday: 1970-01-01 was a Thursday. */
static int64_t
week_of (int64_t t)
{
  int64_t d = day_of (t) + 3;

  return d >= 0 ? d / 7 : -((-d + 6) / 7);
}

/* Keep the latest backup of each of the count latest periods (those
 * with backups): list is newest first. */
static void
keep_periods (const struct chain_manifest *const *list, size_t n,
              int64_t (*period) (int64_t), int64_t count, bool *keep)
{
  int64_t last = 0;
  bool any = false;

  for (size_t i = 0; i < n && count > 0; i++) {
    int64_t p = period (list[i]->created);

    if (any && p == last)
      continue;
    keep[i] = true;
    last = p;
    any = true;
    count--;
  }
}

static int
compare_newest_first (const void *a, const void *b)
{
  const struct chain_manifest *const *ma = a, *const *mb = b;

  return chain_id_compare ((*mb)->id, (*ma)->id);
}

int
chain_prune_select (const chain_manifest_vector *backups,
                    const struct chain_prune_policy *p,
                    chain_string_vector *doomed)
{
  CLEANUP_FREE const struct chain_manifest **list = NULL;
  CLEANUP_FREE bool *keep = NULL;
  size_t n = 0, before = doomed->len;

  list = calloc (backups->len + 1, sizeof *list);
  keep = calloc (backups->len + 1, sizeof *keep);
  if (list == NULL || keep == NULL) {
    set_error (ENOMEM, "prune");
    return -1;
  }
  for (size_t i = 0; i < backups->len; i++)
    if (backups->ptr[i]->state == CHAIN_STATE_COMPLETE)
      list[n++] = backups->ptr[i];
  if (n > 1)
    qsort (list, n, sizeof *list, compare_newest_first);
  for (size_t i = 0; i < n && (int64_t) i < p->keep_last; i++)
    keep[i] = true;
  keep_periods (list, n, day_of, p->keep_daily, keep);
  keep_periods (list, n, week_of, p->keep_weekly, keep);
  for (size_t i = n; i > 0; i--) {
    char *id;

    if (keep[i - 1])
      continue;
    id = strdup (list[i - 1]->id);
    if (id == NULL || chain_string_vector_append (doomed, id) == -1) {
      free (id);
      while (doomed->len > before)
        free (doomed->ptr[--doomed->len]);
      set_error (ENOMEM, "prune");
      return -1;
    }
  }
  return 0;
}

/* The exclusive lock would make the VM's directory: refuse a VM that
 * has none. */
static int
vm_exists (struct chain_repo *repo, const char *vm)
{
  CLEANUP_FREE char *dir = chain_repo_vm_dir (repo, vm);
  struct stat st;

  if (dir == NULL)
    return -1;
  if (stat (dir, &st) == 0 && S_ISDIR (st.st_mode))
    return 0;
  set_error (-ENOENT, "vm '%s' has no backups in repository '%s'", vm,
             chain_repo_path (repo));
  return -1;
}

int
chain_prune (struct chain_repo *repo, const char *vm,
             const struct chain_prune_policy *p, bool dry_run,
             chain_delete_step_vector *steps)
{
  chain_manifest_vector backups = empty_vector;
  chain_string_vector doomed = empty_vector;
  struct chain_lock *lock;
  int r = -1;

  if (name_check ("vm", vm) == -1 || vm_exists (repo, vm) == -1)
    return -1;
  lock = chain_lock_new (repo, vm, CHAIN_LOCK_EXCLUSIVE, "prune", 0);
  if (lock == NULL)
    return -1;
  if (chain_backup_list (repo, vm, &backups, NULL) == -1
      || chain_prune_select (&backups, p, &doomed) == -1)
    goto out;
  r = delete_locked (lock, (const char *const *) doomed.ptr, doomed.len,
                     dry_run, steps);
out:
  chain_string_vector_release (&doomed);
  chain_manifest_vector_release (&backups);
  chain_lock_free (lock);
  if (r == -1)
    error_prepend ("prune of vm '%s'", vm);
  return r;
}
