/* SPDX-License-Identifier: Apache-2.0 */
/* test-qmp-client.c: the QMP client against a scripted fake QMP server. */
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
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/error.h"
#include "common/util.h"
#include "qmp/qmp.h"
#include "failalloc.h"

#define assert_contains(haystack, needle)                                      \
  do {                                                                         \
    const char *_h = (haystack), *_n = (needle);                               \
    if (_h == NULL || strstr (_h, _n) == NULL)                                 \
      fail_msg ("\"%s\" does not contain \"%s\"", _h ? _h : "(null)", _n);     \
  } while (0)

/* How long the fake server waits for the client before it gives up. */
#define SERVER_WAIT_MS 5000

/* What QEMU 7.2 says, "\r\n" included. */
#define GREETING                                                               \
  "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, "           \
  "\"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u5\"}, "             \
  "\"capabilities\": [\"oob\"]}}\r\n"
#define RET(id, value) "{\"return\": " value ", \"id\": \"" id "\"}\r\n"
#define EV(name, data)                                                         \
  "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 250000}, "      \
  "\"event\": \"" name "\", \"data\": " data "}\r\n"
#define EV0(name)                                                              \
  "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 250000}, "      \
  "\"event\": \"" name "\"}\r\n"
#define CMD(name, id) "\"execute\":\"" name "\"", "\"id\":\"" id "\""

/* The fake server's script. */
enum step_kind { STEP_SEND, STEP_EXPECT, STEP_SLEEP, STEP_CLOSE, STEP_END };

struct step {
  enum step_kind kind;
  const char *text;    /* STEP_SEND: the bytes */
  const char *want[3]; /* STEP_EXPECT: what the client's line contains */
  int ms;              /* STEP_SLEEP */
};

#define SEND(s)                                                                \
  {                                                                            \
    .kind = STEP_SEND, .text = (s)                                             \
  }
#define EXPECT(...)                                                            \
  {                                                                            \
    .kind = STEP_EXPECT, .want = { __VA_ARGS__ }                               \
  }
#define SLEEP(n)                                                               \
  {                                                                            \
    .kind = STEP_SLEEP, .ms = (n)                                              \
  }
#define CLOSE                                                                  \
  {                                                                            \
    .kind = STEP_CLOSE                                                         \
  }
#define END                                                                    \
  {                                                                            \
    .kind = STEP_END                                                           \
  }
/* Greeting and capabilities negotiation: the client's command knib-1. */
#define HELLO                                                                  \
  SEND (GREETING), EXPECT (CMD ("qmp_capabilities", "knib-1")),                \
    SEND (RET ("knib-1", "{}"))

/* After its last step the server reads until the client hangs up: any
 * line then is unexpected. */
struct server {
  int fd;        /* the server's end */
  int listen_fd; /* when >= 0, accept fd from it first */
  bool lenient;  /* the client may give up at any step: stop quietly */
  const struct step *steps;
  pthread_t thread;
  char buf[65536]; /* bytes from the client not yet taken */
  size_t len;
  bool done; /* every step ran */
  char error[512];
};

static void
server_fail (struct server *srv, const char *fmt, ...)
{
  va_list ap;

  if (srv->lenient || srv->error[0] != '\0')
    return;
  va_start (ap, fmt);
  vsnprintf (srv->error, sizeof srv->error, fmt, ap);
  va_end (ap);
}

static void
sleep_ms (int ms)
{
  struct timespec ts
    = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

  nanosleep (&ts, NULL);
}

/* Wait for fd to be readable.  0 ready, -1 timed out. */
static int
server_wait (struct server *srv, int fd)
{
  struct pollfd pfd = { .fd = fd, .events = POLLIN };

  if (poll (&pfd, 1, SERVER_WAIT_MS) == 1)
    return 0;
  server_fail (srv, "the client sent nothing within %d ms", SERVER_WAIT_MS);
  return -1;
}

/* One line from the client, without its newline.  1 with a line, 0 when
 * the client hung up, -1 on error. */
static int
server_read_line (struct server *srv, char *line, size_t cap)
{
  for (;;) {
    char *nl = memchr (srv->buf, '\n', srv->len);
    ssize_t n;

    if (nl != NULL) {
      size_t len = nl - srv->buf;

      if (len >= cap) {
        server_fail (srv, "a line of %zu bytes from the client", len);
        return -1;
      }
      memcpy (line, srv->buf, len);
      line[len] = '\0';
      memmove (srv->buf, nl + 1, srv->len - len - 1);
      srv->len -= len + 1;
      return 1;
    }
    if (srv->len == sizeof srv->buf) {
      server_fail (srv, "a line longer than %zu bytes", sizeof srv->buf);
      return -1;
    }
    if (server_wait (srv, srv->fd) == -1)
      return -1;
    n = read (srv->fd, srv->buf + srv->len, sizeof srv->buf - srv->len);
    if (n <= 0) {
      if (srv->len > 0)
        server_fail (srv, "the client hung up in the middle of a line");
      return n == 0 ? 0 : -1;
    }
    srv->len += n;
  }
}

static int
server_send (struct server *srv, const char *text)
{
  size_t len = strlen (text), done = 0;

  while (done < len) {
    ssize_t n = send (srv->fd, text + done, len - done, MSG_NOSIGNAL);

    if (n == -1) {
      server_fail (srv, "send: %s", strerror (errno));
      return -1;
    }
    done += n;
  }
  return 0;
}

static int
server_expect (struct server *srv, const struct step *st)
{
  char line[4096];
  int r = server_read_line (srv, line, sizeof line);

  if (r == 0)
    server_fail (srv, "the client hung up; expected a line with %s",
                 st->want[0]);
  if (r != 1)
    return -1;
  for (size_t i = 0; i < 3 && st->want[i] != NULL; i++) {
    if (strstr (line, st->want[i]) == NULL) {
      server_fail (srv, "the client sent %s; expected %s", line, st->want[i]);
      return -1;
    }
  }
  return 0;
}

static void
server_drain (struct server *srv)
{
  char line[4096];

  while (server_read_line (srv, line, sizeof line) == 1)
    server_fail (srv, "unexpected line from the client: %s", line);
}

