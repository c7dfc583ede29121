/* SPDX-License-Identifier: Apache-2.0 */
/* command.c: fork and execve an argv with captured output and a timeout. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef __has_include
#if __has_include(<linux/close_range.h>)
#include <linux/close_range.h>
#endif
#endif

#include "cleanup.h"
#include "command.h"
#include "debug.h"
#include "error.h"
#include "util.h"
#include "vector.h"

extern char **environ;

/* Lines of stderr quoted in an error, and the most bytes they span. */
#define STDERR_TAIL_LINES 3
#define STDERR_TAIL_BYTES 1024

/* Without a pidfd, how often a running child is checked on. */
#define CHILD_POLL_MS 10

#define IO_CHUNK 65536

DEFINE_VECTOR_TYPE (string_vector, char *)
DEFINE_VECTOR_TYPE (fd_vector, int)
DEFINE_VECTOR_TYPE (byte_vector, char)

struct command {
  char *program;
  string_vector argv; /* argv[0] is program; the NULL is added to run */
  char *name;
  char *stdin_data;
  size_t stdin_len;
  bool has_stdin;
  bool capture_stdout;
  size_t max_stdout;
  int timeout_ms;
  int grace_ms;
  bool process_group;
  bool die_with_parent;
  fd_vector pass_fds;
  bool oom; /* a builder call ran out of memory */

  bool used; /* run or started: a command runs once */
  pid_t pid; /* -1 before start */
  int pidfd; /* -1 when none */
  int err_memfd;
  bool reaped;
  bool lost; /* someone else reaped it: no status */
  int status;
  bool timed_out;
  byte_vector out;
  byte_vector err;
};

struct command *
command_new (const char *program)
{
  struct command *cmd = calloc (1, sizeof *cmd);

  if (cmd == NULL) {
    set_error (errno, "calloc");
    return NULL;
  }
  cmd->timeout_ms = -1;
  cmd->grace_ms = COMMAND_KILL_GRACE_MS;
  cmd->pid = -1;
  cmd->pidfd = -1;
  cmd->err_memfd = -1;
  cmd->program = strdup (program);
  if (cmd->program == NULL) {
    set_error (errno, "strdup");
    free (cmd);
    return NULL;
  }
  command_add_arg (cmd, program);
  return cmd;
}

static void
kill_target (struct command *cmd, int sig)
{
  if (cmd->process_group && kill (-cmd->pid, sig) == 0)
    return;
  kill (cmd->pid, sig);
}

/* Reap the child if it has ended (or wait for it when flags is 0).
 * Returns true when it is reaped. */
static bool
reap (struct command *cmd, int flags)
{
  int status;
  pid_t r;

  if (cmd->reaped)
    return true;
  do
    r = waitpid (cmd->pid, &status, flags);
  while (r == -1 && errno == EINTR);
  if (r == 0)
    return false;
  if (r == -1)
    cmd->lost = true;
  else
    cmd->status = status;
  cmd->reaped = true;
  if (cmd->pidfd >= 0) {
    close (cmd->pidfd);
    cmd->pidfd = -1;
  }
  return true;
}

static void
sleep_ms (int ms)
{
  struct timespec ts
    = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

  while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
    ;
}

/* Wait until the child ends or the deadline passes.  Returns true when
 * it has ended (and is reaped). */
static bool
wait_exit (struct command *cmd, int64_t deadline)
{
  while (!reap (cmd, WNOHANG)) {
    int left = deadline_remaining_ms (deadline);

    if (left == 0)
      return false;
    if (cmd->pidfd >= 0) {
      struct pollfd p = { .fd = cmd->pidfd, .events = POLLIN };
      if (poll (&p, 1, left) == -1 && errno != EINTR)
        sleep_ms (CHILD_POLL_MS);
    }
    else
      sleep_ms (left < 0 || left > CHILD_POLL_MS ? CHILD_POLL_MS : left);
  }
  return true;
}

