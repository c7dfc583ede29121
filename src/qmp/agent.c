/* SPDX-License-Identifier: Apache-2.0 */
/* agent.c: the QEMU guest agent client: guest-sync-delimited, commands.
 *
 * The agent speaks QMP without greeting or ids, and a previous client's
 * unread replies may still sit in the channel.  So knib first sends the
 * 0xFF sentinel (which makes the agent drop any half-parsed request),
 * then guest-sync-delimited with a fresh id; the agent answers 0xFF and
 * {"return": id}, and everything before that 0xFF is stale. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"
#include "agent.h"
#include "internal.h"

/* The agent's replies are small; a bigger line is not from an agent. */
#define QGA_MAX_LINE (1024u * 1024)

struct qga_client {
  int fd;
  char *name;
  int timeout_ms;
  volatile sig_atomic_t *cancel;
  struct qmp_framer framer;
  bool synced; /* the 0xFF delimiter came: bytes go to the framer */
  bool broken;
};

/* Read more bytes, waiting within w.  Before the delimiter, bytes up to
 * and including the 0xFF are dropped.  -1 with set_error (ETIMEDOUT when
 * the time ran out: the caller words it; EINTR when a signal came). */
static int
agent_fill (struct qga_client *c, const struct qmp_wait *w)
{
  char buf[4096];
  const char *p = buf;
  ssize_t n;

  for (;;) {
    if (qmp_wait_poll (w, c->fd, POLLIN) == -1) {
      if (errno == ETIMEDOUT)
        set_error (ETIMEDOUT, "timed out");
      else if (errno == EINTR) {
        set_error (-EINTR, "interrupted while waiting for the guest agent");
      }
      else
        set_error (errno, "poll");
      return -1;
    }
    n = read (c->fd, buf, sizeof buf);
    if (n == -1 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n == -1) {
      set_error (errno, "read from the guest agent socket '%s'", c->name);
      return -1;
    }
    if (n == 0) {
      set_error (ECONNRESET, "the guest agent socket '%s' was closed", c->name);
      return -1;
    }
    break;
  }
  if (!c->synced) {
    const char *ff = memchr (buf, 0xff, n);

    if (ff == NULL) {
      debug (DEBUG_QMP, "qga: skipped %zd stale bytes", n);
      return 0;
    }
    c->synced = true;
    p = ff + 1;
    n -= p - buf;
  }
  return qmp_framer_feed (&c->framer, p, n);
}

/* The next reply: a return or an error. */
static int
agent_read (struct qga_client *c, const struct qmp_wait *w, json_t **msg,
            enum qmp_message_kind *kind)
{
  for (;;) {
    CLEANUP_FREE char *line = NULL;
    size_t len;
    int r = c->synced ? qmp_framer_next (&c->framer, &line, &len) : 0;

    if (r == -1)
      return -1;
    if (r == 1) {
      debug (DEBUG_QMP, "qga <- %s", line);
      *msg = qmp_message_parse (line, len);
      if (*msg == NULL || qmp_message_classify (*msg, kind) == -1) {
        json_decref (*msg);
        *msg = NULL;
        return -1;
      }
      if (*kind == QMP_MESSAGE_RETURN || *kind == QMP_MESSAGE_ERROR)
        return 0;
      json_decref (*msg); /* the agent sends no events; skip anything else */
      *msg = NULL;
      continue;
    }
    if (agent_fill (c, w) == -1)
      return -1;
  }
}

static int
agent_write (struct qga_client *c, const char *text, size_t len,
             const struct qmp_wait *w)
{
  int r = qmp_send_all (c->fd, text, len, w);

  if (r == QMP_SEND_WAIT_FAILED)
    set_error (errno, errno == ETIMEDOUT ? "timed out"
                      : errno == EINTR   ? "interrupted while sending"
                                         : "poll");
  else if (r == QMP_SEND_FAILED)
    set_error (errno, "write to the guest agent socket '%s'", c->name);
  return r == 0 ? 0 : -1;
}

/* Send a request (one JSON line, prefixed by 0xFF when sentinel). */
static int
agent_send (struct qga_client *c, json_t *req, bool sentinel,
            const struct qmp_wait *w)
{
  CLEANUP_FREE char *text = NULL;
  CLEANUP_FREE char *line = NULL;
  int r;

  text = json_dumps (req, JSON_COMPACT);
  if (text == NULL) {
    set_error (ENOMEM, "cannot format a guest agent command");
    return -1;
  }
  debug (DEBUG_QMP, "qga -> %s", text);
  if (asprintf (&line, "%s%s\n", sentinel ? "\xff" : "", text) == -1) {
    line = NULL;
    set_error (ENOMEM, "cannot format a guest agent command");
    return -1;
  }
  r = agent_write (c, line, strlen (line), w);
  return r;
}

