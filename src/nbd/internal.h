/* SPDX-License-Identifier: Apache-2.0 */
/* internal.h: the extent planner and the source's insides, shared with tests. */
#ifndef KNIB_NBD_INTERNAL_H
#define KNIB_NBD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/vector.h"
#include "nbd.h"

#define NBD_CONTEXT_ALLOCATION "base:allocation"
#define NBD_CONTEXT_BITMAP_PREFIX "qemu:dirty-bitmap:"

/* Extent flags: base:allocation's NBD_STATE_HOLE and NBD_STATE_ZERO, and
 * a dirty bitmap's one bit.  Only ZERO promises that a range reads as
 * zero; a HOLE without ZERO may read as anything, so it is read. */
#define NBD_EXTENT_HOLE 1u
#define NBD_EXTENT_ZERO 2u
#define NBD_EXTENT_DIRTY 1u

/* block status asks for at most this many bytes (the protocol's 32 bits). */
#define NBD_MAX_WINDOW (UINT64_C (4) * 1024 * 1024 * 1024 - 1)

/* One extent of a meta context's answer, relative to the previous one. */
struct nbd_block_extent {
  uint64_t length;
  uint32_t flags;
};

DEFINE_VECTOR_TYPE (nbd_block_extent_vector, struct nbd_block_extent)
DEFINE_VECTOR_TYPE (nbd_range_vector, struct nbd_range)

/* The planner turns extents into cluster ranges.  It is fed the extents
 * of consecutive windows, keeps only the cluster it is in the middle of,
 * and emits merged ranges (never across a window's end, so each window's
 * ranges can be read before the next window is asked for). */
struct nbd_planner {
  uint64_t size;
  uint64_t cluster;
  bool incremental;
  nbd_range_fn emit;
  void *opaque;
  uint64_t pos;     /* bytes classified so far */
  bool cur_dirty;   /* [cluster start, pos) holds a dirty byte */
  bool cur_nonzero; /* [cluster start, pos) may hold a non-zero byte */
  bool have_pending;
  struct nbd_range pending; /* the range being merged, not yet emitted */
  uint64_t data_bytes;      /* planned so far */
  uint64_t zero_bytes;
};

void nbd_planner_init (struct nbd_planner *p, uint64_t size, uint32_t cluster,
                       bool incremental, nbd_range_fn emit, void *opaque);

/* Feed one window starting at p->pos: base:allocation's extents and,
 * for an incremental, the bitmap's (NULL, 0 for a full).  The planner
 * advances over what both contexts describe (clipped to the disk), and
 * emits the ranges of the clusters finished by then.  -1 with set_error
 * when the extents describe nothing or the callback fails. */
int nbd_planner_window (struct nbd_planner *p,
                        const struct nbd_block_extent *base, size_t nbase,
                        const struct nbd_block_extent *dirty, size_t ndirty)
  __attribute__ ((warn_unused_result));

/* The whole disk has been planned. */
bool nbd_planner_done (const struct nbd_planner *p);

/* Ask the server about [offset, offset + count): fill base (and dirty
 * when incremental) with extents starting at offset.  0 or -1. */
typedef int (*nbd_block_status_fn) (void *opaque, uint64_t offset,
                                    uint64_t count,
                                    nbd_block_extent_vector *base,
                                    nbd_block_extent_vector *dirty);

/* Walking a disk window by window: the planner plus its extent buffers. */
struct nbd_walk {
  struct nbd_planner planner;
  uint64_t window;
  nbd_block_status_fn status;
  void *status_opaque;
  nbd_block_extent_vector base;
  nbd_block_extent_vector dirty;
  uint64_t windows; /* asked so far */
};

void nbd_walk_init (struct nbd_walk *w, uint64_t size, uint32_t cluster,
                    uint64_t window, bool incremental,
                    nbd_block_status_fn status, void *status_opaque,
                    nbd_range_fn emit, void *emit_opaque);
void nbd_walk_release (struct nbd_walk *w);

/* Plan the next window.  1 when a window was planned, 0 when the disk
 * was already done, -1 with set_error. */
int nbd_walk_step (struct nbd_walk *w) __attribute__ ((warn_unused_result));

/* Check o (NULL: defaults) and fill in the defaults. */
int nbd_read_options_resolve (const struct nbd_read_options *o,
                              struct nbd_read_options *out)
  __attribute__ ((warn_unused_result));

/* The source.  Handles are closed (and set to NULL) when one fails in a
 * way that leaves commands unaccounted for (a timeout). */
struct nbd_handle;

struct nbd_source {
  char *socket;
  char *export_name;
  char *bitmap;
  char *bitmap_context;
  struct nbd_handle *h[NBD_MAX_CONNECTIONS];
  unsigned nr_conns;
  uint64_t size;
  uint32_t min_block, preferred_block, max_block;
  bool has_allocation; /* the server answers base:allocation */
  bool multi_conn;
  bool broken; /* a connection failed: nothing more can be read */
  volatile sig_atomic_t *cancel; /* nbd_source_options' */
};

/* Run the connections until something happens: poll their sockets for at
 * most timeout_ms (<= 0: for ever) and let libnbd read and write.  Returns
 * 0, or -1 with set_error: a dead connection (libnbd's message, commands
 * already failed with ENOTCONN), or ETIMEDOUT (the connections are then
 * closed, failing every command in flight). */
int nbd_source_wait (struct nbd_source *s, int timeout_ms)
  __attribute__ ((warn_unused_result));

/* Connection i is open and not dead. */
bool nbd_source_alive (struct nbd_source *s, unsigned i);

/* What a command failed with ENOTCONN says: libnbd gave up on the
 * connection (the server went away, or sent something broken). */
#define NBD_LOST_CONNECTION "lost the connection to the NBD server"

/* Commands sent or queued on connection i, or on all of them. */
unsigned nbd_source_in_flight (struct nbd_source *s, unsigned i);
unsigned nbd_source_in_flight_all (struct nbd_source *s);

/* The block status function for s (opaque: struct nbd_status_ctx).
 * With prefetch, each answer keeps the requests for the next
 * NBD_STATUS_PREFETCH windows in flight, so that the server's answers
 * are ready (its metadata scan done) when the plan gets there: the
 * copy's reads go on meanwhile, and the round trips of a large empty
 * disk overlap.  Release a context that prefetched with
 * nbd_status_ctx_release. */
#define NBD_STATUS_PREFETCH 4u
struct status_prefetch;
struct nbd_status_ctx {
  struct nbd_source *s;
  int timeout_ms;
  bool prefetch;
  struct status_prefetch *pf; /* a ring of NBD_STATUS_PREFETCH */
  unsigned pf_head, pf_count;
  uint64_t hits, misses;         /* prefetched windows used, and not */
  volatile sig_atomic_t *cancel; /* nbd_read_options' */
};
void nbd_status_ctx_release (struct nbd_status_ctx *ctx);
int nbd_source_block_status (void *opaque, uint64_t offset, uint64_t count,
                             nbd_block_extent_vector *base,
                             nbd_block_extent_vector *dirty)
  __attribute__ ((warn_unused_result));

/* Close every connection, failing the commands in flight: no buffer is
 * written after this.  The source is broken from then on. */
void nbd_source_close_all (struct nbd_source *s);

/* set_error with context, keeping libnbd's message and errno. */
void nbd_error_from_libnbd (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

/* Record msg as the error with errno errnum (msg may already end in
 * strerror (errnum)): restores a saved error. */
void nbd_error_set (int errnum, const char *msg);

#endif