/* SIGTERM, then SIGKILL after the grace period; reap.  Returns true when
 * SIGKILL was needed.  Never records an error. */
static bool
terminate (struct command *cmd)
{
  if (cmd->pid == -1 || reap (cmd, WNOHANG))
    return false;
  kill_target (cmd, SIGTERM);
  if (wait_exit (cmd, deadline_after_ms (cmd->grace_ms)))
    return false;
  kill_target (cmd, SIGKILL);
  reap (cmd, 0);
  return true;
}

void
command_free (struct command *cmd)
{
  int saved = errno;

  if (cmd == NULL)
    return;
  terminate (cmd);
  for (size_t i = 0; i < cmd->argv.len; i++)
    free (cmd->argv.ptr[i]);
  string_vector_reset (&cmd->argv);
  fd_vector_reset (&cmd->pass_fds);
  byte_vector_reset (&cmd->out);
  byte_vector_reset (&cmd->err);
  if (cmd->pidfd >= 0)
    close (cmd->pidfd);
  if (cmd->err_memfd >= 0)
    close (cmd->err_memfd);
  free (cmd->program);
  free (cmd->name);
  free (cmd->stdin_data);
  free (cmd);
  errno = saved;
}

/* Builder calls: remember running out of memory for command_run. */
static void
add_owned_arg (struct command *cmd, char *arg)
{
  if (arg == NULL || string_vector_append (&cmd->argv, arg) == -1) {
    free (arg);
    cmd->oom = true;
  }
}

void
command_add_arg (struct command *cmd, const char *arg)
{
  add_owned_arg (cmd, strdup (arg));
}

void
command_add_argf (struct command *cmd, const char *fmt, ...)
{
  va_list ap;
  char *arg;

  va_start (ap, fmt);
  if (vasprintf (&arg, fmt, ap) == -1)
    arg = NULL;
  va_end (ap);
  add_owned_arg (cmd, arg);
}

void
command_add_args (struct command *cmd, ...)
{
  va_list ap;
  const char *arg;

  va_start (ap, cmd);
  while ((arg = va_arg (ap, const char *)) != NULL)
    command_add_arg (cmd, arg);
  va_end (ap);
}

void
command_set_name (struct command *cmd, const char *name)
{
  free (cmd->name);
  cmd->name = strdup (name);
  if (cmd->name == NULL)
    cmd->oom = true;
}

void
command_set_stdin (struct command *cmd, const void *data, size_t len)
{
  free (cmd->stdin_data);
  cmd->stdin_data = malloc (len > 0 ? len : 1);
  cmd->stdin_len = len;
  cmd->has_stdin = true;
  if (cmd->stdin_data == NULL)
    cmd->oom = true;
  else if (len > 0)
    memcpy (cmd->stdin_data, data, len);
}

void
command_capture_stdout (struct command *cmd, size_t max_bytes)
{
  cmd->capture_stdout = true;
  cmd->max_stdout = max_bytes > 0 ? max_bytes : COMMAND_MAX_OUTPUT;
}

void
command_set_timeout (struct command *cmd, int timeout_ms)
{
  cmd->timeout_ms = timeout_ms < 0 ? -1 : timeout_ms;
}

void
command_set_kill_grace (struct command *cmd, int grace_ms)
{
  cmd->grace_ms = grace_ms < 0 ? 0 : grace_ms;
}

void
command_set_process_group (struct command *cmd, bool on)
{
  cmd->process_group = on;
}

void
command_set_die_with_parent (struct command *cmd, bool on)
{
  cmd->die_with_parent = on;
}

void
command_pass_fd (struct command *cmd, int fd)
{
  if (fd_vector_append (&cmd->pass_fds, fd) == -1)
    cmd->oom = true;
}

const char *
command_get_stdout (const struct command *cmd, size_t *len)
{
  if (len)
    *len = cmd->out.len;
  return cmd->out.len > 0 ? cmd->out.ptr : "";
}

