/* SPDX-License-Identifier: Apache-2.0 */
/* quiesce.c: --quiesce --qga, a plain QEMU's filesystems frozen through
 * its guest agent's socket (knib backup, knib snapshot create). */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "common/error.h"
#include "cli.h"
#include "quiesce.h"

int
cli_qga_freeze (void *opaque)
{
  struct qga_quiesce *q = opaque;
  json_t *ret = NULL;

  q->agent = qga_client_connect (q->socket, q->sync_timeout_ms,
                                 QGA_FREEZE_TIMEOUT_MS, &cli_interrupted);
  if (q->agent != NULL) {
    if (qga_client_execute (q->agent, "guest-fsfreeze-freeze", NULL, &ret)
        == 0) {
      json_decref (ret);
      q->frozen = true;
      return 0;
    }
    /* An error reply: the agent thawed what it had frozen.  No reply:
     * it may have frozen them, so thaw anyway, on a new connection. */
    if (get_errno () != EREMOTEIO)
      q->frozen = true;
    error_prepend ("the guest agent did not freeze the filesystems");
  }
  error_prepend ("quiesce");
  if (!q->quiesce_try) {
    struct error_saved err;

    /* The caller thaws only after a freeze that worked. */
    error_save (&err);
    if (q->frozen && cli_qga_thaw (q) == -1)
      fprintf (stderr, "knib: warning: %s\n", get_error ());
    error_restore (&err);
    return -1;
  }
  fprintf (stderr, "knib: warning: %s: the %s is not quiesced\n", get_error (),
           q->what ? q->what : "backup");
  error_clear ();
  return 0;
}

int
cli_qga_thaw (void *opaque)
{
  struct qga_quiesce *q = opaque;

  if (!q->frozen)
    return 0;
  q->frozen = false;
  if (q->agent == NULL
      || qga_client_execute (q->agent, "guest-fsfreeze-thaw", NULL, NULL)
           == -1) {
    /* Once more on a new connection: the old one may be unusable. */
    qga_client_free (q->agent);
    q->agent = qga_client_connect (q->socket, q->sync_timeout_ms,
                                   QGA_FREEZE_TIMEOUT_MS, &cli_interrupted);
    if (q->agent == NULL
        || qga_client_execute (q->agent, "guest-fsfreeze-thaw", NULL, NULL)
             == -1) {
      error_prepend ("the guest's filesystems may still be frozen: run "
                     "guest-fsfreeze-thaw on the guest agent socket %s",
                     q->socket);
      return -1;
    }
  }
  return 0;
}
