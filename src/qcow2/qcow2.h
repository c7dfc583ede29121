/* SPDX-License-Identifier: Apache-2.0 */
/* qcow2.h: the streaming qcow2 v3 writer, the cluster compressor, and probe. */
#ifndef KNIB_QCOW2_H
#define KNIB_QCOW2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "common/digest.h"

/* The header's compression_type: how compressed clusters are encoded. */
enum qcow2_compression {
  QCOW2_COMPRESSION_ZLIB = 0, /* raw deflate, window bits 12 */
  QCOW2_COMPRESSION_ZSTD = 1, /* one zstd frame per cluster */
};

/* Cluster sizes the writer accepts (QEMU's own limits). */
#define QCOW2_MIN_CLUSTER_SIZE 512u
#define QCOW2_MAX_CLUSTER_SIZE (2u * 1024 * 1024)
#define QCOW2_DEFAULT_CLUSTER_SIZE (64u * 1024)

/* The longest backing file name qcow2 can record. */
#define QCOW2_MAX_BACKING_FILE 1023u

/* The name of a compression type ("zlib", "zstd"), as qemu-img shows it. */
const char *qcow2_compression_name (enum qcow2_compression type);

/* -------------------------------------------------------------------- */
/* Writing an image front to back                                         */
/* -------------------------------------------------------------------- */

/* How the writer writes the image file. */
enum qcow2_io {
  QCOW2_IO_BUFFERED, /* the page cache keeps the pages (writeback starts
                        early) */
  QCOW2_IO_DROP,     /* buffered, each chunk written back, waited for and
                        dropped from the page cache */
  QCOW2_IO_DIRECT,   /* O_DIRECT from aligned buffers where the file
                        system takes it (clusters of 4 KiB or more), else
                        QCOW2_IO_DROP */
};

/* "O_DIRECT", ... as debug output says it. */
const char *qcow2_io_name (enum qcow2_io io);

struct qcow2_writer_options {
  /* The disk's size in bytes: a multiple of 512, at least 512. */
  uint64_t virtual_size;
  /* A power of two from QCOW2_MIN_CLUSTER_SIZE to QCOW2_MAX_CLUSTER_SIZE;
   * 0 means QCOW2_DEFAULT_CLUSTER_SIZE.  Use the dirty bitmap's
   * granularity. */
  uint32_t cluster_size;
  /* NULL for a standalone image (a full backup).  For an overlay (an
   * incremental backup): the parent's name as QEMU should resolve it,
   * relative to the directory of this image, at most
   * QCOW2_MAX_BACKING_FILE bytes, and it must fit in the first cluster
   * beside the header. */
  const char *backing_file;
  /* The backing file's format ("qcow2", "raw"); NULL means "qcow2".
   * Ignored without a backing file. */
  const char *backing_format;
  /* Recorded in the header; every compressed cluster must use it. */
  enum qcow2_compression compression;
  /* QCOW2_IO_BUFFERED (0) unless asked; see qcow2_writer_io for what
   * was used. */
  enum qcow2_io io;
  /* Compute the image's digest (common/digest.h) as it is written, for
   * qcow2_writer_digest; fd must then be open for reading too (finish
   * reads back the first segment, which the header is written into). */
  bool digest;
  /* With O_DIRECT: up to this many writes (at most 4) of long runs kept
   * in flight straight from the pieces qcow2_writer_writev gets, whose
   * caller then keeps them untouched until qcow2_writer_wait says they
   * are written.  0 or 1: one write at a time, done on return. */
  unsigned write_depth;
  /* A scratch image nothing opens after a crash (a fleecing image): no
   * fsync.  Its header is still written last. */
  bool no_sync;
};

/* What a writer has done so far. */
struct qcow2_writer_stats {
  uint64_t data_clusters;       /* guest clusters stored as they are */
  uint64_t compressed_clusters; /* guest clusters stored compressed */
  uint64_t zero_clusters;       /* guest clusters marked as reading zero */
  uint64_t compressed_bytes;    /* payload of the compressed clusters */
  uint64_t file_size;           /* bytes of the image file written */
};

struct qcow2_writer;

/* Start writing a qcow2 image into fd, from offset 0, which must be open
 * for writing and support pwrite (a regular file; it is truncated to the
 * image's size at the end).  The writer borrows fd: the caller keeps it,
 * and must leave it open until qcow2_writer_free, and closes it itself.
 *
 * Memory is O(1) in the disk's size apart from the L1 table (8 bytes per
 * cluster_size * cluster_size / 8 bytes of disk) and one refcount table
 * entry per refcount block.  A writer belongs to one thread at a time.
 *
 * Returns NULL with set_error when the options or fd are unusable. */
