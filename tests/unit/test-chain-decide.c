/* SPDX-License-Identifier: Apache-2.0 */
/* test-chain-decide.c: the chain rules table (full or incremental, parent). */
#include <config.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "chain/internal.h"
#include "common/error.h"

#define T0 INT64_C (1795465815) /* 2026-11-23T20:30:15Z */

#define F CHAIN_KIND_FULL
#define I CHAIN_KIND_INCREMENTAL
#define ISO CHAIN_KIND_ISOLATED

/* A VM's history built from the decisions themselves, one backup a
 * minute, as the backup flow would commit them. */
struct history {
  chain_manifest_vector backups;
  int64_t next_time;
};

static struct chain_manifest *
commit_decision (struct history *h, const struct chain_decision *d)
{
  struct chain_manifest *m = chain_manifest_new ();

  assert_non_null (m);
  chain_id_make (T0 + h->next_time, 1, m->id);
  h->next_time += 60;
  m->vm = strdup ("web01");
  m->kind = d->kind;
  m->position = d->position;
  strcpy (m->parent, d->parent);
  strcpy (m->chain, d->kind == I ? d->chain : m->id);
  m->reason = strdup (d->reason);
  assert_int_equal (chain_manifest_vector_append (&h->backups, m), 0);
  return m;
}

/* Decide, check the kind, commit; returns the new backup. */
static struct chain_manifest *
step (struct history *h, int64_t chain_size, enum chain_mode mode,
      enum chain_kind want)
{
  struct chain_decision d;
  struct chain_manifest *m;

  assert_int_equal (chain_decide (&h->backups, chain_size, mode, NULL, &d), 0);
  if (d.kind != want)
    fail_msg ("backup %zu: %s, wanted %s (%s)", h->backups.len + 1,
              chain_kind_name (d.kind), chain_kind_name (want), d.reason);
  m = commit_decision (h, &d);
  chain_decision_release (&d);
  return m;
}

static void
run_table (int64_t chain_size, const enum chain_kind *want, size_t n,
           struct history *h)
{
  for (size_t i = 0; i < n; i++)
    step (h, chain_size, CHAIN_MODE_AUTO, want[i]);
}

static void
test_chain_size_3 (void **state)
{
  const enum chain_kind want[] = { F, I, I, F, I, I };
  struct history h = { empty_vector, 0 };
  chain_manifest_vector *b = &h.backups;

  run_table (3, want, 6, &h);
  /* Parents, chains and positions. */
  assert_string_equal (b->ptr[0]->parent, "");
  assert_string_equal (b->ptr[1]->parent, b->ptr[0]->id);
  assert_string_equal (b->ptr[2]->parent, b->ptr[1]->id);
  assert_string_equal (b->ptr[3]->parent, "");
  assert_string_equal (b->ptr[4]->parent, b->ptr[3]->id);
  assert_string_equal (b->ptr[5]->parent, b->ptr[4]->id);
  for (size_t i = 0; i < 6; i++) {
    assert_int_equal (b->ptr[i]->position, i % 3 + 1);
    assert_string_equal (b->ptr[i]->chain, b->ptr[i < 3 ? 0 : 3]->id);
  }
  assert_string_equal (b->ptr[0]->reason, "first backup of this VM");
  assert_string_equal (b->ptr[1]->reason,
                       "backup 2 of chain 20261123T203015Z (chain size 3)");
  assert_string_equal (b->ptr[3]->reason, "chain 20261123T203015Z already "
                                          "holds 3 backups (chain size 3)");
  chain_manifest_vector_release (b);
}

static void
test_chain_size_1_all_full (void **state)
{
  const enum chain_kind want[] = { F, F, F, F };
  struct history h = { empty_vector, 0 };

  run_table (1, want, 4, &h);
  assert_string_equal (h.backups.ptr[3]->reason,
                       "chain size 1: every backup is full");
  chain_manifest_vector_release (&h.backups);
}

static void
test_chain_unlimited (void **state)
{
  const enum chain_kind want[] = { F, I, I, I, I, I, I, I, I, I, I, I };
  struct history h = { empty_vector, 0 };
  struct history h2 = { empty_vector, 0 };

  run_table (0, want, 12, &h);
  assert_int_equal (h.backups.ptr[11]->position, 12);
  assert_string_equal (h.backups.ptr[11]->reason,
                       "backup 12 of chain 20261123T203015Z (chain size "
                       "unlimited)");
  run_table (-1, want, 12, &h2);
  chain_manifest_vector_release (&h.backups);
  chain_manifest_vector_release (&h2.backups);
}

