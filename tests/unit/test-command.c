/* SPDX-License-Identifier: Apache-2.0 */
/* test-command.c: the external-program runner against small real programs. */
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/command.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"

static void
assert_error_contains (const char *needle)
{
  if (strstr (get_error (), needle) == NULL)
    fail_msg ("error '%s' does not contain '%s'", get_error (), needle);
}

/* Run "sh -c SCRIPT" and return the command (the runner never uses a
 * shell itself; the tests use one to make programs misbehave). */
static struct command *
sh (const char *script)
{
  struct command *cmd = command_new ("sh");

  assert_non_null (cmd);
  command_add_args (cmd, "-c", script, NULL);
  return cmd;
}

static void
test_true_succeeds (void **state)
{
  struct command *cmd = command_new ("/bin/true");

  assert_int_equal (command_run (cmd, NULL), 0);
  assert_int_equal (command_term_signal (cmd), 0);
  assert_false (command_timed_out (cmd));
  command_free (cmd);
}

static void
test_false_is_an_error (void **state)
{
  struct command *cmd = command_new ("false");

  assert_int_equal (command_run (cmd, NULL), -1);
  assert_string_equal (get_error (), "false: exit status 1");
  command_free (cmd);
}

static void
test_exit_status_returned (void **state)
{
  struct command *cmd = sh ("exit 7");
  int status = -1;

  assert_int_equal (command_run (cmd, &status), 0);
  assert_int_equal (status, 7);
  command_free (cmd);
}

static void
test_missing_program (void **state)
{
  struct command *cmd = command_new ("knib-no-such-program");

  command_add_arg (cmd, "check");
  assert_int_equal (command_run (cmd, NULL), -1);
  assert_string_equal (
    get_error (),
    "cannot run 'knib-no-such-program': No such file or directory");
  assert_int_equal (get_errno (), ENOENT);
  command_free (cmd);

  cmd = command_new ("/nonexistent/qemu-img");
  assert_int_equal (command_run (cmd, NULL), -1);
  assert_string_equal (
    get_error (),
    "cannot run '/nonexistent/qemu-img': No such file or directory");
  command_free (cmd);
}

static void
test_not_executable (void **state)
{
  struct command *cmd = command_new ("/etc/passwd");

  assert_int_equal (command_run (cmd, NULL), -1);
  assert_string_equal (get_error (),
                       "cannot run '/etc/passwd': Permission denied");
  command_free (cmd);
}

static void
test_stdin_to_stdout (void **state)
{
  struct command *cmd = command_new ("cat");
  size_t len;

  command_set_stdin (cmd, "hello\nworld\n", 12);
  command_capture_stdout (cmd, 0);
  assert_int_equal (command_run (cmd, NULL), 0);
  assert_string_equal (command_get_stdout (cmd, &len), "hello\nworld\n");
  assert_int_equal (len, 12);
  command_free (cmd);
}

/* Bigger than any pipe buffer both ways: the runner must interleave
 * writing stdin and reading stdout. */
static void
test_large_stdin_round_trip (void **state)
{
  const size_t n = 8 * 1024 * 1024 + 123;
  CLEANUP_FREE char *data = malloc (n);
  CLEANUP_FREE char *got = NULL;
  struct command *cmd = command_new ("cat");
  size_t len;

  for (size_t i = 0; i < n; i++)
    data[i] = (char) (i * 7 + i / 4096);
  command_set_stdin (cmd, data, n);
  command_capture_stdout (cmd, 0);
  assert_int_equal (command_run (cmd, NULL), 0);
  got = command_steal_stdout (cmd, &len);
  assert_int_equal (len, n);
  assert_memory_equal (got, data, n);
  command_free (cmd);
}

static void
test_stdin_is_dev_null (void **state)
{
  struct command *cmd = command_new ("cat");

  command_capture_stdout (cmd, 0);
  command_set_timeout (cmd, 10000);
  assert_int_equal (command_run (cmd, NULL), 0);
  assert_string_equal (command_get_stdout (cmd, NULL), "");
  command_free (cmd);
}

