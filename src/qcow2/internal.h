/* SPDX-License-Identifier: Apache-2.0 */
/* internal.h: qcow2 on-disk constants, encodings and the host file allocator. */
#ifndef KNIB_QCOW2_INTERNAL_H
#define KNIB_QCOW2_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/vector.h"
#include "qcow2.h"

/* The layout below follows QEMU's docs/interop/qcow2.txt. */
#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */
#define QCOW2_V2_HEADER_LENGTH 72u
#define QCOW2_V3_MIN_HEADER_LENGTH 104u
/* Up to and including compression_type, padded to a multiple of 8. */
#define QCOW2_HEADER_LENGTH 112u

/* Header field offsets. */
#define QCOW2_OFF_MAGIC 0
#define QCOW2_OFF_VERSION 4
#define QCOW2_OFF_BACKING_FILE_OFFSET 8
#define QCOW2_OFF_BACKING_FILE_SIZE 16
#define QCOW2_OFF_CLUSTER_BITS 20
#define QCOW2_OFF_SIZE 24
#define QCOW2_OFF_CRYPT_METHOD 32
#define QCOW2_OFF_L1_SIZE 36
#define QCOW2_OFF_L1_TABLE_OFFSET 40
#define QCOW2_OFF_REFCOUNT_TABLE_OFFSET 48
#define QCOW2_OFF_REFCOUNT_TABLE_CLUSTERS 56
#define QCOW2_OFF_NB_SNAPSHOTS 60
#define QCOW2_OFF_SNAPSHOTS_OFFSET 64
#define QCOW2_OFF_INCOMPATIBLE 72
#define QCOW2_OFF_COMPATIBLE 80
#define QCOW2_OFF_AUTOCLEAR 88
#define QCOW2_OFF_REFCOUNT_ORDER 96
#define QCOW2_OFF_HEADER_LENGTH 100
#define QCOW2_OFF_COMPRESSION_TYPE 104

/* Header extension types. */
#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau

/* Incompatible feature bits. */
#define QCOW2_INCOMPAT_DIRTY (UINT64_C (1) << 0)
#define QCOW2_INCOMPAT_CORRUPT (UINT64_C (1) << 1)
#define QCOW2_INCOMPAT_DATA_FILE (UINT64_C (1) << 2)
#define QCOW2_INCOMPAT_COMPRESSION (UINT64_C (1) << 3)
#define QCOW2_INCOMPAT_EXTL2 (UINT64_C (1) << 4)
#define QCOW2_INCOMPAT_KNOWN (UINT64_C (0x1f))

/* L1 and L2 entries. */
#define QCOW2_OFLAG_COPIED (UINT64_C (1) << 63)
#define QCOW2_OFLAG_COMPRESSED (UINT64_C (1) << 62)
#define QCOW2_OFLAG_ZERO (UINT64_C (1) << 0)
#define QCOW2_OFFSET_MASK UINT64_C (0x00fffffffffffe00) /* bits 9-55 */
/* Host offsets of L2 tables and data clusters stay below 2^56. */
#define QCOW2_MAX_HOST_OFFSET (UINT64_C (1) << 56)

#define QCOW2_MIN_CLUSTER_BITS 9u
#define QCOW2_MAX_CLUSTER_BITS 21u

/* 16-bit refcounts, QEMU's default. */
#define QCOW2_REFCOUNT_ORDER 4u
#define QCOW2_REFCOUNT_MAX 0xffffu

/* QEMU's implementation limits on the table sizes. */
#define QCOW2_MAX_L1_BYTES (UINT64_C (32) * 1024 * 1024)
#define QCOW2_MAX_REFTABLE_BYTES (UINT64_C (8) * 1024 * 1024)

/* The longest backing format name QEMU accepts. */
#define QCOW2_MAX_BACKING_FORMAT 15u

/* Big-endian helpers. */
static inline void
qcow2_put_be16 (unsigned char *p, uint16_t v)
{
  p[0] = v >> 8;
  p[1] = v;
}