/* Isolated backups neither count in the chain nor become parents. */
static void
test_isolated_in_the_middle (void **state)
{
  struct history h = { empty_vector, 0 };
  struct chain_manifest *full, *inc1, *iso, *inc2;

  full = step (&h, 3, CHAIN_MODE_AUTO, F);
  inc1 = step (&h, 3, CHAIN_MODE_AUTO, I);
  iso = step (&h, 3, CHAIN_MODE_ISOLATED, ISO);
  assert_string_equal (iso->parent, "");
  assert_string_equal (iso->chain, iso->id);
  assert_int_equal (iso->position, 1);
  assert_string_equal (iso->reason, "--isolated requested");
  inc2 = step (&h, 3, CHAIN_MODE_AUTO, I);
  assert_string_equal (inc2->parent, inc1->id);
  assert_string_equal (inc2->chain, full->id);
  assert_int_equal (inc2->position, 3);
  step (&h, 3, CHAIN_MODE_ISOLATED, ISO);
  step (&h, 3, CHAIN_MODE_ISOLATED, ISO);
  full = step (&h, 3, CHAIN_MODE_AUTO, F);
  inc1 = step (&h, 3, CHAIN_MODE_AUTO, I);
  assert_string_equal (inc1->parent, full->id);
  chain_manifest_vector_release (&h.backups);
}

static void
test_only_isolated (void **state)
{
  struct history h = { empty_vector, 0 };
  struct chain_manifest *m;

  step (&h, 8, CHAIN_MODE_ISOLATED, ISO);
  m = step (&h, 8, CHAIN_MODE_AUTO, F);
  assert_string_equal (m->reason, "no earlier backup of this VM can be a "
                                  "parent (isolated backups never are)");
  chain_manifest_vector_release (&h.backups);
}

static void
test_full_requested (void **state)
{
  struct history h = { empty_vector, 0 };
  struct chain_manifest *m, *n;

  step (&h, 8, CHAIN_MODE_AUTO, F);
  step (&h, 8, CHAIN_MODE_AUTO, I);
  m = step (&h, 8, CHAIN_MODE_FULL, F);
  assert_string_equal (m->reason, "--full requested");
  n = step (&h, 8, CHAIN_MODE_AUTO, I);
  assert_string_equal (n->parent, m->id);
  assert_int_equal (n->position, 2);
  chain_manifest_vector_release (&h.backups);
}

static void
test_incremental_requested (void **state)
{
  struct history h = { empty_vector, 0 };
  struct chain_decision d;

  assert_int_equal (
    chain_decide (&h.backups, 8, CHAIN_MODE_INCREMENTAL, NULL, &d), -1);
  assert_string_equal (get_error (), "an incremental backup is not possible: "
                                     "first backup of this VM");
  step (&h, 2, CHAIN_MODE_AUTO, F);
  step (&h, 2, CHAIN_MODE_INCREMENTAL, I);
  assert_int_equal (
    chain_decide (&h.backups, 2, CHAIN_MODE_INCREMENTAL, NULL, &d), -1);
  assert_string_equal (get_error (),
                       "an incremental backup is not possible: chain "
                       "20261123T203015Z already holds 2 backups (chain "
                       "size 2)");
  chain_manifest_vector_release (&h.backups);
}

/* A deleted chain tip is kept (state removed) precisely so that it stays
 * the parent: its bitmap is the one still recording in QEMU. */
static void
test_latest_removed (void **state)
{
  struct history h = { empty_vector, 0 };
  struct chain_manifest *tip, *m;

  step (&h, 3, CHAIN_MODE_AUTO, F);
  tip = step (&h, 3, CHAIN_MODE_AUTO, I);
  tip->state = CHAIN_STATE_REMOVED;
  m = step (&h, 3, CHAIN_MODE_AUTO, I);
  assert_string_equal (m->parent, tip->id);
  assert_int_equal (m->position, 3);
  /* It still counts in the chain. */
  m->state = CHAIN_STATE_REMOVED;
  m = step (&h, 3, CHAIN_MODE_AUTO, F);
  assert_string_equal (m->reason, "chain 20261123T203015Z already holds 3 "
                                  "backups (chain size 3)");
  chain_manifest_vector_release (&h.backups);
}

/* An ended chain forces one full backup, then the rules apply again. */
static void
test_chain_ended (void **state)
{
  struct history h = { empty_vector, 0 };
  struct chain_vm vm = { .chain_end_reason = (char *) "restored in place" };
  struct chain_decision d;
  struct chain_manifest *m;

  step (&h, 8, CHAIN_MODE_AUTO, F);
  m = step (&h, 8, CHAIN_MODE_AUTO, I);
  strcpy (vm.chain_end_after, m->id);
  assert_int_equal (chain_decide (&h.backups, 8, CHAIN_MODE_AUTO, &vm, &d), 0);
  assert_int_equal (d.kind, F);
  assert_string_equal (d.reason, "the chain was ended: restored in place");
  commit_decision (&h, &d);
  chain_decision_release (&d);
  assert_int_equal (chain_decide (&h.backups, 8, CHAIN_MODE_AUTO, &vm, &d), 0);
  assert_int_equal (d.kind, I);
  chain_decision_release (&d);
  /* Ended before the first backup: nothing to force. */
  vm.chain_end_after[0] = '\0';
  assert_int_equal (chain_decide (&h.backups, 8, CHAIN_MODE_AUTO, &vm, &d), 0);
  assert_int_equal (d.kind, I);
  chain_decision_release (&d);
  chain_manifest_vector_release (&h.backups);
}