static int
server_accept (struct server *srv)
{
  if (server_wait (srv, srv->listen_fd) == -1)
    return -1;
  srv->fd = accept4 (srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
  if (srv->fd == -1) {
    server_fail (srv, "accept: %s", strerror (errno));
    return -1;
  }
  return 0;
}

static int
server_step (struct server *srv, const struct step *st)
{
  switch (st->kind) {
  case STEP_SEND:
    return server_send (srv, st->text);
  case STEP_EXPECT:
    return server_expect (srv, st);
  case STEP_SLEEP:
    sleep_ms (st->ms);
    return 0;
  case STEP_CLOSE:
  case STEP_END:
    break;
  }
  return 0;
}

static void *
server_run (void *arg)
{
  struct server *srv = arg;
  const struct step *st;

  if (srv->listen_fd >= 0 && server_accept (srv) == -1)
    return NULL;
  for (st = srv->steps; st->kind != STEP_END && st->kind != STEP_CLOSE; st++)
    if (server_step (srv, st) == -1)
      break;
  if (st->kind == STEP_END || st->kind == STEP_CLOSE)
    srv->done = true;
  if (st->kind == STEP_END)
    server_drain (srv);
  close (srv->fd);
  srv->fd = -1;
  return NULL;
}

static struct server *
server_new (const struct step *steps, int listen_fd, bool lenient)
{
  struct server *srv = calloc (1, sizeof *srv);

  assert_non_null (srv);
  srv->fd = -1;
  srv->listen_fd = listen_fd;
  srv->lenient = lenient;
  srv->steps = steps;
  return srv;
}

/* Start a server on a socketpair; returns the client's end. */
static int
server_start (struct server **srvp, const struct step *steps)
{
  struct server *srv = server_new (steps, -1, false);
  int sv[2];

  assert_int_equal (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  srv->fd = sv[1];
  assert_int_equal (pthread_create (&srv->thread, NULL, server_run, srv), 0);
  *srvp = srv;
  return sv[0];
}

/* Wait for the server (the client must be gone) and check its script
 * ran to its end. */
static void
server_finish (struct server *srv)
{
  assert_int_equal (pthread_join (srv->thread, NULL), 0);
  if (srv->error[0] != '\0')
    fail_msg ("fake QMP server: %s", srv->error);
  assert_true (srv->done);
  free (srv);
}

static struct qmp_client *
client_start (struct server **srvp, const struct step *steps)
{
  struct qmp_client *c
    = qmp_client_new_fd (server_start (srvp, steps), 5000, NULL);

  if (c == NULL)
    fail_msg ("cannot connect to the fake server: %s", get_error ());
  return c;
}

static const char *
event_name (const json_t *event)
{
  return json_string_value (json_object_get (event, "event"));
}

/* Take the next event (of name, or any) that has already arrived. */
static void
expect_event (struct qmp_client *c, const char *name, const char *want)
{
  json_t *event = NULL;

  if (qmp_client_wait_event (c, name, NULL, NULL, 0, &event) == -1)
    fail_msg ("no event %s: %s", name ? name : "", get_error ());
  assert_string_equal (event_name (event), want);
  json_decref (event);
}

/* Greeting, commands and replies */

static void
a_greeting_with_members_knib_does_not_know_is_accepted (void **state)
{
  static const struct step steps[] = {
    SEND ("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 1, \"minor\": 0, "
          "\"major\": 11, \"rc\": 0}, \"package\": \"v11\", \"build\": "
          "{\"id\": 7}}, \"capabilities\": [\"oob\", \"exec-oob-v2\", "
          "{\"name\": \"new\"}], \"features\": [\"x\"]}, "
          "\"hint\": \"hello\"}\r\n"),
    EXPECT (CMD ("qmp_capabilities", "knib-1")),
    SEND ("{\"return\": {}, \"id\": \"knib-1\", \"warning\": \"new\"}\r\n"),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  int major = -1, minor = -1, micro = -1;

  qmp_client_version (c, &major, &minor, &micro);
  assert_int_equal (major, 11);
  assert_int_equal (minor, 0);
  assert_int_equal (micro, 1);
  qmp_client_free (c);
  server_finish (srv);
}

static void
a_greeting_of_the_wrong_shape_is_refused (void **state)
{
  static const struct step steps[] = {
    SEND ("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 1, \"minor\": 0, "
          "\"major\": \"11\"}}, \"capabilities\": []}}\r\n"),
    END,
  };
  struct server *srv;
  int fd = server_start (&srv, steps);

  assert_null (qmp_client_new_fd (fd, 5000, NULL));
  assert_int_equal (get_errno (), EPROTO);
  assert_contains (get_error (), "malformed greeting from QEMU");
  server_finish (srv);
}

static void
connect_reads_the_greeting_and_leaves_negotiation (void **state)
{
  static const struct step steps[] = { HELLO, END };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  const json_t *greeting = qmp_client_greeting (c);
  int major = -1, minor = -1, micro = -1;

  qmp_client_version (c, &major, &minor, &micro);
  assert_int_equal (major, 7);
  assert_int_equal (minor, 2);
  assert_int_equal (micro, 0);
  assert_string_equal (json_string_value (json_array_get (
                         json_object_get (greeting, "capabilities"), 0)),
                       "oob");
  assert_true (qmp_client_fd (c) >= 0);
  assert_int_equal (qmp_client_events_queued (c), 0);
  assert_null (qmp_client_error_class (c));
  qmp_client_free (c);
  server_finish (srv);
}

static void
execute_returns_the_value_of_the_reply (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-status", "knib-2")),
    SEND (RET ("knib-2", "{\"status\": \"running\", \"singlestep\": false, "
                         "\"running\": true}")),
    EXPECT (CMD ("human-monitor-command", "knib-3"),
            "\"arguments\":{\"command-line\":\"info version\"}"),
    SEND (RET ("knib-3", "\"7.2.0\\r\\n\"")),
    EXPECT (CMD ("stop", "knib-4")),
    SEND (RET ("knib-4", "{}")),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  json_t *result = NULL;

  assert_int_equal (qmp_client_execute (c, "query-status", NULL, &result), 0);
  assert_string_equal (json_string_value (json_object_get (result, "status")),
                       "running");
  json_decref (result);
  assert_int_equal (
    qmp_client_execute (c, "human-monitor-command",
                        json_pack ("{s:s}", "command-line", "info version"),
                        &result),
    0);
  assert_string_equal (json_string_value (result), "7.2.0\r\n");
  json_decref (result);
  assert_int_equal (qmp_client_execute (c, "stop", NULL, NULL), 0);
  qmp_client_free (c);
  server_finish (srv);
}

/* The typed wrappers of a consolidation: block-stream, query-jobs read
 * by shape, job-finalize between stop and cont, job-dismiss. */
static void
job_wrappers_send_their_arguments_and_read_jobs_by_shape (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("block-stream", "knib-2"),
            "\"arguments\":{\"job-id\":\"knib-stream-vda\",\"device\":"
            "\"disk0\",\"auto-finalize\":false,\"auto-dismiss\":false,"
            "\"speed\":1048576}"),
    SEND (RET ("knib-2", "{}")),
    EXPECT (CMD ("query-jobs", "knib-3")),
    SEND (RET ("knib-3", "[{\"id\": \"knib-stream-vda\", \"type\": "
                         "\"stream\", \"status\": \"pending\", "
                         "\"current-progress\": 5, \"total-progress\": 10, "
                         "\"new-member\": 1}, {\"id\": \"x\", \"status\": "
                         "\"concluded\", \"error\": \"EIO\"}, {\"id\": 7}]")),
    EXPECT (CMD ("query-status", "knib-4")),
    SEND (RET ("knib-4", "{\"status\": \"running\", \"running\": true}")),
    EXPECT (CMD ("stop", "knib-5")),
    SEND (RET ("knib-5", "{}")),
    EXPECT (CMD ("job-finalize", "knib-6"),
            "\"arguments\":{\"id\":\"knib-stream-vda\"}"),
    SEND (RET ("knib-6", "{}")),
    EXPECT (CMD ("cont", "knib-7")),
    SEND (RET ("knib-7", "{}")),
    EXPECT (CMD ("job-dismiss", "knib-8"), "\"arguments\":{\"id\":\"x\"}"),
    SEND (RET ("knib-8", "{}")),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  struct qmp_job job;
  json_t *jobs = NULL;
  bool running = false;

  assert_int_equal (
    qmp_block_stream (c, "knib-stream-vda", "disk0", false, false, 1 << 20), 0);
  assert_int_equal (qmp_query_jobs (c, &jobs), 0);
  assert_int_equal (qmp_job_get (json_array_get (jobs, 0), &job), 0);
  assert_string_equal (job.id, "knib-stream-vda");
  assert_string_equal (job.type, "stream");
  assert_string_equal (job.status, "pending");
  assert_null (job.error);
  assert_int_equal (job.current, 5);
  assert_int_equal (job.total, 10);
  assert_int_equal (qmp_job_get (json_array_get (jobs, 1), &job), 0);
  assert_string_equal (job.error, "EIO");
  assert_null (job.type);
  assert_int_equal (job.total, 0);
  /* No status, an id that is no string: an error, not a crash. */
  assert_int_equal (qmp_job_get (json_array_get (jobs, 2), &job), -1);
  assert_int_equal (get_errno (), EPROTO);
  assert_contains (get_error (), "a job of the wrong shape");
  json_decref (jobs);
  assert_int_equal (qmp_query_running (c, &running), 0);
  assert_true (running);
  assert_int_equal (qmp_stop (c), 0);
  assert_int_equal (qmp_job_finalize (c, "knib-stream-vda"), 0);
  assert_int_equal (qmp_cont (c), 0);
  assert_int_equal (qmp_job_dismiss (c, "x"), 0);
  qmp_client_free (c);
  server_finish (srv);
}

static void
execute_refuses_arguments_that_are_not_an_object (void **state)
{
  static const struct step steps[] = { HELLO, END };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);

  assert_int_equal (qmp_client_execute (c, "stop", json_integer (1), NULL), -1);
  assert_int_equal (get_errno (), EINVAL);
  assert_string_equal (
    get_error (),
    "qmp 'stop': arguments must be a JSON object: Invalid argument");
  qmp_client_free (c); /* the server sees nothing more */
  server_finish (srv);
}

static void
several_messages_in_one_write_are_all_read (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-status", "knib-2")),
    SEND (EV0 ("STOP") EV0 ("RESUME") RET ("knib-2", "{\"running\": true}")
            EV0 ("SHUTDOWN")),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  json_t *event = NULL;

  assert_int_equal (qmp_client_execute (c, "query-status", NULL, NULL), 0);
  assert_int_equal (qmp_client_events_queued (c), 2);
  assert_int_equal (
    qmp_client_wait_event (c, "SHUTDOWN", NULL, NULL, 5000, &event), 0);
  json_decref (event);
  expect_event (c, NULL, "STOP");
  expect_event (c, NULL, "RESUME");
  qmp_client_free (c);
  server_finish (srv);
}

static void
a_reply_split_across_writes_is_joined (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-status", "knib-2")),
    SEND ("{\"ret"),
    SLEEP (10),
    SEND ("urn\": {\"status\": "),
    SLEEP (10),
    SEND ("\"running\"}, \"id\": \"knib-2\"}"),
    SLEEP (10),
    SEND ("\r"),
    SLEEP (10),
    SEND ("\n"),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  json_t *result = NULL;

  assert_int_equal (qmp_client_execute (c, "query-status", NULL, &result), 0);
  assert_string_equal (json_string_value (json_object_get (result, "status")),
                       "running");
  json_decref (result);
  qmp_client_free (c);
  server_finish (srv);
}

static void
a_reply_sent_one_byte_at_a_time_is_read (void **state)
{
  static const char reply[] = RET ("knib-2", "{\"status\": \"running\"}");
  static const struct step head[]
    = { HELLO, EXPECT (CMD ("query-status", "knib-2")) };
  const size_t nhead = sizeof head / sizeof head[0], n = strlen (reply);
  struct step *steps = calloc (nhead + n + 1, sizeof *steps);
  char (*bytes)[2] = calloc (n, sizeof *bytes);
  struct server *srv;
  struct qmp_client *c;
  json_t *result = NULL;

  assert_non_null (steps);
  assert_non_null (bytes);
  memcpy (steps, head, sizeof head);
  for (size_t i = 0; i < n; i++) {
    bytes[i][0] = reply[i];
    steps[nhead + i] = (struct step) SEND (bytes[i]);
  }
  steps[nhead + n] = (struct step) END;
  c = client_start (&srv, steps);
  if (qmp_client_execute (c, "query-status", NULL, &result) == -1)
    fail_msg ("%s", get_error ());
  assert_string_equal (json_string_value (json_object_get (result, "status")),
                       "running");
  json_decref (result);
  qmp_client_free (c);
  server_finish (srv);
  free (steps);
  free (bytes);
}

static void
a_line_over_the_size_limit_is_refused (void **state)
{
  const size_t size = 64u * 1024 * 1024 + 16;
  char *line = malloc (size + 1);
  struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-status", "knib-2")),
    SEND (line),
    END,
  };
  struct server *srv = server_new (steps, -1, true);
  struct qmp_client *c;
  int sv[2];

  assert_non_null (line);
  memset (line, ' ', size);
  memcpy (line, "{\"return\": \"", 12);
  line[size] = '\0';
  assert_int_equal (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  srv->fd = sv[1];
  assert_int_equal (pthread_create (&srv->thread, NULL, server_run, srv), 0);
  c = qmp_client_new_fd (sv[0], 5000, NULL);
  if (c == NULL)
    fail_msg ("%s", get_error ());
  assert_int_equal (qmp_client_execute (c, "query-status", NULL, NULL), -1);
  assert_int_equal (get_errno (), EMSGSIZE);
  assert_contains (get_error (), "qmp 'query-status': ");
  assert_int_equal (qmp_client_execute (c, "query-status", NULL, NULL), -1);
  assert_contains (get_error (), "unusable");
  qmp_client_free (c); /* the server's send fails: it is lenient */
  assert_int_equal (pthread_join (srv->thread, NULL), 0);
  free (srv);
  free (line);
}

static void
a_2_mib_reply_is_read_whole (void **state)
{
  const size_t size = 2 * 1024 * 1024;
  const char *head = "{\"return\": {\"data\": \"",
             *tail = "\"}, \"id\": \"knib-2\"}\r\n";
  char *reply = malloc (strlen (head) + size + strlen (tail) + 1);
  struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-dump", "knib-2")),
    SEND (reply),
    END,
  };
  struct server *srv;
  struct qmp_client *c;
  json_t *result = NULL;

  assert_non_null (reply);
  strcpy (reply, head);
  memset (reply + strlen (head), 'q', size);
  strcpy (reply + strlen (head) + size, tail);
  c = client_start (&srv, steps);
  assert_int_equal (qmp_client_execute (c, "query-dump", NULL, &result), 0);
  assert_int_equal (json_string_length (json_object_get (result, "data")),
                    size);
  json_decref (result);
  qmp_client_free (c);
  server_finish (srv);
  free (reply);
}

