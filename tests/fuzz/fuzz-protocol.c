/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-protocol.c: fuzz target: knibd's protocol, what a client sends on its socket.
 *
 * The input is the byte stream of one client: framed into lines as
 * knibd frames it, each line parsed and dispatched against an agent
 * whose job store is an in-memory database made anew for each input.
 * Jobs are checked and queued, never started (no runner_tick); the
 * knib program is one that does not exist, so list-backups fails
 * before anything runs. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agent/internal.h"
#include "common/error.h"
#include "fuzz.h"
#include "qmp/internal.h"

#define MAX_INPUT (32u * 1024)

/* Clients send in pieces: as knibd's read buffer does. */
#define CHUNK 16384

static void
no_emit (struct agent *a, const char *event, json_t *data)
{
  json_decref (data);
}

static void
agent_setup (struct agent *a)
{
  memset (a, 0, sizeof *a);
  config_init (&a->cfg);
  a->knib = "knib-fuzz-program-not-installed";
  a->state_dir = (char *) "/nonexistent";
  a->cores = 1;
  a->emit = no_emit;
  a->store = store_open (":memory:");
  if (a->store == NULL)
    abort (); /* no finding of the target */
}

static void
agent_teardown (struct agent *a)
{
  for (size_t i = 0; i < a->jobs.len; i++)
    job_free (a->jobs.ptr[i]);
  job_vector_reset (&a->jobs);
  store_close (a->store);
}

/* Dispatch every whole line the framer holds; false once the stream
 * cannot go on (knibd drops the client then). */
static bool
dispatch_lines (struct agent *a, struct qmp_framer *f, bool *negotiated)
{
  char *line;
  size_t len;
  int r;

  while ((r = qmp_framer_next (f, &line, &len)) == 1) {
    json_t *msg = qmp_message_parse (line, len);
    json_t *reply = NULL;
    char *text;

    free (line);
    if (msg != NULL)
      reply = agent_dispatch (a, msg, negotiated);
    else
      (void) get_error ();
    json_decref (msg);
    /* The reply as knibd sends it. */
    text = reply ? json_dumps (reply, JSON_COMPACT) : NULL;
    free (text);
    json_decref (reply);
  }
  return r == 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct agent a;
  struct qmp_framer f;
  bool negotiated = false;

  if (size > MAX_INPUT)
    return 0;
  agent_setup (&a);
  qmp_framer_init (&f, AGENT_MAX_MESSAGE);
  for (size_t done = 0; done < size;) {
    size_t n = size - done < CHUNK ? size - done : CHUNK;

    if (qmp_framer_feed (&f, (const char *) data + done, n) == -1
        || !dispatch_lines (&a, &f, &negotiated))
      break;
    done += n;
  }
  qmp_framer_release (&f);
  agent_teardown (&a);
  error_clear ();
  return 0;
}