struct qcow2_writer *qcow2_writer_new (int fd,
                                       const struct qcow2_writer_options *opts)
  __attribute__ ((warn_unused_result));

/* Every call below takes a guest offset that is a multiple of the cluster
 * size and not below the end of the previous call's range: a disk is
 * written in increasing guest offset order, each cluster at most once.
 * Clusters never mentioned stay unallocated: they read from the backing
 * file, or as zeros without one.
 *
 * After a failure the writer is broken: every later call fails too, and
 * the file is not a valid image (its header is only written by
 * qcow2_writer_finish). */

/* Store len bytes of guest data at guest_offset, uncompressed.  len is a
 * multiple of the cluster size, except that a range reaching the end of
 * the disk may end with a short cluster (it is padded with zeros). */
int qcow2_writer_write (struct qcow2_writer *w, uint64_t guest_offset,
                        const void *buf, size_t len)
  __attribute__ ((warn_unused_result));

/* The most pieces qcow2_writer_writev and qcow2_pipeline_writev take. */
#define QCOW2_MAX_IOV 64

/* As qcow2_writer_write, for guest data in the n pieces of iov (1 to
 * QCOW2_MAX_IOV), one after the other in the guest.  Runs of whole
 * clusters are written to the file straight from the pieces, without a
 * copy (the pieces must stay unchanged until the call returns); with
 * QCOW2_IO_DIRECT, pieces aligned to 4 KiB go with O_DIRECT. */
int qcow2_writer_writev (struct qcow2_writer *w, uint64_t guest_offset,
                         const struct iovec *iov, int n)
  __attribute__ ((warn_unused_result));

/* Store the one cluster at guest_offset compressed: cbuf holds clen bytes
 * (1 to cluster size) that decompress to exactly one whole cluster (the
 * disk's last cluster padded with zeros) with the image's compression
 * type.  qcow2_compressor_compress makes them.  Compressed clusters are
 * packed byte by byte and may cross host cluster boundaries. */
int qcow2_writer_write_compressed (struct qcow2_writer *w,
                                   uint64_t guest_offset, const void *cbuf,
                                   size_t clen)
  __attribute__ ((warn_unused_result));

/* Mark len bytes from guest_offset as reading zero (whole clusters; the
 * range may end with the disk's short last cluster).  No data is written;
 * in an overlay these clusters hide the backing file's data. */
int qcow2_writer_zero (struct qcow2_writer *w, uint64_t guest_offset,
                       uint64_t len) __attribute__ ((warn_unused_result));

/* Write what is left (the last L2 table, the L1 table, the refcount
 * structures), fsync, then write the header and fsync again.  Only then
 * is the file a valid image.  After it, only get_stats and free. */
int qcow2_writer_finish (struct qcow2_writer *w)
  __attribute__ ((warn_unused_result));

void qcow2_writer_get_stats (const struct qcow2_writer *w,
                             struct qcow2_writer_stats *stats);

uint32_t qcow2_writer_cluster_size (const struct qcow2_writer *w);

/* How the image is being written (O_DIRECT may have fallen back). */
enum qcow2_io qcow2_writer_io (const struct qcow2_writer *w);

/* With write_depth: names the writes made so far, for qcow2_writer_wait. */
uint64_t qcow2_writer_ticket (struct qcow2_writer *w);

/* 1 when every write up to ticket is complete and its pieces are free
 * (block: wait for that), 0 when not yet, -1 with set_error when a write
 * failed (the pieces are free; the writer is broken).  1 at once without
 * write_depth. */
int qcow2_writer_wait (struct qcow2_writer *w, uint64_t ticket, bool block)
  __attribute__ ((warn_unused_result));

/* After qcow2_writer_finish: the finished file's digest (lowercase hex),
 * when the options asked for it.  Returns 0, or -1 with set_error. */
int qcow2_writer_digest (const struct qcow2_writer *w,
                         char hex[DIGEST_HEX_LEN + 1])
  __attribute__ ((warn_unused_result));

/* The compression type its header records (opts->compression). */
enum qcow2_compression qcow2_writer_compression (const struct qcow2_writer *w);

/* Free the writer (it does not close fd).  An unfinished image is left
 * as it is: not valid qcow2, for the caller to remove.  NULL is a
 * no-op. */
void qcow2_writer_free (struct qcow2_writer *w);

