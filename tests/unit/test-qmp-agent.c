/* SPDX-License-Identifier: Apache-2.0 */
/* test-qmp-agent.c: the guest agent client against a fake agent. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/error.h"
#include "common/util.h"
#include "qmp/agent.h"

#define assert_contains(haystack, needle)                                      \
  do {                                                                         \
    const char *_h = (haystack), *_n = (needle);                               \
    if (_h == NULL || strstr (_h, _n) == NULL)                                 \
      fail_msg ("\"%s\" does not contain \"%s\"", _h ? _h : "(null)", _n);     \
  } while (0)

/* The fake agent's behaviour. */
enum script {
  AGENT_SILENT,     /* reads, never answers */
  AGENT_FREEZE_OK,  /* stale bytes, the delimiter, sync, freeze: 2 */
  AGENT_FREEZE_ERR, /* sync, then an error reply to the freeze */
  AGENT_STALE_SYNC, /* a stale sync reply after the delimiter first */
  AGENT_CLOSES,     /* hangs up after the request */
  AGENT_EXTRA,      /* replies with members knib does not know */
  AGENT_ONE_BYTE,   /* the command's reply one byte per write */
  AGENT_HALF_REPLY, /* half the command's reply, then hangs up */
  AGENT_LONG_LINE,  /* a reply line over the size limit */
  AGENT_MUTE,       /* syncs, then never answers the command */
  AGENT_DEAF,       /* syncs, then stops reading (a paused guest) */
};

struct agent {
  int fd;
  enum script script;
  pthread_t thread;
  char line0[512]; /* the first request, sentinel included */
  char line1[512]; /* the command after the sync */
};

/* One line (up to "\n") from the client; 0 when it hung up. */
static int
agent_read_line (int fd, char *buf, size_t cap)
{
  size_t n = 0;

  while (n + 1 < cap) {
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    char ch;

    if (poll (&pfd, 1, 5000) != 1 || read (fd, &ch, 1) != 1)
      break;
    if (ch == '\n') {
      buf[n] = '\0';
      return 1;
    }
    buf[n++] = ch;
  }
  buf[n] = '\0';
  return 0;
}

static void
agent_send (int fd, const char *text, size_t len)
{
  if (send (fd, text, len, MSG_NOSIGNAL) != (ssize_t) len)
    fprintf (stderr, "fake agent: send failed\n");
}

static void
agent_sends (int fd, const char *text)
{
  agent_send (fd, text, strlen (text));
}

/* The answer to the command after the sync. */
static void
agent_answer (struct agent *a)
{
  static const char reply[] = "{\"return\": 2}\n";
  char *big;

  switch (a->script) {
  case AGENT_FREEZE_ERR:
    agent_sends (a->fd, "{\"error\": {\"class\": \"GenericError\", \"desc\": "
                        "\"failed to freeze /: Device or resource busy\"}}\n");
    break;
  case AGENT_EXTRA:
    agent_sends (a->fd, "{\"return\": 2, \"id\": \"x\", \"new\": {}}\n");
    break;
  case AGENT_ONE_BYTE:
    for (size_t i = 0; i < strlen (reply); i++)
      agent_send (a->fd, reply + i, 1);
    break;
  case AGENT_HALF_REPLY:
    agent_sends (a->fd, "{\"return\": ");
    shutdown (a->fd, SHUT_RDWR);
    break;
  case AGENT_LONG_LINE:
    big = malloc (2 * 1024 * 1024);
    if (big != NULL) {
      memset (big, ' ', 2 * 1024 * 1024);
      big[0] = '{';
      agent_send (a->fd, big, 2 * 1024 * 1024);
      free (big);
    }
    break;
  case AGENT_MUTE:
  case AGENT_DEAF:
    break;
  case AGENT_SILENT:
  case AGENT_FREEZE_OK:
  case AGENT_STALE_SYNC:
  case AGENT_CLOSES:
    agent_sends (a->fd, reply);
    break;
  }
}

