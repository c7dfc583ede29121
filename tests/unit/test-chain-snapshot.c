/* SPDX-License-Identifier: Apache-2.0 */
/* test-chain-snapshot.c: the reference's snapshot table as layer rules,
 * and snapshots.json written, read back and refused when malformed. */
#include <config.h>

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "chain/chain.h"
#include "common/error.h"
#include "common/fs.h"

/* A disk's layers, each with the file it is backed by ("" none). */
struct world {
  struct chain_snaps s;
  struct chain_snap_layer l[16];
  char files[16][32], backings[16][32];
  size_t n;
};

static void
layer (struct world *w, const char *file, const char *backing)
{
  snprintf (w->files[w->n], 32, "/%s", file);
  snprintf (w->backings[w->n], 32, "/%s", backing);
  w->l[w->n].file = w->files[w->n];
  w->l[w->n].backing = backing[0] ? w->backings[w->n] : NULL;
  assert_int_equal (chain_snap_file_add (&w->s.layers, "vda", w->files[w->n]),
                    0);
  w->n++;
}

static void
top (struct world *w, const char *file)
{
  char f[32];

  snprintf (f, sizeof f, "/%s", file);
  assert_int_equal (chain_snap_file_set (&w->s.tops, "vda", f), 0);
}

static void
snap (struct world *w, const char *name, const char *file)
{
  chain_snap_file_vector l = empty_vector;
  char f[32];

  snprintf (f, sizeof f, "/%s", file);
  assert_int_equal (chain_snap_file_set (&l, "vda", f), 0);
  assert_int_equal (chain_snaps_add (&w->s, name, 1, &l), 0);
}

/* Apply steps as the orchestration would, until none; the steps taken
 * as "remove X" / "merge X>Y" joined by ", ". */
static void
run (struct world *w, char *out, size_t len)
{
  out[0] = '\0';
  for (;;) {
    struct chain_snap_step st;
    size_t i, k;

    chain_snaps_plan (&w->s, "vda", w->l, w->n, &st);
    if (st.kind == CHAIN_SNAP_STEP_NONE)
      return;
    snprintf (out + strlen (out), len - strlen (out), "%s%s %s%s%s",
              out[0] ? ", " : "",
              st.kind == CHAIN_SNAP_STEP_REMOVE ? "remove" : "merge",
              st.file + 1, st.child ? ">" : "", st.child ? st.child + 1 : "");
    for (i = 0; i < w->n; i++)
      if (st.kind == CHAIN_SNAP_STEP_MERGE
          && strcmp (w->l[i].file, st.child) == 0)
        w->l[i].backing = st.backing;
    {
      char gone[32];

      snprintf (gone, sizeof gone, "%s", st.file);
      for (i = 0, k = 0; i < w->n; i++)
        if (strcmp (w->l[i].file, gone) != 0)
          w->l[k++] = w->l[i];
      w->n = k;
      chain_snaps_forget (&w->s, "vda", gone);
    }
  }
}

static void
removed (struct world *w, const char *name)
{
  struct chain_snap *s = chain_snaps_find (&w->s, name);

  assert_non_null (s);
  s->removed = true;
}

/* Rows 1-8 of the reference, from the layers knib leaves after each. */
static void
test_reference_rows (void **state)
{
  struct world w = { .n = 0 };
  char out[256];

  (void) state;
  /* Rows 1-5 leave: a (s1, s3's chain and s2's), a.s1 (s2), a.s1-2
   * (s3), a.s3 the top. */
  layer (&w, "a", "");
  layer (&w, "a.s1", "a");
  layer (&w, "a.s1-2", "a");
  layer (&w, "a.s3", "a.s1-2");
  top (&w, "a.s3");
  snap (&w, "s1", "a");
  snap (&w, "s2", "a.s1");
  snap (&w, "s3", "a.s1-2");
  run (&w, out, sizeof out);
  assert_string_equal (out, "");

  /* Row 6: s1 is marked removed, its layer kept (two depend on it). */
  removed (&w, "s1");
  run (&w, out, sizeof out);
  assert_string_equal (out, "");
  assert_non_null (chain_snaps_find (&w.s, "s1"));

  /* Row 7: s3 is merged with the current volume. */
  removed (&w, "s3");
  run (&w, out, sizeof out);
  assert_string_equal (out, "merge a.s1-2>a.s3");
  assert_null (chain_snaps_find (&w.s, "s3"));
  assert_non_null (chain_snaps_find (&w.s, "s1"));

  /* Row 8: s2 goes, then s1 is merged with the current volume. */
  removed (&w, "s2");
  run (&w, out, sizeof out);
  assert_string_equal (out, "remove a.s1, merge a>a.s3");
  assert_int_equal (w.s.snaps.len, 0);
  assert_int_equal (w.n, 1);
  chain_snaps_release (&w.s);
}

/* A revert leaves the abandoned top with nothing on it: it goes, and
 * then a layer only it depended on. */
static void
test_revert_abandons (void **state)
{
  struct world w = { .n = 0 };
  char out[256];

  (void) state;
  layer (&w, "a", "");
  layer (&w, "a.s1", "a");
  layer (&w, "a.s2", "a.s1");
  layer (&w, "a.s1-2", "a");
  top (&w, "a.s1-2");
  snap (&w, "s1", "a");
  run (&w, out, sizeof out);
  assert_string_equal (out, "remove a.s2, remove a.s1");
  chain_snaps_release (&w.s);
}