/* -------------------------------------------------------------------- */
/* Compressing clusters the way QEMU reads them                           */
/* -------------------------------------------------------------------- */

struct qcow2_compressor;

/* A compressor for clusters of cluster_size bytes.  level 0 means the
 * library's default (zlib 6, zstd 3).  One per thread.  NULL with
 * set_error on failure. */
struct qcow2_compressor *qcow2_compressor_new (enum qcow2_compression type,
                                               uint32_t cluster_size, int level)
  __attribute__ ((warn_unused_result));

/* Compress one whole cluster (cluster_size bytes at in) into out (room for
 * out_size bytes).  Returns the compressed length, which is less than the
 * cluster size; 0 when the cluster does not shrink (store it raw); -1
 * with set_error on failure. */
ssize_t qcow2_compressor_compress (struct qcow2_compressor *c, const void *in,
                                   void *out, size_t out_size)
  __attribute__ ((warn_unused_result));

void qcow2_compressor_free (struct qcow2_compressor *c);

/* -------------------------------------------------------------------- */
/* Compressing on worker threads, writing in guest order                   */
/* -------------------------------------------------------------------- */

/* The pipeline sits in front of a writer.  One producer thread hands it
 * guest data and zero ranges in increasing offset order (the writer's
 * rule); worker threads compress whole clusters, each with its own
 * qcow2_compressor; the producer's own calls write the results to the
 * writer strictly in guest order.  A cluster that does not shrink is
 * stored raw.
 *
 * Memory is bounded by the number of slots, fixed at creation whatever
 * the disk's size: each slot holds one cluster and its compressed form
 * (2 * slots * cluster size bytes).  When every slot is taken the
 * producer waits for the oldest clusters and writes them until half the
 * slots are free.
 *
 * Errors (a worker's compression error, a write error) come back from
 * the producer's next call, and the pipeline is broken from then on, as
 * is the writer after a write error. */

#define QCOW2_PIPELINE_MAX_THREADS 64u
#define QCOW2_PIPELINE_MAX_SLOTS 1024u
/* Default slots: eight per worker, at least 32, but no more than this
 * many bytes of clusters (and never fewer than 8 slots). */
#define QCOW2_PIPELINE_DEFAULT_MEMORY (4u * 1024 * 1024)

struct qcow2_pipeline_options {
  /* false: no workers; data goes to the writer as it is (rate limited). */
  bool compress;
  int level;          /* compression level; 0: the library's default */
  unsigned threads;   /* workers; 0: one per online CPU; at most
                         QCOW2_PIPELINE_MAX_THREADS and the slots */
  unsigned slots;     /* clusters in flight; 0: the default (see above);
                         at most QCOW2_PIPELINE_MAX_SLOTS */
  int64_t rate_limit; /* MiB (2^20 bytes) per second of image data written
                         (compressed or raw); < 1: no limit */
};

struct qcow2_pipeline;

/* A pipeline writing into w, which it borrows (w must outlive it, and
 * while it lives only the pipeline writes guest data into w).  The
 * clusters are compressed with w's compression type.  NULL with
 * set_error when the options are invalid or threads cannot start. */
struct qcow2_pipeline *
qcow2_pipeline_new (struct qcow2_writer *w,
                    const struct qcow2_pipeline_options *opts)
  __attribute__ ((warn_unused_result));

/* The bytes the rate limit has counted so far: what was written to the
 * image (compressed or raw), not the guest data; 0 without a limit. */
uint64_t qcow2_pipeline_throttled_bytes (const struct qcow2_pipeline *p);

/* As qcow2_writer_write: len bytes of guest data at guest_offset, whole
 * clusters except at the disk's end.  buf is copied: the caller may reuse
 * it on return. */
int qcow2_pipeline_write (struct qcow2_pipeline *p, uint64_t guest_offset,
                          const void *buf, size_t len)
  __attribute__ ((warn_unused_result));

/* As qcow2_writer_writev; without compression the pieces go to the
 * file without a copy. */
int qcow2_pipeline_writev (struct qcow2_pipeline *p, uint64_t guest_offset,
                           const struct iovec *iov, int n)
  __attribute__ ((warn_unused_result));

/* As qcow2_writer_zero, written after everything submitted before. */
int qcow2_pipeline_zero (struct qcow2_pipeline *p, uint64_t guest_offset,
                         uint64_t len) __attribute__ ((warn_unused_result));

/* Wait for every cluster in flight and write it.  Call it before
 * qcow2_writer_finish. */
int qcow2_pipeline_flush (struct qcow2_pipeline *p)
  __attribute__ ((warn_unused_result));

