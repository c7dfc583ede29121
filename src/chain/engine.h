/* engine.h: a whole backup of a running VM, and recovery after a kill. */
#ifndef KNIB_CHAIN_ENGINE_H
#define KNIB_CHAIN_ENGINE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "chain/chain.h"

/* Where knib keeps fleecing images and NBD sockets while a backup runs
 * (one private directory per run below it). */
#define ENGINE_DEFAULT_SCRATCH "/var/tmp/knib"

/* Progress of one disk: done of total bytes of the disk passed. */
typedef void (*engine_progress_fn) (void *opaque, const char *disk,
                                    uint64_t done, uint64_t total);

struct engine_options {
  const char *qmp_socket; /* the VM's QMP socket (knib's own monitor) */
  const char *vm;         /* the VM's name in the repository */
  enum chain_mode mode;
  int64_t chain_size;   /* 1: every backup full; < 1: unlimited */
  const char **disks;   /* NULL-terminated device names; NULL: every
                            writable disk */
  const char *scratch;  /* NULL: ENGINE_DEFAULT_SCRATCH */
  int timeout_ms;       /* QMP and NBD silence limit */
  unsigned connections; /* NBD connections per disk (0: default) */
  engine_progress_fn progress;
  void *opaque;
  /* Set (by a signal handler) to stop the backup: it fails cleanly. */
  volatile sig_atomic_t *cancel;
};

struct engine_disk_result {
  char *name;
  enum chain_kind kind;
  char *reason; /* why full, or NULL */
  uint64_t virtual_size;
  uint64_t bytes_read;
  uint64_t bytes_zero;
  uint64_t bytes_written;
  uint64_t extents;
  double seconds;
};
DEFINE_VECTOR_TYPE (engine_disk_result_vector, struct engine_disk_result)

struct engine_result {
  char id[CHAIN_ID_MAX];
  char parent[CHAIN_ID_MAX];
  enum chain_kind kind;
  char *reason;
  engine_disk_result_vector disks;
  double seconds;
  chain_string_vector notes; /* what recovery did, warnings */
};

void engine_result_release (struct engine_result *r);

/* Back up the VM: lock it, repair leftovers, decide, fleece all disks at
 * one point in time, copy through NBD into qcow2 images, commit, tear
 * down and rotate the bitmaps.  Returns 0, or -1 with set_error; on
 * failure nothing is left in QEMU or the repository and every guest
 * write stays tracked.  r->notes is filled either way. */
int engine_backup (struct chain_repo *repo, const struct engine_options *o,
                   struct engine_result *r)
  __attribute__ ((warn_unused_result));

/* What engine_backup repairs before it starts, on its own: partial
 * backups, knib's exports, jobs, fleecing nodes and stale bitmaps in
 * QEMU (qmp_socket NULL: only the repository), scratch files of dead
 * runs.  One line per repair goes to done. */
int engine_recover (struct chain_repo *repo, const struct engine_options *o,
                    chain_string_vector *done)
  __attribute__ ((warn_unused_result));

#endif