/* Events */

static void
events_before_a_reply_are_queued_in_order (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-status", "knib-2")),
    SEND (EV0 ("STOP")),
    SEND (EV ("BLOCK_JOB_READY", "{\"device\": \"knib-vda\"}")),
    SEND (EV0 ("RESUME")),
    SEND (RET ("knib-2", "{\"running\": true}")),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);

  assert_int_equal (qmp_client_execute (c, "query-status", NULL, NULL), 0);
  assert_int_equal (qmp_client_events_queued (c), 3);
  expect_event (c, "RESUME", "RESUME");
  assert_int_equal (qmp_client_events_queued (c), 2);
  expect_event (c, NULL, "STOP");
  expect_event (c, NULL, "BLOCK_JOB_READY");
  assert_int_equal (qmp_client_events_queued (c), 0);
  qmp_client_free (c);
  server_finish (srv);
}

static bool
device_is (const json_t *data, void *opaque)
{
  const char *device = json_string_value (json_object_get (data, "device"));

  return device != NULL && strcmp (device, opaque) == 0;
}

static void
wait_event_predicate_picks_by_data (void **state)
{
  static const struct step steps[] = {
    HELLO,
    SEND (EV0 ("STOP")),
    SEND (EV ("BLOCK_JOB_COMPLETED", "{\"device\": \"a\", \"len\": 1}")),
    SEND (EV ("BLOCK_JOB_COMPLETED", "{\"device\": \"b\", \"len\": 2}")),
    SEND (EV ("BLOCK_JOB_COMPLETED", "{\"device\": \"c\", \"len\": 3}")),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  json_t *event = NULL;

  assert_int_equal (qmp_client_wait_event (c, "BLOCK_JOB_COMPLETED", device_is,
                                           (void *) "b", 5000, &event),
                    0);
  assert_int_equal (json_integer_value (
                      json_object_get (json_object_get (event, "data"), "len")),
                    2);
  json_decref (event);
  assert_int_equal (qmp_client_events_queued (c), 2); /* STOP, a */
  assert_int_equal (qmp_client_wait_event (c, "BLOCK_JOB_COMPLETED", device_is,
                                           (void *) "c", 5000, &event),
                    0);
  json_decref (event);
  assert_int_equal (
    qmp_client_wait_event (c, NULL, device_is, (void *) "a", 0, &event), 0);
  assert_string_equal (event_name (event), "BLOCK_JOB_COMPLETED");
  json_decref (event);
  expect_event (c, NULL, "STOP");
  qmp_client_free (c);
  server_finish (srv);
}

static void
wait_event_timeout_leaves_the_connection_usable (void **state)
{
  static const struct step steps[] = {
    HELLO,
    SEND ("{\"event\": \"STOP\", \"timestamp\": {"), /* half an event */
    EXPECT (CMD ("query-status", "knib-2")),
    SEND ("\"seconds\": 1, \"microseconds\": 2}}\r\n"),
    SEND (RET ("knib-2", "{}")),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  json_t *event = NULL;
  int64_t t0 = monotonic_ms ();

  assert_int_equal (qmp_client_wait_event (c, "STOP", NULL, NULL, 100, &event),
                    -1);
  assert_in_range (monotonic_ms () - t0, 90, 1000);
  assert_int_equal (get_errno (), ETIMEDOUT);
  assert_string_equal (
    get_error (),
    "qmp: no event 'STOP' from QEMU within 0.1 s: Connection timed out");
  assert_null (event);
  assert_int_equal (qmp_client_execute (c, "query-status", NULL, NULL), 0);
  expect_event (c, "STOP", "STOP");
  qmp_client_free (c);
  server_finish (srv);
}

static void
wait_event_with_no_time_only_looks_at_what_arrived (void **state)
{
  static const struct step steps[] = { HELLO, END };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  json_t *event = NULL;
  int64_t t0 = monotonic_ms ();

  assert_int_equal (qmp_client_wait_event (c, NULL, NULL, NULL, 0, &event), -1);
  assert_int_equal (get_errno (), ETIMEDOUT);
  assert_in_range (monotonic_ms () - t0, 0, 500);
  qmp_client_free (c);
  server_finish (srv);
}

static void
a_reply_while_no_command_waits_is_dropped (void **state)
{
  static const struct step steps[] = {
    HELLO,
    SEND (RET ("knib-9", "{}")),
    SEND (EV0 ("STOP")),
    EXPECT (CMD ("stop", "knib-2")),
    SEND (RET ("knib-2", "{}")),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  json_t *event = NULL;

  if (qmp_client_wait_event (c, NULL, NULL, NULL, 5000, &event) == -1)
    fail_msg ("%s", get_error ());
  assert_string_equal (event_name (event), "STOP");
  json_decref (event);
  if (qmp_client_execute (c, "stop", NULL, NULL) == -1)
    fail_msg ("%s", get_error ());
  qmp_client_free (c);
  server_finish (srv);
}

static void
events_with_members_knib_does_not_know_are_taken (void **state)
{
  static const struct step steps[] = {
    HELLO,
    SEND ("{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2, "
          "\"nanoseconds\": 3}, \"event\": \"JOB_STATUS_CHANGE\", "
          "\"data\": {\"id\": \"j\", \"status\": \"running\", \"new\": 1}, "
          "\"source\": \"main\"}\r\n"),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  json_t *event = NULL;

  if (qmp_client_wait_event (c, "JOB_STATUS_CHANGE", NULL, NULL, 5000, &event)
      == -1)
    fail_msg ("%s", get_error ());
  assert_string_equal (json_string_value (json_object_get (
                         json_object_get (event, "data"), "status")),
                       "running");
  json_decref (event);
  qmp_client_free (c);
  server_finish (srv);
}

static void
an_event_between_replies_is_queued (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-status", "knib-2")),
    SEND (RET ("knib-2", "{\"status\": \"running\"}")),
    SEND (EV ("BLOCK_JOB_READY", "{\"device\": \"x\"}")),
    EXPECT (CMD ("stop", "knib-3")),
    SEND (EV0 ("STOP")),
    SEND (RET ("knib-3", "{}")),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);

  assert_int_equal (qmp_client_execute (c, "query-status", NULL, NULL), 0);
  assert_int_equal (qmp_client_execute (c, "stop", NULL, NULL), 0);
  assert_int_equal (qmp_client_events_queued (c), 2);
  expect_event (c, NULL, "BLOCK_JOB_READY");
  expect_event (c, NULL, "STOP");
  qmp_client_free (c);
  server_finish (srv);
}

/* A broken peer */

static void
server_closing_mid_message_is_an_error (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-status", "knib-2")),
    SEND ("{\"return\": {\"status\": "),
    CLOSE,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);

  assert_int_equal (qmp_client_execute (c, "query-status", NULL, NULL), -1);
  assert_int_equal (get_errno (), ECONNRESET);
  assert_string_equal (
    get_error (),
    "qmp 'query-status': QEMU closed the connection in the middle of a message: Connection reset by peer");
  qmp_client_free (c);
  server_finish (srv);
}

static void
server_closing_between_messages_is_an_error (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-status", "knib-2")),
    CLOSE,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);

  assert_int_equal (qmp_client_execute (c, "query-status", NULL, NULL), -1);
  assert_int_equal (get_errno (), ECONNRESET);
  assert_string_equal (
    get_error (),
    "qmp 'query-status': QEMU closed the connection: Connection reset by peer");
  assert_int_equal (qmp_client_execute (c, "query-status", NULL, NULL), -1);
  assert_int_equal (get_errno (), EPIPE);
  qmp_client_free (c);
  server_finish (srv);
}

static void
invalid_json_makes_the_next_command_fail_fast (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-status", "knib-2")),
    SEND ("{\"return\": }\r\n"),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  json_t *event = NULL;
  int64_t t0;

  assert_int_equal (qmp_client_execute (c, "query-status", NULL, NULL), -1);
  assert_int_equal (get_errno (), EPROTO);
  assert_contains (get_error (), "qmp 'query-status': invalid JSON from QEMU");
  assert_null (qmp_client_error_class (c));

  t0 = monotonic_ms ();
  assert_int_equal (qmp_client_execute (c, "query-status", NULL, NULL), -1);
  assert_in_range (monotonic_ms () - t0, 0, 100);
  assert_int_equal (get_errno (), EPIPE);
  assert_string_equal (
    get_error (),
    "qmp 'query-status': the connection is unusable after an earlier error: Broken pipe");
  assert_int_equal (qmp_client_wait_event (c, NULL, NULL, NULL, 5000, &event),
                    -1);
  assert_contains (get_error (), "unusable");
  qmp_client_free (c); /* the server got nothing after the first command */
  server_finish (srv);
}

static void
check_bad_reply (const char *reply, int errnum, const char *why)
{
  const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-status", "knib-2")),
    SEND (reply),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  json_t *result = NULL;

  assert_int_equal (qmp_client_execute (c, "query-status", NULL, &result), -1);
  assert_null (result);
  assert_int_equal (get_errno (), errnum);
  assert_contains (get_error (), "qmp 'query-status': ");
  assert_contains (get_error (), why);
  assert_null (qmp_client_error_class (c));
  assert_int_equal (qmp_client_execute (c, "query-status", NULL, NULL), -1);
  assert_contains (get_error (), "unusable");
  qmp_client_free (c);
  server_finish (srv);
}

static void
an_error_reply_of_the_wrong_shape_is_an_error (void **state)
{
  check_bad_reply ("{\"error\": {\"class\": 1, \"desc\": \"x\"}, "
                   "\"id\": \"knib-2\"}\r\n",
                   EPROTO, "malformed error reply from QEMU");
}

static void
an_event_of_the_wrong_shape_is_an_error (void **state)
{
  check_bad_reply ("{\"event\": \"STOP\", \"timestamp\": {\"seconds\": "
                   "\"now\", \"microseconds\": 0}}\r\n",
                   EPROTO, "malformed event from QEMU");
}

/* Run query-status against a server that sends before (and as) the
 * reply; the client must get the reply's value. */
static void
check_reply_accepted (const char *before, const char *reply)
{
  const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-status", "knib-2")),
    SEND (before),
    SEND (reply),
    EXPECT (CMD ("stop", "knib-3")),
    SEND (RET ("knib-3", "{}")),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  json_t *result = NULL;

  if (qmp_client_execute (c, "query-status", NULL, &result) == -1)
    fail_msg ("%s", get_error ());
  assert_string_equal (json_string_value (json_object_get (result, "status")),
                       "running");
  json_decref (result);
  if (qmp_client_execute (c, "stop", NULL, NULL) == -1)
    fail_msg ("%s", get_error ());
  qmp_client_free (c);
  server_finish (srv);
}

static void
a_reply_with_members_knib_does_not_know_is_accepted (void **state)
{
  check_reply_accepted (
    "", "{\"return\": {\"status\": \"running\", \"new-key\": [1]}, "
        "\"id\": \"knib-2\", \"trace\": {\"ns\": 5}}\r\n");
}

static void
a_reply_with_an_unknown_id_is_dropped (void **state)
{
  check_reply_accepted (RET ("knib-7", "{\"status\": \"paused\"}"),
                        RET ("knib-2", "{\"status\": \"running\"}"));
}

static void
a_reply_with_an_id_that_is_not_a_string_is_dropped (void **state)
{
  check_reply_accepted ("{\"return\": {}, \"id\": 2}\r\n"
                        "{\"error\": {\"class\": \"GenericError\", \"desc\": "
                        "\"x\"}, \"id\": {\"a\": 1}}\r\n",
                        RET ("knib-2", "{\"status\": \"running\"}"));
}

static void
an_error_with_members_knib_does_not_know_is_an_error_reply (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("stop", "knib-2")),
    SEND ("{\"id\": \"knib-2\", \"error\": {\"class\": \"GenericError\", "
          "\"desc\": \"no\", \"hint\": \"later\"}, \"extra\": true}\r\n"),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);

  assert_int_equal (qmp_client_execute (c, "stop", NULL, NULL), -1);
  assert_int_equal (get_errno (), EREMOTEIO);
  assert_string_equal (get_error (), "qmp 'stop': no");
  assert_string_equal (qmp_client_error_class (c), "GenericError");
  qmp_client_free (c);
  server_finish (srv);
}