/* A commit kept the lower file: the snapshot whose layer was the child
 * has the lower file now, a removed snapshot of the lower file's own
 * state goes, and the lower file is kept once. */
static void
test_rename_after_commit (void **state)
{
  struct world w = { .n = 0 };

  (void) state;
  layer (&w, "a", "");
  layer (&w, "a.s1", "a");
  layer (&w, "a.s2", "a.s1");
  top (&w, "a.s2");
  snap (&w, "s1", "a");
  snap (&w, "s2", "a.s1");
  removed (&w, "s1");
  chain_snaps_forget (&w.s, "vda", "/a");
  assert_int_equal (chain_snap_file_add (&w.s.layers, "vda", "/a"), 0);
  assert_int_equal (chain_snaps_rename (&w.s, "vda", "/a.s1", "/a"), 0);
  assert_null (chain_snaps_find (&w.s, "s1"));
  assert_string_equal (
    chain_snap_file_get (&chain_snaps_find (&w.s, "s2")->layers, "vda"), "/a");
  assert_int_equal (w.s.layers.len, 2);
  assert_string_equal (w.s.layers.ptr[0].file, "/a.s2");
  assert_string_equal (w.s.layers.ptr[1].file, "/a");
  assert_string_equal (chain_snap_file_get (&w.s.tops, "vda"), "/a.s2");
  /* The top renamed too (a commit into the layer below the top). */
  assert_int_equal (chain_snaps_rename (&w.s, "vda", "/a.s2", "/a"), 0);
  assert_string_equal (chain_snap_file_get (&w.s.tops, "vda"), "/a");
  assert_int_equal (w.s.layers.len, 1);
  chain_snaps_release (&w.s);
}

static void
test_json_round_trip (void **state)
{
  char dir[] = "/tmp/knib-test-snap.XXXXXX";
  struct chain_repo *repo;
  struct chain_lock *lock;
  struct chain_snaps s = { .pending = NULL }, t;
  chain_snap_file_vector l = empty_vector;
  char path[256];
  FILE *fp;

  (void) state;
  assert_non_null (mkdtemp (dir));
  repo = chain_repo_open (dir, true);
  assert_non_null (repo);
  lock = chain_lock_new (repo, "vm", CHAIN_LOCK_EXCLUSIVE, "test", 0);
  assert_non_null (lock);
  assert_int_equal (chain_snaps_load (lock, &t), 0); /* none yet */
  assert_int_equal (t.snaps.len, 0);
  assert_int_equal (chain_snap_file_set (&l, "vda", "/i/a.qcow2"), 0);
  assert_int_equal (chain_snaps_add (&s, "s1", 1795465815, &l), 0);
  s.snaps.ptr[0].removed = true;
  assert_int_equal (chain_snap_file_set (&s.tops, "vda", "/i/a.s1.qcow2"), 0);
  assert_int_equal (chain_snap_file_add (&s.layers, "vda", "/i/a.qcow2"), 0);
  assert_int_equal (chain_snaps_set_pending (&s, "create", "s2", &s.tops), 0);
  assert_int_equal (chain_snaps_commit (lock, &s), 0);
  assert_int_equal (chain_snaps_read (repo, "vm", &t), 0);
  assert_int_equal (t.snaps.len, 1);
  assert_string_equal (t.snaps.ptr[0].name, "s1");
  assert_true (t.snaps.ptr[0].removed);
  assert_int_equal (t.snaps.ptr[0].time, 1795465815);
  assert_string_equal (chain_snap_file_get (&t.tops, "vda"), "/i/a.s1.qcow2");
  assert_string_equal (t.pending, "create");
  assert_string_equal (chain_snap_file_get (&t.pending_files, "vda"),
                       "/i/a.s1.qcow2");
  chain_snaps_release (&t);

  /* A relative path, a bad disk name, a bad state: refused. */
  snprintf (path, sizeof path, "%s/vms/vm/snapshots.json", dir);
  fp = fopen (path, "w");
  assert_non_null (fp);
  fputs ("{\"snapshots\": [], \"layers\": {\"vda\": [\"rel.qcow2\"]}}", fp);
  fclose (fp);
  assert_int_equal (chain_snaps_read (repo, "vm", &t), -1);
  assert_non_null (strstr (get_error (), "absolute path"));
  fp = fopen (path, "w");
  assert_non_null (fp);
  fputs ("{\"snapshots\": [{\"name\": \"s\", \"time\": "
         "\"2026-11-23T20:30:15Z\", \"state\": \"gone\"}], \"layers\": {}}",
         fp);
  fclose (fp);
  assert_int_equal (chain_snaps_read (repo, "vm", &t), -1);
  assert_non_null (strstr (get_error (), "unknown state"));
  fp = fopen (path, "w");
  assert_non_null (fp);
  fputs ("{\"snapshots\": [], \"layers\": {\"../x\": [\"/a\"]}}", fp);
  fclose (fp);
  assert_int_equal (chain_snaps_read (repo, "vm", &t), -1);
  assert_non_null (strstr (get_error (), "invalid disk name"));

  chain_snaps_release (&s);
  chain_lock_free (lock);
  chain_repo_free (repo);
  assert_int_equal (fs_remove_tree (dir), 0);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_reference_rows),
    cmocka_unit_test (test_revert_abandons),
    cmocka_unit_test (test_rename_after_commit),
    cmocka_unit_test (test_json_round_trip),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