char *
command_steal_stdout (struct command *cmd, size_t *len)
{
  char *p = cmd->out.ptr;

  if (len)
    *len = cmd->out.len;
  if (p == NULL)
    p = strdup ("");
  cmd->out.ptr = NULL;
  cmd->out.len = cmd->out.cap = 0;
  return p;
}

const char *
command_get_stderr (const struct command *cmd)
{
  return cmd->err.len > 0 ? cmd->err.ptr : "";
}

pid_t
command_pid (const struct command *cmd)
{
  return cmd->pid;
}

int
command_term_signal (const struct command *cmd)
{
  if (!cmd->reaped || cmd->lost || !WIFSIGNALED (cmd->status))
    return 0;
  return WTERMSIG (cmd->status);
}

bool
command_timed_out (const struct command *cmd)
{
  return cmd->timed_out;
}

/* Append bytes, keeping the buffer NUL-terminated. */
static int
bytes_append (byte_vector *v, const char *data, size_t n)
{
  if (byte_vector_reserve (v, n + 1) == -1)
    return -1;
  memcpy (v->ptr + v->len, data, n);
  v->len += n;
  v->ptr[v->len] = '\0';
  return 0;
}

/* Keep only the end of stderr. */
static int
stderr_append (struct command *cmd, const char *data, size_t n)
{
  if (n > COMMAND_STDERR_KEEP) {
    data += n - COMMAND_STDERR_KEEP;
    n = COMMAND_STDERR_KEEP;
  }
  if (cmd->err.len + n > COMMAND_STDERR_KEEP) {
    size_t drop = cmd->err.len + n - COMMAND_STDERR_KEEP;
    memmove (cmd->err.ptr, cmd->err.ptr + drop, cmd->err.len - drop);
    cmd->err.len -= drop;
  }
  return bytes_append (&cmd->err, data, n);
}

/* The base name of the program, then its first argument when that is a
 * plain word (a sub-command such as "check"). */