/* A child that exits without reading its stdin must not kill us with
 * SIGPIPE (the test would die) nor fail the run. */
static void
test_unread_stdin (void **state)
{
  const size_t n = 4 * 1024 * 1024;
  CLEANUP_FREE char *data = calloc (1, n);
  struct command *cmd = command_new ("true");

  command_set_stdin (cmd, data, n);
  assert_int_equal (command_run (cmd, NULL), 0);
  command_free (cmd);
}

static void
test_stdout_discarded (void **state)
{
  struct command *cmd = sh ("echo something");

  assert_int_equal (command_run (cmd, NULL), 0);
  assert_string_equal (command_get_stdout (cmd, NULL), "");
  command_free (cmd);
}

static void
test_stderr_in_error (void **state)
{
  struct command *cmd = sh ("echo one >&2; echo two >&2; echo 'three\tx' >&2;"
                            " echo four >&2; echo >&2; exit 2");

  command_set_name (cmd, "qemu-img check");
  assert_int_equal (command_run (cmd, NULL), -1);
  assert_string_equal (get_error (),
                       "qemu-img check: exit status 2: two; three x; four");
  assert_string_equal (command_get_stderr (cmd),
                       "one\ntwo\nthree\tx\nfour\n\n");
  command_free (cmd);
}

static void
test_default_name (void **state)
{
  struct command *cmd = command_new ("/bin/sh");

  /* "-c" is not a plain word: the name is just the program's base name. */
  command_add_args (cmd, "-c", "echo 'qemu-img: Could not open' >&2; exit 1",
                    NULL);
  assert_int_equal (command_run (cmd, NULL), -1);
  assert_string_equal (get_error (),
                       "sh: exit status 1: qemu-img: Could not open");
  command_free (cmd);
}

static void
test_killed_by_signal (void **state)
{
  struct command *cmd = sh ("echo dying >&2; kill -USR1 $$");
  int status = 0;

  assert_int_equal (command_run (cmd, &status), -1);
  assert_string_equal (get_error (), "sh: killed by SIGUSR1: dying");
  assert_int_equal (command_term_signal (cmd), SIGUSR1);
  command_free (cmd);
}

static void
test_timeout (void **state)
{
  struct command *cmd = command_new ("sleep");
  int64_t start = monotonic_ms (), took;

  command_add_arg (cmd, "10");
  command_set_timeout (cmd, 300);
  assert_int_equal (command_run (cmd, NULL), -1);
  took = monotonic_ms () - start;
  assert_true (command_timed_out (cmd));
  assert_int_equal (errno, ETIMEDOUT);
  assert_string_equal (get_error (), "sleep: timed out after 0.3 s");
  assert_true (took >= 300);
  assert_true (took < 1500);
  command_free (cmd);
}

/* A child that ignores SIGTERM gets SIGKILL after the grace period; with
 * its own process group, its children die too. */
static void
test_timeout_sigkill_process_group (void **state)
{
  struct command *cmd = sh ("trap '' TERM; echo ready >&2;"
                            " while :; do sleep 1; done");
  int64_t start = monotonic_ms (), took;

  command_set_timeout (cmd, 200);
  command_set_kill_grace (cmd, 200);
  command_set_process_group (cmd, true);
  command_capture_stdout (cmd, 0);
  assert_int_equal (command_run (cmd, NULL), -1);
  took = monotonic_ms () - start;
  assert_true (command_timed_out (cmd));
  assert_int_equal (command_term_signal (cmd), SIGKILL);
  assert_string_equal (get_error (), "sh: timed out after 0.2 s: ready");
  assert_true (took >= 400);
  assert_true (took < 2000);
  command_free (cmd);
}

