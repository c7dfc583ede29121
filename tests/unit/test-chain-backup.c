/* SPDX-License-Identifier: Apache-2.0 */
/* test-chain-backup.c: begin/commit/abort, crashes and recovery, listing. */
#include <config.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
#include "common/error.h"

#define T0 INT64_C (1795465815) /* 2026-11-23T20:30:15Z */

struct fixture {
  char *dir;
  struct chain_repo *repo;
  struct chain_lock *lock; /* exclusive, on web01 */
  int64_t now;             /* the injected clock */
};

static int64_t
fake_clock (void *opaque)
{
  struct fixture *f = opaque;

  return f->now;
}

static int
setup (void **state)
{
  struct fixture *f = calloc (1, sizeof *f);
  const char *tmp = getenv ("TMPDIR");

  assert_non_null (f);
  assert_true (asprintf (&f->dir, "%s/knib-test-XXXXXX", tmp ? tmp : "/tmp")
               > 0);
  assert_non_null (mkdtemp (f->dir));
  f->repo = chain_repo_open (f->dir, true);
  assert_non_null (f->repo);
  f->now = T0;
  chain_repo_set_clock (f->repo, fake_clock, f);
  f->lock
    = chain_lock_new (f->repo, "web01", CHAIN_LOCK_EXCLUSIVE, "backup", 0);
  assert_non_null (f->lock);
#ifdef ENABLE_TEST_HOOKS
  chain_crash_point = CHAIN_CRASH_NONE;
#endif
  *state = f;
  return 0;
}

static int
teardown (void **state)
{
  struct fixture *f = *state;

#ifdef ENABLE_TEST_HOOKS
  chain_crash_point = CHAIN_CRASH_NONE;
#endif
  chain_lock_free (f->lock);
  chain_repo_free (f->repo);
  assert_int_equal (fs_remove_tree (f->dir), 0);
  free (f->dir);
  free (f);
  return 0;
}

