/* SPDX-License-Identifier: Apache-2.0 */
/* test-chain-delete.c: delete planning, retention, and deleting in a repository. */
#include <config.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "chain/internal.h"
#include "common/cleanup.h"
#include "common/command.h"
#include "common/error.h"
#include "repo-fixture.h"

#define T0 INT64_C (1795465815) /* 2026-11-23T20:30:15Z, a Monday */

#define F CHAIN_KIND_FULL
#define I CHAIN_KIND_INCREMENTAL
#define ISO CHAIN_KIND_ISOLATED

#define FILES CHAIN_DELETE_FILES
#define MARK CHAIN_DELETE_MARK
#define KEEP CHAIN_DELETE_KEEP

/* A VM's history in memory: backups made by chain_decide with a chain
 * size, one a minute (or at the times the test gives). */
struct history {
  chain_manifest_vector backups;
  struct chain_vm vm;
  int64_t chain_size;
  int64_t next_time;
};

static void
history_init (struct history *h, int64_t chain_size)
{
  memset (h, 0, sizeof *h);
  h->vm.name = (char *) "web01";
  h->chain_size = chain_size;
}

static void
history_release (struct history *h)
{
  chain_manifest_vector_release (&h->backups);
}

static struct chain_manifest *
find (struct history *h, const char *id)
{
  for (size_t i = 0; i < h->backups.len; i++)
    if (strcmp (h->backups.ptr[i]->id, id) == 0)
      return h->backups.ptr[i];
  return NULL;
}

/* A backup as the backup flow would decide and commit it. */
static const char *
backup (struct history *h, enum chain_mode mode, enum chain_kind want)
{
  struct chain_decision d;
  struct chain_manifest *m = chain_manifest_new ();

  assert_non_null (m);
  assert_int_equal (chain_decide (&h->backups, h->chain_size, mode, &h->vm, &d),
                    0);
  if (d.kind != want)
    fail_msg ("backup %zu: %s, wanted %s (%s)", h->backups.len + 1,
              chain_kind_name (d.kind), chain_kind_name (want), d.reason);
  chain_id_make (T0 + h->next_time, 1, m->id);
  h->next_time += 60;
  m->vm = strdup ("web01");
  m->kind = d.kind;
  m->position = d.position;
  m->created = m->finished = T0 + h->next_time;
  strcpy (m->parent, d.parent);
  strcpy (m->chain, d.kind == I ? d.chain : m->id);
  m->reason = strdup (d.reason);
  chain_decision_release (&d);
  assert_int_equal (chain_manifest_vector_append (&h->backups, m), 0);
  return m->id;
}

/* Plan deleting the ids (NULL-terminated), check the steps against want
 * ("ID:ACTION:REASON:OTHER" each, with ACTION f, m or k and REASON the
 * enum's number), then apply them to the history. */
static void delete (struct history *h, const char *const *ids,
                    const char *const *want)
{
  chain_delete_step_vector steps = empty_vector;
  size_t n = 0, nwant = 0;

  while (ids[n] != NULL)
    n++;
  while (want[nwant] != NULL)
    nwant++;
  if (chain_delete_plan (&h->backups, &h->vm, ids, n, &steps) == -1)
    fail_msg ("plan: %s", get_error ());
  for (size_t i = 0; i < steps.len; i++) {
    const struct chain_delete_step *s = &steps.ptr[i];
    char got[128];

    snprintf (got, sizeof got, "%s:%c:%d:%s", s->id,
              s->action == FILES  ? 'f'
              : s->action == MARK ? 'm'
                                  : 'k',
              (int) s->reason, s->other);
    if (i >= nwant || strcmp (got, want[i]) != 0)
      fail_msg ("step %zu: got %s, wanted %s", i, got,
                i < nwant ? want[i] : "nothing");
  }
  assert_int_equal (steps.len, nwant);
  for (size_t i = 0; i < steps.len; i++) {
    struct chain_manifest *m = find (h, steps.ptr[i].id);

    assert_non_null (m);
    if (steps.ptr[i].action == MARK)
      m->state = CHAIN_STATE_REMOVED;
    else if (steps.ptr[i].action == FILES) {
      for (size_t j = 0; j < h->backups.len; j++)
        if (h->backups.ptr[j] == m) {
          chain_manifest_free (m);
          chain_manifest_vector_remove (&h->backups, j);
          break;
        }
    }
  }
  chain_delete_step_vector_reset (&steps);
}

