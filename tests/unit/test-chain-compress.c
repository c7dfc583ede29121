/* SPDX-License-Identifier: Apache-2.0 */
/* test-chain-compress.c: deferred compression of backups in a real repository. */
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

#include "chain/chain.h"
#include "chain/chain.h"
#include "common/cleanup.h"
#include "common/command.h"
#include "common/error.h"
#include "repo-fixture.h"

#define SIZE (2 * 1024 * 1024)

#define assert_contains(haystack, needle)                                      \
  do {                                                                         \
    const char *_h = (haystack), *_n = (needle);                               \
    if (_h == NULL || strstr (_h, _n) == NULL)                                 \
      fail_msg ("\"%s\" does not contain \"%s\"", _h ? _h : "(null)", _n);     \
  } while (0)

static const struct fixture_write writes1[] = {
  { "vda", 0x11, 0, 524288 },
  { "vda", 0x22, 1048576, 262144 },
};
static const struct fixture_write writes2[] = {
  { "vda", 0x33, 65536, 131072 },
  { "vda", 0x44, 1048576, 65536 },
};
static const struct fixture_write writes3[] = {
  { "vda", 0x55, 0, 65536 },
  { "vda", 0x66, 2031616, 65536 },
};

struct fixture {
  char *dir;
  char *root;
  struct chain_repo *repo;
  char *id[3];
};

static void run (const char *program, ...) __attribute__ ((sentinel));

static void
run (const char *program, ...)
{
  struct command *cmd = command_new (program);
  va_list ap;
  const char *arg;

  assert_non_null (cmd);
  va_start (ap, program);
  while ((arg = va_arg (ap, const char *)) != NULL)
    command_add_arg (cmd, arg);
  va_end (ap);
  if (command_run (cmd, NULL) == -1)
    fail_msg ("%s", get_error ());
  command_free (cmd);
}

static int
setup (void **state)
{
  struct fixture *f = calloc (1, sizeof *f);
  const char *tmp = getenv ("TMPDIR");
  const char *vda[] = { "vda", NULL };

  assert_non_null (f);
  assert_true (asprintf (&f->dir, "%s/knib-compress-XXXXXX", tmp ? tmp : "/tmp")
               > 0);
  assert_non_null (mkdtemp (f->dir));
  assert_true (asprintf (&f->root, "%s/repo", f->dir) > 0);
  f->repo = chain_repo_open (f->root, true);
  assert_non_null (f->repo);
  f->id[0]
    = fixture_backup (f->repo, "web01", CHAIN_MODE_AUTO, vda, SIZE, writes1, 2);
  f->id[1]
    = fixture_backup (f->repo, "web01", CHAIN_MODE_AUTO, vda, SIZE, writes2, 2);
  f->id[2]
    = fixture_backup (f->repo, "web01", CHAIN_MODE_AUTO, vda, SIZE, writes3, 2);
  for (int i = 0; i < 3; i++)
    if (f->id[i] == NULL)
      fail_msg ("backup %d: %s", i + 1, get_error ());
  *state = f;
  return 0;
}

static int
teardown (void **state)
{
  struct fixture *f = *state;

  chain_repo_free (f->repo);
  run ("rm", "-rf", f->dir, NULL);
  for (int i = 0; i < 3; i++)
    free (f->id[i]);
  free (f->root);
  free (f->dir);
  free (f);
  return 0;
}

static char *
path_of (struct fixture *f, int backup, const char *name)
{
  char *p;

  assert_true (asprintf (&p, "%s/vms/web01/%s/%s", f->root, f->id[backup], name)
               > 0);
  return p;
}

/* The entries of backup's directory whose names start with prefix. */
static int
count_files (struct fixture *f, int backup, const char *prefix)
{
  CLEANUP_FREE char *dir = path_of (f, backup, "");
  DIR *d = opendir (dir);
  struct dirent *e;
  int n = 0;

  assert_non_null (d);
  while ((e = readdir (d)) != NULL)
    n += strncmp (e->d_name, prefix, strlen (prefix)) == 0;
  closedir (d);
  return n;
}