static void
a_reply_without_an_id_is_an_error (void **state)
{
  check_bad_reply ("{\"return\": {}}\r\n", EPROTO,
                   "reply without an id (expected 'knib-2')");
}

static void
a_greeting_mid_session_is_an_error (void **state)
{
  check_bad_reply (GREETING, EPROTO, "unexpected greeting");
}

static void
a_qemu_error_gives_its_class_and_desc (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("blockdev-backup", "knib-2")),
    SEND ("{\"id\": \"knib-2\", \"error\": {\"class\": \"GenericError\", "
          "\"desc\": \"Cannot find device='vdz' nor node-name='vdz'\"}}\r\n"),
    EXPECT (CMD ("query-status", "knib-3")),
    SEND (RET ("knib-3", "{}")),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  json_t *result = NULL;

  assert_int_equal (qmp_client_execute (c, "blockdev-backup",
                                        json_pack ("{s:s}", "device", "vdz"),
                                        &result),
                    -1);
  assert_null (result);
  assert_string_equal (qmp_client_error_class (c), "GenericError");
  assert_string_equal (
    get_error (),
    "qmp 'blockdev-backup': Cannot find device='vdz' nor node-name='vdz'");
  assert_int_equal (get_errno (), EREMOTEIO);
  /* QEMU refusing a command leaves the connection usable. */
  assert_int_equal (qmp_client_execute (c, "query-status", NULL, NULL), 0);
  assert_null (qmp_client_error_class (c));
  qmp_client_free (c);
  server_finish (srv);
}