static int
default_name (struct command *cmd)
{
  const char *base = strrchr (cmd->program, '/');
  const char *first = cmd->argv.len > 1 ? cmd->argv.ptr[1] : "";
  size_t n = strlen (first);
  bool word = n > 0 && n <= 32 && first[0] >= 'a' && first[0] <= 'z'
              && strspn (first, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;

  base = base ? base + 1 : cmd->program;
  if (asprintf (&cmd->name, "%s%s%s", base, word ? " " : "", word ? first : "")
      == -1) {
    cmd->name = NULL;
    set_error (errno, "asprintf");
    return -1;
  }
  return 0;
}

static void
trace_argv (const struct command *cmd)
{
  byte_vector line = empty_vector;

  if (!debug_enabled (DEBUG_CMD))
    return;
  for (size_t i = 0; i < cmd->argv.len; i++) {
    const char *a = cmd->argv.ptr[i];
    bool plain = a[0] != '\0'
                 && strspn (a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRST"
                               "UVWXYZ0123456789_./=:,+@%-")
                      == strlen (a);
    int r = 0;

    if (i > 0)
      r |= bytes_append (&line, " ", 1);
    if (!plain)
      r |= bytes_append (&line, "'", 1);
    for (const char *p = a; *p && r == 0; p++)
      r |= *p == '\'' ? bytes_append (&line, "'\\''", 4)
                      : bytes_append (&line, p, 1);
    if (!plain)
      r |= bytes_append (&line, "'", 1);
    if (r != 0) {
      byte_vector_reset (&line);
      return;
    }
  }
  debug (DEBUG_CMD, "run: %s", line.ptr ? line.ptr : "");
  byte_vector_reset (&line);
}

/* Find the program the way execvp would, but in the parent (execvp is not
 * safe after fork in a threaded process). */
static char *
resolve_program (const char *program)
{
  const char *path = getenv ("PATH");
  char *found = NULL;
  struct stat st;

  if (strchr (program, '/') != NULL) {
    found = strdup (program);
    if (found == NULL)
      set_error (errno, "strdup");
    return found;
  }
  if (program[0] == '\0') {
    set_error (ENOENT, "cannot run '%s'", program);
    return NULL;
  }
  if (path == NULL || path[0] == '\0')
    path = "/usr/local/bin:/usr/bin:/bin";
  while (*path) {
    size_t n = strcspn (path, ":");

    if (asprintf (&found, "%.*s/%s", (int) n, n > 0 ? path : ".", program)
        == -1) {
      set_error (errno, "asprintf");
      return NULL;
    }
    if (stat (found, &st) == 0 && S_ISREG (st.st_mode)
        && access (found, X_OK) == 0)
      return found;
    free (found);
    found = NULL;
    path += n;
    if (*path == ':')
      path++;
  }
  set_error (ENOENT, "cannot run '%s'", program);
  return NULL;
}

/* Make fd close-on-exec and at least 3, so that dup2 onto 0, 1 and 2 in
 * the child cannot clobber another of our descriptors. */
static int
fd_above_stdio (int fd)
{
  int nfd;

  if (fd < 0 || fd > 2)
    return fd;
  nfd = fcntl (fd, F_DUPFD_CLOEXEC, 3);
  close (fd);
  return nfd;
}

static int
open_devnull (int flags)
{
  return fd_above_stdio (open ("/dev/null", flags | O_CLOEXEC));
}

/* A pipe whose ends are close-on-exec and above stdio; the parent's end
 * (read end when parent_reads) is non-blocking. */
static int
make_pipe (int fds[2], bool parent_reads)
{
  if (pipe2 (fds, O_CLOEXEC) == -1)
    return -1;
  fds[0] = fd_above_stdio (fds[0]);
  fds[1] = fd_above_stdio (fds[1]);
  if (fds[0] == -1 || fds[1] == -1
      || fcntl (fds[parent_reads ? 0 : 1], F_SETFL, O_NONBLOCK) == -1) {
    int e = errno;
    if (fds[0] >= 0)
      close (fds[0]);
    if (fds[1] >= 0)
      close (fds[1]);
    errno = e;
    return -1;
  }
  return 0;
}

static void
close_fd (int *fd)
{
  if (*fd >= 0)
    close (*fd);
  *fd = -1;
}

struct child_setup {
  const struct command *cmd;
  const char *path;
  char **argv;
  int in_fd, out_fd, err_fd;
  int errpipe;
  pid_t parent;
  long max_fd;
};

/* Every descriptor from 3 up becomes close-on-exec. */
static void
child_mark_cloexec (long max_fd)
{
#if defined(SYS_close_range) && defined(CLOSE_RANGE_CLOEXEC)
  if (syscall (SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) == 0)
    return;
#endif
  for (long fd = 3; fd < max_fd; fd++)
    fcntl ((int) fd, F_SETFD, FD_CLOEXEC);
}

/* In the child: only async-signal-safe calls from here to execve. */
static void __attribute__ ((noreturn)) child_exec (const struct child_setup *s)
{
  struct sigaction sa = { .sa_handler = SIG_DFL };
  sigset_t none;
  int e;

  if (s->cmd->process_group && setpgid (0, 0) == -1)
    goto fail;
  if (s->cmd->die_with_parent) {
    if (prctl (PR_SET_PDEATHSIG, SIGTERM) == -1)
      goto fail;
    if (getppid () != s->parent)
      _exit (127);
  }
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      sigaction (sig, &sa, NULL);
  sigemptyset (&none);
  sigprocmask (SIG_SETMASK, &none, NULL);
  if (dup2 (s->in_fd, 0) == -1 || dup2 (s->out_fd, 1) == -1
      || dup2 (s->err_fd, 2) == -1)
    goto fail;
  child_mark_cloexec (s->max_fd);
  for (size_t i = 0; i < s->cmd->pass_fds.len; i++)
    if (fcntl (s->cmd->pass_fds.ptr[i], F_SETFD, 0) == -1)
      goto fail;
  execve (s->path, s->argv, environ);
fail:
  e = errno;
  if (write (s->errpipe, &e, sizeof e) == -1)
    _exit (127);
  _exit (127);
}

static long
max_open_fd (void)
{
  struct rlimit rl;

  if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    return (long) rl.rlim_cur;
  return 65536;
}

/* Fork and exec with the given stdio descriptors.  Returns 0 with
 * cmd->pid set, or -1 with set_error. */
static int
spawn (struct command *cmd, int in_fd, int out_fd, int err_fd)
{
  CLEANUP_FREE char *path = NULL;
  struct child_setup s = { .cmd = cmd,
                           .in_fd = in_fd,
                           .out_fd = out_fd,
                           .err_fd = err_fd,
                           .parent = getpid (),
                           .max_fd = max_open_fd () };
  int errpipe[2];
  int child_errno = 0;
  ssize_t n;

  path = resolve_program (cmd->program);
  if (path == NULL)
    return -1;
  if (pipe2 (errpipe, O_CLOEXEC) == -1) {
    set_error (errno, "pipe2");
    return -1;
  }
  errpipe[0] = fd_above_stdio (errpipe[0]);
  errpipe[1] = fd_above_stdio (errpipe[1]);
  if (errpipe[0] == -1 || errpipe[1] == -1) {
    set_error (errno, "pipe2");
    close_fd (&errpipe[0]);
    close_fd (&errpipe[1]);
    return -1;
  }
  s.path = path;
  s.argv = cmd->argv.ptr;
  s.errpipe = errpipe[1];
  cmd->pid = fork ();
  if (cmd->pid == -1) {
    set_error (errno, "cannot run '%s': fork", cmd->program);
    close (errpipe[0]);
    close (errpipe[1]);
    return -1;
  }
  if (cmd->pid == 0)
    child_exec (&s);

  close (errpipe[1]);
  if (cmd->process_group)
    setpgid (cmd->pid, cmd->pid); /* no race with kill (-pid) */
  do
    n = read (errpipe[0], &child_errno, sizeof child_errno);
  while (n == -1 && errno == EINTR);
  close (errpipe[0]);
  if (n == (ssize_t) sizeof child_errno) {
    reap (cmd, 0);
    cmd->pid = -1;
    set_error (child_errno, "cannot run '%s'", cmd->program);
    return -1;
  }
#ifdef SYS_pidfd_open
  cmd->pidfd = (int) syscall (SYS_pidfd_open, cmd->pid, 0);
  if (cmd->pidfd >= 0)
    cmd->pidfd = fd_above_stdio (cmd->pidfd);
#endif
  return 0;
}

/* Checks before a run or a start. */
static int
prepare (struct command *cmd)
{
  if (cmd->used) {
    set_error (-EINVAL, "command '%s' was already run", cmd->program);
    return -1;
  }
  cmd->used = true;
  if (cmd->oom || string_vector_reserve (&cmd->argv, 1) == -1) {
    set_error (ENOMEM, "command '%s'", cmd->program);
    return -1;
  }
  cmd->argv.ptr[cmd->argv.len] = NULL;
  if (cmd->name == NULL && default_name (cmd) == -1)
    return -1;
  trace_argv (cmd);
  return 0;
}

/* The last lines of stderr on one line: "a; b; c", control characters
 * replaced.  NULL when stderr is empty (or out of memory). */
static char *
stderr_tail (const struct command *cmd)
{
  const char *buf = command_get_stderr (cmd);
  size_t end = strlen (buf), start;
  int lines = 0;
  byte_vector out = empty_vector;

  while (end > 0 && strchr (" \t\r\n", buf[end - 1]))
    end--;
  start = end;
  while (start > 0 && end - start < STDERR_TAIL_BYTES) {
    if (buf[start - 1] == '\n' && ++lines == STDERR_TAIL_LINES)
      break;
    start--;
  }
  for (size_t i = start; i < end;) {
    size_t n = strcspn (buf + i, "\n");

    if (n > 0 && out.len > 0 && bytes_append (&out, "; ", 2) == -1)
      goto oom;
    for (size_t j = i; j < i + n; j++) {
      char c = (unsigned char) buf[j] < 0x20 || buf[j] == 0x7f ? '?' : buf[j];
      if (buf[j] == '\r')
        continue;
      if (buf[j] == '\t')
        c = ' ';
      if (bytes_append (&out, &c, 1) == -1)
        goto oom;
    }
    i += n + 1;
  }
  return out.ptr;
oom:
  byte_vector_reset (&out);
  return NULL;
}

static void
format_duration (char *buf, size_t n, int ms)
{
  if (ms % 1000 == 0)
    snprintf (buf, n, "%d s", ms / 1000);
  else
    snprintf (buf, n, "%.1f s", ms / 1000.0);
}

/* Turn how the child ended into the result. */
static int
finish (struct command *cmd, int *exit_status)
{
  CLEANUP_FREE char *tail = stderr_tail (cmd);
  const char *sep = tail ? ": " : "";
  const char *abbrev;
  int code;

  if (cmd->lost) {
    set_error (ECHILD, "%s: its exit status was lost", cmd->name);
    return -1;
  }
  if (WIFSIGNALED (cmd->status)) {
    abbrev = sigabbrev_np (WTERMSIG (cmd->status));
    if (abbrev)
      set_error (-EINTR, "%s: killed by SIG%s%s%s", cmd->name, abbrev, sep,
                 tail ? tail : "");
    else
      set_error (-EINTR, "%s: killed by signal %d%s%s", cmd->name,
                 WTERMSIG (cmd->status), sep, tail ? tail : "");
    return -1;
  }
  code = WEXITSTATUS (cmd->status);
  if (exit_status != NULL) {
    *exit_status = code;
    return 0;
  }
  if (code == 0)
    return 0;
  set_error (-EIO, "%s: exit status %d%s%s", cmd->name, code, sep,
             tail ? tail : "");
  return -1;
}

static int
timed_out (struct command *cmd)
{
  CLEANUP_FREE char *tail = NULL;
  char when[32];

  terminate (cmd);
  cmd->timed_out = true;
  tail = stderr_tail (cmd);
  format_duration (when, sizeof when, cmd->timeout_ms);
  set_error (-ETIMEDOUT, "%s: timed out after %s%s%s", cmd->name, when,
             tail ? ": " : "", tail ? tail : "");
  return -1;
}

/* Read what is there from a child's output pipe.  Returns 0, or -1 with
 * set_error when stdout grows past its bound. */
static int
drain (struct command *cmd, int *fd, bool is_stdout)
{
  char buf[IO_CHUNK];
  ssize_t n;

  for (;;) {
    n = read (*fd, buf, sizeof buf);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1 && errno == EAGAIN)
      return 0;
    if (n <= 0) {
      close_fd (fd); /* EOF, or an error we cannot do better with */
      return 0;
    }
    if (!is_stdout) {
      if (stderr_append (cmd, buf, n) == -1)
        goto oom;
      continue;
    }
    if (cmd->out.len + n > cmd->max_stdout) {
      terminate (cmd);
      set_error (-EFBIG, "%s: more than %zu bytes of output: stopped it",
                 cmd->name, cmd->max_stdout);
      return -1;
    }
    if (bytes_append (&cmd->out, buf, n) == -1)
      goto oom;
  }
oom:
  terminate (cmd);
  set_error (ENOMEM, "%s: output", cmd->name);
  return -1;
}