/* "ID:a:R:OTHER" for want lists. */
static char *
step (const char *id, char action, enum chain_delete_reason reason,
      const char *other)
{
  char *s;

  assert_true (
    asprintf (&s, "%s:%c:%d:%s", id, action, (int) reason, other ? other : "")
    > 0);
  return s;
}

#define W(...) ((const char *const[]) { __VA_ARGS__, NULL })

static char ids[8][CHAIN_ID_MAX];

static const char *
keep_id (int i, const char *id)
{
  strcpy (ids[i], id);
  return ids[i];
}

/* The seed system's scenario with chain size 3. */
static void
test_seed_scenario (void **state)
{
  struct history h;
  const char *b[8];
  char *s1, *s2, *s3;
  struct chain_decision d;

  history_init (&h, 3);
  b[1] = keep_id (1, backup (&h, CHAIN_MODE_AUTO, F));
  b[2] = keep_id (2, backup (&h, CHAIN_MODE_AUTO, I));
  b[3] = keep_id (3, backup (&h, CHAIN_MODE_AUTO, I));
  b[4] = keep_id (4, backup (&h, CHAIN_MODE_AUTO, F));
  b[5] = keep_id (5, backup (&h, CHAIN_MODE_AUTO, I));
  b[6] = keep_id (6, backup (&h, CHAIN_MODE_AUTO, I));

  /* b6, the tip: its parent b5 takes over. */
  s1 = step (b[6], 'f', CHAIN_DELETE_TIP_HANDED_OVER, b[5]);
  delete (&h, W (b[6]), W (s1));
  free (s1);

  /* b4 and b5: b5 is the tip now, and its parent goes in the same call:
   * both stay, removed. */
  s1 = step (b[4], 'm', CHAIN_DELETE_NEEDED, b[5]);
  s2 = step (b[5], 'm', CHAIN_DELETE_TIP_PRED_GOES, b[4]);
  delete (&h, W (b[4], b[5]), W (s1, s2));
  free (s1);
  free (s2);

  /* b1, b2, b3 in one call: nothing live needs them. */
  s1 = step (b[1], 'f', CHAIN_DELETE_NOTHING_NEEDS, NULL);
  s2 = step (b[2], 'f', CHAIN_DELETE_NOTHING_NEEDS, NULL);
  s3 = step (b[3], 'f', CHAIN_DELETE_NOTHING_NEEDS, NULL);
  delete (&h, W (b[1], b[2], b[3]), W (s1, s2, s3));
  free (s1);
  free (s2);
  free (s3);
  assert_int_equal (h.backups.len, 2);

  /* A new backup: an incremental of the removed tip b5. */
  b[7] = keep_id (7, backup (&h, CHAIN_MODE_AUTO, I));
  assert_string_equal (find (&h, b[7])->parent, b[5]);
  assert_int_equal (find (&h, b[7])->position, 3);

  /* End the chain: the next backup would be full. */
  h.vm.chain_end_reason = (char *) "knib chain end";
  strcpy (h.vm.chain_end_after, b[7]);
  assert_int_equal (chain_decide (&h.backups, 3, CHAIN_MODE_AUTO, &h.vm, &d),
                    0);
  assert_int_equal (d.kind, F);
  chain_decision_release (&d);

  /* Delete it: it goes, and with it the removed ancestry. */
  s1 = step (b[7], 'f', CHAIN_DELETE_NOTHING_NEEDS, NULL);
  s2 = step (b[5], 'f', CHAIN_DELETE_UNNEEDED, NULL);
  s3 = step (b[4], 'f', CHAIN_DELETE_UNNEEDED, NULL);
  delete (&h, W (b[7]), W (s1, s2, s3));
  free (s1);
  free (s2);
  free (s3);
  assert_int_equal (h.backups.len, 0);
  history_release (&h);
}