static void
a_silent_command_times_out (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-status", "knib-2")),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  int64_t t0;

  qmp_client_set_timeout (c, 200);
  t0 = monotonic_ms ();
  assert_int_equal (qmp_client_execute (c, "query-status", NULL, NULL), -1);
  assert_in_range (monotonic_ms () - t0, 190, 900);
  assert_int_equal (get_errno (), ETIMEDOUT);
  assert_int_equal (errno, ETIMEDOUT);
  assert_string_equal (
    get_error (),
    "qmp 'query-status': no reply from QEMU within 0.2 s: Connection timed out");
  /* A late reply would be out of step: the connection is given up. */
  assert_int_equal (qmp_client_execute (c, "query-status", NULL, NULL), -1);
  assert_contains (get_error (), "unusable");
  qmp_client_free (c);
  server_finish (srv);
}

static void
not_a_qmp_server_is_refused (void **state)
{
  static const struct step steps[] = { SEND ("{\"hello\": 1}\n"), END };
  struct server *srv;
  int fd = server_start (&srv, steps);

  assert_null (qmp_client_new_fd (fd, 5000, NULL));
  assert_int_equal (get_errno (), EPROTO);
  assert_contains (get_error (),
                   "qmp: no QMP greeting (is this QEMU's QMP socket?)");
  server_finish (srv);
}