/* Feed stdin as far as the pipe takes it. */
static void
feed (struct command *cmd, int *fd, size_t *off)
{
  while (*off < cmd->stdin_len) {
    size_t want = cmd->stdin_len - *off;
    ssize_t n
      = write (*fd, cmd->stdin_data + *off, want > IO_CHUNK ? IO_CHUNK : want);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1 && errno == EAGAIN)
      return;
    if (n == -1) {
      close_fd (fd); /* EPIPE: the child does not want the rest */
      return;
    }
    *off += n;
  }
  close_fd (fd);
}

/* Move bytes until the child has ended and its pipes are drained. */
static int
io_loop (struct command *cmd, int *in_fd, int *out_fd, int *err_fd,
         int64_t deadline)
{
  size_t in_off = 0;

  for (;;) {
    struct pollfd p[4];
    int np = 0, i_in = -1, i_out = -1, i_err = -1, wait_ms, r;

    if (cmd->reaped)
      close_fd (in_fd);
    if (*in_fd >= 0 && in_off == cmd->stdin_len)
      close_fd (in_fd);
    if (cmd->reaped && *out_fd < 0 && *err_fd < 0)
      return 0;
    if (*in_fd >= 0) {
      i_in = np;
      p[np++] = (struct pollfd) { .fd = *in_fd, .events = POLLOUT };
    }
    if (*out_fd >= 0) {
      i_out = np;
      p[np++] = (struct pollfd) { .fd = *out_fd, .events = POLLIN };
    }
    if (*err_fd >= 0) {
      i_err = np;
      p[np++] = (struct pollfd) { .fd = *err_fd, .events = POLLIN };
    }
    if (!cmd->reaped && cmd->pidfd >= 0)
      p[np++] = (struct pollfd) { .fd = cmd->pidfd, .events = POLLIN };

    wait_ms = deadline_remaining_ms (deadline);
    if (cmd->reaped)
      wait_ms = 0; /* only take what is already there */
    else if (cmd->pidfd < 0 && (wait_ms < 0 || wait_ms > CHILD_POLL_MS))
      wait_ms = CHILD_POLL_MS;
    r = poll (p, np, wait_ms);
    if (r == -1 && errno != EINTR) {
      set_error (errno, "%s: poll", cmd->name);
      terminate (cmd);
      return -1;
    }
    if (r == 0 && cmd->reaped)
      return 0; /* grandchildren may hold the pipes: do not wait for them */
    if (r > 0 && i_in >= 0 && p[i_in].revents)
      feed (cmd, in_fd, &in_off);
    if (r > 0 && i_out >= 0 && p[i_out].revents
        && drain (cmd, out_fd, true) == -1)
      return -1;
    if (r > 0 && i_err >= 0 && p[i_err].revents
        && drain (cmd, err_fd, false) == -1)
      return -1;
    if (!reap (cmd, WNOHANG) && deadline_remaining_ms (deadline) == 0)
      return timed_out (cmd);
  }
}

