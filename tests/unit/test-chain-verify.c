/* SPDX-License-Identifier: Apache-2.0 */
/* test-chain-verify.c: verify and restore on real qcow2 chains in a repository. */
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
#include "common/cleanup.h"
#include "common/command.h"
#include "common/error.h"
#include "repo-fixture.h"

#define SIZE (1024 * 1024)

/* The writes of three backups of web01's vda: a full one and two
 * incremental ones, each changing some clusters and leaving others. */
static const struct fixture_write writes1[] = {
  { "vda", 0x11, 0, 65536 },
  { "vda", 0x22, 262144, 131072 },
};
static const struct fixture_write writes2[] = {
  { "vda", 0x33, 65536, 65536 },
  { "vda", 0x44, 262144, 65536 },
};
static const struct fixture_write writes3[] = {
  { "vda", 0x55, 0, 65536 },
  { "vda", 0x66, 983040, 65536 },
};

struct fixture {
  char *dir;  /* the test's directory */
  char *root; /* dir/repo */
  struct chain_repo *repo;
  char *id[3]; /* the three backups of web01, oldest first */
};

/* What the verify callback saw, one line per item:
 * "STATUS BACKUP DISK: errors | warnings". */
struct seen {
  chain_string_vector lines;
};

static char *
path_of (struct fixture *f, int backup, const char *image)
{
  char *p;

  assert_true (
    asprintf (&p, "%s/vms/web01/%s/%s", f->root, f->id[backup], image) > 0);
  return p;
}

