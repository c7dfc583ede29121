/* SPDX-License-Identifier: Apache-2.0 */
/* test-chain-lock.c: per-VM OFD locks: conflicts, holders, waiting. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "chain/internal.h"
#include "common/cleanup.h"
#include "common/command.h"
#include "common/error.h"
#include "common/util.h"

struct fixture {
  char *dir;
  struct chain_repo *repo;
};

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
  *state = f;
  return 0;
}

static int
teardown (void **state)
{
  struct fixture *f = *state;

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

static struct chain_lock *
lock (struct fixture *f, enum chain_lock_mode mode, const char *op, int ms)
{
  return chain_lock_new (f->repo, "web01", mode, op, ms);
}

/* Two locks taken by one process conflict: they are OFD locks, not
 * per-process POSIX locks. */
static void
test_exclusive_conflict_in_one_process (void **state)
{
  struct fixture *f = *state;
  struct chain_lock *a = lock (f, CHAIN_LOCK_EXCLUSIVE, "backup", 0);
  struct chain_lock *b;

  assert_non_null (a);
  b = lock (f, CHAIN_LOCK_EXCLUSIVE, "delete", 0);
  assert_null (b);
  assert_int_equal (errno, EWOULDBLOCK);
  assert_error ("vm 'web01' is locked by another knib (pid %d): a backup is "
                "running; wait for it to finish",
                (int) getpid ());
  b = lock (f, CHAIN_LOCK_SHARED, "restore", 0);
  assert_null (b);
  assert_error ("vm 'web01' is locked by another knib (pid %d): a backup is "
                "running; wait for it to finish",
                (int) getpid ());
  chain_lock_free (a);

  b = lock (f, CHAIN_LOCK_EXCLUSIVE, "delete", 0);
  assert_non_null (b);
  chain_lock_free (b);
}

static void
test_shared_and_exclusive (void **state)
{
  struct fixture *f = *state;
  struct chain_lock *a, *b, *c;

  a = lock (f, CHAIN_LOCK_EXCLUSIVE, "backup", 0); /* makes the VM */
  chain_lock_free (a);
  a = lock (f, CHAIN_LOCK_SHARED, "restore", 0);
  b = lock (f, CHAIN_LOCK_SHARED, "verify", 0);
  assert_non_null (a);
  assert_non_null (b);
  c = lock (f, CHAIN_LOCK_EXCLUSIVE, "delete", 0);
  assert_null (c);
  assert_error ("vm 'web01' is being read by another knib (a restore, "
                "verify or validation is running): wait for it to finish");
  chain_lock_free (a);
  c = lock (f, CHAIN_LOCK_EXCLUSIVE, "delete", 0);
  assert_null (c);
  chain_lock_free (b);
  c = lock (f, CHAIN_LOCK_EXCLUSIVE, "delete", 0);
  assert_non_null (c);
  chain_lock_free (c);
}

/* A child process holds the lock: the error names its pid. */
static void
test_holder_in_child_process (void **state)
{
  struct fixture *f = *state;
  int ready[2], go[2];
  pid_t child;
  char c;
  int status;
  struct chain_lock *l;

  assert_int_equal (pipe (ready), 0);
  assert_int_equal (pipe (go), 0);
  child = fork ();
  assert_true (child >= 0);
  if (child == 0) {
    struct chain_lock *held = lock (f, CHAIN_LOCK_EXCLUSIVE, "backup", 0);
    char x = held ? 'y' : 'n';
    close (go[1]); /* so that the parent's close means EOF */
    if (write (ready[1], &x, 1) != 1 || read (go[0], &x, 1) < 0)
      _exit (2);
    chain_lock_free (held);
    _exit (0);
  }
  close (ready[1]);
  close (go[0]);
  assert_int_equal (read (ready[0], &c, 1), 1);
  assert_int_equal (c, 'y');

  l = lock (f, CHAIN_LOCK_EXCLUSIVE, "backup", 0);
  assert_null (l);
  assert_error ("vm 'web01' is locked by another knib (pid %d): a backup is "
                "running; wait for it to finish",
                (int) child);

  close (go[1]); /* let it go */
  assert_int_equal (waitpid (child, &status, 0), child);
  assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
  close (ready[0]);
  l = lock (f, CHAIN_LOCK_EXCLUSIVE, "backup", 0);
  assert_non_null (l);
  chain_lock_free (l);
}

