/* SPDX-License-Identifier: Apache-2.0 */
/* client.c: the QMP connection: greeting, commands matched by id, events. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"
#include "common/vector.h"
#include "internal.h"

/* Events nobody has taken yet; past this many the peer is flooding us. */
#define QMP_MAX_QUEUED_EVENTS 100000

DEFINE_VECTOR_TYPE (event_queue, json_t *)

struct qmp_client {
  int fd;
  int timeout_ms;
  volatile sig_atomic_t *cancel;
  struct qmp_framer framer;
  json_t *greeting;
  int major, minor, micro;
  uint64_t next_id;
  event_queue events;
  char *error_class;
  bool broken;
  int pass_fd; /* sent with the next command (SCM_RIGHTS), or -1 */
};

/* The longest reply traced whole. */
#define QMP_TRACE_MAX 4096

static void
client_break (struct qmp_client *c)
{
  c->broken = true;
}

/* Read more bytes into the framer, waiting within w.  Returns 0, or -1
 * with set_error (ETIMEDOUT when the time ran out, EINTR when a signal
 * interrupted the wait). */
static int
client_fill (struct qmp_client *c, const struct qmp_wait *w,
             const char *waiting_for)
{
  char buf[65536];
  ssize_t n;

  for (;;) {
    if (qmp_wait_poll (w, c->fd, POLLIN) == -1) {
      if (errno == ETIMEDOUT)
        set_error (ETIMEDOUT, "no %s from QEMU within %.1f s", waiting_for,
                   w->timeout_ms / 1000.0);
      else if (errno == EINTR) {
        set_error (-EINTR, "interrupted while waiting for %s from QEMU",
                   waiting_for);
      }
      else {
        set_error (errno, "poll");
        client_break (c);
      }
      return -1;
    }
    n = read (c->fd, buf, sizeof buf);
    if (n == -1 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n == -1) {
      set_error (errno, "read from QEMU");
      client_break (c);
      return -1;
    }
    if (n == 0) {
      set_error (ECONNRESET, "QEMU closed the connection%s",
                 qmp_framer_partial (&c->framer) ? " in the middle of a message"
                                                 : "");
      client_break (c);
      return -1;
    }
    if (qmp_framer_feed (&c->framer, buf, n) == -1) {
      client_break (c);
      return -1;
    }
    return 0;
  }
}

/* Read one whole message and classify it.  A timeout leaves the
 * connection usable; anything else breaks it. */
static int
client_read (struct qmp_client *c, const struct qmp_wait *w,
             const char *waiting_for, json_t **msg, enum qmp_message_kind *kind)
{
  for (;;) {
    CLEANUP_FREE char *line = NULL;
    size_t len;
    int r;

    r = qmp_framer_next (&c->framer, &line, &len);
    if (r == -1) {
      client_break (c);
      return -1;
    }
    if (r == 1) {
      /* query-qmp-schema's 180 KB would drown the trace. */
      if (len > QMP_TRACE_MAX)
        debug (DEBUG_QMP, "<- %.*s... (%zu more bytes)", QMP_TRACE_MAX, line,
               len - QMP_TRACE_MAX);
      else
        debug (DEBUG_QMP, "<- %s", line);
      *msg = qmp_message_parse (line, len);
      if (*msg == NULL || qmp_message_classify (*msg, kind) == -1) {
        json_decref (*msg);
        *msg = NULL;
        client_break (c);
        return -1;
      }
      return 0;
    }
    if (client_fill (c, w, waiting_for) == -1)
      return -1;
  }
}

static int
client_write (struct qmp_client *c, const char *text, size_t len,
              const struct qmp_wait *w)
{
  int r;

  debug (DEBUG_QMP, "-> %.*s", (int) (len ? len - 1 : 0), text);
  if (c->pass_fd >= 0)
    r = qmp_send_with_fd (c->fd, c->pass_fd, text, len, w);
  else
    r = qmp_send_all (c->fd, text, len, w);
  if (r == 0)
    return 0;
  if (r == QMP_SEND_WAIT_FAILED && errno == ETIMEDOUT)
    set_error (ETIMEDOUT, "QEMU did not take the command within %.1f s",
               w->timeout_ms / 1000.0);
  else if (r == QMP_SEND_WAIT_FAILED && errno == EINTR) {
    set_error (-EINTR, "interrupted while sending the command to QEMU");
  }
  else
    set_error (errno, r == QMP_SEND_WAIT_FAILED ? "poll" : "write to QEMU");
  client_break (c);
  return -1;
}

