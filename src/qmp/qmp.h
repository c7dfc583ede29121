/* SPDX-License-Identifier: Apache-2.0 */
/* qmp.h: the QMP client: greeting, commands with ids, queued events, jobs. */
#ifndef KNIB_QMP_H
#define KNIB_QMP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct qmp_client;

/* Connect to a QMP unix socket, read the greeting and leave capabilities
 * negotiation mode.  timeout_ms bounds every later read and write too
 * (-1: none).  cancel (may be NULL) is a flag that a signal handler
 * changes (increments) to interrupt whatever the client waits for: that
 * wait fails with EINTR, and a wait that begins with the flag already
 * set (cleaning up after the signal) lasts at most 15 s.  Returns NULL
 * with set_error on failure; EBUSY when another client holds the
 * socket. */
struct qmp_client *qmp_client_connect (const char *path, int timeout_ms,
                                       volatile sig_atomic_t *cancel)
  __attribute__ ((warn_unused_result));

/* The same over a connected stream socket.  Takes ownership of fd, even
 * when it fails. */
struct qmp_client *qmp_client_new_fd (int fd, int timeout_ms,
                                      volatile sig_atomic_t *cancel)
  __attribute__ ((warn_unused_result));

/* How long one QMP command of a backup may take at most, whatever the
 * (much longer) silence limit of the whole run: QEMU answers commands at
 * once, so a longer silence is a stopped or stuck QEMU. */
#define QMP_STEP_TIMEOUT_MS (5 * 60 * 1000)

/* timeout_ms, bounded by QMP_STEP_TIMEOUT_MS (-1: none is bounded too). */
int qmp_step_timeout_ms (int timeout_ms);

void qmp_client_free (struct qmp_client *c);

void qmp_client_set_timeout (struct qmp_client *c, int timeout_ms);

/* Change the flag that interrupts the client's waits (see
 * qmp_client_connect; NULL: none); returns the flag it had. */
volatile sig_atomic_t *qmp_client_set_cancel (struct qmp_client *c,
                                              volatile sig_atomic_t *cancel);

/* The greeting's "QMP" member ({"version": ..., "capabilities": [...]}),
 * borrowed; and the QEMU version it announced. */
const json_t *qmp_client_greeting (const struct qmp_client *c);
void qmp_client_version (const struct qmp_client *c, int *major, int *minor,
                         int *micro);

/* Run one command.  args (may be NULL) is stolen, even on failure.  On
 * success *result (if not NULL) gets a new reference to the "return"
 * value.  On failure returns -1 with set_error "qmp 'COMMAND': ..."; when
 * QEMU itself refused, errno is EREMOTEIO and qmp_client_error_class
 * gives its class. */
int qmp_client_execute (struct qmp_client *c, const char *command, json_t *args,
                        json_t **result) __attribute__ ((warn_unused_result));

/* qmp_client_execute, passing the file descriptor fd to QEMU along
 * with the command (SCM_RIGHTS on the QMP socket): for "add-fd" and
 * the other commands that take one.  fd stays open and the caller's. */
int qmp_client_execute_with_fd (struct qmp_client *c, const char *command,
                                json_t *args, int fd, json_t **result)
  __attribute__ ((warn_unused_result));

/* The class of QEMU's error for the last failed command ("GenericError",
 * "CommandNotFound", ...), or NULL when the last failure was not an error
 * reply from QEMU (connection, timeout, protocol). */
const char *qmp_client_error_class (const struct qmp_client *c);

/* A predicate on an event's "data" member (may be NULL: no data). */
typedef bool (*qmp_event_pred) (const json_t *data, void *opaque);

/* Take the oldest queued event, reading from QEMU if none is queued.
 * name NULL takes any event; otherwise the oldest event of that name
 * whose data satisfies pred (NULL: any).  Events that do not match stay
 * queued in order.  *event gets the whole event object (owned by the
 * caller).  -1 with errno ETIMEDOUT when timeout_ms passes (-1: wait for
 * ever, 0: only look at what has arrived). */
int qmp_client_wait_event (struct qmp_client *c, const char *name,
                           qmp_event_pred pred, void *opaque, int timeout_ms,
                           json_t **event) __attribute__ ((warn_unused_result));

/* The number of events read but not yet taken. */
size_t qmp_client_events_queued (const struct qmp_client *c);

/* Wait for job job_id (started with "auto-dismiss": false) to reach
 * "concluded", read its error from query-jobs, then job-dismiss it.
 * Returns 0 when the job succeeded; -1 with set_error "job 'ID': ..."
 * when it failed (EIO, with QEMU's error), timed out (ETIMEDOUT),
 * vanished (ENOENT), or the connection broke. */
int qmp_client_job_wait (struct qmp_client *c, const char *job_id,
                         int timeout_ms) __attribute__ ((warn_unused_result));

/* Typed wrappers of the block commands knib uses (block.c).  Each is
 * qmp_client_execute of that command: 0, or -1 with set_error "qmp
 * 'COMMAND': ..." (EREMOTEIO when QEMU refused it). */

/* qmp_client_execute with arguments built by json_pack: NULL args means
 * json_pack failed (ENOMEM), not "no arguments". */
int qmp_client_execute_packed (struct qmp_client *c, const char *command,
                               json_t *args, json_t **result)
  __attribute__ ((warn_unused_result));

/* The lists of query-block, query-named-block-nodes (flat: each node's
 * image without its backing images), query-jobs, query-block-exports
 * and query-fdsets:
 * *list gets a new reference to a JSON array (a reply that is not one is
 * an error, EPROTO). */