/* The chain of backup up to the tip as a raw file, to compare later. */
static void
snapshot (struct fixture *f, int backup, const char *name)
{
  CLEANUP_FREE char *image = path_of (f, backup, "vda.qcow2");
  CLEANUP_FREE char *raw = NULL;

  assert_true (asprintf (&raw, "%s/%s", f->dir, name) > 0);
  run ("qemu-img", "convert", "-f", "qcow2", "-O", "raw", image, raw, NULL);
}

static void
reads_as (struct fixture *f, int backup, const char *name)
{
  CLEANUP_FREE char *image = path_of (f, backup, "vda.qcow2");
  CLEANUP_FREE char *raw = NULL;

  assert_true (asprintf (&raw, "%s/%s", f->dir, name) > 0);
  run ("qemu-img", "compare", "-q", "-f", "qcow2", "-F", "raw", image, raw,
       NULL);
}

static void
verify_clean (struct fixture *f)
{
  struct chain_verify_summary sum;

  if (chain_verify (f->repo, "web01", NULL, 0, NULL, NULL, &sum) == -1)
    fail_msg ("verify: %s", get_error ());
  assert_int_equal (sum.errors, 0);
  assert_int_equal (sum.images, 3);
}

static char *
file_hash (const char *path)
{
  char hex[CHAIN_HASH_HEX_LEN + 1];

  assert_int_equal (chain_hash_file (path, CHAIN_HASH_SEGMENTS, hex), 0);
  return strdup (hex);
}

/* Where the ready copy of backup's vda goes (its name holds the hash
 * the manifest records for the image). */
static char *
ready_of (struct fixture *f, int backup)
{
  struct chain_manifest *m
    = chain_backup_find (f->repo, "web01", f->id[backup]);
  char name[128];

  assert_non_null (m);
  snprintf (name, sizeof name, ".compressed-vda.qcow2.%s",
            m->disks.ptr[0].hash);
  chain_manifest_free (m);
  return path_of (f, backup, name);
}

static const struct chain_compress_options zstd_opts = {
  .compression = CHAIN_COMPRESSION_ZSTD,
  .threads = 2,
  .min_free = 1.0,
};

/* ---- Tests ---- */

static void
test_middle_of_chain (void **state)
{
  struct fixture *f = *state;
  struct chain_compress_result r;
  struct chain_manifest *m;
  CLEANUP_FREE char *image = path_of (f, 1, "vda.qcow2");
  CLEANUP_FREE char *hash = NULL;
  struct stat before, after;

  snapshot (f, 1, "b2.raw");
  snapshot (f, 2, "b3.raw");
  assert_int_equal (stat (image, &before), 0);
  if (chain_compress (f->repo, f->id[1], &zstd_opts, &r) == -1)
    fail_msg ("%s", get_error ());
  assert_string_equal (r.vm, "web01");
  assert_string_equal (r.id, f->id[1]);
  assert_int_equal (r.disks.len, 1);
  assert_true (r.disks.ptr[0].done);
  assert_int_equal (r.disks.ptr[0].before, CHAIN_COMPRESSION_NONE);
  assert_int_equal (r.disks.ptr[0].after, CHAIN_COMPRESSION_ZSTD);
  assert_int_equal (r.disks.ptr[0].bytes_before, before.st_size);
  assert_int_equal (stat (image, &after), 0);
  assert_int_equal (r.disks.ptr[0].bytes_after, after.st_size);
  assert_true (after.st_size < before.st_size);
  chain_compress_result_release (&r);

  m = chain_backup_find (f->repo, "web01", f->id[1]);
  assert_non_null (m);
  assert_int_equal (m->disks.ptr[0].compression, CHAIN_COMPRESSION_ZSTD);
  assert_int_equal (m->disks.ptr[0].bytes_before_compression, before.st_size);
  assert_int_equal (m->disks.ptr[0].bytes_written, after.st_size);
  hash = file_hash (image);
  assert_string_equal (m->disks.ptr[0].hash, hash);
  chain_manifest_free (m);

  reads_as (f, 1, "b2.raw");
  reads_as (f, 2, "b3.raw");
  verify_clean (f);
  assert_int_equal (count_files (f, 1, "."), 2); /* . and .. */
}