/* Block SIGPIPE while writing to the child; forget one that we caused. */
struct sigpipe_guard {
  sigset_t old;
  bool was_pending;
};

static void
sigpipe_block (struct sigpipe_guard *g)
{
  sigset_t set, pending;

  sigemptyset (&set);
  sigaddset (&set, SIGPIPE);
  pthread_sigmask (SIG_BLOCK, &set, &g->old);
  sigpending (&pending);
  g->was_pending = sigismember (&pending, SIGPIPE);
}

static void
sigpipe_restore (struct sigpipe_guard *g)
{
  sigset_t set, pending;
  struct timespec zero = { 0, 0 };

  sigemptyset (&set);
  sigaddset (&set, SIGPIPE);
  sigpending (&pending);
  if (!g->was_pending && sigismember (&pending, SIGPIPE))
    while (sigtimedwait (&set, NULL, &zero) == -1 && errno == EINTR)
      ;
  pthread_sigmask (SIG_SETMASK, &g->old, NULL);
}

int
command_run (struct command *cmd, int *exit_status)
{
  int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
  struct sigpipe_guard guard;
  int64_t deadline;
  int r = -1;

  if (prepare (cmd) == -1)
    return -1;
  if ((cmd->has_stdin ? make_pipe (in, false)
                      : (in[0] = open_devnull (O_RDONLY)))
        == -1
      || (cmd->capture_stdout ? make_pipe (out, true)
                              : (out[1] = open_devnull (O_WRONLY)))
           == -1
      || make_pipe (err, true) == -1) {
    set_error (errno, "%s: cannot make its pipes", cmd->name);
    goto out;
  }
  deadline = deadline_after_ms (cmd->timeout_ms);
  if (spawn (cmd, in[0], out[1], err[1]) == -1)
    goto out;
  close_fd (&in[0]);
  close_fd (&out[1]);
  close_fd (&err[1]);

  sigpipe_block (&guard);
  r = io_loop (cmd, &in[1], &out[0], &err[0], deadline);
  sigpipe_restore (&guard);
  if (r == 0 && !wait_exit (cmd, deadline))
    r = timed_out (cmd); /* ended its output, but not itself */
  if (r == 0)
    r = finish (cmd, exit_status);
out:
  for (int i = 0; i < 2; i++) {
    close_fd (&in[i]);
    close_fd (&out[i]);
    close_fd (&err[i]);
  }
  return r;
}