static void
an_event_before_the_greeting_is_refused (void **state)
{
  static const struct step steps[] = { SEND (EV0 ("STOP")), END };
  struct server *srv;
  int fd = server_start (&srv, steps);

  assert_null (qmp_client_new_fd (fd, 5000, NULL));
  assert_int_equal (get_errno (), EPROTO);
  assert_contains (get_error (), "the first message was not a QMP greeting");
  server_finish (srv);
}

static void
a_silent_server_times_out_at_the_greeting (void **state)
{
  static const struct step steps[] = { END };
  struct server *srv;
  int fd = server_start (&srv, steps);
  int64_t t0 = monotonic_ms ();

  assert_null (qmp_client_new_fd (fd, 200, NULL));
  assert_in_range (monotonic_ms () - t0, 190, 900);
  assert_int_equal (get_errno (), ETIMEDOUT);
  assert_contains (get_error (), "no greeting from QEMU within 0.2 s");
  server_finish (srv);
}

/* Jobs */

#define JOB(status, more)                                                      \
  "{\"current-progress\": 1048576, \"status\": \"" status "\", "               \
  "\"total-progress\": 1048576, \"type\": \"backup\", "                        \
  "\"id\": \"knib-job\"" more "}"
#define OTHER_JOB                                                              \
  "{\"current-progress\": 0, \"status\": \"running\", \"total-progress\": "    \
  "10, \"type\": \"mirror\", \"id\": \"libvirt-3\"}"
#define JOB_EVENT(id, status)                                                  \
  EV ("JOB_STATUS_CHANGE", "{\"status\": \"" status "\", \"id\": \"" id "\"}")

static bool
id_is (const json_t *data, void *opaque)
{
  const char *id = json_string_value (json_object_get (data, "id"));

  return id != NULL && strcmp (id, opaque) == 0;
}

static void
job_wait_success_dismisses_the_job (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-jobs", "knib-2")),
    SEND (JOB_EVENT ("libvirt-3", "running")),
    SEND (RET ("knib-2", "[" OTHER_JOB ", " JOB ("running", "") "]")),
    SEND (JOB_EVENT ("libvirt-3", "ready")),
    SEND (JOB_EVENT ("knib-job", "waiting")),
    EXPECT (CMD ("query-jobs", "knib-3")),
    SEND (JOB_EVENT ("knib-job", "pending")),
    SEND (JOB_EVENT ("knib-job", "concluded")),
    SEND (RET ("knib-3", "[" JOB ("concluded", "") "]")),
    EXPECT (CMD ("job-dismiss", "knib-4"),
            "\"arguments\":{\"id\":\"knib-job\"}"),
    SEND (RET ("knib-4", "{}")),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  json_t *event = NULL;

  if (qmp_client_job_wait (c, "knib-job", 5000) == -1)
    fail_msg ("%s", get_error ());
  /* The other job's events stay queued, in order. */
  for (int i = 0; i < 2; i++) {
    static const char *const want[] = { "running", "ready" };
    const json_t *data;

    assert_int_equal (qmp_client_wait_event (c, "JOB_STATUS_CHANGE", id_is,
                                             (void *) "libvirt-3", 0, &event),
                      0);
    data = json_object_get (event, "data");
    assert_string_equal (json_string_value (json_object_get (data, "status")),
                         want[i]);
    json_decref (event);
  }
  qmp_client_free (c);
  server_finish (srv);
}

static void
job_wait_failure_gives_qemu_error_and_still_dismisses (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-jobs", "knib-2")),
    SEND (RET ("knib-2", "[" JOB ("running", "") "]")),
    SEND (JOB_EVENT ("knib-job", "concluded")),
    EXPECT (CMD ("query-jobs", "knib-3")),
    SEND (RET ("knib-3", "[" JOB ("concluded",
                                  ", \"error\": \"Input/output error\"") "]")),
    EXPECT (CMD ("job-dismiss", "knib-4"),
            "\"arguments\":{\"id\":\"knib-job\"}"),
    SEND (RET ("knib-4", "{}")),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);

  assert_int_equal (qmp_client_job_wait (c, "knib-job", 5000), -1);
  assert_string_equal (get_error (), "job 'knib-job': Input/output error");
  assert_int_equal (get_errno (), EIO);
  qmp_client_free (c);
  server_finish (srv);
}

static void
job_wait_for_a_missing_job_fails (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-jobs", "knib-2")),
    SEND (RET ("knib-2", "[" OTHER_JOB "]")),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);

  assert_int_equal (qmp_client_job_wait (c, "knib-job", 5000), -1);
  assert_int_equal (get_errno (), ENOENT);
  assert_contains (get_error (), "job 'knib-job': no such job");
  qmp_client_free (c); /* and nothing was dismissed */
  server_finish (srv);
}

static void
job_wait_timeout_names_the_last_status (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-jobs", "knib-2")),
    SEND (RET ("knib-2", "[" JOB ("running", "") "]")),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);
  int64_t t0 = monotonic_ms ();

  assert_int_equal (qmp_client_job_wait (c, "knib-job", 100), -1);
  assert_in_range (monotonic_ms () - t0, 90, 900);
  assert_int_equal (get_errno (), ETIMEDOUT);
  assert_string_equal (
    get_error (),
    "job 'knib-job': still running after 0.1 s: Connection timed out");
  qmp_client_free (c);
  server_finish (srv);
}

static void
job_wait_refuses_a_query_jobs_reply_that_is_not_a_list (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-jobs", "knib-2")),
    SEND (RET ("knib-2", "{}")),
    END,
  };
  struct server *srv;
  struct qmp_client *c = client_start (&srv, steps);

  assert_int_equal (qmp_client_job_wait (c, "knib-job", 5000), -1);
  assert_int_equal (get_errno (), EPROTO);
  assert_contains (get_error (), "qmp 'query-jobs': the reply is not a list");
  qmp_client_free (c);
  server_finish (srv);
}

/* qmp_client_connect */

static void
connect_to_a_missing_path_fails (void **state)
{
  assert_null (qmp_client_connect ("/nonexistent-knib/qmp.sock", 1000, NULL));
  assert_int_equal (get_errno (), ENOENT);
  assert_string_equal (
    get_error (),
    "qmp: cannot connect to '/nonexistent-knib/qmp.sock': No such file or directory");
}

static void
connect_to_a_too_long_path_fails (void **state)
{
  char path[200];

  memset (path, 'a', sizeof path - 1);
  path[0] = '/';
  path[sizeof path - 1] = '\0';
  assert_null (qmp_client_connect (path, 1000, NULL));
  assert_int_equal (get_errno (), ENAMETOOLONG);
  assert_contains (get_error (), "is longer than 107 bytes");
}