int qmp_query_block (struct qmp_client *c, json_t **list)
  __attribute__ ((warn_unused_result));
int qmp_query_named_block_nodes (struct qmp_client *c, bool flat, json_t **list)
  __attribute__ ((warn_unused_result));
int qmp_query_jobs (struct qmp_client *c, json_t **list)
  __attribute__ ((warn_unused_result));
int qmp_query_block_exports (struct qmp_client *c, json_t **list)
  __attribute__ ((warn_unused_result));
int qmp_query_fdsets (struct qmp_client *c, json_t **list)
  __attribute__ ((warn_unused_result));

int qmp_blockdev_del (struct qmp_client *c, const char *node)
  __attribute__ ((warn_unused_result));

/* Hand QEMU the open file fd in a new fd set ("add-fd"): *fdset gets its
 * id, and "/dev/fdset/ID" names the file to blockdev-add.  QEMU keeps a
 * copy; the caller closes fd.  qmp_remove_fdset drops the set (QEMU
 * keeps what it opened from it). */
int qmp_add_fd (struct qmp_client *c, int fd, const char *opaque,
                int64_t *fdset) __attribute__ ((warn_unused_result));
int qmp_remove_fdset (struct qmp_client *c, int64_t fdset)
  __attribute__ ((warn_unused_result));

/* Dirty bitmaps of node. */
int qmp_bitmap_add (struct qmp_client *c, const char *node, const char *name,
                    bool persistent, bool disabled)
  __attribute__ ((warn_unused_result));
int qmp_bitmap_remove (struct qmp_client *c, const char *node, const char *name)
  __attribute__ ((warn_unused_result));
int qmp_bitmap_enable (struct qmp_client *c, const char *node, const char *name)
  __attribute__ ((warn_unused_result));
int qmp_bitmap_disable (struct qmp_client *c, const char *node,
                        const char *name) __attribute__ ((warn_unused_result));

/* Merge bitmap src_name into target (both of node), or with src_node the
 * bitmap src_name of another node (a layer below, after a snapshot). */
int qmp_bitmap_merge (struct qmp_client *c, const char *node,
                      const char *target, const char *src_node,
                      const char *src_name)
  __attribute__ ((warn_unused_result));

/* QEMU's NBD server on a unix socket, and its exports. */
int qmp_nbd_server_start_unix (struct qmp_client *c, const char *path)
  __attribute__ ((warn_unused_result));
int qmp_nbd_server_stop (struct qmp_client *c)
  __attribute__ ((warn_unused_result));
int qmp_block_export_del (struct qmp_client *c, const char *id)
  __attribute__ ((warn_unused_result));

/* Cancel job id (it still needs qmp_client_job_wait to be dismissed). */
int qmp_job_cancel (struct qmp_client *c, const char *id)
  __attribute__ ((warn_unused_result));

/* One entry of query-jobs (strings borrowed from it): id and status are
 * required; type and error may be NULL; progress 0 when absent.  A job
 * of the wrong shape is an error (EPROTO). */
struct qmp_job {
  const char *id, *type, *status, *error;
  int64_t current, total; /* current-progress, total-progress */
};
int qmp_job_get (const json_t *job, struct qmp_job *out)
  __attribute__ ((warn_unused_result));

/* block-stream of node's backing chain into node, as job id, at speed
 * bytes/s (0: no limit); with auto_finalize false it waits in "pending"
 * for qmp_job_finalize, with auto_dismiss false in "concluded" for
 * qmp_job_dismiss. */
int qmp_block_stream (struct qmp_client *c, const char *id, const char *node,
                      bool auto_finalize, bool auto_dismiss, int64_t speed)
  __attribute__ ((warn_unused_result));
int qmp_job_finalize (struct qmp_client *c, const char *id)
  __attribute__ ((warn_unused_result));
int qmp_job_dismiss (struct qmp_client *c, const char *id)
  __attribute__ ((warn_unused_result));

/* The VM's run state: *running from query-status; stop (which drains
 * and flushes every disk) and cont. */
int qmp_query_running (struct qmp_client *c, bool *running)
  __attribute__ ((warn_unused_result));
int qmp_stop (struct qmp_client *c) __attribute__ ((warn_unused_result));
int qmp_cont (struct qmp_client *c) __attribute__ ((warn_unused_result));
/* The names of the children of QOM object PATH that start with PREFIX
 * (*names: a JSON array of strings, the caller's). */
int qmp_qom_children (struct qmp_client *c, const char *path,
                      const char *prefix, json_t **names)
  __attribute__ ((warn_unused_result));
/* object-add of an empty secret named ID (a marker other clients see in
 * qom-list /objects), object-del of an object. */
int qmp_object_add_secret (struct qmp_client *c, const char *id)
  __attribute__ ((warn_unused_result));
int qmp_object_del (struct qmp_client *c, const char *id)
  __attribute__ ((warn_unused_result));
/* qom-get of a string property (*value: malloc'ed), qom-set of one. */
int qmp_qom_get_string (struct qmp_client *c, const char *path,
                        const char *property, char **value)
  __attribute__ ((warn_unused_result));
int qmp_qom_set_string (struct qmp_client *c, const char *path,
                        const char *property, const char *value)
  __attribute__ ((warn_unused_result));

/* The socket's file descriptor, for poll (borrowed). */
int qmp_client_fd (const struct qmp_client *c);

#endif
