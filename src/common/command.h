/* SPDX-License-Identifier: Apache-2.0 */
/* command.h: run an external program from an argv (never a shell string). */
#ifndef KNIB_COMMON_COMMAND_H
#define KNIB_COMMON_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The most stdout a run captures by default; more is an error. */
#define COMMAND_MAX_OUTPUT (16u * 1024 * 1024)

/* How much of stderr is kept (its end); the error quotes its last lines. */
#define COMMAND_STDERR_KEEP (64u * 1024)

/* Between SIGTERM and SIGKILL when a command has to be stopped. */
#define COMMAND_KILL_GRACE_MS 2000

/* One program to run, built up then run once:
 *
 *   struct command *cmd = command_new ("qemu-img");
 *   command_add_args (cmd, "check", "--output=json", path, NULL);
 *   command_capture_stdout (cmd, 0);
 *   command_set_timeout (cmd, 60000);
 *   if (command_run (cmd, NULL) == -1)
 *     ... get_error () is "qemu-img check: exit status 2: <stderr>" ...
 *
 * The child gets stdin from the buffer given or /dev/null, stdout into a
 * buffer or /dev/null, stderr into a buffer; every other descriptor is
 * closed (except those passed with command_pass_fd); signal dispositions
 * and mask are reset.  The program is found in $PATH by the parent, then
 * run with execve: nothing ever goes through a shell.
 *
 * The builder calls cannot fail: running out of memory while building is
 * remembered and reported by command_run or command_start.  The object
 * is not thread-safe; different threads may run different commands. */
struct command;

/* A command running program (a path, or a name looked up in $PATH).
 * NULL with set_error when out of memory. */
struct command *command_new (const char *program)
  __attribute__ ((warn_unused_result));

/* Stop the command if it was started and still runs (SIGTERM, then
 * SIGKILL after the grace period), reap it, free everything.  The last
 * error is left alone.  NULL is a no-op. */
void command_free (struct command *cmd);

void command_add_arg (struct command *cmd, const char *arg);
void command_add_argf (struct command *cmd, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));
/* Several arguments, ended by NULL. */
void command_add_args (struct command *cmd, ...) __attribute__ ((sentinel));

/* What errors call the command.  The default is the program's base name
 * followed by its first argument when that is a plain word: "qemu-img
 * check", "cat". */
void command_set_name (struct command *cmd, const char *name);

/* Feed these bytes (copied) to the child's stdin, then close it.  A child
 * that exits without reading them all is not an error by itself. */
void command_set_stdin (struct command *cmd, const void *data, size_t len);

/* Capture stdout, at most max_bytes of it (0: COMMAND_MAX_OUTPUT); a
 * child that writes more is killed and the run fails with EFBIG.  Without
 * this, stdout goes to /dev/null.  Only for command_run. */
void command_capture_stdout (struct command *cmd, size_t max_bytes);

/* Kill the child when it runs longer than timeout_ms (-1, the default:
 * never): SIGTERM, then SIGKILL after the grace period.  The run fails
 * with errno ETIMEDOUT and command_timed_out says so. */
void command_set_timeout (struct command *cmd, int timeout_ms);

/* Time between SIGTERM and SIGKILL (default COMMAND_KILL_GRACE_MS). */
void command_set_kill_grace (struct command *cmd, int grace_ms);

/* Run the child in a process group of its own, so that stopping it also
 * stops whatever it started, and a terminal's ^C does not reach it. */
void command_set_process_group (struct command *cmd, bool on);

/* Send the child SIGTERM when the thread that started it exits
 * (PR_SET_PDEATHSIG), so helpers die with knib.  Start such commands
 * from a thread that lives as long as they should. */
void command_set_die_with_parent (struct command *cmd, bool on);

/* Leave fd (>= 3, owned by the caller) open in the child under the same
 * number, for programs given "/dev/fdset/N"-style descriptors. */
void command_pass_fd (struct command *cmd, int fd);

/* Run the command to its end.
 *
 * With exit_status NULL, anything but exit status 0 is an error:
 * "NAME: exit status 2: <stderr's last lines>".  With exit_status set,
 * the exit status is stored there and any exit is success.  Either way,
 * a missing program ("cannot run 'qemu-img': No such file or
 * directory"), death by a signal ("NAME: killed by SIGSEGV: ..."), the
 * timeout and too much output are errors.  Returns 0 or -1 with
 * set_error.  A command runs once. */
int command_run (struct command *cmd, int *exit_status)
  __attribute__ ((warn_unused_result));

/* Start the command and return at once (for daemons such as
 * qemu-storage-daemon).  stdin is /dev/null, stdout goes to /dev/null,
 * stderr to a memory file whose end is quoted when it fails.  Finish with
 * command_wait or command_stop (or command_free). */
int command_start (struct command *cmd) __attribute__ ((warn_unused_result));

/* The started child's pid, or -1. */
pid_t command_pid (const struct command *cmd);

/* Wait up to timeout_ms (-1: for ever) for a started command to end,
 * with the same result rules as command_run.  When the time runs out
 * the child keeps running and this fails with errno ETIMEDOUT. */
int command_wait (struct command *cmd, int timeout_ms, int *exit_status)
  __attribute__ ((warn_unused_result));

/* Stop a started command: SIGTERM, SIGKILL after the grace period, reap.
 * Returns 0 when it ended by exit status 0 or by that SIGTERM; -1 with
 * set_error when it failed on its own or had to be killed. */
int command_stop (struct command *cmd) __attribute__ ((warn_unused_result));

/* Captured stdout (NUL-terminated; *len without the NUL), borrowed: ""
 * before a run or when not captured. */
const char *command_get_stdout (const struct command *cmd, size_t *len);

/* Take the captured stdout: the caller frees it. */
char *command_steal_stdout (struct command *cmd, size_t *len);

/* The end of stderr (the last COMMAND_STDERR_KEEP bytes), borrowed. */
const char *command_get_stderr (const struct command *cmd);

/* After the command ended: the signal that killed it, or 0. */
int command_term_signal (const struct command *cmd);

/* The last run or wait failed because the timeout passed. */
bool command_timed_out (const struct command *cmd);

#endif