/* A holder killed with SIGKILL releases its lock. */
static void
test_killed_holder_releases (void **state)
{
  struct fixture *f = *state;
  int ready[2];
  pid_t child;
  char c;
  struct chain_lock *l;

  assert_int_equal (pipe (ready), 0);
  child = fork ();
  assert_true (child >= 0);
  if (child == 0) {
    struct chain_lock *held = lock (f, CHAIN_LOCK_EXCLUSIVE, "backup", 0);
    char x = held ? 'y' : 'n';
    if (write (ready[1], &x, 1) != 1)
      _exit (2);
    pause ();
    _exit (0);
  }
  close (ready[1]);
  assert_int_equal (read (ready[0], &c, 1), 1);
  assert_int_equal (c, 'y');
  assert_null (lock (f, CHAIN_LOCK_EXCLUSIVE, "backup", 0));
  kill (child, SIGKILL);
  waitpid (child, NULL, 0);
  close (ready[0]);
  l = lock (f, CHAIN_LOCK_EXCLUSIVE, "backup", 0);
  assert_non_null (l);
  chain_lock_free (l);
}

/* The blocking variant waits for the holder, or gives up in time. */
static void
test_blocking_with_timeout (void **state)
{
  struct fixture *f = *state;
  int ready[2];
  pid_t child;
  char c;
  int64_t start;
  struct chain_lock *l;

  assert_int_equal (pipe (ready), 0);
  child = fork ();
  assert_true (child >= 0);
  if (child == 0) {
    struct chain_lock *held = lock (f, CHAIN_LOCK_EXCLUSIVE, "backup", 0);
    char x = held ? 'y' : 'n';
    if (write (ready[1], &x, 1) != 1)
      _exit (2);
    usleep (400000);
    chain_lock_free (held);
    _exit (0);
  }
  close (ready[1]);
  assert_int_equal (read (ready[0], &c, 1), 1);
  close (ready[0]);

  start = monotonic_ms ();
  l = lock (f, CHAIN_LOCK_EXCLUSIVE, "delete", 100);
  assert_null (l);
  assert_true (monotonic_ms () - start >= 100);
  assert_error ("vm 'web01' is locked by another knib (pid %d): a backup is "
                "running; wait for it to finish (waited 0.1 s)",
                (int) child);

  l = lock (f, CHAIN_LOCK_EXCLUSIVE, "delete", 10000);
  assert_non_null (l);
  assert_true (monotonic_ms () - start < 5000);
  chain_lock_free (l);
  waitpid (child, NULL, 0);
}

/* The holder recorded in the lock file may be on another host (NFS). */
static void
test_holder_on_other_host (void **state)
{
  struct fixture *f = *state;
  struct chain_lock *a = lock (f, CHAIN_LOCK_EXCLUSIVE, "backup", 0);
  CLEANUP_FREE char *path = NULL;
  FILE *fp;

  assert_non_null (a);
  assert_true (asprintf (&path, "%s/vms/web01/.lock", f->dir) > 0);
  fp = fopen (path, "w");
  assert_non_null (fp);
  fputs ("{\"pid\": 4321, \"host\": \"nfs-peer\", \"operation\": \"delete\", "
         "\"since\": \"2026-11-23T20:30:15Z\"}",
         fp);
  fclose (fp);
  assert_null (lock (f, CHAIN_LOCK_EXCLUSIVE, "backup", 0));
  assert_error ("vm 'web01' is locked by another knib (pid 4321 on host "
                "'nfs-peer'): a delete is running; wait for it to finish");

  fp = fopen (path, "w");
  fclose (fp);
  assert_null (lock (f, CHAIN_LOCK_EXCLUSIVE, "backup", 0));
  assert_error ("vm 'web01' is locked by another knib: a backup or delete is "
                "running; wait for it to finish");
  chain_lock_free (a);
}