static int
queue_event (struct qmp_client *c, json_t *event)
{
  if (c->events.len >= QMP_MAX_QUEUED_EVENTS) {
    json_decref (event);
    set_error (ENOBUFS, "more than %d events queued and not taken",
               QMP_MAX_QUEUED_EVENTS);
    client_break (c);
    return -1;
  }
  if (event_queue_append (&c->events, event) == -1) {
    json_decref (event);
    set_error (ENOMEM, "cannot queue an event");
    client_break (c);
    return -1;
  }
  return 0;
}

/* Log a reply that answers no command of knib's and is dropped, as the
 * QMP specification asks. */
static void
reply_drop (const json_t *msg, const char *why)
{
  CLEANUP_FREE char *id
    = json_dumps (json_object_get (msg, "id"), JSON_COMPACT | JSON_ENCODE_ANY);

  debug (DEBUG_QMP, "dropped a reply with id %s: %s", id ? id : "?", why);
}

/* 1 when msg answers the command with id want, 0 when it answers
 * another (dropped), -1 when it has no id: QEMU could not read the
 * command, and the connection is out of step. */
static int
reply_id_check (struct qmp_client *c, const json_t *msg, const char *want)
{
  const json_t *id = json_object_get (msg, "id");

  if (json_is_string (id) && strcmp (json_string_value (id), want) == 0)
    return 1;
  if (id != NULL) {
    reply_drop (msg, "knib did not send it");
    return 0;
  }
  set_error (EPROTO, "reply without an id (expected '%s')", want);
  client_break (c);
  return -1;
}

static int
reply_error (struct qmp_client *c, const json_t *msg)
{
  const json_t *err = json_object_get (msg, "error");
  const char *cls = json_string_value (json_object_get (err, "class"));
  const char *desc = json_string_value (json_object_get (err, "desc"));

  c->error_class = strdup (cls);
  if (c->error_class == NULL) {
    set_error (ENOMEM, "%s (%s)", desc, cls);
    return -1;
  }
  set_error (-EREMOTEIO, "%s", desc);
  return -1;
}

/* Send a request and wait for the reply with its id, queueing events. */
static int
client_call (struct qmp_client *c, json_t *req, const char *id, json_t **result)
{
  CLEANUP_FREE char *text = NULL;
  CLEANUP_FREE char *line = NULL;
  struct qmp_wait w;
  size_t len;

  text = json_dumps (req, JSON_COMPACT);
  if (text == NULL) {
    set_error (ENOMEM, "cannot encode the command");
    return -1;
  }
  len = strlen (text);
  line = malloc (len + 2);
  if (line == NULL) {
    set_error (ENOMEM, "cannot encode the command");
    return -1;
  }
  memcpy (line, text, len);
  line[len] = '\n';
  line[len + 1] = '\0';
  qmp_wait_init (&w, c->cancel, c->timeout_ms);
  if (client_write (c, line, len + 1, &w) == -1)
    return -1;

  for (;;) {
    json_t *msg = NULL;
    enum qmp_message_kind kind;
    int r;

    if (client_read (c, &w, "reply", &msg, &kind) == -1) {
      if (get_errno () == ETIMEDOUT)
        (void) qmp_peer_explain_silence (c->fd, NULL, false);
      if (get_errno () == ETIMEDOUT || get_errno () == EINTR)
        client_break (c); /* a late reply would now be out of step */
      return -1;
    }
    switch (kind) {
    case QMP_MESSAGE_EVENT:
      if (queue_event (c, msg) == -1)
        return -1;
      continue;
    case QMP_MESSAGE_GREETING:
      json_decref (msg);
      set_error (EPROTO, "unexpected greeting in the middle of the session");
      client_break (c);
      return -1;
    case QMP_MESSAGE_RETURN:
    case QMP_MESSAGE_ERROR:
      break;
    }
    r = reply_id_check (c, msg, id);
    if (r != 1) {
      json_decref (msg);
      if (r == -1)
        return -1;
      continue;
    }
    if (kind == QMP_MESSAGE_ERROR) {
      reply_error (c, msg);
      json_decref (msg);
      return -1;
    }
    if (result != NULL)
      *result = json_incref (json_object_get (msg, "return"));
    json_decref (msg);
    return 0;
  }
}

/* Build {"execute": command, "id": id, "arguments": args}; args (may be
 * NULL) is stolen, even on failure. */