/* The input order does not matter: the latest id is the parent. */
static void
test_unsorted_input (void **state)
{
  struct history h = { empty_vector, 0 };
  struct chain_decision d;
  struct chain_manifest *tmp;

  step (&h, 8, CHAIN_MODE_AUTO, F);
  step (&h, 8, CHAIN_MODE_AUTO, I);
  step (&h, 8, CHAIN_MODE_AUTO, I);
  tmp = h.backups.ptr[0];
  h.backups.ptr[0] = h.backups.ptr[2];
  h.backups.ptr[2] = tmp;
  assert_int_equal (chain_decide (&h.backups, 8, CHAIN_MODE_AUTO, NULL, &d), 0);
  assert_int_equal (d.kind, I);
  assert_string_equal (d.parent, h.backups.ptr[0]->id);
  assert_int_equal (d.position, 4);
  chain_decision_release (&d);
  chain_manifest_vector_release (&h.backups);
}

/* A restore in place of b1 makes it the tip: the next backup is its
 * second child (a tree), positions count along the branch, and the chain
 * size holds per branch.  A backup since the restore continues it. */
static void
test_restored_tree (void **state)
{
  struct history h = { empty_vector, 0 };
  struct chain_vm vm = { .name = (char *) "web01" };
  struct chain_decision d;
  struct chain_manifest *b1, *b2, *b3, *b4;

  b1 = step (&h, 3, CHAIN_MODE_AUTO, F);
  b2 = step (&h, 3, CHAIN_MODE_AUTO, I);
  step (&h, 3, CHAIN_MODE_AUTO, I);
  strcpy (vm.restored_from, b2->id);
  strcpy (vm.restored_after, h.backups.ptr[2]->id);
  assert_ptr_equal (chain_tip (&h.backups, &vm), b2);
  assert_true (chain_tip_is_restore (&h.backups, &vm));
  assert_int_equal (chain_decide (&h.backups, 3, CHAIN_MODE_AUTO, &vm, &d), 0);
  assert_int_equal (d.kind, I);
  assert_string_equal (d.parent, b2->id);
  assert_int_equal (d.position, 3);
  b3 = commit_decision (&h, &d);
  chain_decision_release (&d);
  /* b3 came since the restore: it is the tip, and the branch is full. */
  assert_ptr_equal (chain_tip (&h.backups, &vm), b3);
  assert_false (chain_tip_is_restore (&h.backups, &vm));
  assert_int_equal (chain_branch_of (&h.backups, &vm, b3->id),
                    CHAIN_BRANCH_TIP);
  assert_int_equal (chain_branch_of (&h.backups, &vm, b2->id), CHAIN_BRANCH_ON);
  assert_int_equal (chain_branch_of (&h.backups, &vm, b1->id), CHAIN_BRANCH_ON);
  assert_int_equal (chain_branch_of (&h.backups, &vm, h.backups.ptr[2]->id),
                    CHAIN_BRANCH_OFF);
  step (&h, 3, CHAIN_MODE_AUTO, F);
  /* Restored from the full: its chain starts again at position 2. */
  strcpy (vm.restored_from, b1->id);
  strcpy (vm.restored_after, h.backups.ptr[4]->id);
  assert_int_equal (chain_decide (&h.backups, 3, CHAIN_MODE_AUTO, &vm, &d), 0);
  assert_int_equal (d.kind, I);
  assert_string_equal (d.parent, b1->id);
  assert_int_equal (d.position, 2);
  b4 = commit_decision (&h, &d);
  chain_decision_release (&d);
  assert_ptr_equal (chain_tip (&h.backups, &vm), b4);
  /* The restored backup is gone: the latest backup is the tip again. */
  strcpy (vm.restored_from, "20200101T000000Z");
  strcpy (vm.restored_after, b4->id);
  assert_ptr_equal (chain_tip (&h.backups, &vm), b4);
  chain_manifest_vector_release (&h.backups);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_chain_size_3),
    cmocka_unit_test (test_chain_size_1_all_full),
    cmocka_unit_test (test_chain_unlimited),
    cmocka_unit_test (test_isolated_in_the_middle),
    cmocka_unit_test (test_only_isolated),
    cmocka_unit_test (test_full_requested),
    cmocka_unit_test (test_incremental_requested),
    cmocka_unit_test (test_latest_removed),
    cmocka_unit_test (test_chain_ended),
    cmocka_unit_test (test_unsorted_input),
    cmocka_unit_test (test_restored_tree),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