/* A child that closes its output but keeps running still times out. */
static void
test_timeout_after_closing_output (void **state)
{
  struct command *cmd = sh ("exec >&- 2>&-; exec sleep 10");

  command_set_timeout (cmd, 200);
  command_capture_stdout (cmd, 0);
  assert_int_equal (command_run (cmd, NULL), -1);
  assert_true (command_timed_out (cmd));
  command_free (cmd);
}

/* A background grandchild holding the pipes does not hold up the run. */
static void
test_grandchild_holds_pipes (void **state)
{
  struct command *cmd = sh ("echo out; sleep 5 & echo done");
  int64_t start = monotonic_ms ();

  command_capture_stdout (cmd, 0);
  assert_int_equal (command_run (cmd, NULL), 0);
  assert_true (monotonic_ms () - start < 2000);
  assert_string_equal (command_get_stdout (cmd, NULL), "out\ndone\n");
  command_free (cmd);
}

static void
test_output_over_bound (void **state)
{
  struct command *cmd = command_new ("cat");

  command_add_arg (cmd, "/dev/zero");
  command_capture_stdout (cmd, 1024 * 1024);
  assert_int_equal (command_run (cmd, NULL), -1);
  assert_int_equal (errno, EFBIG);
  assert_string_equal (get_error (),
                       "cat: more than 1048576 bytes of output: stopped it");
  command_free (cmd);
}

static void
test_default_bound (void **state)
{
  struct command *cmd = command_new ("head");
  size_t len;

  command_add_args (cmd, "-c", "16777216", "/dev/zero", NULL);
  command_capture_stdout (cmd, 0);
  assert_int_equal (command_run (cmd, NULL), 0);
  command_get_stdout (cmd, &len);
  assert_int_equal (len, 16777216);
  command_free (cmd);

  cmd = command_new ("head");
  command_add_args (cmd, "-c", "16777217", "/dev/zero", NULL);
  command_capture_stdout (cmd, 0);
  assert_int_equal (command_run (cmd, NULL), -1);
  assert_int_equal (errno, EFBIG);
  assert_error_contains ("more than 16777216 bytes of output");
  command_free (cmd);
}

static void
test_stderr_flood_is_bounded (void **state)
{
  struct command *cmd;

  cmd = sh ("head -c 300000 /dev/zero | tr '\\0' x >&2; echo >&2;"
            " echo last >&2; exit 1");
  assert_int_equal (command_run (cmd, NULL), -1);
  assert_int_equal (strlen (command_get_stderr (cmd)), COMMAND_STDERR_KEEP);
  /* The error quotes at most about 1 KiB of it. */
  assert_true (strlen (get_error ()) < 1100);
  assert_error_contains ("xxx; last");
  command_free (cmd);
}

/* Descriptors of the parent do not leak into the child unless passed. */
static void
test_close_on_exec (void **state)
{
  int fd = open ("/dev/null", O_RDONLY); /* deliberately no O_CLOEXEC */
  CLEANUP_FREE char *script = NULL;
  struct command *cmd;
  int status = -1;

  assert_true (fd > 2);
  assert_true (asprintf (&script, "test -e /proc/$$/fd/%d", fd) > 0);
  cmd = sh (script);
  assert_int_equal (command_run (cmd, &status), 0);
  assert_int_equal (status, 1);
  command_free (cmd);

  cmd = sh (script);
  command_pass_fd (cmd, fd);
  assert_int_equal (command_run (cmd, &status), 0);
  assert_int_equal (status, 0);
  command_free (cmd);
  close (fd);
}

static void
test_process_group (void **state)
{
  const char *script = "read pid comm state ppid pgrp rest < /proc/$$/stat;"
                       " test \"$pgrp\" = \"$$\"";
  struct command *cmd = sh (script);
  int status = -1;

  command_set_process_group (cmd, true);
  assert_int_equal (command_run (cmd, &status), 0);
  assert_int_equal (status, 0);
  command_free (cmd);

  cmd = sh (script);
  assert_int_equal (command_run (cmd, &status), 0);
  assert_int_equal (status, 1);
  command_free (cmd);
}