static inline void
qcow2_put_be32 (unsigned char *p, uint32_t v)
{
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

static inline void
qcow2_put_be64 (unsigned char *p, uint64_t v)
{
  qcow2_put_be32 (p, v >> 32);
  qcow2_put_be32 (p + 4, (uint32_t) v);
}

static inline uint16_t
qcow2_get_be16 (const unsigned char *p)
{
  return (uint16_t) (p[0] << 8 | p[1]);
}

static inline uint32_t
qcow2_get_be32 (const unsigned char *p)
{
  return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8
         | p[3];
}

static inline uint64_t
qcow2_get_be64 (const unsigned char *p)
{
  return (uint64_t) qcow2_get_be32 (p) << 32 | qcow2_get_be32 (p + 4);
}

/* ---- format.c: entry encodings and the header ---- */

/* Guest clusters one L2 table maps. */
static inline uint64_t
qcow2_l2_entries (uint32_t cluster_bits)
{
  return (UINT64_C (1) << cluster_bits) / sizeof (uint64_t);
}

/* L1 entries needed for a disk of virtual_size bytes. */
uint64_t qcow2_l1_size (uint32_t cluster_bits, uint64_t virtual_size);

/* An L1 entry pointing at the L2 table at host_offset (refcount 1). */
uint64_t qcow2_l1_entry (uint64_t host_offset);

/* An L2 entry for a data cluster at host_offset (refcount 1). */
uint64_t qcow2_l2_data_entry (uint64_t host_offset);

/* An L2 entry for a cluster that reads as zero, with no host cluster. */
uint64_t qcow2_l2_zero_entry (void);

/* The bit where a compressed descriptor's sector count starts:
 * x = 62 - (cluster_bits - 8). */
unsigned qcow2_csize_shift (uint32_t cluster_bits);

/* The highest host offset (exclusive) a compressed descriptor can hold. */
uint64_t qcow2_compressed_offset_limit (uint32_t cluster_bits);

/* An L2 entry for clen bytes of compressed data at host_offset (any byte
 * offset below qcow2_compressed_offset_limit, 1 <= clen <= cluster
 * size): the offset, and the number of 512-byte sectors the data uses
 * beyond the one holding its first byte. */
uint64_t qcow2_l2_compressed_entry (uint32_t cluster_bits, uint64_t host_offset,
                                    size_t clen);

/* Split a compressed L2 entry into its host offset and its count of
 * additional sectors. */
void qcow2_compressed_entry_decode (uint32_t cluster_bits, uint64_t entry,
                                    uint64_t *host_offset,
                                    uint64_t *extra_sectors);

/* The fields of the header the writer records. */
struct qcow2_header_fields {
  uint32_t cluster_bits;
  uint64_t virtual_size;
  uint32_t l1_size;
  uint64_t l1_table_offset;
  uint64_t refcount_table_offset;
  uint32_t refcount_table_clusters;
  enum qcow2_compression compression;
  const char *backing_file;   /* NULL: none */
  const char *backing_format; /* with backing_file */
};

/* Bytes of the first cluster the header, its extensions and the backing
 * file name take. */
size_t qcow2_header_bytes (const char *backing_file,
                           const char *backing_format);

/* Encode the header into buf, which holds size bytes (at least
 * qcow2_header_bytes), zeroing the rest. */
void qcow2_header_encode (const struct qcow2_header_fields *h,
                          unsigned char *buf, size_t size);

/* ---- aio.c: O_DIRECT writes kept in flight on writer threads ---- */

#define QCOW2_AIO_MAX_DEPTH 4u

struct qcow2_aio;

struct qcow2_aio_stats {
  uint64_t writes, bytes;
  uint64_t max_in_flight; /* the most writes being written at once */
  uint64_t waits;         /* waits for a write to complete */
};

/* depth (1 to QCOW2_AIO_MAX_DEPTH) threads writing to fd.  NULL with
 * set_error. */
struct qcow2_aio *qcow2_aio_new (int fd, unsigned depth)
  __attribute__ ((warn_unused_result));

/* Queue a pwritev of all len bytes of iov (n pieces) at offset; waits
 * while depth writes are in flight.  The pieces' memory is in use until
 * the write completed (qcow2_aio_wait).  -1 with the error of a write
 * that failed before (every later call fails too). */
int qcow2_aio_submit (struct qcow2_aio *a, const struct iovec *iov, int n,
                      uint64_t len, uint64_t offset)
  __attribute__ ((warn_unused_result));

/* Names every write submitted so far. */
uint64_t qcow2_aio_ticket (struct qcow2_aio *a);

/* 1 when every write up to ticket completed (block: wait for them), 0
 * when not yet, -1 with the error when a write failed (its memory is
 * free all the same). */
int qcow2_aio_wait (struct qcow2_aio *a, uint64_t ticket, bool block)
  __attribute__ ((warn_unused_result));

void qcow2_aio_get_stats (struct qcow2_aio *a, struct qcow2_aio_stats *stats);

/* Wait for every write, stop the threads.  NULL is a no-op. */
void qcow2_aio_free (struct qcow2_aio *a);

/* pwritev all len bytes of the n pieces of iov at offset (an error names
 * the offset; a short write is continued). */
int qcow2_pwritev_all (int fd, const struct iovec *iov, int n, uint64_t len,
                       uint64_t offset) __attribute__ ((warn_unused_result));

/* ---- host.c: the image file, allocated front to back ---- */

DEFINE_VECTOR_TYPE (qcow2_offset_vector, uint64_t)

/* The image file as it grows.  Every byte is appended at end (through a
 * write buffer), so host clusters are allocated in increasing order and
 * a cluster's refcount is final once end has passed it.  The refcounts of
 * the clusters of one refcount block's range ("range") are kept in
 * memory until end leaves the range; the block is then written at the
 * next cluster boundary, wherever that is, and counted in the range it
 * lands in.  A long contiguous run (a big L1 table with small clusters)
 * can cover whole ranges: their blocks hold only ones and are made when
 * written. */
struct qcow2_host {
  int fd;
  uint32_t cluster_bits;
  uint64_t cluster_size;
  uint64_t range_clusters; /* clusters one refcount block counts */
  uint64_t end;            /* the next free byte of the file */

  unsigned char *buf; /* holds the file's bytes [end - buf_len, end) */
  size_t buf_len;
  size_t buf_size;

  uint64_t cur_range;   /* the range end is in */
  uint16_t *cur_counts; /* refcounts of cur_range's clusters */
  bool pending_mixed;   /* a completed range waits in pending_counts */
  uint64_t pending_range;
  uint16_t *pending_counts;
  uint64_t ones_first, ones_end; /* completed ranges of all ones waiting */

  /* The free tail [hole, hole_end) of the last cluster of a run of
   * compressed data that other clusters followed: later compressed data
   * goes there when it fits, as QEMU does, instead of wasting it
   * (hole == hole_end: none).  Only while that cluster's range is
   * cur_range, whose refcounts can still change. */
  uint64_t hole, hole_end;

  qcow2_offset_vector blocks; /* refcount block offset of each range */
  uint64_t written_back;      /* the file up to here is on disk */
  uint64_t kept;              /* bytes not dropped: the digest rereads them */
  bool no_writeback;          /* the file does not support sync_file_range */
  bool sparse; /* the file was empty: runs of zeros need not be written */
  bool failed;
  enum qcow2_io io;      /* how the data is written (may fall back) */
  bool odirect;          /* fd has O_DIRECT now */
  bool finishing;        /* in qcow2_host_finish */
  struct digest *digest; /* NULL: none computed */
  /* Writes from the caller's pieces kept in flight (qcow2_host_set_depth):
   * NULL, one write at a time. */
  struct qcow2_aio *aio;
  unsigned depth;
  bool direct_proven; /* an O_DIRECT write succeeded */
};

/* Start an empty file, written the way io asks (O_DIRECT falls back to
 * flush and drop where the file system refuses it), with its digest
 * (common/digest.h) when digest is true.  Returns 0, or -1 with
 * set_error. */
int qcow2_host_init (struct qcow2_host *h, int fd, uint32_t cluster_bits,
                     enum qcow2_io io, bool digest)
  __attribute__ ((warn_unused_result));

/* pwrite all of buf at offset, the one way the file is written: the
 * digest follows every write. */
int qcow2_host_pwrite (struct qcow2_host *h, const void *buf, size_t len,
                       uint64_t offset) __attribute__ ((warn_unused_result));

void qcow2_host_release (struct qcow2_host *h);

/* Keep up to depth (1 to QCOW2_AIO_MAX_DEPTH) O_DIRECT writes of long
 * runs straight from the caller's pieces (qcow2_host_write_clusters_v) in
 * flight.  The caller then keeps those pieces untouched until
 * qcow2_host_wait says the writes it made so far (qcow2_host_ticket) are
 * complete.  0 or -1 with set_error. */
int qcow2_host_set_depth (struct qcow2_host *h, unsigned depth)
  __attribute__ ((warn_unused_result));

/* Names the writes made so far (0 without writes in flight). */
uint64_t qcow2_host_ticket (struct qcow2_host *h);

/* As qcow2_aio_wait; 1 at once without writes in flight.  A failed write
 * makes the image unusable. */
int qcow2_host_wait (struct qcow2_host *h, uint64_t ticket, bool block)
  __attribute__ ((warn_unused_result));

/* Wait for every write in flight; 0, or -1 with a failed write's error. */
int qcow2_host_drain (struct qcow2_host *h)
  __attribute__ ((warn_unused_result));

/* Append len bytes (data NULL: zeros) as whole new clusters (the last
 * padded with zeros), each with refcount 1; *offset gets where they
 * start.  Returns 0 or -1 with set_error. */
int qcow2_host_write_clusters (struct qcow2_host *h, const void *data,
                               uint64_t len, uint64_t *offset)
  __attribute__ ((warn_unused_result));

/* As qcow2_host_write_clusters, for data in the n (at most
 * QCOW2_MAX_IOV) pieces of iov, len bytes in all (one piece whose base
 * is NULL: zeros).  Long runs of whole
 * clusters are written straight from the pieces (with O_DIRECT when the
 * pieces are aligned for it), the rest through the write buffer. */
int qcow2_host_write_clusters_v (struct qcow2_host *h, const struct iovec *iov,
                                 int n, uint64_t len, uint64_t *offset)
  __attribute__ ((warn_unused_result));

/* Append clen (1 .. cluster size) bytes of compressed data right after
 * the previous ones (a new cluster when the last thing written was not
 * compressed data).  The host clusters the data touches gain a
 * reference.  Returns 0 or -1 with set_error. */
int qcow2_host_write_compressed (struct qcow2_host *h, const void *data,
                                 size_t clen, uint64_t *offset)
  __attribute__ ((warn_unused_result));

/* Finish the refcount structures: write the remaining refcount blocks and
 * the refcount table, and flush everything.  Nothing may be appended
 * after it.  Returns 0 or -1 with set_error. */
int qcow2_host_finish (struct qcow2_host *h, uint64_t *table_offset,
                       uint32_t *table_clusters)
  __attribute__ ((warn_unused_result));

/* pwrite all of buf at offset (an error names the offset). */
int qcow2_pwrite_all (int fd, const void *buf, size_t len, uint64_t offset)
  __attribute__ ((warn_unused_result));

/* The refcount table clusters needed when table_start clusters of the
 * file are in use before the table, for ranges of range_clusters
 * clusters (exposed for tests). */
uint64_t qcow2_refcount_table_clusters (uint64_t table_start,
                                        uint64_t range_clusters,
                                        uint64_t cluster_size);

#endif