static void assert_error (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

static void
assert_error (const char *fmt, ...)
{
  va_list ap;
  CLEANUP_FREE char *want = NULL;

  va_start (ap, fmt);
  assert_true (vasprintf (&want, fmt, ap) > 0);
  va_end (ap);
  assert_string_equal (get_error (), want);
}

static void
write_text (const char *path, const char *text)
{
  FILE *fp = fopen (path, "w");

  assert_non_null (fp);
  fputs (text, fp);
  assert_int_equal (fclose (fp), 0);
}

static bool exists (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

static bool
exists (const char *fmt, ...)
{
  va_list ap;
  CLEANUP_FREE char *path = NULL;
  struct stat st;

  va_start (ap, fmt);
  assert_true (vasprintf (&path, fmt, ap) > 0);
  va_end (ap);
  return lstat (path, &st) == 0;
}

/* Write an image for disk (its content stands in for the qcow2 writer's)
 * and record it: incremental when the backup has a parent that has it. */
static void
write_disk (struct chain_backup *b, const char *name, uint64_t size,
            const char *content)
{
  CLEANUP_FREE char *path = chain_backup_disk_path (b, name);
  CLEANUP_FREE char *backing = NULL;
  struct chain_disk d = { .name = (char *) name,
                          .kind = CHAIN_KIND_FULL,
                          .virtual_size = size,
                          .cluster_size = 65536,
                          .bytes_read = strlen (content),
                          .bytes_written = strlen (content),
                          .extents = 1 };

  assert_non_null (path);
  write_text (path, content);
  if (chain_backup_backing_file (b, name, &backing) == 0 && backing != NULL)
    d.kind = CHAIN_KIND_INCREMENTAL;
  else
    d.reason = (char *) "no parent";
  assert_int_equal (chain_backup_add_disk (b, &d), 0);
}

/* One backup of vda through the whole API; returns its id. */
static char *
backup (struct fixture *f, int64_t chain_size, enum chain_mode mode)
{
  struct chain_decision d;
  struct chain_backup *b;
  char *id;

  assert_int_equal (
    chain_vm_decide (f->repo, "web01", chain_size, mode, &d, NULL), 0);
  b = chain_backup_begin (f->repo, f->lock, &d);
  chain_decision_release (&d);
  assert_non_null (b);
  write_disk (b, "vda", 1 << 20, chain_backup_id (b));
  if (chain_backup_commit (b) == -1)
    fail_msg ("commit: %s", get_error ());
  id = strdup (chain_backup_id (b));
  chain_backup_free (b);
  return id;
}

static size_t
count_backups (struct fixture *f)
{
  chain_manifest_vector v = empty_vector;
  size_t n;

  assert_int_equal (chain_backup_list (f->repo, "web01", &v, NULL), 0);
  n = v.len;
  chain_manifest_vector_release (&v);
  return n;
}

static void
test_commit_full (void **state)
{
  struct fixture *f = *state;
  struct chain_decision d;
  struct chain_backup *b;
  CLEANUP_FREE char *path = NULL;
  CLEANUP_FREE char *committed = NULL;
  char hex[CHAIN_HASH_HEX_LEN + 1];
  chain_manifest_vector list = empty_vector;
  const struct chain_manifest *m;
  struct chain_vm *vm;

  assert_int_equal (
    chain_vm_decide (f->repo, "web01", 8, CHAIN_MODE_AUTO, &d, NULL), 0);
  assert_int_equal (d.kind, CHAIN_KIND_FULL);
  assert_string_equal (d.reason, "first backup of this VM");
  b = chain_backup_begin (f->repo, f->lock, &d);
  chain_decision_release (&d);
  assert_non_null (b);
  assert_string_equal (chain_backup_id (b), "20261123T203015Z");
  {
    char want[CHAIN_BITMAP_MAX];

    /* knib-<repository id>-<backup id> */
    assert_int_equal (strlen (chain_repo_id (f->repo)), CHAIN_REPO_ID_LEN);
    snprintf (want, sizeof want, "knib-%s-20261123T203015Z",
              chain_repo_id (f->repo));
    assert_string_equal (chain_backup_bitmap (b), want);
  }
  path = chain_backup_disk_path (b, "vda");
  {
    CLEANUP_FREE char *want = NULL;
    assert_true (asprintf (&want,
                           "%s/vms/web01/20261123T203015Z.partial/vda.qcow2",
                           f->dir)
                 > 0);
    assert_string_equal (path, want);
  }
  write_disk (b, "vda", 1 << 30, "image bytes");
  assert_int_equal (chain_backup_set_vm_info (b, "0b4c-uuid", "<domain/>"), 0);
  f->now += 42;
  assert_int_equal (chain_backup_commit (b), 0);
  chain_backup_free (b);

  assert_false (exists ("%s/vms/web01/20261123T203015Z.partial", f->dir));
  assert_true (exists ("%s/vms/web01/20261123T203015Z/manifest.json", f->dir));
  assert_int_equal (chain_backup_list (f->repo, "web01", &list, NULL), 0);
  assert_int_equal (list.len, 1);
  m = list.ptr[0];
  assert_int_equal (m->kind, CHAIN_KIND_FULL);
  assert_string_equal (m->chain, m->id);
  assert_int_equal (m->position, 1);
  assert_int_equal (m->created, T0);
  assert_int_equal (m->finished, T0 + 42);
  assert_string_equal (m->disks.ptr[0].image, "vda.qcow2");
  {
    char want[CHAIN_BITMAP_MAX];

    snprintf (want, sizeof want, "knib-%s-20261123T203015Z",
              chain_repo_id (f->repo));
    assert_string_equal (m->disks.ptr[0].bitmap, want);
  }
  committed = chain_backup_image_path (f->repo, m, &m->disks.ptr[0]);
  assert_int_equal (chain_hash_file (committed, CHAIN_HASH_SEGMENTS, hex), 0);
  assert_string_equal (m->disks.ptr[0].hash, hex);
  chain_manifest_vector_release (&list);

  vm = chain_vm_load (f->repo, "web01");
  assert_non_null (vm);
  assert_string_equal (vm->uuid, "0b4c-uuid");
  assert_string_equal (vm->definition, "<domain/>");
  assert_int_equal (vm->disks.len, 1);
  assert_string_equal (vm->disks.ptr[0].name, "vda");
  assert_int_equal (vm->disks.ptr[0].virtual_size, 1 << 30);
  assert_int_equal (vm->updated, T0 + 42);
  chain_vm_free (vm);
}

/* Chain size 3 through the repository: F I I F, backing files relative,
 * chains walked from the full. */
static void
test_chain_in_repository (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *id1 = NULL, *id2 = NULL, *id3 = NULL, *id4 = NULL;
  chain_manifest_vector chain = empty_vector;
  struct chain_decision d;
  struct chain_backup *b;
  char *backing;

  id1 = backup (f, 3, CHAIN_MODE_AUTO);
  f->now += 60;
  id2 = backup (f, 3, CHAIN_MODE_AUTO);
  f->now += 60;
  id3 = backup (f, 3, CHAIN_MODE_AUTO);
  f->now += 60;

  assert_int_equal (
    chain_vm_decide (f->repo, "web01", 3, CHAIN_MODE_AUTO, &d, NULL), 0);
  assert_int_equal (d.kind, CHAIN_KIND_FULL);
  assert_string_equal (d.reason, "chain 20261123T203015Z already holds 3 "
                                 "backups (chain size 3)");
  chain_decision_release (&d);

  assert_int_equal (chain_backup_chain (f->repo, "web01", id3, &chain), 0);
  assert_int_equal (chain.len, 3);
  assert_string_equal (chain.ptr[0]->id, id1);
  assert_string_equal (chain.ptr[1]->id, id2);
  assert_string_equal (chain.ptr[2]->id, id3);
  assert_int_equal (chain.ptr[1]->disks.ptr[0].kind, CHAIN_KIND_INCREMENTAL);
  chain_manifest_vector_release (&chain);

  id4 = backup (f, 3, CHAIN_MODE_AUTO);
  assert_int_equal (chain_backup_chain (f->repo, NULL, id4, &chain), 0);
  assert_int_equal (chain.len, 1);
  assert_int_equal (chain.ptr[0]->kind, CHAIN_KIND_FULL);
  chain_manifest_vector_release (&chain);

  /* The incremental image's backing file, relative to its directory. */
  f->now += 60;
  assert_int_equal (
    chain_vm_decide (f->repo, "web01", 3, CHAIN_MODE_AUTO, &d, NULL), 0);
  b = chain_backup_begin (f->repo, f->lock, &d);
  chain_decision_release (&d);
  assert_non_null (b);
  assert_int_equal (chain_backup_backing_file (b, "vda", &backing), 0);
  {
    CLEANUP_FREE char *want = NULL;
    assert_true (asprintf (&want, "../%s/vda.qcow2", id4) > 0);
    assert_string_equal (backing, want);
  }
  free (backing);
  assert_int_equal (chain_backup_backing_file (b, "vdb", &backing), -1);
  assert_int_equal (errno, ENOENT);
  assert_error ("disk 'vdb' is not in parent backup '%s': it needs a full "
                "backup",
                id4);
  chain_backup_free (b);
}

static void
test_ids_in_one_second (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *a = backup (f, 8, CHAIN_MODE_AUTO);
  CLEANUP_FREE char *b = backup (f, 8, CHAIN_MODE_AUTO);
  CLEANUP_FREE char *c = backup (f, 8, CHAIN_MODE_ISOLATED);
  CLEANUP_FREE char *d = NULL;
  chain_manifest_vector list = empty_vector;

  assert_string_equal (a, "20261123T203015Z");
  assert_string_equal (b, "20261123T203015Z-2");
  assert_string_equal (c, "20261123T203015Z-3");
  f->now -= 3600; /* the clock went back an hour */
  d = backup (f, 8, CHAIN_MODE_AUTO);
  assert_string_equal (d, "20261123T203015Z-4");
  assert_int_equal (chain_backup_list (f->repo, "web01", &list, NULL), 0);
  assert_int_equal (list.len, 4);
  assert_string_equal (list.ptr[3]->id, d);
  assert_string_equal (list.ptr[3]->parent, b); /* not the isolated one */
  assert_int_equal (list.ptr[3]->position, 3);
  chain_manifest_vector_release (&list);
}

static void
test_abort (void **state)
{
  struct fixture *f = *state;
  struct chain_decision d = { .kind = CHAIN_KIND_FULL };
  struct chain_backup *b = chain_backup_begin (f->repo, f->lock, &d);

  assert_non_null (b);
  write_disk (b, "vda", 4096, "x");
  assert_true (
    exists ("%s/vms/web01/20261123T203015Z.partial/vda.qcow2", f->dir));
  assert_int_equal (chain_backup_abort (b), 0);
  assert_false (exists ("%s/vms/web01/20261123T203015Z.partial", f->dir));
  assert_int_equal (chain_backup_commit (b), -1);
  assert_error ("backup '20261123T203015Z' of vm 'web01' was already aborted");
  chain_backup_free (b);
  assert_int_equal (count_backups (f), 0);

  /* Freeing an uncommitted backup aborts it and keeps the last error. */
  b = chain_backup_begin (f->repo, f->lock, &d);
  assert_non_null (b);
  write_disk (b, "vda", 4096, "x");
  set_error (0, "nbd read at 1048576: Connection reset");
  chain_backup_free (b);
  assert_string_equal (get_error (), "nbd read at 1048576: Connection reset");
  assert_false (exists ("%s/vms/web01/20261123T203015Z.partial", f->dir));
}

#ifdef ENABLE_TEST_HOOKS
/* Simulate a crash at each step of the commit: the backup exists exactly
 * when the rename happened; recovery removes everything else. */
static void
crash_at (struct fixture *f, enum chain_crash_point point, bool exists_after)
{
  struct chain_decision d = { .kind = CHAIN_KIND_FULL };
  struct chain_backup *b = chain_backup_begin (f->repo, f->lock, &d);
  chain_string_vector removed = empty_vector;
  CLEANUP_FREE char *id = NULL;

  assert_non_null (b);
  id = strdup (chain_backup_id (b));
  write_disk (b, "vda", 4096, "data");
  chain_crash_point = point;
  assert_int_equal (chain_backup_commit (b), -1);
  assert_non_null (strstr (get_error (), "simulated crash"));
  chain_crash_point = CHAIN_CRASH_NONE;
  chain_backup_free (b); /* as if the process had died */

  assert_int_equal (count_backups (f), exists_after ? 1 : 0);
  assert_int_equal (chain_repo_recover_vm (f->lock, &removed), 0);
  if (exists_after)
    assert_int_equal (removed.len, 0);
  else {
    CLEANUP_FREE char *want = NULL;
    assert_int_equal (removed.len, 1);
    assert_true (
      asprintf (&want, "removed unfinished backup '%s' of vm 'web01'", id) > 0);
    assert_string_equal (removed.ptr[0], want);
  }
  assert_false (exists ("%s/vms/web01/%s.partial", f->dir, id));
  assert_int_equal (exists ("%s/vms/web01/%s", f->dir, id), exists_after);
  assert_int_equal (count_backups (f), exists_after ? 1 : 0);
  chain_string_vector_release (&removed);
}

#else
/* Without --enable-test-hooks there is no crash point to set. */
#define CHAIN_CRASH_AFTER_IMAGES 1
#define CHAIN_CRASH_AFTER_MANIFEST 2
#define CHAIN_CRASH_AFTER_RENAME 3
static void
crash_at (struct fixture *f, int point, bool exists_after)
{
  (void) f;
  (void) point;
  (void) exists_after;
  skip ();
}
#endif

static void
test_crash_after_images (void **state)
{
  crash_at (*state, CHAIN_CRASH_AFTER_IMAGES, false);
}

static void
test_crash_after_manifest (void **state)
{
  struct fixture *f = *state;

  crash_at (f, CHAIN_CRASH_AFTER_MANIFEST, false);
  /* vm.json was written before the commit point: it describes the VM and
   * may run ahead of the backups. */
  assert_true (exists ("%s/vms/web01/vm.json", f->dir));
}

static void
test_crash_after_rename (void **state)
{
  crash_at (*state, CHAIN_CRASH_AFTER_RENAME, true);
}

/* Leftovers of a crash: a temporary file and a partial directory.
 * Listing never shows them; recovery removes them and says so. */
static void
test_recover_leftovers (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *id = backup (f, 8, CHAIN_MODE_AUTO);
  CLEANUP_FREE char *p1 = NULL, *p2 = NULL, *p3 = NULL, *p4 = NULL;
  chain_string_vector removed = empty_vector;
  chain_string_vector problems = empty_vector;
  chain_manifest_vector list = empty_vector;

  assert_true (asprintf (&p1, "%s/vms/web01/.tmp-vm.json.Ab12Cd", f->dir) > 0);
  assert_true (
    asprintf (&p2, "%s/vms/web01/%s/.tmp-manifest.json.Zz9Yy8", f->dir, id)
    > 0);
  assert_true (asprintf (&p3, "%s/vms/web01/20261123T203016Z.partial", f->dir)
               > 0);
  assert_true (asprintf (&p4, "%s/vda.qcow2", p3) > 0);
  write_text (p1, "{\"name\": ");
  write_text (p2, "{");
  assert_int_equal (mkdir (p3, 0700), 0);
  write_text (p4, "half an image");

  assert_int_equal (chain_backup_list (f->repo, "web01", &list, &problems), 0);
  assert_int_equal (list.len, 1);
  assert_int_equal (problems.len, 0);
  chain_manifest_vector_release (&list);

  assert_int_equal (chain_repo_recover_vm (f->lock, &removed), 0);
  assert_int_equal (removed.len, 3);
  for (size_t i = 0; i < removed.len; i++) {
    const char *r = removed.ptr[i];
    if (strstr (r, "unfinished"))
      assert_string_equal (r, "removed unfinished backup '20261123T203016Z' "
                              "of vm 'web01'");
    else if (strstr (r, "vm.json"))
      assert_true (strstr (r, "removed temporary file '") == r
                   && strstr (r, p1) != NULL);
    else
      assert_true (strstr (r, "removed temporary file '") == r
                   && strstr (r, p2) != NULL);
  }
  assert_false (exists ("%s", p1));
  assert_false (exists ("%s", p2));
  assert_false (exists ("%s", p3));
  assert_true (exists ("%s/vms/web01/%s/manifest.json", f->dir, id));
  chain_string_vector_release (&removed);

  /* Nothing left: a second recovery removes nothing. */
  assert_int_equal (chain_repo_recover_vm (f->lock, &removed), 0);
  assert_int_equal (removed.len, 0);
  assert_int_equal (count_backups (f), 1);
}

static void
test_recover_needs_exclusive_lock (void **state)
{
  struct fixture *f = *state;
  struct chain_lock *shared;
  chain_string_vector removed = empty_vector;

  chain_lock_free (f->lock);
  shared = chain_lock_new (f->repo, "web01", CHAIN_LOCK_SHARED, "verify", 0);
  assert_non_null (shared);
  assert_int_equal (chain_repo_recover_vm (shared, &removed), -1);
  assert_error ("recovery needs the exclusive lock of the vm");
  assert_null (
    chain_backup_begin (f->repo, shared, &(struct chain_decision) { 0 }));
  assert_error ("a backup needs the exclusive lock of the vm");
  chain_lock_free (shared);
  f->lock
    = chain_lock_new (f->repo, "web01", CHAIN_LOCK_EXCLUSIVE, "backup", 0);
  assert_non_null (f->lock);
}

/* A corrupt manifest is reported, never silently skipped. */
static void
test_list_reports_corrupt (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *a = backup (f, 8, CHAIN_MODE_AUTO);
  CLEANUP_FREE char *b = NULL, *path = NULL, *empty = NULL;
  chain_manifest_vector list = empty_vector;
  chain_string_vector problems = empty_vector;

  f->now += 60;
  b = backup (f, 8, CHAIN_MODE_AUTO);
  assert_true (asprintf (&path, "%s/vms/web01/%s/manifest.json", f->dir, b)
               > 0);
  write_text (path, "{\"id\": 1}");
  assert_true (asprintf (&empty, "%s/vms/web01/20261123T203300Z", f->dir) > 0);
  assert_int_equal (mkdir (empty, 0700), 0);

  assert_int_equal (chain_backup_list (f->repo, "web01", &list, &problems), 0);
  assert_int_equal (list.len, 1);
  assert_string_equal (list.ptr[0]->id, a);
  assert_int_equal (problems.len, 2);
  for (size_t i = 0; i < 2; i++) {
    if (strstr (problems.ptr[i], b)) {
      CLEANUP_FREE char *want = NULL;
      assert_true (asprintf (&want, "manifest '%s': 'vm' is missing", path)
                   > 0);
      assert_string_equal (problems.ptr[i], want);
    }
    else
      assert_non_null (strstr (problems.ptr[i],
                               "20261123T203300Z/manifest.json': cannot "
                               "open: No such file or directory"));
  }
  chain_manifest_vector_release (&list);
  chain_string_vector_release (&problems);

  /* Without a problem list, the listing fails. */
  assert_int_equal (chain_backup_list (f->repo, "web01", &list, NULL), -1);
  assert_int_equal (list.len, 0);
  chain_manifest_vector_release (&list);
}

static void
test_find (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *id = backup (f, 8, CHAIN_MODE_AUTO);
  struct chain_lock *other;
  struct chain_decision d = { .kind = CHAIN_KIND_FULL };
  struct chain_backup *b;
  struct chain_manifest *m;

  m = chain_backup_find (f->repo, NULL, id);
  assert_non_null (m);
  assert_string_equal (m->vm, "web01");
  chain_manifest_free (m);
  m = chain_backup_find (f->repo, "web01", id);
  assert_non_null (m);
  chain_manifest_free (m);

  assert_null (chain_backup_find (f->repo, "web01", "20261123T203016Z"));
  assert_int_equal (errno, ENOENT);
  assert_error ("vm 'web01' has no backup '20261123T203016Z' in repository "
                "'%s'",
                f->dir);
  assert_null (chain_backup_find (f->repo, NULL, "20261123T203016Z"));
  assert_error ("no backup '20261123T203016Z' in repository '%s'", f->dir);
  assert_null (chain_backup_find (f->repo, NULL, "../x"));
  assert_error ("invalid backup id '../x': ids look like 20261123T203015Z");
  assert_null (chain_backup_find (f->repo, "a/b", id));
  assert_error ("invalid vm name 'a/b': only letters, digits and ._+:@- are "
                "allowed");

  /* Another VM backed up in the same second: the id is ambiguous. */
  other = chain_lock_new (f->repo, "db01", CHAIN_LOCK_EXCLUSIVE, "backup", 0);
  assert_non_null (other);
  b = chain_backup_begin (f->repo, other, &d);
  assert_non_null (b);
  assert_string_equal (chain_backup_id (b), id);
  write_disk (b, "sda", 4096, "db");
  assert_int_equal (chain_backup_commit (b), 0);
  chain_backup_free (b);
  chain_lock_free (other);
  assert_null (chain_backup_find (f->repo, NULL, id));
  assert_error ("backup id '%s' is ambiguous: vms 'db01' and 'web01' both "
                "have it; name the vm",
                id);
  m = chain_backup_find (f->repo, "db01", id);
  assert_non_null (m);
  assert_string_equal (m->disks.ptr[0].name, "sda");
  chain_manifest_free (m);
}

static void
test_broken_chain (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *a = backup (f, 8, CHAIN_MODE_AUTO);
  CLEANUP_FREE char *b = NULL, *c = NULL, *dir = NULL;
  chain_manifest_vector chain = empty_vector;

  f->now += 60;
  b = backup (f, 8, CHAIN_MODE_AUTO);
  f->now += 60;
  c = backup (f, 8, CHAIN_MODE_AUTO);
  assert_true (asprintf (&dir, "%s/vms/web01/%s", f->dir, b) > 0);
  assert_int_equal (fs_remove_tree (dir), 0);
  assert_int_equal (chain_backup_chain (f->repo, "web01", c, &chain), -1);
  assert_int_equal (chain.len, 0);
  assert_error ("backup '%s' of vm 'web01': its parent '%s' is missing from "
                "the repository: the chain is broken",
                c, b);
}

static void
test_begin_checks_parent (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *a = backup (f, 8, CHAIN_MODE_AUTO);
  CLEANUP_FREE char *b = NULL;
  struct chain_decision d = { .kind = CHAIN_KIND_INCREMENTAL };

  f->now += 60;
  b = backup (f, 8, CHAIN_MODE_AUTO);
  strcpy (d.parent, a); /* stale decision: b came since */
  assert_null (chain_backup_begin (f->repo, f->lock, &d));
  assert_error ("vm 'web01': parent '%s' is not the backup that the chain "
                "continues from ('%s' is): decide again",
                a, b);
  assert_false (exists ("%s/vms/web01/20261123T203115Z-2.partial", f->dir));
}

static void
test_bad_names (void **state)
{
  struct fixture *f = *state;
  struct chain_decision d = { .kind = CHAIN_KIND_FULL };
  struct chain_backup *b = chain_backup_begin (f->repo, f->lock, &d);
  const char *bad[] = { "../x", "a/b", ".", "", ".." };
  struct chain_disk disk = { .name = (char *) "vda", .cluster_size = 65536 };

  assert_non_null (b);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_null (chain_backup_disk_path (b, bad[i]));
    assert_non_null (strstr (get_error (), "invalid disk name '"));
    disk.name = (char *) bad[i];
    assert_int_equal (chain_backup_add_disk (b, &disk), -1);
    disk.name = (char *) "vda";
    disk.image = (char *) bad[i];
    assert_int_equal (chain_backup_add_disk (b, &disk), -1);
    assert_non_null (strstr (get_error (), "invalid image name '"));
    disk.image = NULL;
  }
  assert_error ("invalid image name '..': it may not start with '.' or '-'");
  assert_int_equal (chain_backup_add_disk (b, &disk), 0);
  assert_int_equal (chain_backup_add_disk (b, &disk), -1);
  assert_error ("disk 'vda' was already added to backup '20261123T203015Z'");
  chain_backup_free (b);
}

static void
test_commit_checks (void **state)
{
  struct fixture *f = *state;
  struct chain_decision d = { .kind = CHAIN_KIND_FULL };
  struct chain_backup *b = chain_backup_begin (f->repo, f->lock, &d);
  struct chain_disk disk = { .name = (char *) "vda", .cluster_size = 65536 };
  CLEANUP_FREE char *path = NULL;

  assert_non_null (b);
  assert_int_equal (chain_backup_commit (b), -1);
  assert_error ("backup '20261123T203015Z' of vm 'web01': no disk was added");
  assert_int_equal (chain_backup_add_disk (b, &disk), 0);
  path = chain_backup_disk_path (b, "vda");
  assert_int_equal (chain_backup_commit (b), -1);
  assert_error ("backup '20261123T203015Z' of vm 'web01': disk 'vda': image "
                "'%s': No such file or directory",
                path);
  assert_int_equal (chain_backup_abort (b), 0);
  chain_backup_free (b);
  assert_int_equal (count_backups (f), 0);
}

/* A disk that could not be incremental (bitmap missing, new disk) is
 * full; when no disk is incremental the backup starts its own chain. */
static void
test_incremental_without_incremental_disk (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *a = backup (f, 8, CHAIN_MODE_AUTO);
  struct chain_decision d;
  struct chain_backup *b;
  struct chain_disk disk = { .name = (char *) "vda",
                             .kind = CHAIN_KIND_FULL,
                             .cluster_size = 65536,
                             .reason = (char *) "bitmap missing" };
  CLEANUP_FREE char *path = NULL;
  struct chain_manifest *m;

  f->now += 60;
  assert_int_equal (
    chain_vm_decide (f->repo, "web01", 8, CHAIN_MODE_AUTO, &d, NULL), 0);
  assert_int_equal (d.kind, CHAIN_KIND_INCREMENTAL);
  b = chain_backup_begin (f->repo, f->lock, &d);
  chain_decision_release (&d);
  assert_non_null (b);
  path = chain_backup_disk_path (b, "vda");
  write_text (path, "all of it");
  assert_int_equal (chain_backup_add_disk (b, &disk), 0);
  assert_int_equal (chain_backup_commit (b), 0);
  m = chain_backup_find (f->repo, "web01", chain_backup_id (b));
  assert_non_null (m);
  assert_int_equal (m->kind, CHAIN_KIND_FULL);
  assert_string_equal (m->parent, "");
  assert_string_equal (m->chain, m->id);
  assert_int_equal (m->position, 1);
  assert_string_equal (m->disks.ptr[0].reason, "bitmap missing");
  chain_manifest_free (m);
  chain_backup_free (b);
}

static void
test_end_chain (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *a = backup (f, 8, CHAIN_MODE_AUTO);
  CLEANUP_FREE char *b = NULL;
  struct chain_decision d;
  struct chain_vm *vm;

  f->now += 60;
  b = backup (f, 8, CHAIN_MODE_AUTO);
  assert_int_equal (chain_vm_end_chain (f->lock, "restored in place"), 0);
  vm = chain_vm_load (f->repo, "web01");
  assert_non_null (vm);
  assert_string_equal (vm->chain_end_reason, "restored in place");
  assert_string_equal (vm->chain_end_after, b);
  chain_vm_free (vm);

  assert_int_equal (
    chain_vm_decide (f->repo, "web01", 8, CHAIN_MODE_AUTO, &d, NULL), 0);
  assert_int_equal (d.kind, CHAIN_KIND_FULL);
  assert_string_equal (d.reason, "the chain was ended: restored in place");
  chain_decision_release (&d);
  assert_int_equal (
    chain_vm_decide (f->repo, "web01", 8, CHAIN_MODE_INCREMENTAL, &d, NULL),
    -1);
  assert_error ("an incremental backup is not possible: the chain was ended: "
                "restored in place");

  /* The full backup that follows lifts it (vm.json need not change). */
  f->now += 60;
  free (backup (f, 8, CHAIN_MODE_AUTO));
  f->now += 60;
  assert_int_equal (
    chain_vm_decide (f->repo, "web01", 8, CHAIN_MODE_AUTO, &d, NULL), 0);
  assert_int_equal (d.kind, CHAIN_KIND_INCREMENTAL);
  chain_decision_release (&d);
}

static void
test_vm_json_follows_backups (void **state)
{
  struct fixture *f = *state;
  struct chain_decision d = { .kind = CHAIN_KIND_FULL };
  struct chain_backup *b;
  struct chain_vm *vm;
  CLEANUP_FREE char *path = NULL;

  b = chain_backup_begin (f->repo, f->lock, &d);
  write_disk (b, "vda", 1000, "a");
  assert_int_equal (chain_backup_set_vm_info (b, "uuid-1", "<domain>v1"), 0);
  assert_int_equal (chain_backup_commit (b), 0);
  chain_backup_free (b);

  f->now += 60;
  b = chain_backup_begin (f->repo, f->lock, &d);
  write_disk (b, "vda", 2000, "a");
  write_disk (b, "vdb", 3000, "b");
  assert_int_equal (chain_backup_commit (b), 0);
  chain_backup_free (b);

  vm = chain_vm_load (f->repo, "web01");
  assert_non_null (vm);
  assert_string_equal (vm->name, "web01");
  assert_string_equal (vm->uuid, "uuid-1");
  assert_string_equal (vm->definition, "<domain>v1");
  assert_int_equal (vm->disks.len, 2);
  assert_int_equal (vm->disks.ptr[0].virtual_size, 2000);
  assert_string_equal (vm->disks.ptr[1].name, "vdb");
  assert_null (vm->chain_end_reason);
  assert_int_equal (vm->updated, T0 + 60);
  chain_vm_free (vm);

  /* A corrupt vm.json is an error that names it. */
  assert_true (asprintf (&path, "%s/vms/web01/vm.json", f->dir) > 0);
  write_text (path, "{\"name\": \"web01\"}");
  assert_null (chain_vm_load (f->repo, "web01"));
  assert_int_equal (errno, EINVAL);
  assert_error ("vm file '%s': 'uuid' is missing", path);
  assert_int_equal (
    chain_vm_decide (f->repo, "web01", 8, CHAIN_MODE_AUTO, &d, NULL), -1);
}

int
main (void)
{
#define T(fn) cmocka_unit_test_setup_teardown (fn, setup, teardown)
  const struct CMUnitTest tests[] = {
    T (test_commit_full),
    T (test_chain_in_repository),
    T (test_ids_in_one_second),
    T (test_abort),
    T (test_crash_after_images),
    T (test_crash_after_manifest),
    T (test_crash_after_rename),
    T (test_recover_leftovers),
    T (test_recover_needs_exclusive_lock),
    T (test_list_reports_corrupt),
    T (test_find),
    T (test_broken_chain),
    T (test_begin_checks_parent),
    T (test_bad_names),
    T (test_commit_checks),
    T (test_incremental_without_incremental_disk),
    T (test_end_chain),
    T (test_vm_json_follows_backups),
  };
#undef T

  return cmocka_run_group_tests (tests, NULL, NULL);
}