/* Signals ignored by knib are not ignored by the child. */
static void
test_signals_reset (void **state)
{
  struct command *cmd = sh ("kill -PIPE $$; exit 0");
  void (*old) (int) = signal (SIGPIPE, SIG_IGN);

  assert_int_equal (command_run (cmd, NULL), -1);
  assert_int_equal (command_term_signal (cmd), SIGPIPE);
  command_free (cmd);
  signal (SIGPIPE, old);
}

static bool
process_gone (pid_t pid)
{
  char path[64], buf[512];
  FILE *f;
  char *p;

  snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
  f = fopen (path, "r");
  if (f == NULL)
    return true;
  p = fgets (buf, sizeof buf, f);
  fclose (f);
  p = p ? strrchr (buf, ')') : NULL;
  return p != NULL && (p[2] == 'Z' || p[2] == 'X');
}

/* A helper started with die_with_parent gets SIGTERM when its parent
 * (here an intermediate process) exits. */
static void
test_die_with_parent (void **state)
{
  int fds[2];
  pid_t mid, helper = -1;
  int status;
  int64_t deadline;

  assert_int_equal (pipe (fds), 0);
  mid = fork ();
  assert_true (mid >= 0);
  if (mid == 0) {
    struct command *cmd = command_new ("sleep");
    pid_t p;

    command_add_arg (cmd, "30");
    command_set_die_with_parent (cmd, true);
    if (command_start (cmd) == -1)
      _exit (1);
    p = command_pid (cmd);
    if (write (fds[1], &p, sizeof p) != sizeof p)
      _exit (1);
    _exit (0); /* without command_free: the helper is left behind */
  }
  close (fds[1]);
  assert_int_equal (read (fds[0], &helper, sizeof helper), sizeof helper);
  close (fds[0]);
  assert_int_equal (waitpid (mid, &status, 0), mid);
  assert_true (WIFEXITED (status) && WEXITSTATUS (status) == 0);
  deadline = monotonic_ms () + 5000;
  while (!process_gone (helper) && monotonic_ms () < deadline)
    usleep (10000);
  assert_true (process_gone (helper));
}

static void
test_start_stop (void **state)
{
  struct command *cmd = command_new ("sleep");

  command_add_arg (cmd, "30");
  assert_int_equal (command_start (cmd), 0);
  assert_true (command_pid (cmd) > 0);
  assert_int_equal (command_wait (cmd, 100, NULL), -1);
  assert_int_equal (errno, ETIMEDOUT);
  assert_string_equal (get_error (), "sleep: still running after 0.1 s");
  assert_int_equal (command_stop (cmd), 0);
  assert_int_equal (command_term_signal (cmd), SIGTERM);
  command_free (cmd);
}

static void
test_start_wait_failure (void **state)
{
  struct command *cmd = sh ("echo 'qemu-storage-daemon: bad option' >&2;"
                            " exit 4");

  command_set_name (cmd, "qemu-storage-daemon");
  assert_int_equal (command_start (cmd), 0);
  assert_int_equal (command_wait (cmd, 10000, NULL), -1);
  assert_string_equal (
    get_error (),
    "qemu-storage-daemon: exit status 4: qemu-storage-daemon: bad option");
  command_free (cmd);
}

static void
test_start_stop_needs_sigkill (void **state)
{
  struct command *cmd = sh ("trap '' TERM; echo stubborn >&2;"
                            " while :; do sleep 1; done");

  command_set_process_group (cmd, true);
  command_set_kill_grace (cmd, 200);
  assert_int_equal (command_start (cmd), 0);
  usleep (100000);
  assert_int_equal (command_stop (cmd), -1);
  assert_string_equal (get_error (),
                       "sh: did not stop within 0.2 s of SIGTERM: killed it");
  assert_string_equal (command_get_stderr (cmd), "stubborn\n");
  command_free (cmd);
}