static int
setup (void **state)
{
  struct fixture *f = calloc (1, sizeof *f);
  const char *tmp = getenv ("TMPDIR");
  const char *vda[] = { "vda", NULL };

  assert_non_null (f);
  assert_true (asprintf (&f->dir, "%s/knib-verify-XXXXXX", tmp ? tmp : "/tmp")
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

static void run (const char *program, ...) __attribute__ ((sentinel));

/* Run a program that must succeed. */
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

static void
join (char *buf, size_t size, const chain_string_vector *v)
{
  for (size_t i = 0; i < v->len; i++) {
    size_t n = strlen (buf);
    snprintf (buf + n, size - n, "%s%s", i ? "; " : "", v->ptr[i]);
  }
}

static void
collect (const struct chain_verify_item *item, void *opaque)
{
  struct seen *s = opaque;
  char line[4096];
  char *copy;

  snprintf (line, sizeof line, "%s %s %s: ",
            item->errors->len     ? "error"
            : item->warnings->len ? "warning"
                                  : "ok",
            item->backup ? item->backup : "-", item->disk ? item->disk : "-");
  join (line, sizeof line, item->errors);
  if (item->warnings->len > 0) {
    strcat (line, " | ");
    join (line, sizeof line, item->warnings);
  }
  copy = strdup (line);
  assert_non_null (copy);
  assert_int_equal (chain_string_vector_append (&s->lines, copy), 0);
}

/* Verify backup id (or the VM with id NULL); the callback's lines. */
static void
verify (struct fixture *f, const char *id, struct seen *s,
        struct chain_verify_summary *sum)
{
  s->lines = (chain_string_vector) empty_vector;
  if (chain_verify (f->repo, "web01", id, 0, collect, s, sum) == -1)
    fail_msg ("verify: %s", get_error ());
}

/* The line of the item about backup id's disk ("-" for the backup). */
static const char *
line_of (const struct seen *s, const char *id, const char *disk)
{
  char prefix[128];

  for (size_t i = 0; i < s->lines.len; i++) {
    const char *l = strchr (s->lines.ptr[i], ' ') + 1;

    snprintf (prefix, sizeof prefix, "%s %s: ", id, disk);
    if (strncmp (l, prefix, strlen (prefix)) == 0)
      return s->lines.ptr[i];
  }
  fail_msg ("no item for %s %s", id, disk);
  return NULL;
}

static void
assert_contains (const char *text, const char *part)
{
  if (strstr (text, part) == NULL)
    fail_msg ("'%s' does not contain '%s'", text, part);
}

static void
test_verify_good_chain (void **state)
{
  struct fixture *f = *state;
  struct chain_verify_summary sum;
  struct seen s;

  verify (f, f->id[2], &s, &sum);
  assert_int_equal (sum.backups, 3);
  assert_int_equal (sum.images, 3);
  assert_int_equal (sum.ok, 3);
  assert_int_equal (sum.errors, 0);
  assert_int_equal (sum.warnings, 0);
  /* Full first, then each incremental. */
  assert_int_equal (s.lines.len, 3);
  for (int i = 0; i < 3; i++)
    assert_contains (s.lines.ptr[i], f->id[i]);
  for (int i = 0; i < 3; i++)
    assert_true (strncmp (line_of (&s, f->id[i], "vda"), "ok ", 3) == 0);
  chain_string_vector_release (&s.lines);

  /* A backup in the middle: its chain only. */
  verify (f, f->id[1], &s, &sum);
  assert_int_equal (sum.images, 2);
  assert_int_equal (sum.errors, 0);
  chain_string_vector_release (&s.lines);
}

static void
test_verify_vm_checks_each_image_once (void **state)
{
  struct fixture *f = *state;
  struct chain_verify_summary sum;
  struct seen s;
  const char *vda[] = { "vda", NULL };
  char *iso = fixture_backup (f->repo, "web01", CHAIN_MODE_ISOLATED, vda, SIZE,
                              writes1, 1);

  assert_non_null (iso);
  verify (f, NULL, &s, &sum);
  /* Three chains of the same images plus the isolated backup. */
  assert_int_equal (sum.backups, 4);
  assert_int_equal (sum.images, 4);
  assert_int_equal (sum.ok, 4);
  assert_int_equal (s.lines.len, 4);
  chain_string_vector_release (&s.lines);
  free (iso);
}

static void
flip_bytes (const char *path, off_t offset)
{
  int fd = open (path, O_RDWR);
  unsigned char buf[16];

  assert_true (fd >= 0);
  assert_int_equal (pread (fd, buf, sizeof buf, offset), sizeof buf);
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] ^= 0xff;
  assert_int_equal (pwrite (fd, buf, sizeof buf, offset), sizeof buf);
  assert_int_equal (close (fd), 0);
}

static void
test_verify_corrupted_data (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *path = path_of (f, 1, "vda.qcow2");
  struct chain_verify_summary sum;
  struct stat st;
  struct seen s;
  const char *l;

  /* The last bytes of the image are guest data (qemu-io appends). */
  assert_int_equal (stat (path, &st), 0);
  flip_bytes (path, st.st_size - 4096);
  verify (f, f->id[2], &s, &sum);
  assert_int_equal (sum.errors, 1);
  assert_int_equal (sum.ok, 2);
  l = line_of (&s, f->id[1], "vda");
  assert_true (strncmp (l, "error ", 6) == 0);
  assert_contains (l, path);
  assert_contains (l, "the image changed after the backup");
  chain_string_vector_release (&s.lines);
}

static void
test_verify_corrupted_metadata (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *path = path_of (f, 0, "vda.qcow2");
  struct chain_verify_summary sum;
  struct seen s;
  const char *l;

  /* A small image that qemu-img made has its L1 table at 0x30000:
   * garble its entry. */
  flip_bytes (path, 0x30000 + 2);
  verify (f, f->id[0], &s, &sum);
  assert_int_equal (sum.errors, 1);
  l = line_of (&s, f->id[0], "vda");
  assert_contains (l, path);
  assert_contains (l, "qemu-img check");
  chain_string_vector_release (&s.lines);
}

static uint64_t
be64_at (int fd, off_t offset)
{
  unsigned char b[8];
  uint64_t v = 0;

  assert_int_equal (pread (fd, b, 8, offset), 8);
  for (int i = 0; i < 8; i++)
    v = v << 8 | b[i];
  return v;
}

static void
test_verify_leak_is_a_warning (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *path = path_of (f, 2, "vda.qcow2");
  CLEANUP_FREE char *manifest = path_of (f, 2, "manifest.json");
  struct chain_manifest *m;
  struct chain_verify_summary sum;
  unsigned char one[2] = { 0, 1 };
  uint64_t block;
  struct stat st;
  struct seen s;
  int fd;

  /* One more cluster at the end of the file, counted as used by the
   * refcounts and used by nothing (16-bit refcounts, qemu-img's
   * default), and a manifest whose hash agrees. */
  fd = open (path, O_RDWR);
  assert_true (fd >= 0);
  assert_int_equal (fstat (fd, &st), 0);
  block = be64_at (fd, be64_at (fd, 48));
  assert_int_equal (ftruncate (fd, st.st_size + 65536), 0);
  assert_int_equal (pwrite (fd, one, 2, block + 2 * (st.st_size / 65536)), 2);
  assert_int_equal (close (fd), 0);
  m = chain_backup_find (f->repo, "web01", f->id[2]);
  assert_non_null (m);
  assert_int_equal (
    chain_hash_file (path, m->disks.ptr[0].hash_kind, m->disks.ptr[0].hash), 0);
  assert_int_equal (chain_manifest_commit (m, manifest), 0);
  chain_manifest_free (m);

  verify (f, f->id[2], &s, &sum);
  assert_int_equal (sum.errors, 0);
  assert_int_equal (sum.warnings, 1);
  assert_int_equal (sum.ok, 2);
  assert_true (strncmp (line_of (&s, f->id[2], "vda"), "warning ", 8) == 0);
  assert_contains (line_of (&s, f->id[2], "vda"), "1 leaked cluster (");
  chain_string_vector_release (&s.lines);
}

static void
test_verify_truncated (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *path = path_of (f, 0, "vda.qcow2");
  struct chain_verify_summary sum;
  struct stat st;
  struct seen s;
  const char *l;

  assert_int_equal (stat (path, &st), 0);
  assert_int_equal (truncate (path, st.st_size - 65536), 0);
  verify (f, f->id[2], &s, &sum);
  assert_true (sum.errors >= 1);
  l = line_of (&s, f->id[0], "vda");
  assert_true (strncmp (l, "error ", 6) == 0);
  assert_contains (l, path);
  assert_contains (l, "xxh3-128");
  chain_string_vector_release (&s.lines);

  /* Cut to a few bytes: not even a header. */
  assert_int_equal (truncate (path, 40), 0);
  verify (f, f->id[0], &s, &sum);
  assert_int_equal (sum.errors, 1);
  assert_contains (line_of (&s, f->id[0], "vda"), path);
  chain_string_vector_release (&s.lines);
}

static void
test_verify_missing_image (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *path = path_of (f, 1, "vda.qcow2");
  CLEANUP_FREE char *want = NULL;
  struct chain_verify_summary sum;
  struct seen s;

  assert_int_equal (unlink (path), 0);
  verify (f, f->id[2], &s, &sum);
  assert_true (asprintf (&want, "image '%s' is missing", path) > 0);
  assert_contains (line_of (&s, f->id[1], "vda"), want);
  /* The image above it cannot be opened without it. */
  assert_true (strncmp (line_of (&s, f->id[2], "vda"), "error ", 6) == 0);
  assert_true (strncmp (line_of (&s, f->id[0], "vda"), "ok ", 3) == 0);
  assert_int_equal (sum.errors, 2);
  chain_string_vector_release (&s.lines);
}

static void
test_verify_wrong_backing_file (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *path = path_of (f, 2, "vda.qcow2");
  CLEANUP_FREE char *wrong = NULL;
  CLEANUP_FREE char *want = NULL;
  struct chain_verify_summary sum;
  struct seen s;

  /* Backup 3 now claims backup 1 as its backing file. */
  assert_true (asprintf (&wrong, "../%s/vda.qcow2", f->id[0]) > 0);
  run ("qemu-img", "rebase", "-u", "-f", "qcow2", "-b", wrong, "-F", "qcow2",
       path, NULL);
  verify (f, f->id[2], &s, &sum);
  assert_true (asprintf (&want,
                         "image '%s' has backing file '%s'; it must be "
                         "'../%s/vda.qcow2'",
                         path, wrong, f->id[1])
               > 0);
  assert_contains (line_of (&s, f->id[2], "vda"), want);
  assert_int_equal (sum.errors, 1);
  chain_string_vector_release (&s.lines);
}

static void
test_verify_broken_chain (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *dir = NULL;
  struct chain_verify_summary sum;
  struct seen s;

  assert_true (asprintf (&dir, "%s/vms/web01/%s", f->root, f->id[1]) > 0);
  run ("rm", "-rf", dir, NULL);
  verify (f, f->id[2], &s, &sum);
  assert_int_equal (sum.errors, 1);
  assert_int_equal (sum.images, 0);
  assert_contains (line_of (&s, f->id[2], "-"), "the chain is broken");
  chain_string_vector_release (&s.lines);

  /* The VM: backup 1 is fine, backup 3 is not. */
  verify (f, NULL, &s, &sum);
  assert_int_equal (sum.images, 1);
  assert_int_equal (sum.ok, 1);
  assert_int_equal (sum.errors, 1);
  chain_string_vector_release (&s.lines);
}

static void
test_verify_unknown (void **state)
{
  struct fixture *f = *state;
  struct chain_verify_summary sum;

  assert_int_equal (
    chain_verify (f->repo, "web01", "20000101T000000Z", 0, NULL, NULL, &sum),
    -1);
  assert_contains (get_error (), "has no backup '20000101T000000Z'");
  assert_int_equal (
    chain_verify (f->repo, "nosuchvm", NULL, 0, NULL, NULL, &sum), -1);
  assert_contains (get_error (), "vm 'nosuchvm' has no backups");
}

static void
test_verify_waits_for_no_backup (void **state)
{
  struct fixture *f = *state;
  struct chain_verify_summary sum;
  struct chain_lock *lock
    = chain_lock_new (f->repo, "web01", CHAIN_LOCK_EXCLUSIVE, "backup", 0);

  /* A backup holds the VM: verify does not run under it. */
  assert_non_null (lock);
  assert_int_equal (
    chain_verify (f->repo, "web01", f->id[2], 0, NULL, NULL, &sum), -1);
  assert_contains (get_error (), "locked");
  chain_lock_free (lock);
}

/* A qcow2 image holding every write of the first n backups. */
static char *
reference (struct fixture *f, int n)
{
  const struct fixture_write *all[] = { writes1, writes2, writes3 };
  char *path, size[32];

  assert_true (asprintf (&path, "%s/reference-%d.qcow2", f->dir, n) > 0);
  snprintf (size, sizeof size, "%d", SIZE);
  run ("qemu-img", "create", "-q", "-f", "qcow2", path, size, NULL);
  for (int b = 0; b < n; b++)
    for (int i = 0; i < 2; i++)
      assert_int_equal (fixture_qemu_io_write (path, all[b][i].pattern,
                                               all[b][i].offset,
                                               all[b][i].length),
                        0);
  return path;
}

static int
compare (const char *fmt1, const char *a, const char *b)
{
  struct command *cmd = command_new ("qemu-img");
  int status;

  assert_non_null (cmd);
  command_add_args (cmd, "compare", "-q", "-f", fmt1, "-F", "qcow2", a, b,
                    NULL);
  assert_int_equal (command_run (cmd, &status), 0);
  command_free (cmd);
  return status;
}

/* Files in dir whose name starts with prefix. */
static int
count_files (const char *dir, const char *prefix)
{
  DIR *d = opendir (dir);
  struct dirent *e;
  int n = 0;

  assert_non_null (d);
  while ((e = readdir (d)) != NULL)
    if (strncmp (e->d_name, prefix, strlen (prefix)) == 0)
      n++;
  closedir (d);
  return n;
}

static int
restore (struct fixture *f, int backup, const char *to,
         enum chain_restore_format format, bool force)
{
  struct chain_restore_options o
    = { .vm = "web01", .to = to, .format = format, .force = force };

  return chain_restore (f->repo, f->id[backup], &o);
}

static void
test_restore_points_in_time (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *top = NULL;
  CLEANUP_FREE char *first = NULL;
  CLEANUP_FREE char *raw = NULL;
  CLEANUP_FREE char *ref3 = reference (f, 3);
  CLEANUP_FREE char *ref1 = reference (f, 1);
  CLEANUP_FREE char *ref2 = reference (f, 2);
  struct stat st;

  assert_true (asprintf (&top, "%s/top.qcow2", f->dir) > 0);
  assert_true (asprintf (&first, "%s/first.qcow2", f->dir) > 0);
  assert_true (asprintf (&raw, "%s/top.raw", f->dir) > 0);
  if (restore (f, 2, top, CHAIN_RESTORE_QCOW2, false) == -1)
    fail_msg ("restore: %s", get_error ());
  assert_int_equal (compare ("qcow2", top, ref3), 0);
  assert_int_equal (compare ("qcow2", top, ref2), 1);
  /* A standalone image, private to its owner. */
  run ("qemu-img", "check", "-q", "-f", "qcow2", top, NULL);
  {
    CLEANUP_FREE char *backing = NULL;
    assert_int_equal (chain_image_backing_file (top, &backing), 0);
    assert_null (backing);
  }
  assert_int_equal (stat (top, &st), 0);
  assert_int_equal (st.st_mode & 0777, 0600);

  if (restore (f, 0, first, CHAIN_RESTORE_QCOW2, false) == -1)
    fail_msg ("restore: %s", get_error ());
  assert_int_equal (compare ("qcow2", first, ref1), 0);

  if (restore (f, 2, raw, CHAIN_RESTORE_RAW, false) == -1)
    fail_msg ("restore: %s", get_error ());
  assert_int_equal (compare ("raw", raw, ref3), 0);
  assert_int_equal (stat (raw, &st), 0);
  assert_int_equal (st.st_size, SIZE);
  assert_int_equal (count_files (f->dir, ".knib-restore-"), 0);
}

static void
test_restore_refuses_existing (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *to = NULL;
  CLEANUP_FREE char *dir = NULL;
  CLEANUP_FREE char *inner = NULL;
  CLEANUP_FREE char *ref = reference (f, 3);
  struct stat st;
  FILE *fp;

  assert_true (asprintf (&to, "%s/taken.qcow2", f->dir) > 0);
  fp = fopen (to, "w");
  assert_non_null (fp);
  fputs ("precious", fp);
  assert_int_equal (fclose (fp), 0);
  assert_int_equal (restore (f, 2, to, CHAIN_RESTORE_QCOW2, false), -1);
  assert_contains (get_error (), "already exists");
  assert_contains (get_error (), to);
  assert_int_equal (stat (to, &st), 0);
  assert_int_equal (st.st_size, 8);
  assert_int_equal (count_files (f->dir, ".knib-restore-"), 0);

  if (restore (f, 2, to, CHAIN_RESTORE_QCOW2, true) == -1)
    fail_msg ("restore --force: %s", get_error ());
  assert_int_equal (compare ("qcow2", to, ref), 0);

  /* Into a directory, as DIR/vda.qcow2, but never over a directory,
   * even with force. */
  assert_true (asprintf (&dir, "%s/d", f->dir) > 0);
  assert_true (asprintf (&inner, "%s/d/vda.qcow2", f->dir) > 0);
  assert_int_equal (mkdir (dir, 0700), 0);
  assert_int_equal (mkdir (inner, 0700), 0);
  assert_int_equal (restore (f, 2, dir, CHAIN_RESTORE_QCOW2, true), -1);
  assert_contains (get_error (), "is a directory");
  assert_int_equal (rmdir (inner), 0);
  if (restore (f, 2, dir, CHAIN_RESTORE_QCOW2, false) == -1)
    fail_msg ("restore into a directory: %s", get_error ());
  assert_int_equal (compare ("qcow2", inner, ref), 0);
}

static void
test_restore_checks_the_chain (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *path = path_of (f, 0, "vda.qcow2");
  CLEANUP_FREE char *to = NULL;

  assert_true (asprintf (&to, "%s/out.qcow2", f->dir) > 0);
  assert_int_equal (unlink (path), 0);
  assert_int_equal (restore (f, 2, to, CHAIN_RESTORE_QCOW2, false), -1);
  assert_contains (get_error (), path);
  assert_contains (get_error (), "is missing");
  assert_int_equal (access (to, F_OK), -1);
  assert_int_equal (count_files (f->dir, ".knib-restore-"), 0);
}

static void
test_restore_failure_leaves_nothing (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *path = path_of (f, 0, "vda.qcow2");
  CLEANUP_FREE char *to = NULL;

  /* The chain looks whole (headers and links are right) but qemu-img
   * cannot read the full backup's garbled L1 table. */
  flip_bytes (path, 0x30000 + 2);
  assert_true (asprintf (&to, "%s/out.qcow2", f->dir) > 0);
  assert_int_equal (restore (f, 2, to, CHAIN_RESTORE_QCOW2, false), -1);
  assert_contains (get_error (), "qemu-img convert");
  assert_int_equal (access (to, F_OK), -1);
  assert_int_equal (count_files (f->dir, ".knib-restore-"), 0);
}

static int64_t
fixed_clock (void *opaque)
{
  return INT64_C (1795465815); /* 2026-11-23T20:30:15Z */
}

static void
test_restore_several_disks (void **state)
{
  struct fixture *f = *state;
  const char *disks[] = { "vda", "vdb", NULL };
  const struct fixture_write w[]
    = { { "vda", 0x77, 0, 65536 }, { "vdb", 0x88, 65536, 65536 } };
  CLEANUP_FREE char *id = NULL;
  CLEANUP_FREE char *out = NULL;
  CLEANUP_FREE char *one = NULL;
  CLEANUP_FREE char *vdb = NULL;
  struct chain_restore_options o = { .vm = "db01" };

  /* Another time than web01's backups, so that the ids differ. */
  chain_repo_set_clock (f->repo, fixed_clock, NULL);
  id = fixture_backup (f->repo, "db01", CHAIN_MODE_AUTO, disks, SIZE, w, 2);
  assert_non_null (id);
  assert_true (asprintf (&out, "%s/db01", f->dir) > 0);
  assert_true (asprintf (&one, "%s/one.raw", f->dir) > 0);
  assert_true (asprintf (&vdb, "%s/db01/vdb.qcow2", f->dir) > 0);
  o.to = out;
  if (chain_restore (f->repo, id, &o) == -1)
    fail_msg ("restore: %s", get_error ());
  run ("qemu-io", "-f", "qcow2", "-c", "read -P 0x88 65536 65536", vdb, NULL);
  run ("qemu-io", "-f", "qcow2", "-c", "read -P 0 0 65536", vdb, NULL);
  assert_int_equal (count_files (out, "vda.qcow2"), 1);

  /* One disk of several, found without naming the VM. */
  o.vm = NULL;
  o.disk = "vdb";
  o.to = one;
  o.format = CHAIN_RESTORE_RAW;
  if (chain_restore (f->repo, id, &o) == -1)
    fail_msg ("restore: %s", get_error ());
  assert_int_equal (compare ("raw", one, vdb), 0);
  o.disk = "vdc";
  assert_int_equal (chain_restore (f->repo, id, &o), -1);
  assert_contains (get_error (), "has no disk 'vdc'");
}

static void
test_removed_backup (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *to = NULL;
  CLEANUP_FREE char *ref = reference (f, 3);
  struct chain_verify_summary sum;
  chain_manifest_vector list = empty_vector;
  struct seen s;

  /* Deleted with children: its files stay for them. */
  assert_int_equal (fixture_mark_removed (f->repo, "web01", f->id[0]), 0);
  assert_int_equal (chain_backup_list (f->repo, "web01", &list, NULL), 0);
  assert_int_equal (list.len, 3);
  assert_int_equal (list.ptr[0]->state, CHAIN_STATE_REMOVED);
  chain_manifest_vector_release (&list);

  verify (f, NULL, &s, &sum);
  assert_int_equal (sum.images, 3);
  assert_int_equal (sum.errors, 0);
  chain_string_vector_release (&s.lines);

  assert_true (asprintf (&to, "%s/out.qcow2", f->dir) > 0);
  assert_int_equal (restore (f, 0, to, CHAIN_RESTORE_QCOW2, false), -1);
  assert_contains (get_error (), "was deleted");
  if (restore (f, 2, to, CHAIN_RESTORE_QCOW2, false) == -1)
    fail_msg ("restore: %s", get_error ());
  assert_int_equal (compare ("qcow2", to, ref), 0);
}

static void
test_usage_and_backing (void **state)
{
  struct fixture *f = *state;
  struct chain_manifest *m = chain_backup_find (f->repo, "web01", f->id[1]);
  struct chain_manifest *p = chain_backup_find (f->repo, "web01", f->id[0]);
  CLEANUP_FREE char *path = path_of (f, 1, "vda.qcow2");
  CLEANUP_FREE char *backing = NULL;
  CLEANUP_FREE char *expected = NULL;
  CLEANUP_FREE char *none = NULL;
  uint64_t bytes;
  struct stat st;

  assert_non_null (m);
  assert_non_null (p);
  assert_int_equal (chain_backup_disk_usage (f->repo, m, &bytes), 0);
  assert_int_equal (stat (path, &st), 0);
  assert_int_equal (bytes, (uint64_t) st.st_blocks * 512);
  assert_int_equal (chain_image_backing_file (path, &backing), 0);
  assert_int_equal (
    chain_disk_expected_backing (p, &m->disks.ptr[0], &expected), 0);
  assert_string_equal (backing, expected);
  assert_int_equal (chain_disk_expected_backing (NULL, &p->disks.ptr[0], &none),
                    0);
  assert_null (none);
  assert_int_equal (chain_disk_expected_backing (NULL, &m->disks.ptr[0], &none),
                    -1);
  assert_null (none);
  assert_int_equal (unlink (path), 0);
  assert_int_equal (chain_backup_disk_usage (f->repo, m, &bytes), -1);
  assert_contains (get_error (), path);
  chain_manifest_free (m);
  chain_manifest_free (p);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown (test_verify_good_chain, setup, teardown),
    cmocka_unit_test_setup_teardown (test_verify_vm_checks_each_image_once,
                                     setup, teardown),
    cmocka_unit_test_setup_teardown (test_verify_corrupted_data, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_verify_corrupted_metadata, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_verify_leak_is_a_warning, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_verify_truncated, setup, teardown),
    cmocka_unit_test_setup_teardown (test_verify_missing_image, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_verify_wrong_backing_file, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_verify_broken_chain, setup, teardown),
    cmocka_unit_test_setup_teardown (test_verify_unknown, setup, teardown),
    cmocka_unit_test_setup_teardown (test_verify_waits_for_no_backup, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_restore_points_in_time, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_restore_refuses_existing, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_restore_checks_the_chain, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_restore_failure_leaves_nothing, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_restore_several_disks, setup,
                                     teardown),
    cmocka_unit_test_setup_teardown (test_removed_backup, setup, teardown),
    cmocka_unit_test_setup_teardown (test_usage_and_backing, setup, teardown),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