static int
agent_sync (struct qga_client *c, int sync_timeout_ms)
{
  struct qmp_wait w;
  json_int_t id;
  json_t *req, *msg = NULL;
  enum qmp_message_kind kind;
  struct timespec ts;

  qmp_wait_init (&w, c->cancel, sync_timeout_ms);
  clock_gettime (CLOCK_REALTIME, &ts);
  id = ((json_int_t) getpid () << 20 ^ (json_int_t) ts.tv_nsec) & INT32_MAX;
  req = json_pack ("{s:s,s:{s:I}}", "execute", "guest-sync-delimited",
                   "arguments", "id", id);
  if (req == NULL) {
    set_error (ENOMEM, "cannot format a guest agent command");
    return -1;
  }
  if (agent_send (c, req, true, &w) == -1) {
    json_decref (req);
    goto fail;
  }
  json_decref (req);
  for (;;) {
    const json_t *ret;

    if (agent_read (c, &w, &msg, &kind) == -1)
      goto fail;
    ret = json_object_get (msg, "return");
    if (kind == QMP_MESSAGE_RETURN && json_is_integer (ret)
        && json_integer_value (ret) == id) {
      json_decref (msg);
      return 0;
    }
    /* A stale reply after the delimiter: skip it. */
    json_decref (msg);
    msg = NULL;
  }
fail:
  if (get_errno () == ETIMEDOUT) {
    set_error (-ETIMEDOUT,
               "no guest agent answered on %s within %g s (is "
               "qemu-guest-agent running in the guest?)",
               c->name, sync_timeout_ms / 1000.0);
  }
  else
    error_prepend ("guest agent on %s: guest-sync-delimited", c->name);
  return -1;
}

struct qga_client *
qga_client_new_fd (int fd, const char *name, int sync_timeout_ms,
                   int timeout_ms, volatile sig_atomic_t *cancel)
{
  struct qga_client *c = calloc (1, sizeof *c);

  if (c == NULL || (c->name = strdup (name)) == NULL) {
    set_error (ENOMEM, "guest agent client");
    free (c);
    close (fd);
    return NULL;
  }
  c->fd = fd;
  c->timeout_ms = timeout_ms;
  c->cancel = cancel;
  qmp_framer_init (&c->framer, QGA_MAX_LINE);
  if (agent_sync (c, sync_timeout_ms) == -1) {
    qga_client_free (c);
    return NULL;
  }
  return c;
}

struct qga_client *
qga_client_connect (const char *path, int sync_timeout_ms, int timeout_ms,
                    volatile sig_atomic_t *cancel)
{
  int fd = unix_connect ("guest agent", path);

  if (fd == -1)
    return NULL;
  return qga_client_new_fd (fd, path, sync_timeout_ms, timeout_ms, cancel);
}

void
qga_client_free (struct qga_client *c)
{
  if (c == NULL)
    return;
  close (c->fd);
  qmp_framer_release (&c->framer);
  free (c->name);
  free (c);
}

int
qga_client_execute (struct qga_client *c, const char *command, json_t *args,
                    json_t **result)
{
  struct qmp_wait w;
  enum qmp_message_kind kind;
  json_t *req, *msg = NULL;

  if (result != NULL)
    *result = NULL;
  if (c->broken) {
    json_decref (args);
    set_error (EPIPE,
               "guest agent '%s': the connection is unusable after "
               "an earlier error",
               command);
    return -1;
  }
  req = json_pack ("{s:s}", "execute", command);
  if (req == NULL
      || (args != NULL && json_object_set_new (req, "arguments", args) == -1)) {
    json_decref (req);
    set_error (ENOMEM, "guest agent '%s': cannot format the command", command);
    return -1;
  }
  qmp_wait_init (&w, c->cancel, c->timeout_ms);
  if (agent_send (c, req, false, &w) == -1
      || agent_read (c, &w, &msg, &kind) == -1) {
    json_decref (req);
    c->broken = true;
    if (get_errno () == ETIMEDOUT) {
      set_error (-ETIMEDOUT, "guest agent '%s': no answer on %s within %g s",
                 command, c->name, c->timeout_ms / 1000.0);
    }
    else
      error_prepend ("guest agent '%s'", command);
    return -1;
  }
  json_decref (req);
  if (kind == QMP_MESSAGE_ERROR) {
    const char *desc = json_string_value (
      json_object_get (json_object_get (msg, "error"), "desc"));

    set_error (-EREMOTEIO, "guest agent '%s': %s", command,
               desc ? desc : "failed");
    json_decref (msg);
    return -1;
  }
  if (result != NULL)
    *result = json_incref (json_object_get (msg, "return"));
  json_decref (msg);
  return 0;
}
