/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-agent.c: fuzz target: the guest agent client reading what an agent (or a stale channel) sends.
 *
 * A peer thread plays the agent: it reads guest-sync-delimited, sends
 * the input up to its first NUL byte (stale bytes, anything), then the
 * right 0xFF and sync reply, then the rest of the input (the replies to
 * two commands), and closes.  The client reads it all. */
#include <config.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "common/error.h"
#include "fuzz.h"
#include "qmp/agent.h"

#define MAX_INPUT (32u * 1024)

struct peer {
  int fd;
  const uint8_t *data;
  size_t size;
};

/* The id of the guest-sync-delimited request ("\xff{...}\n"), or -1. */
static json_int_t
read_sync_id (int fd)
{
  char buf[1024];
  size_t n = 0;
  json_t *req;
  json_int_t id = -1;

  while (n < sizeof buf - 1) {
    ssize_t r = read (fd, buf + n, 1);

    if (r <= 0)
      return -1;
    if (buf[n++] == '\n')
      break;
  }
  buf[n] = '\0';
  req = json_loads (buf[0] == '\xff' ? buf + 1 : buf, 0, NULL);
  if (req != NULL)
    id = json_integer_value (
      json_object_get (json_object_get (req, "arguments"), "id"));
  json_decref (req);
  return id;
}

static void *
agent (void *arg)
{
  struct peer *p = arg;
  const uint8_t *nul = memchr (p->data, 0, p->size);
  size_t stale = nul ? (size_t) (nul - p->data) : p->size;
  json_int_t id = read_sync_id (p->fd);
  char sync[64];

  fuzz_send_all (p->fd, p->data, stale);
  if (id != -1) {
    snprintf (sync, sizeof sync, "\xff{\"return\": %" JSON_INTEGER_FORMAT "}\n",
              id);
    fuzz_send_all (p->fd, sync, strlen (sync));
  }
  if (nul != NULL)
    fuzz_send_all (p->fd, nul + 1, p->size - stale - 1);
  shutdown (p->fd, SHUT_WR);
  return NULL;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct peer p = { .data = data, .size = size };
  struct qga_client *c;
  pthread_t thread;
  int sv[2];

  if (size > MAX_INPUT)
    return 0;
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
    abort ();
  p.fd = sv[1];
  if (pthread_create (&thread, NULL, agent, &p) != 0)
    abort ();
  c = qga_client_new_fd (sv[0], "fuzz", 5000, 5000, NULL);
  if (c != NULL) {
    json_t *result = NULL;

    if (qga_client_execute (c, "guest-fsfreeze-status", NULL, &result) == 0)
      json_decref (result);
    if (qga_client_execute (c, "guest-fsfreeze-thaw", NULL, NULL) == -1)
      (void) get_error ();
    qga_client_free (c); /* closes sv[0]: the peer's writes end */
  }
  pthread_join (thread, NULL);
  close (sv[1]);
  error_clear ();
  return 0;
}