/* A middle incremental is marked removed; deleting the child that needed
 * it, the chain's tip, keeps the tip (its predecessor is gone) until the
 * chain is ended. */
static void
test_middle_then_tip (void **state)
{
  struct history h;
  const char *full, *mid, *tip;
  char *s1, *s2, *s3;

  history_init (&h, 0);
  full = keep_id (0, backup (&h, CHAIN_MODE_AUTO, F));
  mid = keep_id (1, backup (&h, CHAIN_MODE_AUTO, I));
  tip = keep_id (2, backup (&h, CHAIN_MODE_AUTO, I));
  s1 = step (mid, 'm', CHAIN_DELETE_NEEDED, tip);
  delete (&h, W (mid), W (s1));
  free (s1);
  /* Asked again: unchanged. */
  s1 = step (mid, 'k', CHAIN_DELETE_NEEDED, tip);
  delete (&h, W (mid), W (s1));
  free (s1);
  s1 = step (tip, 'm', CHAIN_DELETE_TIP_PRED_REMOVED, mid);
  delete (&h, W (tip), W (s1));
  free (s1);
  /* The full still has live descendants: the removed tip. */
  s1 = step (full, 'm', CHAIN_DELETE_NEEDED, tip);
  delete (&h, W (full), W (s1));
  free (s1);
  /* Once the chain is ended nothing is live: everything goes. */
  h.vm.chain_end_reason = (char *) "test";
  strcpy (h.vm.chain_end_after, tip);
  s1 = step (tip, 'f', CHAIN_DELETE_UNNEEDED, NULL);
  s2 = step (mid, 'f', CHAIN_DELETE_UNNEEDED, NULL);
  s3 = step (full, 'f', CHAIN_DELETE_UNNEEDED, NULL);
  delete (&h, (const char *const[]) { NULL }, W (s1, s2, s3));
  free (s1);
  free (s2);
  free (s3);
  assert_int_equal (h.backups.len, 0);
  history_release (&h);
}

/* The only backup of a VM, the tip: kept (removed) so that the next
 * backup can still be an incremental of it. */
static void
test_first_backup (void **state)
{
  struct history h;
  const char *full, *inc;
  char *s1;

  history_init (&h, 8);
  full = keep_id (0, backup (&h, CHAIN_MODE_AUTO, F));
  s1 = step (full, 'm', CHAIN_DELETE_TIP_FIRST, NULL);
  delete (&h, W (full), W (s1));
  free (s1);
  inc = backup (&h, CHAIN_MODE_AUTO, I);
  assert_string_equal (find (&h, inc)->parent, full);
  history_release (&h);
}

/* After a restore in place of b1 (b1 -> b2 -> b3, then b1 -> b4): the
 * restored tip is kept when deleted (the VM's disks hold its bitmap
 * only), the old branch goes when asked, and what b4 needs stays. */