static void *
agent_run (void *opaque)
{
  struct agent *a = opaque;
  char buf[512];
  const char *p;
  long id;

  if (!agent_read_line (a->fd, a->line0, sizeof a->line0))
    return NULL;
  if (a->script == AGENT_SILENT) {
    while (agent_read_line (a->fd, buf, sizeof buf))
      ;
    return NULL;
  }
  if (a->script == AGENT_CLOSES) {
    shutdown (a->fd, SHUT_RDWR);
    return NULL;
  }
  p = strstr (a->line0, "\"id\":");
  id = p ? strtol (p + 5, NULL, 10) : -1;
  /* A previous client's reply, half a line, then the delimiter. */
  agent_sends (a->fd, "{\"return\": {}}\n{\"return\": 12");
  if (a->script == AGENT_STALE_SYNC) {
    agent_send (a->fd, "\xff", 1);
    agent_sends (a->fd, "{\"return\": 7}\n");
  }
  else
    agent_send (a->fd, "garbage\x01\xfe\xff", 10);
  snprintf (buf, sizeof buf, "{\"return\": %ld%s}\n", id,
            a->script == AGENT_EXTRA ? ", \"trace\": [1]" : "");
  agent_sends (a->fd, buf);
  if (a->script == AGENT_DEAF) {
    /* Read nothing more: wait until the client hangs up. */
    struct pollfd pfd = { .fd = a->fd, .events = POLLRDHUP };

    while (poll (&pfd, 1, -1) == -1 && errno == EINTR)
      ;
    return NULL;
  }
  if (!agent_read_line (a->fd, a->line1, sizeof a->line1))
    return NULL;
  agent_answer (a);
  while (agent_read_line (a->fd, buf, sizeof buf))
    ;
  return NULL;
}

