/* SPDX-License-Identifier: Apache-2.0 */
/* nbd.h: read a point-in-time NBD export: block status, plan, ordered reads. */
#ifndef KNIB_NBD_H
#define KNIB_NBD_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* knib's names here are nbd_<object>_<verb> (nbd_source_copy); libnbd's
 * own are nbd_<verb> (nbd_pread).  This header does not need libnbd.h. */

#define NBD_DEFAULT_CLUSTER_SIZE (64u * 1024)
#define NBD_DEFAULT_WINDOW_SIZE (UINT64_C (1) << 30)
#define NBD_DEFAULT_MAX_REQUESTS 64u
#define NBD_DEFAULT_REQUEST_SIZE (256u * 1024)
#define NBD_MAX_CONNECTIONS 16u

/* What the backup does with a run of whole clusters.  Clusters in no
 * range are skipped: nothing is read and nothing is written. */
enum nbd_range_kind {
  NBD_RANGE_DATA, /* read it and write it */
  NBD_RANGE_ZERO, /* reads as zero: write zero clusters (hides the backing) */
};

/* offset is a multiple of the cluster size; length is too, except that a
 * range may end at the end of the disk in a short last cluster. */
struct nbd_range {
  uint64_t offset;
  uint64_t length;
  enum nbd_range_kind kind;
};

/* Called for each planned range in increasing offset order.  Returns 0,
 * or -1 (with set_error) to stop the plan. */
typedef int (*nbd_range_fn) (void *opaque, const struct nbd_range *range);

/* Tuning for nbd_source_plan and nbd_source_copy.  NULL, or a zero
 * member, means the default.  Read buffers are bounded by
 * max_requests * request_size: 64 * 256 KiB = 16 MiB by default (with
 * QEMU, larger requests are slower: 2 MiB ones take twice as long). */
struct nbd_read_options {
  uint32_t cluster_size; /* 64 KiB: a power of two >= 512, the bitmap
                            granularity and the image's cluster size */
  uint64_t window_size;  /* 1 GiB: bytes asked per block status (< 4 GiB) */
  unsigned max_requests; /* 64: reads in flight or waiting to be consumed,
                            over all connections */
  uint32_t request_size; /* 256 KiB: largest read, rounded down to whole
                            clusters (at least one), never above the
                            server's maximum block size */
  int timeout_ms;        /* none: fail when the server is silent this long */
  /* Where nbd_source_copy gets a read buffer of size bytes when a slot
   * has none (at the start, and after the consumer took one with
   * nbd_chunk_steal_data): NULL means malloc.  It may block until the
   * consumer gives buffers back; NULL with set_error fails the copy.
   * Buffers are freed with free(). */
  void *(*buffer_get) (void *opaque, size_t size);
  void *buffer_opaque;
  /* Set (by a signal handler) to stop the copy: it fails with EINTR
   * without waiting for the reads in flight.  NULL: never. */
  volatile sig_atomic_t *cancel;
};

/* Where and what to read. */
struct nbd_source_options {
  const char *socket;      /* the NBD server's unix socket */
  const char *export_name; /* NULL or "": the default export */
  const char *bitmap;      /* NULL: full backup; else the name of the dirty
                              bitmap (meta context qemu:dirty-bitmap:NAME)
                              whose dirty clusters an incremental reads */
  unsigned connections;    /* 0 or 1: one; up to NBD_MAX_CONNECTIONS when
                              the server allows multi-conn */
  int timeout_ms;          /* connecting: <= 0 waits for ever */
  volatile sig_atomic_t *cancel; /* set by a signal handler: stop waiting
                                    for the handshake (EINTR); NULL */
};

/* One export, over one or more connections, used by one thread. */
struct nbd_source;

/* Connect, asking for base:allocation and the bitmap's context.  Fails
 * when the server lacks the bitmap.  NULL with set_error on failure. */
struct nbd_source *nbd_source_connect (const struct nbd_source_options *o)
  __attribute__ ((warn_unused_result));

/* Disconnect and free.  NULL is a no-op. */
void nbd_source_free (struct nbd_source *s);

uint64_t nbd_source_size (const struct nbd_source *s);

/* The server's block size constraints, with the protocol's defaults
 * (1, 4096, 32 MiB) where it advertised none. */
void nbd_source_block_size (const struct nbd_source *s, uint32_t *minimum,
                            uint32_t *preferred, uint32_t *maximum);

/* Connections open (1 unless multi-conn was asked for and allowed). */
unsigned nbd_source_connections (const struct nbd_source *s);

/* The plan is an incremental one (the source was opened with a bitmap). */
bool nbd_source_incremental (const struct nbd_source *s);

/* Plan the whole disk window by window, calling fn for each range.
 * Full: clusters that do not read as zero are DATA, the rest is skipped
 * (the new image starts empty).  Incremental: clean clusters are
 * skipped; dirty ones are ZERO when the whole cluster reads as zero and
 * DATA otherwise.  Only one window's extents are held at a time.
 * Returns 0, or -1 with set_error. */
int nbd_source_plan (struct nbd_source *s, const struct nbd_read_options *o,
                     nbd_range_fn fn, void *opaque)
  __attribute__ ((warn_unused_result));

/* A piece of the plan, handed to the consumer in increasing offset
 * order, without gaps other than skipped clusters.  A DATA chunk is at
 * most request_size bytes; data is borrowed until the consumer returns,
 * unless it takes it with nbd_chunk_steal_data.  ZERO chunks have no
 * data and may be long. */
struct nbd_chunk {
  uint64_t offset;
  uint64_t length;
  enum nbd_range_kind kind;
  void *data;
};

/* Take a DATA chunk's buffer (free it with free()).  The copy then
 * allocates another, so memory is no longer bounded by the copy alone. */
void *nbd_chunk_steal_data (struct nbd_chunk *chunk);

/* Returns 0, or -1 (with set_error) to stop the copy. */
typedef int (*nbd_chunk_fn) (void *opaque, struct nbd_chunk *chunk);

/* Progress, updated as chunks are delivered (valid after a failure). */
struct nbd_copy_stats {
  uint64_t offset;     /* everything below was delivered or skipped */
  uint64_t bytes_read; /* DATA bytes delivered */
  uint64_t bytes_zero; /* ZERO bytes delivered */
  uint64_t requests;   /* reads sent */
  uint64_t windows;    /* block status windows planned */
};

/* Plan (as nbd_source_plan) and read the plan with asynchronous reads,
 * handing every chunk to fn in increasing offset order.  On a read
 * error, a consumer error or a lost server the copy stops sending, waits
 * for the reads in flight, frees everything and returns -1 with
 * set_error ("nbd read at OFFSET: ...").  stats may be NULL. */
int nbd_source_copy (struct nbd_source *s, const struct nbd_read_options *o,
                     nbd_chunk_fn fn, void *opaque,
                     struct nbd_copy_stats *stats)
  __attribute__ ((warn_unused_result));

#endif