static void
test_restored_tree (void **state)
{
  struct history h;
  const char *b1, *b2, *b3, *b4;
  char *s1, *s2, *s3;

  history_init (&h, 8);
  b1 = keep_id (0, backup (&h, CHAIN_MODE_AUTO, F));
  b2 = keep_id (1, backup (&h, CHAIN_MODE_AUTO, I));
  b3 = keep_id (2, backup (&h, CHAIN_MODE_AUTO, I));
  strcpy (h.vm.restored_from, b1);
  strcpy (h.vm.restored_after, b3);
  /* The restored tip has no backup before it to take over. */
  s1 = step (b1, 'm', CHAIN_DELETE_TIP_FIRST, NULL);
  delete (&h, W (b1), W (s1));
  free (s1);
  b4 = keep_id (3, backup (&h, CHAIN_MODE_AUTO, I));
  assert_string_equal (find (&h, b4)->parent, b1);
  assert_int_equal (find (&h, b4)->position, 2);
  /* The old branch: b3, a leaf, goes; b2 then too. */
  s1 = step (b3, 'f', CHAIN_DELETE_NOTHING_NEEDS, NULL);
  s2 = step (b2, 'f', CHAIN_DELETE_NOTHING_NEEDS, NULL);
  delete (&h, W (b3, b2), W (s1, s2));
  free (s1);
  free (s2);
  /* The tip b4: its predecessor b1 was deleted, so it is kept. */
  s3 = step (b4, 'm', CHAIN_DELETE_TIP_PRED_REMOVED, b1);
  delete (&h, W (b4), W (s3));
  free (s3);
  assert_non_null (find (&h, b1));
  history_release (&h);
}

/* A full tip hands over to the latest backup of the chain before it;
 * isolated backups are never tips nor predecessors and just go. */
static void
test_full_tip_and_isolated (void **state)
{
  struct history h;
  const char *a, *b, *iso;
  char *s1, *s2;
  struct chain_decision d;

  history_init (&h, 2);
  keep_id (0, backup (&h, CHAIN_MODE_AUTO, F));
  a = keep_id (1, backup (&h, CHAIN_MODE_AUTO, I));
  iso = keep_id (2, backup (&h, CHAIN_MODE_ISOLATED, ISO));
  b = keep_id (3, backup (&h, CHAIN_MODE_AUTO, F));
  keep_id (4, backup (&h, CHAIN_MODE_ISOLATED, ISO));
  s1 = step (b, 'f', CHAIN_DELETE_TIP_HANDED_OVER, a);
  s2 = step (iso, 'f', CHAIN_DELETE_NOTHING_NEEDS, NULL);
  delete (&h, W (b, iso, b), W (s1, s2));
  free (s1);
  free (s2);
  /* The chain goes on from a (full: a's chain is full at size 2). */
  assert_int_equal (chain_decide (&h.backups, 2, CHAIN_MODE_AUTO, &h.vm, &d),
                    0);
  assert_int_equal (d.kind, F);
  chain_decision_release (&d);
  h.chain_size = 3;
  assert_string_equal (find (&h, backup (&h, CHAIN_MODE_AUTO, I))->parent, a);
  history_release (&h);
}

/* A tip kept as removed that a full backup replaced is no longer needed:
 * the next delete takes it along. */
static void
test_superseded_removed_tip (void **state)
{
  struct history h;
  const char *full, *tip, *newfull;
  char *s1, *s2;

  history_init (&h, 8);
  full = keep_id (0, backup (&h, CHAIN_MODE_AUTO, F));
  tip = keep_id (1, backup (&h, CHAIN_MODE_AUTO, I));
  s1 = step (full, 'm', CHAIN_DELETE_NEEDED, tip);
  s2 = step (tip, 'm', CHAIN_DELETE_TIP_PRED_GOES, full);
  delete (&h, W (full, tip), W (s1, s2));
  free (s1);
  free (s2);
  newfull = keep_id (2, backup (&h, CHAIN_MODE_FULL, F));
  s1 = step (tip, 'f', CHAIN_DELETE_UNNEEDED, NULL);
  s2 = step (full, 'f', CHAIN_DELETE_UNNEEDED, NULL);
  delete (&h, (const char *const[]) { NULL }, W (s1, s2));
  free (s1);
  free (s2);
  assert_int_equal (h.backups.len, 1);
  assert_string_equal (h.backups.ptr[0]->id, newfull);
  history_release (&h);
}