/* A listening socket in a private temporary directory. */
struct listener {
  char dir[64];
  char path[128];
  int fd;
};

static void
listener_open (struct listener *l)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };

  strcpy (l->dir, "/tmp/knib-test-qmp.XXXXXX");
  assert_non_null (mkdtemp (l->dir));
  snprintf (l->path, sizeof l->path, "%s/qmp.sock", l->dir);
  strcpy (addr.sun_path, l->path);
  l->fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true (l->fd >= 0);
  assert_int_equal (bind (l->fd, (struct sockaddr *) &addr, sizeof addr), 0);
  assert_int_equal (listen (l->fd, 4), 0);
}

static void
listener_close (struct listener *l)
{
  close (l->fd);
  unlink (l->path);
  rmdir (l->dir);
}

static struct server *
server_start_listening (const struct step *steps, int listen_fd, bool lenient)
{
  struct server *srv = server_new (steps, listen_fd, lenient);

  assert_int_equal (pthread_create (&srv->thread, NULL, server_run, srv), 0);
  return srv;
}

static void
connect_to_a_unix_socket_path (void **state)
{
  static const struct step steps[] = { HELLO, END };
  struct listener l;
  struct server *srv;
  struct qmp_client *c;

  listener_open (&l);
  srv = server_start_listening (steps, l.fd, false);
  c = qmp_client_connect (l.path, 5000, NULL);
  if (c == NULL)
    fail_msg ("%s", get_error ());
  qmp_client_free (c);
  server_finish (srv);
  listener_close (&l);
}

/* Signals and a busy socket */

static volatile sig_atomic_t signals;

static void
on_usr1 (int sig)
{
  (void) sig;
  signals++;
}

struct kicker {
  pthread_t target, thread;
  int ms;
  volatile sig_atomic_t stop;
};

/* A signal that comes before the client waits only makes the client
 * wait as after a signal; the next one interrupts it.  So signal until
 * told to stop. */
static void *
kick (void *arg)
{
  struct kicker *k = arg;

  while (!k->stop) {
    sleep_ms (k->ms);
    if (!k->stop)
      pthread_kill (k->target, SIGUSR1);
  }
  return NULL;
}

/* SIGUSR1 (counted in signals) every ms, to this thread. */
static void
kick_after (struct kicker *k, int ms)
{
  struct sigaction sa = { .sa_handler = on_usr1 };

  sigemptyset (&sa.sa_mask);
  assert_int_equal (sigaction (SIGUSR1, &sa, NULL), 0);
  k->target = pthread_self ();
  k->ms = ms;
  k->stop = 0;
  assert_int_equal (pthread_create (&k->thread, NULL, kick, k), 0);
}

static void
kick_finish (struct kicker *k)
{
  k->stop = 1;
  assert_int_equal (pthread_join (k->thread, NULL), 0);
  signal (SIGUSR1, SIG_DFL);
}

static void
a_signal_interrupts_a_command_waiting_on_a_silent_peer (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("query-status", "knib-2")),
    END,
  };
  struct server *srv;
  struct qmp_client *c
    = qmp_client_new_fd (server_start (&srv, steps), 60000, &signals);
  struct kicker k;
  int64_t t0 = monotonic_ms ();

  if (c == NULL)
    fail_msg ("%s", get_error ());
  kick_after (&k, 100);
  assert_int_equal (qmp_client_execute (c, "query-status", NULL, NULL), -1);
  assert_int_equal (get_errno (), EINTR);
  assert_string_equal (get_error (), "qmp 'query-status': interrupted while "
                                     "waiting for reply from QEMU");
  assert_in_range (monotonic_ms () - t0, 0, 30000);
  kick_finish (&k);
  /* A late reply would be out of step. */
  assert_int_equal (qmp_client_execute (c, "query-status", NULL, NULL), -1);
  assert_contains (get_error (), "unusable");
  qmp_client_free (c);
  server_finish (srv);
}

static void
after_a_signal_the_cleanup_still_talks_to_qemu (void **state)
{
  static const struct step steps[] = {
    HELLO,
    EXPECT (CMD ("job-cancel", "knib-2")),
    SEND (RET ("knib-2", "{}")),
    END,
  };
  struct server *srv;
  struct qmp_client *c
    = qmp_client_new_fd (server_start (&srv, steps), 60000, &signals);

  if (c == NULL)
    fail_msg ("%s", get_error ());
  signals++; /* the signal came while knib was not waiting on QEMU */
  if (qmp_client_execute (c, "job-cancel", NULL, NULL) == -1)
    fail_msg ("%s", get_error ());
  qmp_client_free (c);
  server_finish (srv);
}

static void
a_signal_interrupts_the_wait_for_the_greeting (void **state)
{
  static const struct step steps[] = { END };
  struct server *srv;
  int fd = server_start (&srv, steps);
  struct kicker k;

  kick_after (&k, 100);
  assert_null (qmp_client_new_fd (fd, 60000, &signals));
  assert_int_equal (get_errno (), EINTR);
  assert_string_equal (get_error (),
                       "qmp: interrupted while waiting for greeting from QEMU");
  kick_finish (&k);
  server_finish (srv);
}

static void
a_socket_held_by_another_client_is_named (void **state)
{
  struct listener l;
  char want[256];

  /* QEMU's monitor accepts one client at a time: the second one's
   * connection waits, never accepted, in the socket's queue. */
  listener_open (&l);
  assert_null (qmp_client_connect (l.path, 300, NULL));
  assert_int_equal (get_errno (), EBUSY);
  snprintf (want, sizeof want, "another client holds the QMP socket '%s'",
            l.path);
  assert_contains (get_error (), want);
  listener_close (&l);
}

/* Allocation failures */

static const struct step alloc_steps[] = {
  HELLO,
  EXPECT (CMD ("query-status", "knib-2")),
  SEND (EV0 ("STOP") EV0 ("RESUME") RET (
    "knib-2", "{\"status\": \"running\", \"singlestep\": false, "
              "\"running\": true}") JOB_EVENT ("knib-job", "concluded")),
  EXPECT (CMD ("block-dirty-bitmap-remove", "knib-3"),
          "\"arguments\":{\"node\":\"vda\",\"name\":\"knib-1\"}"),
  SEND ("{\"id\": \"knib-3\", \"error\": {\"class\": \"GenericError\", "
        "\"desc\": \"Dirty bitmap 'knib-1' not found\"}}\r\n"),
  EXPECT (CMD ("query-jobs", "knib-4")),
  SEND (RET ("knib-4", "[" JOB ("concluded", "") "]")),
  EXPECT (CMD ("job-dismiss", "knib-5"), "\"arguments\":{\"id\":\"knib-job\"}"),
  SEND (RET ("knib-5", "{}")),
  END,
};

struct alloc_run {
  char status[16];
  char error_class[16];
  char events[3][32];
  size_t left; /* events still queued at the end */
};

static void
copy_event_name (char name[32], json_t *event)
{
  snprintf (name, 32, "%s", event_name (event));
  json_decref (event);
}