static json_t *
request_new (const char *command, json_t *args, const char *id)
{
  json_t *req;

  if (args != NULL && !json_is_object (args)) {
    json_decref (args);
    set_error (EINVAL, "arguments must be a JSON object");
    return NULL;
  }
  req = json_object ();
  if (req == NULL || json_object_set_new (req, "execute", json_string (command))
      || json_object_set_new (req, "id", json_string (id))) {
    json_decref (args);
    json_decref (req);
    set_error (ENOMEM, "cannot build the command");
    return NULL;
  }
  /* json_object_set_new takes args even when it fails. */
  if (args != NULL && json_object_set_new (req, "arguments", args) == -1) {
    json_decref (req);
    set_error (ENOMEM, "cannot build the command");
    return NULL;
  }
  return req;
}

int
qmp_client_execute (struct qmp_client *c, const char *command, json_t *args,
                    json_t **result)
{
  char id[32];
  json_t *req;
  int r;

  free (c->error_class);
  c->error_class = NULL;
  if (c->broken) {
    json_decref (args);
    set_error (EPIPE,
               "qmp '%s': the connection is unusable after an earlier error",
               command);
    return -1;
  }
  snprintf (id, sizeof id, "knib-%" PRIu64, ++c->next_id);
  req = request_new (command, args, id);
  if (req == NULL) {
    error_prepend ("qmp '%s'", command);
    return -1;
  }
  r = client_call (c, req, id, result);
  json_decref (req);
  if (r == -1)
    error_prepend ("qmp '%s'", command);
  return r;
}

int
qmp_client_execute_with_fd (struct qmp_client *c, const char *command,
                            json_t *args, int fd, json_t **result)
{
  int r;

  c->pass_fd = fd;
  r = qmp_client_execute (c, command, args, result);
  c->pass_fd = -1;
  return r;
}

const char *
qmp_client_error_class (const struct qmp_client *c)
{
  return c->error_class;
}

/* QEMU greets as soon as a client connects; a peer that has said
 * nothing by then is not QEMU's monitor (or a QEMU that is stuck). */
#define QMP_GREETING_TIMEOUT_MS 30000

/* The first byte of a QMP greeting is '{'.  Anything else (an NBD
 * server's "NBDMAGIC", a shell's prompt) is refused at once rather than
 * waited on until the timeout. */
static int
client_check_first_byte (struct qmp_client *c, const struct qmp_wait *w)
{
  char first;
  ssize_t n;

  if (qmp_wait_poll (w, c->fd, POLLIN) == -1)
    return 0; /* client_read reports the timeout or the error */
  do
    n = recv (c->fd, &first, 1, MSG_PEEK);
  while (n == -1 && errno == EINTR);
  if (n == 1 && first != '{' && first != ' ' && first != '\r'
      && first != '\n') {
    set_error (EPROTO,
               "the peer does not speak QMP (it sent %s first): is this "
               "QEMU's QMP socket?",
               first >= 0x20 && first < 0x7f ? "text" : "binary data");
    client_break (c);
    return -1;
  }
  return 0;
}

static int
client_greet (struct qmp_client *c, const char *path)
{
  json_t *msg = NULL;
  enum qmp_message_kind kind;
  struct qmp_wait w;
  json_t *ver;

  qmp_wait_init (&w, c->cancel,
                 c->timeout_ms < 0 || c->timeout_ms > QMP_GREETING_TIMEOUT_MS
                   ? QMP_GREETING_TIMEOUT_MS
                   : c->timeout_ms);
  if (client_check_first_byte (c, &w) == -1)
    return -1;
  if (client_read (c, &w, "greeting", &msg, &kind) == -1) {
    if (get_errno () == ETIMEDOUT
        && qmp_peer_explain_silence (c->fd, path, true) == 0)
      return -1;
    if (get_errno () != EINTR)
      error_prepend ("no QMP greeting (is this QEMU's QMP socket?)");
    return -1;
  }
  if (kind != QMP_MESSAGE_GREETING) {
    json_decref (msg);
    set_error (
      EPROTO,
      "the first message was not a QMP greeting (is this QEMU's QMP socket?)");
    return -1;
  }
  c->greeting = json_incref (json_object_get (msg, "QMP"));
  json_decref (msg);
  ver = json_object_get (json_object_get (c->greeting, "version"), "qemu");
  c->major = json_integer_value (json_object_get (ver, "major"));
  c->minor = json_integer_value (json_object_get (ver, "minor"));
  c->micro = json_integer_value (json_object_get (ver, "micro"));
  return qmp_client_execute (c, "qmp_capabilities", NULL, NULL);
}

/* Set up a client on fd (taken even on failure); errors begin with
 * "qmp" or "qmp 'PATH'". */
