/* SPDX-License-Identifier: Apache-2.0 */
/* internal.h: QMP framing and message classification, shared with tests. */
#ifndef KNIB_QMP_INTERNAL_H
#define KNIB_QMP_INTERNAL_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "qmp.h"

/* QEMU's replies are one JSON object per line, ended by "\r\n" (or
 * "\n").  The framer collects the bytes read from the socket and hands
 * out whole lines. */
#define QMP_MAX_LINE (64u * 1024 * 1024)

struct qmp_framer {
  char *buf;
  size_t len;      /* bytes held */
  size_t cap;      /* bytes allocated */
  size_t scanned;  /* bytes known to hold no newline */
  size_t partial;  /* bytes after the last newline: the unfinished line */
  size_t max_line; /* longest line accepted, not counting its "\r\n" */
};

void qmp_framer_init (struct qmp_framer *f, size_t max_line);
void qmp_framer_release (struct qmp_framer *f);

/* Append bytes.  -1 with set_error on ENOMEM or when the unfinished
 * line grows longer than max_line (EMSGSIZE); the framer is unchanged
 * then. */
int qmp_framer_feed (struct qmp_framer *f, const char *data, size_t n)
  __attribute__ ((warn_unused_result));

/* Take the next whole line (without its "\r\n" or "\n", NUL-terminated,
 * owned by the caller).  Returns 1 with a line, 0 when no whole line is
 * held, -1 with set_error on ENOMEM or a line longer than max_line
 * (EMSGSIZE).  Blank lines (only spaces, tabs, CRs) are skipped. */
int qmp_framer_next (struct qmp_framer *f, char **line, size_t *len)
  __attribute__ ((warn_unused_result));

/* Bytes of an unfinished line (other than blanks) are held. */
bool qmp_framer_partial (const struct qmp_framer *f);

enum qmp_message_kind {
  QMP_MESSAGE_GREETING,
  QMP_MESSAGE_RETURN,
  QMP_MESSAGE_ERROR,
  QMP_MESSAGE_EVENT,
};

/* Check a message's shape and say what it is: the members knib reads,
 * with their types; members it does not know are ignored.  -1 with
 * set_error when it is none of the four shapes QMP defines (EPROTO), or
 * on ENOMEM. */
int qmp_message_classify (const json_t *msg, enum qmp_message_kind *kind)
  __attribute__ ((warn_unused_result));

/* Turn a line into a JSON object.  NULL with set_error: EPROTO on
 * invalid JSON or a value that is not an object, ENOMEM when jansson ran
 * out of memory. */
json_t *qmp_message_parse (const char *line, size_t len)
  __attribute__ ((warn_unused_result));

/* One wait for QEMU (a reply, an event, room to send): until a
 * deadline, or until a signal bumps the cancel flag.  The wait is
 * interrupted when the flag changes while it lasts; a wait that begins
 * with the flag already set (the cleanup after the first signal) is
 * bounded by QMP_INTERRUPTED_TIMEOUT_MS instead. */
#define QMP_INTERRUPTED_TIMEOUT_MS 15000

struct qmp_wait {
  volatile sig_atomic_t *cancel; /* may be NULL: not interruptible */
  sig_atomic_t seen;             /* *cancel when the wait began */
  int timeout_ms;                /* -1: none */
  int64_t deadline;
};

void qmp_wait_init (struct qmp_wait *w, volatile sig_atomic_t *cancel,
                    int timeout_ms);

/* poll fd for events within the wait.  1 ready, -1 with errno: EINTR
 * when interrupted, ETIMEDOUT when the deadline passed, else poll's
 * (never 0). */
int qmp_wait_poll (const struct qmp_wait *w, int fd, short events)
  __attribute__ ((warn_unused_result));

/* Send all of text to fd (never SIGPIPE), waiting for room within w.
 * Returns 0; QMP_SEND_WAIT_FAILED with errno (ETIMEDOUT, EINTR) when
 * waiting failed; QMP_SEND_FAILED with errno when send failed.  No
 * set_error: each client words its own. */
enum {
  QMP_SEND_WAIT_FAILED = -2,
  QMP_SEND_FAILED = -1,
};
int qmp_send_all (int fd, const char *text, size_t len,
                  const struct qmp_wait *w)
  __attribute__ ((warn_unused_result));

/* QEMU said nothing in time on the socket fd (named path, may be NULL):
 * when the kernel can say why (QEMU is stopped; at the greeting, QEMU
 * has not accepted the connection because another client holds the
 * socket), set_error says so and 0 is returned; otherwise -1 and the
 * error is left alone. */
int qmp_peer_explain_silence (int fd, const char *path, bool greeting);

#endif