/* A client on one end of a socketpair, the fake agent on the other. */
static struct qga_client *
start_cancellable (struct agent *a, enum script script, int sync_timeout_ms,
                   volatile sig_atomic_t *cancel)
{
  int sv[2];

  assert_int_equal (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  memset (a, 0, sizeof *a);
  a->fd = sv[1];
  a->script = script;
  assert_int_equal (pthread_create (&a->thread, NULL, agent_run, a), 0);
  return qga_client_new_fd (sv[0], "qga.sock", sync_timeout_ms, 2000, cancel);
}

static struct qga_client *
start (struct agent *a, enum script script, int sync_timeout_ms)
{
  return start_cancellable (a, script, sync_timeout_ms, NULL);
}

static void
finish (struct agent *a, struct qga_client *c)
{
  qga_client_free (c);
  pthread_join (a->thread, NULL);
  close (a->fd);
}

static void
sync_skips_stale_bytes_then_freezes (void **state)
{
  struct agent a;
  struct qga_client *c = start (&a, AGENT_FREEZE_OK, 2000);
  json_t *ret = NULL;

  (void) state;
  if (c == NULL)
    fail_msg ("sync failed: %s", get_error ());
  assert_int_equal ((unsigned char) a.line0[0], 0xff);
  assert_contains (a.line0 + 1, "\"execute\":\"guest-sync-delimited\"");
  assert_contains (a.line0 + 1, "\"arguments\":{\"id\":");
  assert_int_equal (qga_client_execute (c, "guest-fsfreeze-freeze", NULL, &ret),
                    0);
  assert_true (json_is_integer (ret));
  assert_int_equal (json_integer_value (ret), 2);
  json_decref (ret);
  finish (&a, c);
  assert_string_equal (a.line1, "{\"execute\":\"guest-fsfreeze-freeze\"}");
}

static void
sync_skips_a_stale_reply_after_the_delimiter (void **state)
{
  struct agent a;
  struct qga_client *c = start (&a, AGENT_STALE_SYNC, 2000);

  (void) state;
  if (c == NULL)
    fail_msg ("sync failed: %s", get_error ());
  assert_int_equal (qga_client_execute (c, "guest-fsfreeze-thaw", NULL, NULL),
                    0);
  finish (&a, c);
  assert_string_equal (a.line1, "{\"execute\":\"guest-fsfreeze-thaw\"}");
}

static void
error_reply_is_eremoteio (void **state)
{
  struct agent a;
  struct qga_client *c = start (&a, AGENT_FREEZE_ERR, 2000);
  json_t *ret = (json_t *) &a;

  (void) state;
  if (c == NULL)
    fail_msg ("sync failed: %s", get_error ());
  assert_int_equal (qga_client_execute (c, "guest-fsfreeze-freeze", NULL, &ret),
                    -1);
  assert_null (ret);
  assert_int_equal (get_errno (), EREMOTEIO);
  assert_contains (get_error (), "guest agent 'guest-fsfreeze-freeze': "
                                 "failed to freeze /: Device or resource busy");
  finish (&a, c);
}

static void
silence_times_out_with_a_clear_error (void **state)
{
  struct agent a;
  int64_t t0 = monotonic_ms ();
  struct qga_client *c = start (&a, AGENT_SILENT, 300);
  int64_t took = monotonic_ms () - t0;

  (void) state;
  assert_null (c);
  assert_int_equal (get_errno (), ETIMEDOUT);
  assert_string_equal (get_error (),
                       "no guest agent answered on qga.sock within 0.3 s (is "
                       "qemu-guest-agent running in the guest?)");
  assert_true (took >= 250 && took < 3000);
  pthread_join (a.thread, NULL);
  close (a.fd);
}

static void
hang_up_is_an_error (void **state)
{
  struct agent a;
  struct qga_client *c = start (&a, AGENT_CLOSES, 2000);

  (void) state;
  assert_null (c);
  assert_int_equal (get_errno (), ECONNRESET);
  assert_contains (get_error (), "guest-sync-delimited");
  pthread_join (a.thread, NULL);
  close (a.fd);
}

/* Sync, then run guest-fsfreeze-freeze: its result, or -1. */
static int
freeze (enum script script, struct agent *a)
{
  struct qga_client *c = start (a, script, 2000);
  json_t *ret = NULL;
  int r;

  if (c == NULL)
    fail_msg ("sync failed: %s", get_error ());
  r = qga_client_execute (c, "guest-fsfreeze-freeze", NULL, &ret) == -1
        ? -1
        : (int) json_integer_value (ret);
  json_decref (ret);
  finish (a, c);
  return r;
}

static void
replies_with_members_knib_does_not_know_are_accepted (void **state)
{
  struct agent a;

  (void) state;
  if (freeze (AGENT_EXTRA, &a) == -1)
    fail_msg ("%s", get_error ());
}

static void
a_reply_sent_one_byte_at_a_time_is_read (void **state)
{
  struct agent a;

  (void) state;
  assert_int_equal (freeze (AGENT_ONE_BYTE, &a), 2);
}

static void
hang_up_mid_reply_is_an_error (void **state)
{
  struct agent a;

  (void) state;
  assert_int_equal (freeze (AGENT_HALF_REPLY, &a), -1);
  assert_int_equal (get_errno (), ECONNRESET);
  assert_contains (get_error (), "guest agent 'guest-fsfreeze-freeze': "
                                 "the guest agent socket 'qga.sock' was "
                                 "closed");
}

static void
a_line_over_the_size_limit_is_refused (void **state)
{
  struct agent a;

  (void) state;
  assert_int_equal (freeze (AGENT_LONG_LINE, &a), -1);
  assert_int_equal (get_errno (), EMSGSIZE);
  assert_contains (get_error (), "guest agent 'guest-fsfreeze-freeze': ");
}

static void
a_command_never_answered_times_out (void **state)
{
  struct agent a;

  (void) state;
  assert_int_equal (freeze (AGENT_MUTE, &a), -1);
  assert_int_equal (get_errno (), ETIMEDOUT);
  assert_string_equal (get_error (), "guest agent 'guest-fsfreeze-freeze': no "
                                     "answer on qga.sock within 2 s");
}

/* A command bigger than the socket's buffer to an agent that stopped
 * reading (its guest paused mid-file) times out like an unanswered one:
 * knib never blocks in the write. */
static void
a_command_the_agent_does_not_read_times_out (void **state)
{
  struct agent a;
  struct qga_client *c;
  size_t len = 4 * 1024 * 1024;
  char *b64 = malloc (len + 1);
  struct timespec t0, t1;

  (void) state;
  assert_non_null (b64);
  memset (b64, 'A', len);
  b64[len] = '\0';
  c = start (&a, AGENT_DEAF, 2000);
  if (c == NULL)
    fail_msg ("sync failed: %s", get_error ());
  alarm (60); /* a write that blocks fails the test, not the suite */
  clock_gettime (CLOCK_MONOTONIC, &t0);
  assert_int_equal (
    qga_client_execute (c, "guest-file-write",
                        json_pack ("{s:i, s:s}", "handle", 1, "buf-b64", b64),
                        NULL),
    -1);
  clock_gettime (CLOCK_MONOTONIC, &t1);
  alarm (0);
  assert_int_equal (get_errno (), ETIMEDOUT);
  assert_string_equal (get_error (), "guest agent 'guest-file-write': no "
                                     "answer on qga.sock within 2 s");
  assert_true (t1.tv_sec - t0.tv_sec < 30);
  free (b64);
  finish (&a, c);
}

static volatile sig_atomic_t signals;

static void
on_usr1 (int sig)
{
  (void) sig;
  signals++;
}

static volatile sig_atomic_t kick_stop;

/* Signal every 100 ms until told to stop: a signal before the client
 * waits only makes it wait as after a signal; the next one interrupts
 * it. */
static void *
kick (void *arg)
{
  struct timespec ts = { 0, 100 * 1000000L };

  while (!kick_stop) {
    nanosleep (&ts, NULL);
    if (!kick_stop)
      pthread_kill (*(pthread_t *) arg, SIGUSR1);
  }
  return NULL;
}

static void
a_signal_interrupts_the_wait_for_the_agent (void **state)
{
  struct sigaction sa = { .sa_handler = on_usr1 };
  pthread_t self = pthread_self (), kicker;
  struct agent a;
  struct qga_client *c;

  (void) state;
  sigemptyset (&sa.sa_mask);
  assert_int_equal (sigaction (SIGUSR1, &sa, NULL), 0);
  kick_stop = 0;
  assert_int_equal (pthread_create (&kicker, NULL, kick, &self), 0);
  c = start_cancellable (&a, AGENT_SILENT, 60000, &signals);
  assert_null (c);
  assert_int_equal (get_errno (), EINTR);
  assert_contains (get_error (), "interrupted while waiting for the guest "
                                 "agent");
  kick_stop = 1;
  pthread_join (kicker, NULL);
  signal (SIGUSR1, SIG_DFL);
  pthread_join (a.thread, NULL);
  close (a.fd);
}

static void
connect_to_a_missing_socket_fails (void **state)
{
  (void) state;
  assert_null (qga_client_connect ("/nonexistent/qga.sock", 100, 100, NULL));
  assert_int_equal (get_errno (), ENOENT);
  assert_contains (get_error (), "cannot connect to '/nonexistent/qga.sock'");
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (sync_skips_stale_bytes_then_freezes),
    cmocka_unit_test (sync_skips_a_stale_reply_after_the_delimiter),
    cmocka_unit_test (error_reply_is_eremoteio),
    cmocka_unit_test (silence_times_out_with_a_clear_error),
    cmocka_unit_test (hang_up_is_an_error),
    cmocka_unit_test (replies_with_members_knib_does_not_know_are_accepted),
    cmocka_unit_test (a_reply_sent_one_byte_at_a_time_is_read),
    cmocka_unit_test (hang_up_mid_reply_is_an_error),
    cmocka_unit_test (a_line_over_the_size_limit_is_refused),
    cmocka_unit_test (a_command_never_answered_times_out),
    cmocka_unit_test (a_command_the_agent_does_not_read_times_out),
    cmocka_unit_test (a_signal_interrupts_the_wait_for_the_agent),
    cmocka_unit_test (connect_to_a_missing_socket_fails),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