/* Freeing a running command stops it and leaves the last error alone. */
static void
test_free_stops (void **state)
{
  struct command *cmd = command_new ("sleep");
  pid_t pid;

  command_add_arg (cmd, "30");
  assert_int_equal (command_start (cmd), 0);
  pid = command_pid (cmd);
  set_error (0, "unrelated");
  command_free (cmd);
  assert_string_equal (get_error (), "unrelated");
  assert_int_equal (kill (pid, 0), -1);
}

static void
test_runs_once (void **state)
{
  struct command *cmd = command_new ("true");

  assert_int_equal (command_run (cmd, NULL), 0);
  assert_int_equal (command_run (cmd, NULL), -1);
  assert_string_equal (get_error (), "command 'true' was already run");
  command_free (cmd);
}

static void
test_argf (void **state)
{
  struct command *cmd = command_new ("echo");

  command_add_argf (cmd, "size=%d", 42);
  command_add_arg (cmd, "it's");
  command_capture_stdout (cmd, 0);
  assert_int_equal (command_run (cmd, NULL), 0);
  assert_string_equal (command_get_stdout (cmd, NULL), "size=42 it's\n");
  command_free (cmd);
}

/* KNIB_DEBUG=cmd shows the argv, quoted so that it can be pasted. */
static void
test_debug_trace (void **state)
{
  char path[] = "/tmp/knib-trace-XXXXXX";
  int fd = mkstemp (path), saved = dup (2);
  struct command *cmd = command_new ("echo");
  char buf[512] = "";

  assert_true (fd >= 0 && saved >= 0);
  command_add_args (cmd, "a b", "it's", "--x=1", NULL);
  fflush (stderr);
  dup2 (fd, 2);
  debug_set (DEBUG_CMD);
  assert_int_equal (command_run (cmd, NULL), 0);
  debug_set (0);
  fflush (stderr);
  dup2 (saved, 2);
  close (saved);
  assert_true (pread (fd, buf, sizeof buf - 1, 0) > 0);
  close (fd);
  unlink (path);
  assert_string_equal (buf,
                       "knib: debug cmd: run: echo 'a b' 'it'\\''s' --x=1\n");
  command_free (cmd);
}

int
main (void)
{
  alarm (120); /* a hung child or lock must not hang "make check" */
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_true_succeeds),
    cmocka_unit_test (test_false_is_an_error),
    cmocka_unit_test (test_exit_status_returned),
    cmocka_unit_test (test_missing_program),
    cmocka_unit_test (test_not_executable),
    cmocka_unit_test (test_stdin_to_stdout),
    cmocka_unit_test (test_large_stdin_round_trip),
    cmocka_unit_test (test_stdin_is_dev_null),
    cmocka_unit_test (test_unread_stdin),
    cmocka_unit_test (test_stdout_discarded),
    cmocka_unit_test (test_stderr_in_error),
    cmocka_unit_test (test_default_name),
    cmocka_unit_test (test_killed_by_signal),
    cmocka_unit_test (test_timeout),
    cmocka_unit_test (test_timeout_sigkill_process_group),
    cmocka_unit_test (test_timeout_after_closing_output),
    cmocka_unit_test (test_grandchild_holds_pipes),
    cmocka_unit_test (test_output_over_bound),
    cmocka_unit_test (test_default_bound),
    cmocka_unit_test (test_stderr_flood_is_bounded),
    cmocka_unit_test (test_close_on_exec),
    cmocka_unit_test (test_process_group),
    cmocka_unit_test (test_signals_reset),
    cmocka_unit_test (test_die_with_parent),
    cmocka_unit_test (test_start_stop),
    cmocka_unit_test (test_start_wait_failure),
    cmocka_unit_test (test_start_stop_needs_sigkill),
    cmocka_unit_test (test_free_stops),
    cmocka_unit_test (test_runs_once),
    cmocka_unit_test (test_argf),
    cmocka_unit_test (test_debug_trace),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