/* qcow2_writer_ticket and qcow2_writer_wait of the pipeline's writer:
 * without compression, the pieces given to qcow2_pipeline_writev are
 * written from where they are. */
uint64_t qcow2_pipeline_ticket (struct qcow2_pipeline *p);
int qcow2_pipeline_wait (struct qcow2_pipeline *p, uint64_t ticket, bool block)
  __attribute__ ((warn_unused_result));

/* The workers it runs (0 without compression). */
unsigned qcow2_pipeline_threads (const struct qcow2_pipeline *p);

/* Stop the workers and free everything; clusters not flushed are lost.
 * NULL is a no-op. */
void qcow2_pipeline_free (struct qcow2_pipeline *p);

/* -------------------------------------------------------------------- */
/* Reading an image's header                                              */
/* -------------------------------------------------------------------- */

/* An image's header, as qcow2_probe found it. */
struct qcow2_info {
  uint32_t version; /* 2 or 3 */
  uint64_t virtual_size;
  uint32_t cluster_bits;
  uint32_t cluster_size;
  enum qcow2_compression compression;
  char *backing_file;   /* NULL without a backing file */
  char *backing_format; /* NULL when the image does not record one */
  uint32_t refcount_order;
  uint32_t header_length;
  uint64_t incompatible_features;
  uint64_t compatible_features;
  uint64_t autoclear_features;
  uint32_t crypt_method; /* 0: none */
  uint32_t nb_snapshots;
  bool dirty;   /* incompatible bit 0: refcounts may be stale */
  bool corrupt; /* incompatible bit 1: QEMU found the image corrupt */
  bool external_data_file; /* incompatible bit 2 */
  bool extended_l2;        /* incompatible bit 4 */
  uint64_t l1_table_offset;
  uint32_t l1_size; /* entries */
  uint64_t file_size;
};

/* Read and validate the header of the qcow2 image in fd (borrowed; read
 * with pread, so the file position does not move).  A truncated or
 * malformed header is an error, never a crash.  On success the caller
 * owns *info and releases it with qcow2_info_release; on failure *info
 * holds nothing to release.  Returns 0, or -1 with set_error. */
int qcow2_probe (int fd, struct qcow2_info *info)
  __attribute__ ((warn_unused_result));

void qcow2_info_release (struct qcow2_info *info);

/* -------------------------------------------------------------------- */
/* Reading the clusters an image holds itself                             */
/* -------------------------------------------------------------------- */

/* What a run of guest clusters of one image is, not looking at its
 * backing file. */
enum qcow2_extent_kind {
  QCOW2_EXTENT_UNALLOCATED, /* reads from the backing file, or as zeros */
  QCOW2_EXTENT_ZERO,        /* reads as zeros, hiding the backing file */
  QCOW2_EXTENT_DATA,        /* stored as it is, contiguous in the file */
  QCOW2_EXTENT_COMPRESSED,  /* one cluster stored compressed */
};

struct qcow2_extent {
  uint64_t offset; /* guest offset, a multiple of the cluster size */
  uint64_t length; /* whole clusters, but at the end of the disk */
  enum qcow2_extent_kind kind;
  uint64_t host_offset; /* DATA: the file offset of offset's cluster */
};

struct qcow2_reader;

/* Read the image in fd (borrowed, read with pread only): its header
 * (qcow2_probe) and L1 table.  Images with encryption, an external data
 * file or extended L2 entries are refused.  NULL with set_error. */
struct qcow2_reader *qcow2_reader_new (int fd)
  __attribute__ ((warn_unused_result));

/* The header (borrowed). */
const struct qcow2_info *qcow2_reader_info (const struct qcow2_reader *r);

/* The longest run of clusters of one kind from guest offset (a multiple
 * of the cluster size below the virtual size), at most max_len bytes
 * (at least one cluster).  Table entries are checked: an entry that
 * points outside the file or has reserved bits set is an error that
 * names the guest offset, never a crash. */
int qcow2_reader_map (struct qcow2_reader *r, uint64_t offset, uint64_t max_len,
                      struct qcow2_extent *e)
  __attribute__ ((warn_unused_result));

/* Read len bytes of the DATA extent e, from guest offset e->offset + skip
 * (inside e).  Bytes past the end of the file read as zeros. */
int qcow2_reader_read (struct qcow2_reader *r, const struct qcow2_extent *e,
                       uint64_t skip, void *buf, size_t len)
  __attribute__ ((warn_unused_result));

void qcow2_reader_free (struct qcow2_reader *r);

#endif