static struct qmp_client *
client_open (int fd, int timeout_ms, volatile sig_atomic_t *cancel,
             const char *path)
{
  struct qmp_client *c;

  c = calloc (1, sizeof *c);
  if (c == NULL) {
    close (fd);
    set_error (ENOMEM, "cannot allocate the client");
  }
  else {
    c->fd = fd;
    c->pass_fd = -1;
    c->timeout_ms = timeout_ms;
    c->cancel = cancel;
    qmp_framer_init (&c->framer, QMP_MAX_LINE);
    if (client_greet (c, path) == 0) {
      debug (DEBUG_QMP, "connected to QEMU %d.%d.%d", c->major, c->minor,
             c->micro);
      return c;
    }
    qmp_client_free (c);
  }
  if (path != NULL)
    error_prepend ("qmp '%s'", path);
  else
    error_prepend ("qmp");
  return NULL;
}

struct qmp_client *
qmp_client_new_fd (int fd, int timeout_ms, volatile sig_atomic_t *cancel)
{
  return client_open (fd, timeout_ms, cancel, NULL);
}

struct qmp_client *
qmp_client_connect (const char *path, int timeout_ms,
                    volatile sig_atomic_t *cancel)
{
  int fd = unix_connect ("qmp", path);

  return fd == -1 ? NULL : client_open (fd, timeout_ms, cancel, path);
}

void
qmp_client_free (struct qmp_client *c)
{
  if (c == NULL)
    return;
  for (size_t i = 0; i < c->events.len; i++)
    json_decref (c->events.ptr[i]);
  event_queue_reset (&c->events);
  qmp_framer_release (&c->framer);
  json_decref (c->greeting);
  free (c->error_class);
  if (c->fd >= 0)
    close (c->fd);
  free (c);
}

int
qmp_step_timeout_ms (int timeout_ms)
{
  return timeout_ms < 0 || timeout_ms > QMP_STEP_TIMEOUT_MS
           ? QMP_STEP_TIMEOUT_MS
           : timeout_ms;
}

void
qmp_client_set_timeout (struct qmp_client *c, int timeout_ms)
{
  c->timeout_ms = timeout_ms;
}

volatile sig_atomic_t *
qmp_client_set_cancel (struct qmp_client *c, volatile sig_atomic_t *cancel)
{
  volatile sig_atomic_t *old = c->cancel;

  c->cancel = cancel;
  return old;
}

const json_t *
qmp_client_greeting (const struct qmp_client *c)
{
  return c->greeting;
}

void
qmp_client_version (const struct qmp_client *c, int *major, int *minor,
                    int *micro)
{
  *major = c->major;
  *minor = c->minor;
  *micro = c->micro;
}

int
qmp_client_fd (const struct qmp_client *c)
{
  return c->fd;
}

size_t
qmp_client_events_queued (const struct qmp_client *c)
{
  return c->events.len;
}

static bool
event_matches (const json_t *event, const char *name, qmp_event_pred pred,
               void *opaque)
{
  const char *ev = json_string_value (json_object_get (event, "event"));

  if (name != NULL && (ev == NULL || strcmp (ev, name) != 0))
    return false;
  return pred == NULL || pred (json_object_get (event, "data"), opaque);
}

int
qmp_client_wait_event (struct qmp_client *c, const char *name,
                       qmp_event_pred pred, void *opaque, int timeout_ms,
                       json_t **event)
{
  struct qmp_wait w;
  char what[160];

  snprintf (what, sizeof what, "event %s%s%s", name ? "'" : "",
            name ? name : "", name ? "'" : "");
  for (size_t i = 0; i < c->events.len; i++) {
    if (event_matches (c->events.ptr[i], name, pred, opaque)) {
      *event = c->events.ptr[i];
      event_queue_remove (&c->events, i);
      return 0;
    }
  }
  if (c->broken) {
    set_error (
      EPIPE,
      "qmp: waiting for %s: the connection is unusable after an earlier error",
      what);
    return -1;
  }
  qmp_wait_init (&w, c->cancel, timeout_ms);
  for (;;) {
    json_t *msg = NULL;
    enum qmp_message_kind kind;

    if (client_read (c, &w, what, &msg, &kind) == -1) {
      error_prepend ("qmp");
      return -1;
    }
    if (kind == QMP_MESSAGE_GREETING) {
      json_decref (msg);
      set_error (EPROTO,
                 "qmp: unexpected greeting in the middle of the session");
      client_break (c);
      return -1;
    }
    if (kind != QMP_MESSAGE_EVENT) {
      reply_drop (msg, "no command was waiting");
      json_decref (msg);
      continue;
    }
    if (event_matches (msg, name, pred, opaque)) {
      *event = msg;
      return 0;
    }
    if (queue_event (c, msg) == -1) {
      error_prepend ("qmp");
      return -1;
    }
  }
}