static void
test_phases_apart (void **state)
{
  struct fixture *f = *state;
  struct chain_compress_options o = zstd_opts;
  struct chain_compress_result r;
  CLEANUP_FREE char *image = path_of (f, 0, "vda.qcow2");
  CLEANUP_FREE char *ready = ready_of (f, 0);
  CLEANUP_FREE char *hash = file_hash (image);
  CLEANUP_FREE char *hash2 = NULL;

  snapshot (f, 2, "b3.raw");
  o.compression = CHAIN_COMPRESSION_ZLIB;
  o.vm = "web01";
  if (chain_compress_start (f->repo, f->id[0], &o, &r) == -1)
    fail_msg ("%s", get_error ());
  chain_compress_result_release (&r);
  assert_int_equal (access (ready, F_OK), 0);
  hash2 = file_hash (image);
  assert_string_equal (hash, hash2);
  verify_clean (f);
  /* A second start reuses the ready copy of the same type. */
  if (chain_compress_start (f->repo, f->id[0], &o, &r) == -1)
    fail_msg ("%s", get_error ());
  assert_false (r.disks.ptr[0].done);
  chain_compress_result_release (&r);
  if (chain_compress_finalize (f->repo, f->id[0], &o, &r) == -1)
    fail_msg ("%s", get_error ());
  chain_compress_result_release (&r);
  assert_int_equal (access (ready, F_OK), -1);
  reads_as (f, 2, "b3.raw");
  verify_clean (f);
  /* Compressed already: nothing to do, and not an error. */
  if (chain_compress (f->repo, f->id[0], &o, &r) == -1)
    fail_msg ("%s", get_error ());
  assert_int_equal (r.disks.ptr[0].before, CHAIN_COMPRESSION_ZLIB);
  assert_false (r.disks.ptr[0].done);
  chain_compress_result_release (&r);
}

static void
test_finalize_needs_a_copy (void **state)
{
  struct fixture *f = *state;
  struct chain_compress_result r;

  assert_int_equal (chain_compress_finalize (f->repo, f->id[2], &zstd_opts, &r),
                    -1);
  assert_int_equal (get_errno (), ENOENT);
  assert_contains (get_error (), "has no compressed copy");
  chain_compress_result_release (&r);
}

/* A restore or verify holds the shared lock: finalize waits for it, up
 * to its timeout, and swaps nothing meanwhile. */
static void
test_finalize_waits_for_readers (void **state)
{
  struct fixture *f = *state;
  struct chain_compress_options o = zstd_opts;
  struct chain_compress_result r;
  struct chain_lock *reader;
  CLEANUP_FREE char *image = path_of (f, 2, "vda.qcow2");
  CLEANUP_FREE char *hash = file_hash (image);
  CLEANUP_FREE char *hash2 = NULL;

  if (chain_compress_start (f->repo, f->id[2], &o, &r) == -1)
    fail_msg ("%s", get_error ());
  chain_compress_result_release (&r);
  reader = chain_lock_new (f->repo, "web01", CHAIN_LOCK_SHARED, "restore", 0);
  assert_non_null (reader);
  o.timeout_ms = 300;
  assert_int_equal (chain_compress_finalize (f->repo, f->id[2], &o, &r), -1);
  assert_int_equal (get_errno (), ETIMEDOUT);
  assert_contains (get_error (), "wait for it to finish");
  chain_compress_result_release (&r);
  hash2 = file_hash (image);
  assert_string_equal (hash, hash2);
  chain_lock_free (reader);
  if (chain_compress_finalize (f->repo, f->id[2], &o, &r) == -1)
    fail_msg ("%s", get_error ());
  chain_compress_result_release (&r);
  verify_clean (f);
}