/* A command QEMU refuses: 0 when it did, -1 for any other failure. */
static int
remove_missing_bitmap (struct qmp_client *c)
{
  json_t *args = json_pack ("{s:s,s:s}", "node", "vda", "name", "knib-1");

  if (args == NULL) {
    set_error (ENOMEM, "json_pack");
    return -1;
  }
  if (qmp_client_execute (c, "block-dirty-bitmap-remove", args, NULL) == 0) {
    set_error (0, "block-dirty-bitmap-remove did not fail");
    return -1;
  }
  return get_errno () == EREMOTEIO ? 0 : -1;
}

/* Connect, run commands, take events, wait for a job.  0, or -1 with
 * set_error. */
static int
alloc_scenario (const char *path, struct alloc_run *run)
{
  struct qmp_client *c = qmp_client_connect (path, 5000, NULL);
  json_t *status = NULL, *event = NULL;
  int r = -1;

  if (c == NULL)
    return -1;
  if (qmp_client_execute (c, "query-status", NULL, &status) == -1)
    goto out;
  snprintf (run->status, sizeof run->status, "%s",
            json_string_value (json_object_get (status, "status")));
  json_decref (status);
  if (qmp_client_wait_event (c, "RESUME", NULL, NULL, 5000, &event) == -1)
    goto out;
  copy_event_name (run->events[0], event);
  /* This one is still in the framer: it is parsed now. */
  if (qmp_client_wait_event (c, "JOB_STATUS_CHANGE", NULL, NULL, 5000, &event)
      == -1)
    goto out;
  copy_event_name (run->events[1], event);
  if (remove_missing_bitmap (c) == -1)
    goto out;
  snprintf (run->error_class, sizeof run->error_class, "%s",
            qmp_client_error_class (c));
  if (qmp_client_job_wait (c, "knib-job", 5000) == -1)
    goto out;
  if (qmp_client_wait_event (c, NULL, NULL, NULL, 0, &event) == -1)
    goto out;
  copy_event_name (run->events[2], event);
  run->left = qmp_client_events_queued (c);
  r = 0;
out:
  qmp_client_free (c);
  return r;
}

static void
allocation_failures_give_enomem_and_no_crash_or_leak (void **state)
{
  struct listener l;
  long n, failed = 0;

  listener_open (&l);
  for (n = 0; n < 100000; n++) {
    struct server *srv = server_start_listening (alloc_steps, l.fd, true);
    struct alloc_run run;
    bool fired;
    int r;

    memset (&run, 0, sizeof run);
    failalloc_arm (n);
    r = alloc_scenario (l.path, &run);
    fired = failalloc_disarm ();
    assert_int_equal (pthread_join (srv->thread, NULL), 0);
    if (r == -1) {
      if (!fired)
        fail_msg ("allocation %ld: failed without an injected failure: %s", n,
                  get_error ());
      if (get_errno () != ENOMEM)
        fail_msg ("allocation %ld: errno %d, not ENOMEM: %s", n, get_errno (),
                  get_error ());
      failed++;
      free (srv);
      continue;
    }
    /* It worked: then it worked right, whether a failure was ignored on
     * the way or none was injected. */
    assert_true (srv->done);
    free (srv);
    assert_string_equal (run.status, "running");
    assert_string_equal (run.error_class, "GenericError");
    assert_string_equal (run.events[0], "RESUME");
    assert_string_equal (run.events[1], "JOB_STATUS_CHANGE");
    assert_string_equal (run.events[2], "STOP");
    assert_int_equal (run.left, 0);
    if (!fired)
      break;
  }
  listener_close (&l);
  assert_true (n < 100000);
  assert_true (failed > 0);
  print_message ("  %ld allocations failed in turn: %ld runs gave ENOMEM\n", n,
                 failed);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (connect_reads_the_greeting_and_leaves_negotiation),
    cmocka_unit_test (a_greeting_with_members_knib_does_not_know_is_accepted),
    cmocka_unit_test (a_greeting_of_the_wrong_shape_is_refused),
    cmocka_unit_test (execute_returns_the_value_of_the_reply),
    cmocka_unit_test (execute_refuses_arguments_that_are_not_an_object),
    cmocka_unit_test (job_wrappers_send_their_arguments_and_read_jobs_by_shape),
    cmocka_unit_test (several_messages_in_one_write_are_all_read),
    cmocka_unit_test (a_reply_split_across_writes_is_joined),
    cmocka_unit_test (a_reply_sent_one_byte_at_a_time_is_read),
    cmocka_unit_test (a_line_over_the_size_limit_is_refused),
    cmocka_unit_test (a_2_mib_reply_is_read_whole),
    cmocka_unit_test (events_before_a_reply_are_queued_in_order),
    cmocka_unit_test (wait_event_predicate_picks_by_data),
    cmocka_unit_test (wait_event_timeout_leaves_the_connection_usable),
    cmocka_unit_test (wait_event_with_no_time_only_looks_at_what_arrived),
    cmocka_unit_test (a_reply_while_no_command_waits_is_dropped),
    cmocka_unit_test (events_with_members_knib_does_not_know_are_taken),
    cmocka_unit_test (an_event_between_replies_is_queued),
    cmocka_unit_test (server_closing_mid_message_is_an_error),
    cmocka_unit_test (server_closing_between_messages_is_an_error),
    cmocka_unit_test (invalid_json_makes_the_next_command_fail_fast),
    cmocka_unit_test (an_error_reply_of_the_wrong_shape_is_an_error),
    cmocka_unit_test (an_event_of_the_wrong_shape_is_an_error),
    cmocka_unit_test (a_reply_with_members_knib_does_not_know_is_accepted),
    cmocka_unit_test (a_reply_with_an_unknown_id_is_dropped),
    cmocka_unit_test (a_reply_with_an_id_that_is_not_a_string_is_dropped),
    cmocka_unit_test (
      an_error_with_members_knib_does_not_know_is_an_error_reply),
    cmocka_unit_test (a_reply_without_an_id_is_an_error),
    cmocka_unit_test (a_greeting_mid_session_is_an_error),
    cmocka_unit_test (a_qemu_error_gives_its_class_and_desc),
    cmocka_unit_test (a_silent_command_times_out),
    cmocka_unit_test (not_a_qmp_server_is_refused),
    cmocka_unit_test (an_event_before_the_greeting_is_refused),
    cmocka_unit_test (a_silent_server_times_out_at_the_greeting),
    cmocka_unit_test (job_wait_success_dismisses_the_job),
    cmocka_unit_test (job_wait_failure_gives_qemu_error_and_still_dismisses),
    cmocka_unit_test (job_wait_for_a_missing_job_fails),
    cmocka_unit_test (job_wait_timeout_names_the_last_status),
    cmocka_unit_test (job_wait_refuses_a_query_jobs_reply_that_is_not_a_list),
    cmocka_unit_test (connect_to_a_missing_path_fails),
    cmocka_unit_test (connect_to_a_too_long_path_fails),
    cmocka_unit_test (connect_to_a_unix_socket_path),
    cmocka_unit_test (a_signal_interrupts_a_command_waiting_on_a_silent_peer),
    cmocka_unit_test (after_a_signal_the_cleanup_still_talks_to_qemu),
    cmocka_unit_test (a_signal_interrupts_the_wait_for_the_greeting),
    cmocka_unit_test (a_socket_held_by_another_client_is_named),
    cmocka_unit_test (allocation_failures_give_enomem_and_no_crash_or_leak),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
