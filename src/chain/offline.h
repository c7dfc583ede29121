/* offline.h: a stopped VM's disks in qemu-storage-daemon, for the backup. */
#ifndef KNIB_CHAIN_OFFLINE_H
#define KNIB_CHAIN_OFFLINE_H

#include <stddef.h>

#include "chain/chain.h"
#include "chain/live.h"
#include "qmp/qmp.h"

/* The daemon's nodes: "knib-file-vda" (the file) under "knib-disk-vda"
 * (the format node, the disk). */
#define OFFLINE_DISK_PREFIX "knib-disk-"
#define OFFLINE_FILE_PREFIX "knib-file-"

/* In the run's scratch directory: the daemon's QMP socket and its pid. */
#define OFFLINE_QMP_SOCKET "qmp.sock"
#define OFFLINE_PID_FILE "daemon.pid"

/* How long the daemon may take to close its images once asked to stop
 * (it stores the persistent bitmaps then). */
#define OFFLINE_STOP_GRACE_MS 30000

/* A disk image of a stopped VM. */
struct offline_image {
  const char *disk;   /* the device name: "vda" */
  const char *path;   /* the image file */
  const char *format; /* "qcow2" or "raw"; NULL: what qemu-img info finds */
};

struct offline_daemon;

/* Start qemu-storage-daemon on the images: one node pair per image, the
 * QMP monitor on dir/OFFLINE_QMP_SOCKET, its pid file dir/OFFLINE_PID_FILE
 * (dir is private and exists); wait until it answers and connect.  An
 * image that can store persistent bitmaps (qcow2 v3) opens read-write,
 * so that bitmaps can be added; any other read-only.  The daemon holds
 * a qcow2 image's lock while it runs, so no VM starts on it (a raw
 * image's only once the backup's job holds it: see
 * offline_daemon_explain), and it dies with the calling thread.  An
 * image that another process holds (a running VM) is an error that says
 * so and points to --qmp.  NULL with set_error on failure. */
struct offline_daemon *offline_daemon_start (const struct offline_image *images,
                                             size_t n, const char *dir,
                                             int timeout_ms)
  __attribute__ ((warn_unused_result));

/* A raw image's lock is taken only when the backup starts (nothing
 * takes it before): when the last error says that this failed, say
 * which image and what to do. */
void offline_daemon_explain (const struct offline_daemon *d);

/* The daemon's QMP connection (borrowed). */
struct qmp_client *offline_daemon_qmp (struct offline_daemon *d);

/* Which node is which disk, for live_disks_query (borrowed). */
const struct live_node_map *offline_daemon_map (const struct offline_daemon *d,
                                                size_t *n);

/* Disconnect and stop the daemon (SIGTERM): it closes the images, which
 * stores their persistent bitmaps and drops their locks.  -1 with
 * set_error when it did not end cleanly (then bitmaps added since it
 * started may be lost: the next backup of those disks is full). */
int offline_daemon_stop (struct offline_daemon *d)
  __attribute__ ((warn_unused_result));

/* Stop the daemon if it still runs (the last error is left alone), then
 * free.  NULL is a no-op. */
void offline_daemon_free (struct offline_daemon *d);

/* A killed knib's scratch directory dir: if the daemon it started still
 * runs (it gets SIGTERM when knib dies, but may still be closing), stop
 * it and wait until it is gone, so that its images are free.  Appends
 * what it did to done. */
int offline_daemon_reap (const char *dir, chain_string_vector *done)
  __attribute__ ((warn_unused_result));

#endif