int
command_start (struct command *cmd)
{
  CLEANUP_CLOSE int in = -1, out = -1;

  if (cmd->has_stdin || cmd->capture_stdout) {
    set_error (
      0,
      "%s: a started command cannot be fed stdin or have its stdout captured",
      cmd->program);
    errno = EINVAL;
    return -1;
  }
  if (prepare (cmd) == -1)
    return -1;
  in = open_devnull (O_RDONLY);
  out = open_devnull (O_WRONLY);
  if (in == -1 || out == -1) {
    set_error (errno, "%s: /dev/null", cmd->name);
    return -1;
  }
  cmd->err_memfd = fd_above_stdio (memfd_create ("knib-stderr", MFD_CLOEXEC));
  if (cmd->err_memfd == -1) {
    set_error (errno, "%s: memfd_create", cmd->name);
    return -1;
  }
  return spawn (cmd, in, out, cmd->err_memfd);
}

/* Copy the end of the started child's stderr file into cmd->err. */
static void
load_memfd_stderr (struct command *cmd)
{
  char buf[IO_CHUNK];
  struct stat st;
  off_t pos;
  ssize_t n;

  if (cmd->err_memfd < 0 || fstat (cmd->err_memfd, &st) == -1)
    return;
  pos = st.st_size > (off_t) COMMAND_STDERR_KEEP
          ? st.st_size - (off_t) COMMAND_STDERR_KEEP
          : 0;
  cmd->err.len = 0;
  while ((n = pread (cmd->err_memfd, buf, sizeof buf, pos)) > 0) {
    if (stderr_append (cmd, buf, n) == -1)
      break;
    pos += n;
  }
  close_fd (&cmd->err_memfd);
}