static void
test_lock_file_cleared (void **state)
{
  struct fixture *f = *state;
  struct chain_lock *a = lock (f, CHAIN_LOCK_EXCLUSIVE, "backup", 0);
  CLEANUP_FREE char *path = NULL;
  struct stat st;

  assert_non_null (a);
  assert_true (asprintf (&path, "%s/vms/web01/.lock", f->dir) > 0);
  assert_int_equal (stat (path, &st), 0);
  assert_true (st.st_size > 0);
  assert_int_equal (st.st_mode & 0777, 0600);
  chain_lock_free (a);
  /* Cleared in place, never truncated: the holder is gone. */
  assert_int_equal (stat (path, &st), 0);
  assert_true (st.st_size > 0);
  {
    char buf[4096];
    FILE *fp = fopen (path, "r");
    size_t n;

    assert_non_null (fp);
    n = fread (buf, 1, sizeof buf - 1, fp);
    fclose (fp);
    buf[n] = '\0';
    assert_int_equal (strspn (buf, " \n"), n);
  }
}

/* A program started while the lock is held does not keep it. */
static void
test_lock_not_inherited_by_programs (void **state)
{
  struct fixture *f = *state;
  struct chain_lock *a = lock (f, CHAIN_LOCK_EXCLUSIVE, "backup", 0);
  struct command *cmd = command_new ("sleep");

  assert_non_null (a);
  command_add_arg (cmd, "30");
  assert_int_equal (command_start (cmd), 0);
  chain_lock_free (a);
  a = lock (f, CHAIN_LOCK_EXCLUSIVE, "backup", 0);
  assert_non_null (a);
  chain_lock_free (a);
  assert_int_equal (command_stop (cmd), 0);
  command_free (cmd);
}

static void
test_shared_needs_existing_vm (void **state)
{
  struct fixture *f = *state;
  CLEANUP_FREE char *path = NULL;
  struct stat st;

  assert_null (
    chain_lock_new (f->repo, "ghost", CHAIN_LOCK_SHARED, "restore", 0));
  assert_int_equal (errno, ENOENT);
  assert_error ("vm 'ghost' has no backups in repository '%s'", f->dir);
  assert_true (asprintf (&path, "%s/vms/ghost", f->dir) > 0);
  assert_int_equal (stat (path, &st), -1);
}

static void
test_bad_vm_names (void **state)
{
  struct fixture *f = *state;
  const char *bad[] = { "../x", "a/b", ".", "", "..", "-rf" };
  chain_string_vector vms = empty_vector;

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_null (
      chain_lock_new (f->repo, bad[i], CHAIN_LOCK_EXCLUSIVE, "backup", 0));
    assert_non_null (strstr (get_error (), "invalid vm name '"));
  }
  assert_error ("invalid vm name '-rf': it may not start with '.' or '-'");
  assert_int_equal (chain_vm_list (f->repo, &vms), 0);
  assert_int_equal (vms.len, 0);
}

int
main (void)
{
  alarm (120); /* a hung child or lock must not hang "make check" */
#define T(fn) cmocka_unit_test_setup_teardown (fn, setup, teardown)
  const struct CMUnitTest tests[] = {
    T (test_exclusive_conflict_in_one_process),
    T (test_shared_and_exclusive),
    T (test_holder_in_child_process),
    T (test_killed_holder_releases),
    T (test_blocking_with_timeout),
    T (test_holder_on_other_host),
    T (test_lock_file_cleared),
    T (test_lock_not_inherited_by_programs),
    T (test_shared_needs_existing_vm),
    T (test_bad_vm_names),
  };
#undef T

  return cmocka_run_group_tests (tests, NULL, NULL);
}
