/* SPDX-License-Identifier: Apache-2.0 */
/* quiesce.h: freezing a plain QEMU's guest through its agent socket. */
#ifndef KNIB_CLI_QUIESCE_H
#define KNIB_CLI_QUIESCE_H

#include <stdbool.h>

#include "qmp/agent.h"

/* How long the guest agent may take to freeze or thaw. */
#define QGA_FREEZE_TIMEOUT_MS 60000

/* --quiesce --qga: freeze through the guest agent's socket itself. */
struct qga_quiesce {
  const char *what; /* "backup", "snapshot": what a warning names */
  const char *socket;
  int sync_timeout_ms;
  bool quiesce_try;
  struct qga_client *agent; /* kept from freeze to thaw; the caller frees
                               it with qga_client_free */
  bool frozen;              /* thaw is due */
};

/* The freeze and thaw hooks of backup_options and snapshot_options
 * (opaque: a struct qga_quiesce).  A failed freeze with quiesce_try is a
 * warning on stderr and 0. */
int cli_qga_freeze (void *opaque);
int cli_qga_thaw (void *opaque);

#endif