static void
test_unknown_id (void **state)
{
  struct history h;
  chain_delete_step_vector steps = empty_vector;
  const char *id;

  history_init (&h, 8);
  id = keep_id (0, backup (&h, CHAIN_MODE_AUTO, F));
  assert_int_equal (chain_delete_plan (&h.backups, &h.vm,
                                       W (id, "20261124T000000Z"), 2, &steps),
                    -1);
  assert_int_equal (errno, ENOENT);
  assert_string_equal (get_error (), "no backup '20261124T000000Z'");
  assert_int_equal (steps.len, 0);
  history_release (&h);
}

static void
test_describe (void **state)
{
  struct chain_delete_step s = { .id = "20261123T203015Z",
                                 .other = "20261123T203115Z",
                                 .action = MARK,
                                 .reason = CHAIN_DELETE_NEEDED };
  char *t = chain_delete_step_describe (&s);

  assert_string_equal (t, "backup 20261123T203015Z: marked removed, its "
                          "files kept: backup 20261123T203115Z depends on it");
  free (t);
  s.action = FILES;
  s.reason = CHAIN_DELETE_TIP_HANDED_OVER;
  t = chain_delete_step_describe (&s);
  assert_string_equal (t, "backup 20261123T203015Z: deleted; it was the "
                          "chain's latest backup: the next backup continues "
                          "the chain from 20261123T203115Z when the chain "
                          "rules and the VM's bitmaps allow it");
  free (t);
}

/* ---- Retention ---- */

static void
select_ids (struct history *h, struct chain_prune_policy p, const char *want)
{
  chain_string_vector doomed = empty_vector;
  char got[512] = "";

  assert_int_equal (chain_prune_select (&h->backups, &p, &doomed), 0);
  for (size_t i = 0; i < doomed.len; i++) {
    struct chain_manifest *m = find (h, doomed.ptr[i]);
    size_t k;

    for (k = 0; k < h->backups.len && h->backups.ptr[k] != m; k++)
      ;
    snprintf (got + strlen (got), sizeof got - strlen (got), "%s%zu",
              i ? " " : "", k + 1);
  }
  assert_string_equal (got, want);
  chain_string_vector_release (&doomed);
}

static void
test_prune_select (void **state)
{
  struct history h;
  /* Days (from T0, a Monday) of ten backups, two on some days. */
  const int64_t day[] = { 0, 0, 1, 2, 2, 3, 7, 8, 8, 9 };

  history_init (&h, 0);
  for (size_t i = 0; i < 10; i++) {
    h.next_time = day[i] * 86400 + (int64_t) i * 60;
    backup (&h, CHAIN_MODE_AUTO, i == 0 ? F : I);
    h.backups.ptr[i]->created = T0 + h.next_time;
  }
  select_ids (&h, (struct chain_prune_policy) { 3, 0, 0 }, "1 2 3 4 5 6 7");
  select_ids (&h, (struct chain_prune_policy) { 10, 0, 0 }, "");
  /* The latest of the last 4 days with backups: 10, 9, 7, 6. */
  select_ids (&h, (struct chain_prune_policy) { 1, 4, 0 }, "1 2 3 4 5 8");
  /* Weeks: days 7..9 and days 0..3: 10 and 6. */
  select_ids (&h, (struct chain_prune_policy) { 0, 0, 2 }, "1 2 3 4 5 7 8 9");
  select_ids (&h, (struct chain_prune_policy) { 2, 0, 5 }, "1 2 3 4 5 7 8");
  /* Removed backups are not candidates. */
  h.backups.ptr[0]->state = CHAIN_STATE_REMOVED;
  select_ids (&h, (struct chain_prune_policy) { 8, 0, 0 }, "2");
  history_release (&h);
}

/* ---- In a repository ---- */

#define SIZE (1024 * 1024)