static void
cancel_after_first (void *opaque, const char *disk, uint64_t done,
                    uint64_t total)
{
  *(volatile sig_atomic_t *) opaque = 1;
}

/* An interruption leaves the original as it was and no partial copy. */
static void
test_cancel_leaves_nothing (void **state)
{
  struct fixture *f = *state;
  struct chain_compress_options o = zstd_opts;
  struct chain_compress_result r;
  volatile sig_atomic_t cancel = 0;
  CLEANUP_FREE char *image = path_of (f, 0, "vda.qcow2");
  CLEANUP_FREE char *hash = file_hash (image);
  CLEANUP_FREE char *hash2 = NULL;

  o.cancel = &cancel;
  o.progress = cancel_after_first;
  o.opaque = (void *) &cancel;
  assert_int_equal (chain_compress (f->repo, f->id[0], &o, &r), -1);
  assert_int_equal (get_errno (), EINTR);
  assert_contains (get_error (), "interrupted");
  chain_compress_result_release (&r);
  hash2 = file_hash (image);
  assert_string_equal (hash, hash2);
  assert_int_equal (count_files (f, 0, ".compress"), 0);
  verify_clean (f);
}

/* A reader that comes while the copy is written makes the finalize of
 * a run of both phases time out: the ready copy goes too. */
struct late_reader {
  struct fixture *f;
  struct chain_lock *lock;
};

static void
take_shared_lock (void *opaque, const char *disk, uint64_t done, uint64_t total)
{
  struct late_reader *lr = opaque;

  if (lr->lock == NULL)
    lr->lock
      = chain_lock_new (lr->f->repo, "web01", CHAIN_LOCK_SHARED, "verify", 0);
}

static void
test_timeout_in_finalize_leaves_nothing (void **state)
{
  struct fixture *f = *state;
  struct chain_compress_options o = zstd_opts;
  struct chain_compress_result r;
  struct late_reader lr = { .f = f };
  CLEANUP_FREE char *image = path_of (f, 1, "vda.qcow2");
  CLEANUP_FREE char *hash = file_hash (image);
  CLEANUP_FREE char *hash2 = NULL;

  o.timeout_ms = 1500;
  o.progress = take_shared_lock;
  o.opaque = &lr;
  assert_int_equal (chain_compress (f->repo, f->id[1], &o, &r), -1);
  assert_int_equal (get_errno (), ETIMEDOUT);
  assert_contains (get_error (), "being read by another knib");
  chain_compress_result_release (&r);
  assert_non_null (lr.lock);
  chain_lock_free (lr.lock);
  hash2 = file_hash (image);
  assert_string_equal (hash, hash2);
  assert_int_equal (count_files (f, 1, ".compress"), 0);
  verify_clean (f);
}

/* --min-free: refused before anything is written. */
static void
test_min_free (void **state)
{
  struct fixture *f = *state;
  struct chain_compress_options o = zstd_opts;
  struct chain_compress_result r;

  o.min_free = 1e9;
  assert_int_equal (chain_compress (f->repo, f->id[1], &o, &r), -1);
  assert_int_equal (get_errno (), ENOSPC);
  assert_contains (get_error (), "not enough free space");
  chain_compress_result_release (&r);
  assert_int_equal (count_files (f, 1, ".compress"), 0);
}

/* A partial copy whose writer is gone is removed, and so is a ready
 * copy of an image that changed; a partial copy whose writer holds its
 * lock is not. */
