/* SPDX-License-Identifier: Apache-2.0 */
/* agent.h: a small client for the QEMU guest agent's unix socket. */
#ifndef KNIB_QMP_AGENT_H
#define KNIB_QMP_AGENT_H

#include <signal.h>

#include <jansson.h>

/* How long the guest agent may take to answer guest-sync-delimited. */
#define QGA_SYNC_TIMEOUT_MS 10000

struct qga_client;

/* Connect to the guest agent's socket (QEMU's chardev of the
 * org.qemu.guest_agent.0 port) and synchronise with guest-sync-delimited
 * within sync_timeout_ms; later commands may take timeout_ms (-1: no
 * limit).  cancel (may be NULL) interrupts the waits as for
 * qmp_client_connect.  NULL with set_error; ETIMEDOUT when no agent
 * answered. */
struct qga_client *qga_client_connect (const char *path, int sync_timeout_ms,
                                       int timeout_ms,
                                       volatile sig_atomic_t *cancel)
  __attribute__ ((warn_unused_result));

/* The same over a connected stream socket (taken, even on failure);
 * name is the socket's name in messages. */
struct qga_client *qga_client_new_fd (int fd, const char *name,
                                      int sync_timeout_ms, int timeout_ms,
                                      volatile sig_atomic_t *cancel)
  __attribute__ ((warn_unused_result));

void qga_client_free (struct qga_client *c);

/* Run one command (args may be NULL, stolen).  *result (if not NULL)
 * gets a new reference to the "return" value.  -1 with set_error "guest
 * agent 'COMMAND': ..."; EREMOTEIO when the agent answered with an
 * error, ETIMEDOUT when it said nothing in time.  After anything but
 * an error reply the connection is unusable. */
int qga_client_execute (struct qga_client *c, const char *command, json_t *args,
                        json_t **result) __attribute__ ((warn_unused_result));

#endif