struct fixture {
  char *dir;
  struct chain_repo *repo;
  char *id[4];
};

static int
setup (void **state)
{
  struct fixture *f = calloc (1, sizeof *f);
  const char *tmp = getenv ("TMPDIR");
  const char *vda[] = { "vda", NULL };
  const struct fixture_write w[] = { { "vda", 0x11, 0, 65536 } };
  CLEANUP_FREE char *root = NULL;

  assert_non_null (f);
  assert_true (asprintf (&f->dir, "%s/knib-delete-XXXXXX", tmp ? tmp : "/tmp")
               > 0);
  assert_non_null (mkdtemp (f->dir));
  assert_true (asprintf (&root, "%s/repo", f->dir) > 0);
  f->repo = chain_repo_open (root, true);
  assert_non_null (f->repo);
  for (int i = 0; i < 4; i++) {
    f->id[i]
      = fixture_backup (f->repo, "web01", CHAIN_MODE_AUTO, vda, SIZE, w, 1);
    if (f->id[i] == NULL)
      fail_msg ("backup %d: %s", i + 1, get_error ());
  }
  *state = f;
  return 0;
}

static int
teardown (void **state)
{
  struct fixture *f = *state;
  struct command *cmd = command_new ("rm");

  command_add_args (cmd, "-rf", f->dir, NULL);
  assert_int_equal (command_run (cmd, NULL), 0);
  command_free (cmd);
  chain_repo_free (f->repo);
  for (int i = 0; i < 4; i++)
    free (f->id[i]);
  free (f->dir);
  free (f);
  return 0;
}

static bool
exists (struct fixture *f, const char *id)
{
  CLEANUP_FREE char *p = NULL;
  struct stat st;

  assert_true (asprintf (&p, "%s/repo/vms/web01/%s", f->dir, id) > 0);
  return stat (p, &st) == 0;
}

static enum chain_state
state_of (struct fixture *f, const char *id)
{
  struct chain_manifest *m = chain_backup_find (f->repo, "web01", id);
  enum chain_state s;

  assert_non_null (m);
  s = m->state;
  chain_manifest_free (m);
  return s;
}

/* Deleting a middle backup and the tip together: the tip stays (removed)
 * and so does what it needs; a dry run changes nothing. */
static void
test_repo_delete (void **state)
{
  struct fixture *f = *state;
  chain_delete_step_vector steps = empty_vector;
  chain_manifest_vector list = empty_vector;

  assert_int_equal (
    chain_delete (f->repo, "web01", W (f->id[2], f->id[3]), 2, true, &steps),
    0);
  assert_int_equal (steps.len, 2);
  assert_int_equal (state_of (f, f->id[3]), CHAIN_STATE_COMPLETE);
  steps.len = 0;
  assert_int_equal (
    chain_delete (f->repo, "web01", W (f->id[2], f->id[3]), 2, false, &steps),
    0);
  assert_int_equal (steps.len, 2);
  assert_int_equal (steps.ptr[0].action, MARK);
  assert_int_equal (steps.ptr[1].action, MARK);
  assert_int_equal (state_of (f, f->id[2]), CHAIN_STATE_REMOVED);
  assert_int_equal (state_of (f, f->id[3]), CHAIN_STATE_REMOVED);
  /* The first two: the second is needed by the removed tip. */
  steps.len = 0;
  assert_int_equal (
    chain_delete (f->repo, "web01", W (f->id[0]), 1, false, &steps), 0);
  assert_int_equal (steps.ptr[0].action, MARK);
  /* End the chain: then everything goes, newest first. */
  {
    struct chain_lock *lock
      = chain_lock_new (f->repo, "web01", CHAIN_LOCK_EXCLUSIVE, "test", 0);
    assert_non_null (lock);
    assert_int_equal (chain_vm_end_chain (lock, "test"), 0);
    chain_lock_free (lock);
  }
  steps.len = 0;
  assert_int_equal (
    chain_delete (f->repo, "web01", W (f->id[1]), 1, false, &steps), 0);
  assert_int_equal (steps.len, 4);
  for (int i = 0; i < 4; i++)
    assert_false (exists (f, f->id[i]));
  assert_int_equal (chain_backup_list (f->repo, "web01", &list, NULL), 0);
  assert_int_equal (list.len, 0);
  chain_delete_step_vector_reset (&steps);
}