static int
check_started (struct command *cmd)
{
  if (cmd->pid == -1) {
    set_error (-EINVAL, "command '%s' was not started", cmd->program);
    return -1;
  }
  return 0;
}

int
command_wait (struct command *cmd, int timeout_ms, int *exit_status)
{
  char when[32];

  if (check_started (cmd) == -1)
    return -1;
  if (!wait_exit (cmd, deadline_after_ms (timeout_ms))) {
    format_duration (when, sizeof when, timeout_ms);
    set_error (-ETIMEDOUT, "%s: still running after %s", cmd->name, when);
    return -1;
  }
  load_memfd_stderr (cmd);
  return finish (cmd, exit_status);
}

int
command_stop (struct command *cmd)
{
  char when[32];
  bool stopped_by_us = !cmd->reaped;

  if (check_started (cmd) == -1)
    return -1;
  if (terminate (cmd)) {
    load_memfd_stderr (cmd);
    format_duration (when, sizeof when, cmd->grace_ms);
    set_error (-ETIMEDOUT, "%s: did not stop within %s of SIGTERM: killed it",
               cmd->name, when);
    return -1;
  }
  load_memfd_stderr (cmd);
  if (stopped_by_us && command_term_signal (cmd) == SIGTERM)
    return 0;
  return finish (cmd, NULL);
}
