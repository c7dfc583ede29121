/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-qmp.c: fuzz target: QMP framing and classification, and the client reading what a QEMU sends.
 *
 * The input is what QEMU writes on its monitor: it goes through the
 * framer in chunks (the first byte picks their size) and every line
 * through the parser and classifier; then a client reads it, whole,
 * from a socketpair (greeting, the capabilities reply "knib-1", a
 * command's reply "knib-2", events, a job's replies). */
#include <config.h>

#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "common/error.h"
#include "fuzz.h"
#include "qmp/internal.h"
#include "qmp/qmp.h"

/* Fits in a socketpair's buffer: the writer never blocks. */
#define MAX_INPUT (32u * 1024)

/* Small, so that the fuzzer reaches the line limit. */
#define MAX_LINE 4096

static void
frame (const uint8_t *data, size_t size)
{
  struct qmp_framer f;
  size_t step = size ? 1 + data[0] % 64 : 1;

  qmp_framer_init (&f, MAX_LINE);
  for (size_t off = 0; off < size; off += step) {
    size_t n = size - off < step ? size - off : step;
    char *line;
    size_t len;
    int r;

    if (qmp_framer_feed (&f, (const char *) data + off, n) == -1)
      break;
    while ((r = qmp_framer_next (&f, &line, &len)) == 1) {
      json_t *msg = qmp_message_parse (line, len);
      enum qmp_message_kind kind;

      if (msg != NULL && qmp_message_classify (msg, &kind) == 0)
        (void) kind;
      json_decref (msg);
      free (line);
    }
    if (r == -1)
      break;
  }
  (void) qmp_framer_partial (&f);
  qmp_framer_release (&f);
}

static void
converse (const uint8_t *data, size_t size)
{
  struct qmp_client *c;
  json_t *result = NULL, *event = NULL;
  int sv[2];

  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
    abort ();
  fuzz_send_all (sv[1], data, size);
  shutdown (sv[1], SHUT_WR); /* then QEMU "closes": no read waits */
  c = qmp_client_new_fd (sv[0], 5000, NULL);
  if (c != NULL) {
    int major, minor, micro;

    (void) qmp_client_greeting (c);
    qmp_client_version (c, &major, &minor, &micro);
    if (qmp_client_execute (c, "query-status", NULL, &result) == -1)
      (void) qmp_client_error_class (c);
    json_decref (result);
    while (qmp_client_wait_event (c, NULL, NULL, NULL, 0, &event) == 0) {
      json_decref (event);
      event = NULL;
    }
    if (qmp_client_job_wait (c, "knib-job-vda", 5000) == -1)
      (void) get_error ();
    (void) qmp_client_events_queued (c);
    qmp_client_free (c);
  }
  close (sv[1]);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size > MAX_INPUT)
    return 0;
  frame (data, size);
  converse (data, size);
  error_clear ();
  return 0;
}