/* A reader (restore, verify) holds the shared lock: the delete fails at
 * once and changes nothing. */
static void
test_repo_delete_while_read (void **state)
{
  struct fixture *f = *state;
  chain_delete_step_vector steps = empty_vector;
  struct chain_lock *reader
    = chain_lock_new (f->repo, "web01", CHAIN_LOCK_SHARED, "verify", 0);

  assert_non_null (reader);
  assert_int_equal (
    chain_delete (f->repo, "web01", W (f->id[1]), 1, false, &steps), -1);
  assert_int_equal (errno, EWOULDBLOCK);
  assert_non_null (strstr (get_error (), "is being read by another knib"));
  assert_int_equal (steps.len, 0);
  assert_int_equal (state_of (f, f->id[1]), CHAIN_STATE_COMPLETE);
  chain_lock_free (reader);
}

/* Merging the third backup: standalone images that read the same, the
 * fourth follows it, a removed ancestor nothing needs goes. */
static void
test_repo_merge (void **state)
{
  struct fixture *f = *state;
  chain_delete_step_vector steps = empty_vector;
  chain_string_vector done = empty_vector;
  struct chain_verify_summary sum;
  struct chain_manifest *m;

  assert_int_equal (
    chain_delete (f->repo, "web01", W (f->id[1]), 1, false, &steps), 0);
  assert_int_equal (state_of (f, f->id[1]), CHAIN_STATE_REMOVED);
  steps.len = 0;
  if (chain_merge (f->repo, NULL, f->id[2], &done, &steps) == -1)
    fail_msg ("merge: %s", get_error ());
  m = chain_backup_find (f->repo, "web01", f->id[2]);
  assert_int_equal (m->kind, F);
  assert_int_equal (m->position, 1);
  assert_string_equal (m->chain, m->id);
  chain_manifest_free (m);
  m = chain_backup_find (f->repo, "web01", f->id[3]);
  assert_int_equal (m->position, 2);
  assert_string_equal (m->chain, f->id[2]);
  chain_manifest_free (m);
  /* The removed second backup went; the first stays (complete). */
  assert_int_equal (steps.len, 1);
  assert_string_equal (steps.ptr[0].id, f->id[1]);
  assert_false (exists (f, f->id[1]));
  assert_true (exists (f, f->id[0]));
  assert_int_equal (chain_verify (f->repo, "web01", NULL, 0, NULL, NULL, &sum),
                    0);
  assert_int_equal (sum.errors, 0);
  assert_int_equal (sum.backups, 3);
  /* Again: nothing left to do. */
  steps.len = 0;
  assert_int_equal (chain_merge (f->repo, "web01", f->id[2], &done, &steps), 0);
  assert_int_equal (steps.len, 0);
  chain_string_vector_release (&done);
  chain_delete_step_vector_reset (&steps);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_seed_scenario),
    cmocka_unit_test (test_middle_then_tip),
    cmocka_unit_test (test_first_backup),
    cmocka_unit_test (test_restored_tree),
    cmocka_unit_test (test_full_tip_and_isolated),
    cmocka_unit_test (test_superseded_removed_tip),
    cmocka_unit_test (test_unknown_id),
    cmocka_unit_test (test_describe),
    cmocka_unit_test (test_prune_select),
    cmocka_unit_test_setup_teardown (test_repo_delete, setup, teardown),
    cmocka_unit_test_setup_teardown (test_repo_delete_while_read, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_repo_merge, setup, teardown),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