static void
test_recover_partials (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *dead = path_of (f, 1, ".compressing-vda.qcow2.AAAAAA");
  CLEANUP_FREE char *live = path_of (f, 1, ".compressing-vda.qcow2.BBBBBB");
  /* A ready copy of an image that has another hash now. */
  CLEANUP_FREE char *stale
    = path_of (f, 1, ".compressed-vda.qcow2.00000000000000000000000000000000");
  chain_string_vector done = empty_vector;
  struct chain_lock *lock;
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  int fd;

  fd = open (dead, O_WRONLY | O_CREAT, 0600);
  assert_true (fd >= 0);
  close (fd);
  fd = open (stale, O_WRONLY | O_CREAT, 0600);
  assert_true (fd >= 0);
  close (fd);
  fd = open (live, O_WRONLY | O_CREAT, 0600);
  assert_true (fd >= 0);
  assert_int_equal (fcntl (fd, F_OFD_SETLK, &fl), 0);
  lock = chain_lock_new (f->repo, "web01", CHAIN_LOCK_EXCLUSIVE, "test", 0);
  assert_non_null (lock);
  assert_int_equal (chain_compress_recover (lock, &done), 0);
  chain_lock_free (lock);
  assert_int_equal (done.len, 2);
  assert_contains (done.ptr[0], "AAAAAA");
  assert_contains (done.ptr[1], "changed since");
  assert_int_equal (access (dead, F_OK), -1);
  assert_int_equal (access (stale, F_OK), -1);
  assert_int_equal (access (live, F_OK), 0);
  chain_string_vector_release (&done);
  close (fd);
  unlink (live);
}

/* A ready copy that does not match its image is refused. */
static void
test_bad_ready_copy (void **state)
{
  struct fixture *f = *state;
  struct chain_compress_result r;
  CLEANUP_FREE char *ready = ready_of (f, 1);

  run ("qemu-img", "create", "-q", "-f", "qcow2", "-o", "compression_type=zstd",
       ready, "4M", NULL);
  assert_int_equal (chain_compress_finalize (f->repo, f->id[1], &zstd_opts, &r),
                    -1);
  assert_contains (get_error (), "does not match image");
  chain_compress_result_release (&r);
  verify_clean (f);
}

/* An image that holds compressed clusters already is refused, and
 * nothing is left behind. */
static void
test_compressed_clusters_refused (void **state)
{
  struct fixture *f = *state;
  struct chain_compress_result r;
  CLEANUP_FREE char *image = path_of (f, 2, "vda.qcow2");

  run ("qemu-io", "-f", "qcow2", "-c", "write -c -P 0x77 131072 65536", image,
       NULL);
  assert_int_equal (chain_compress (f->repo, f->id[2], &zstd_opts, &r), -1);
  assert_contains (get_error (), "already holds compressed clusters");
  assert_contains (get_error (), "guest offset 131072");
  chain_compress_result_release (&r);
  assert_int_equal (count_files (f, 2, ".compress"), 0);
}

static void
test_unknown_backup (void **state)
{
  struct fixture *f = *state;
  struct chain_compress_result r;
  struct chain_compress_options o = zstd_opts;

  assert_int_equal (chain_compress (f->repo, "20000101T000000Z", &o, &r), -1);
  assert_contains (get_error (), "20000101T000000Z");
  chain_compress_result_release (&r);
  o.compression = CHAIN_COMPRESSION_NONE;
  assert_int_equal (chain_compress (f->repo, f->id[0], &o, &r), -1);
  assert_contains (get_error (), "zstd or zlib");
  chain_compress_result_release (&r);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_middle_of_chain, setup, teardown),
    cmocka_unit_test_setup_teardown (test_phases_apart, setup, teardown),
    cmocka_unit_test_setup_teardown (test_finalize_needs_a_copy, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_finalize_waits_for_readers, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_cancel_leaves_nothing, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_timeout_in_finalize_leaves_nothing,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_min_free, setup, teardown),
    cmocka_unit_test_setup_teardown (test_recover_partials, setup, teardown),
    cmocka_unit_test_setup_teardown (test_bad_ready_copy, setup, teardown),
    cmocka_unit_test_setup_teardown (test_compressed_clusters_refused, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_unknown_backup, setup, teardown),
  };

  if (getenv ("TEST_FILTER") != NULL)
    cmocka_set_test_filter (getenv ("TEST_FILTER"));
  return cmocka_run_group_tests (tests, NULL, NULL);
}
