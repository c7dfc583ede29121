/* SPDX-License-Identifier: Apache-2.0 */
/* host.c: the image file written front to back, and the refcounts of its clusters. */
#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/debug.h"
#include "common/digest.h"
#include "common/error.h"
#include "internal.h"

/* Bytes gathered before one pwrite; appends this long or longer bypass it. */
#define QCOW2_WRITE_BUFFER (4u * 1024 * 1024)

/* Writeback starts as soon as data is written, and at most about this
 * many dirty bytes of the image wait in the page cache: the disk stays
 * busy and the final fsync is short.  An uncached image's pages are
 * dropped once written back (flush, wait, drop), so a backup does not
 * fill the page cache with pages nobody reads. */
#define QCOW2_WRITEBACK_WINDOW (UINT64_C (64) * 1024 * 1024)
#define QCOW2_DROP_WINDOW (UINT64_C (16) * 1024 * 1024)

/* Pages of the segments that the digest reads back at the end (where
 * compressed data filled a hole behind the rest) stay cached, up to this
 * many bytes: they are read from memory, not from the disk. */
#define QCOW2_KEEP_MAX (UINT64_C (128) * 1024 * 1024)

/* Runs of data this long or longer go to the file straight from the
 * caller's buffers (qcow2_host_write_clusters_v). */
#define QCOW2_WRITEV_MIN (UINT64_C (256) * 1024)

/* Alignment of buffers, offsets and lengths of O_DIRECT writes. */
#define QCOW2_DIRECT_ALIGN 4096u

/* Zeros appended to a file that was empty are skipped (left as a hole)
 * from this many bytes on, a file system block. */
#define QCOW2_SPARSE_MIN 4096u

static bool
direct_ok (const struct qcow2_host *h, const void *buf, size_t len,
           uint64_t offset)
{
  return ((uintptr_t) buf | len | offset) % QCOW2_DIRECT_ALIGN == 0;
}

/* Stop writing with O_DIRECT.  Before qcow2_host_finish that is a fall
 * back to flush and drop; the few small writes of the end (tables, the
 * header) are just buffered. */
static int
direct_off (struct qcow2_host *h, uint64_t len, uint64_t offset)
{
  int flags;

  /* The writes in flight were O_DIRECT ones: they end first. */
  if (qcow2_host_drain (h) == -1)
    return -1;
  flags = fcntl (h->fd, F_GETFL);
  if (flags == -1 || fcntl (h->fd, F_SETFL, flags & ~O_DIRECT) == -1) {
    set_error (errno, "qcow2 output file: clearing O_DIRECT");
    return -1;
  }
  h->odirect = false;
  if (!h->finishing) {
    debug (DEBUG_QCOW2,
           "O_DIRECT: falling back to flush and drop (a write of %" PRIu64
           " bytes at %" PRIu64 ")",
           len, offset);
    h->io = QCOW2_IO_DROP;
  }
  return 0;
}

/* Every write of the file goes here: the digest follows it. */
int
qcow2_host_pwrite (struct qcow2_host *h, const void *buf, size_t len,
                   uint64_t offset)
{
  if (h->odirect && !direct_ok (h, buf, len, offset)
      && direct_off (h, len, offset) == -1)
    goto fail;
  if (qcow2_pwrite_all (h->fd, buf, len, offset) == -1) {
    /* A file system that took O_DIRECT but not these writes. */
    if (!h->odirect || get_errno () != EINVAL
        || direct_off (h, len, offset) == -1
        || qcow2_pwrite_all (h->fd, buf, len, offset) == -1)
      goto fail;
  }
  else if (h->odirect)
    h->direct_proven = true;
  if (h->digest != NULL && digest_wrote (h->digest, buf, len, offset) == -1)
    goto fail;
  return 0;
fail:
  h->failed = true;
  return -1;
}

int
qcow2_pwritev_all (int fd, const struct iovec *iov, int n, uint64_t len,
                   uint64_t offset)
{
  struct iovec v[QCOW2_MAX_IOV];
  int i = 0;

  memcpy (v, iov, (size_t) n * sizeof *iov);
  while (len > 0) {
    ssize_t r = pwritev (fd, v + i, n - i, (off_t) offset);

    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1) {
      set_error (errno, "write at file offset %" PRIu64, offset);
      return -1;
    }
    if (r == 0) {
      set_error (EIO, "write at file offset %" PRIu64 " wrote nothing", offset);
      return -1;
    }
    len -= (uint64_t) r;
    offset += (uint64_t) r;
    while (r > 0 && (size_t) r >= v[i].iov_len)
      r -= (ssize_t) v[i++].iov_len;
    if (r > 0) {
      v[i].iov_base = (char *) v[i].iov_base + r;
      v[i].iov_len -= (size_t) r;
    }
  }
  return 0;
}

int
qcow2_pwrite_all (int fd, const void *buf, size_t len, uint64_t offset)
{
  struct iovec v = { .iov_base = (void *) buf, .iov_len = len };

  return qcow2_pwritev_all (fd, &v, 1, len, offset);
}

static bool
iov_direct_ok (const struct qcow2_host *h, const struct iovec *iov, int n)
{
  for (int i = 0; i < n; i++)
    if (!direct_ok (h, iov[i].iov_base, iov[i].iov_len, h->end))
      return false;
  return true;
}

/* As qcow2_host_pwrite, for pieces written one after the other. */
static int
host_pwritev (struct qcow2_host *h, const struct iovec *iov, int n,
              uint64_t len, uint64_t offset)
{
  uint64_t at = offset;

  if (h->odirect && !iov_direct_ok (h, iov, n)
      && direct_off (h, len, offset) == -1)
    goto fail;
  if (h->aio != NULL && h->odirect && h->direct_proven) {
    /* The file system took O_DIRECT writes like these: in flight. */
    if (qcow2_aio_submit (h->aio, iov, n, len, offset) == -1)
      goto fail;
  }
  else if (qcow2_pwritev_all (h->fd, iov, n, len, offset) == -1) {
    if (!h->odirect || get_errno () != EINVAL
        || direct_off (h, len, offset) == -1
        || qcow2_pwritev_all (h->fd, iov, n, len, offset) == -1)
      goto fail;
  }
  else if (h->odirect)
    h->direct_proven = true;
  for (int i = 0; i < n && h->digest != NULL; i++) {
    if (digest_wrote (h->digest, iov[i].iov_base, iov[i].iov_len, at) == -1)
      goto fail;
    at += iov[i].iov_len;
  }
  return 0;
fail:
  h->failed = true;
  return -1;
}

/* Try O_DIRECT; without it (tmpfs has none), flush and drop. */
static void
choose_io (struct qcow2_host *h, enum qcow2_io io)
{
  int flags;

  h->io = io;
  if (io != QCOW2_IO_DIRECT)
    return;
  flags = fcntl (h->fd, F_GETFL);
  if (h->cluster_size < QCOW2_DIRECT_ALIGN || flags == -1
      || fcntl (h->fd, F_SETFL, flags | O_DIRECT) == -1)
    h->io = QCOW2_IO_DROP;
  else
    h->odirect = true;
}

const char *
qcow2_io_name (enum qcow2_io io)
{
  switch (io) {
  case QCOW2_IO_BUFFERED:
    return "buffered";
  case QCOW2_IO_DROP:
    return "buffered, flushed and dropped per chunk";
  case QCOW2_IO_DIRECT:
    return "O_DIRECT";
  }
  return "?";
}

int
qcow2_host_init (struct qcow2_host *h, int fd, uint32_t cluster_bits,
                 enum qcow2_io io, bool digest)
{
  struct stat st;

  memset (h, 0, sizeof *h);
  h->fd = fd;
  h->sparse = fstat (fd, &st) == 0 && S_ISREG (st.st_mode) && st.st_size == 0;
  h->cluster_bits = cluster_bits;
  h->cluster_size = UINT64_C (1) << cluster_bits;
  h->range_clusters = h->cluster_size * 8 / (1u << QCOW2_REFCOUNT_ORDER);
  h->buf_size = QCOW2_WRITE_BUFFER;
  assert (h->buf_size >= 2 * h->cluster_size);

  if (posix_memalign ((void **) &h->buf, QCOW2_DIRECT_ALIGN, h->buf_size) != 0)
    h->buf = NULL;
  if (digest && (h->digest = digest_new ()) == NULL) {
    qcow2_host_release (h);
    return -1;
  }
  choose_io (h, io);
  h->cur_counts = calloc (h->range_clusters, sizeof (uint16_t));
  h->pending_counts = calloc (h->range_clusters, sizeof (uint16_t));
  if (h->buf == NULL || h->cur_counts == NULL || h->pending_counts == NULL) {
    qcow2_host_release (h);
    set_error (ENOMEM, "allocating the qcow2 write buffer");
    return -1;
  }
  return 0;
}

void
qcow2_host_release (struct qcow2_host *h)
{
  qcow2_aio_free (h->aio);
  h->aio = NULL;
  free (h->buf);
  digest_free (h->digest);
  h->digest = NULL;
  free (h->cur_counts);
  free (h->pending_counts);
  qcow2_offset_vector_reset (&h->blocks);
  h->buf = NULL;
  h->cur_counts = h->pending_counts = NULL;
}

int
qcow2_host_set_depth (struct qcow2_host *h, unsigned depth)
{
  if (h->aio != NULL || depth < 1 || depth > QCOW2_AIO_MAX_DEPTH) {
    set_error (-EINVAL, "%u writes in flight: 1 to %u can be, set once", depth,
               QCOW2_AIO_MAX_DEPTH);
    return -1;
  }
  h->depth = depth;
  if (depth == 1 || !h->odirect)
    return 0; /* buffered writes return once in the page cache */
  h->aio = qcow2_aio_new (h->fd, depth);
  return h->aio == NULL ? -1 : 0;
}

uint64_t
qcow2_host_ticket (struct qcow2_host *h)
{
  return h->aio != NULL ? qcow2_aio_ticket (h->aio) : 0;
}

int
qcow2_host_wait (struct qcow2_host *h, uint64_t ticket, bool block)
{
  int r;

  if (h->aio == NULL)
    return 1;
  r = qcow2_aio_wait (h->aio, ticket, block);
  if (r == -1)
    h->failed = true;
  return r;
}

int
qcow2_host_drain (struct qcow2_host *h)
{
  if (h->aio == NULL)
    return 0;
  return qcow2_host_wait (h, qcow2_aio_ticket (h->aio), true) == -1 ? -1 : 0;
}

static uint64_t
min_u64 (uint64_t a, uint64_t b)
{
  return a < b ? a : b;
}

/* Whether the digest will read segment s back: a write came behind what
 * it hashed, or the open hole (compressed data fills it later) is in s. */
static bool
reread_later (const struct qcow2_host *h, uint64_t s)
{
  return digest_rereads (h->digest, s)
         || (h->hole < h->hole_end
             && (h->hole / DIGEST_SEGMENT == s
                 || (h->hole_end - 1) / DIGEST_SEGMENT == s));
}

/* Drop the clean pages of [start, end), but those of the segments that
 * the digest reads back (while QCOW2_KEEP_MAX allows). */
static void
drop_pages (struct qcow2_host *h, uint64_t start, uint64_t end)
{
  uint64_t from = start, at = start;

  while (h->digest != NULL && at < end) {
    uint64_t s = at / DIGEST_SEGMENT;
    uint64_t next = (s + 1) * DIGEST_SEGMENT;

    if (next > end)
      next = end;
    if (h->kept + (next - at) <= QCOW2_KEEP_MAX && reread_later (h, s)) {
      if (at > from)
        (void) posix_fadvise (h->fd, (off_t) from, (off_t) (at - from),
                              POSIX_FADV_DONTNEED);
      h->kept += next - at;
      from = next;
    }
    at = next;
  }
  if (end > from)
    (void) posix_fadvise (h->fd, (off_t) from, (off_t) (end - from),
                          POSIX_FADV_DONTNEED);
}

/* Bytes [start, end) of the file were just written. */
static int
writeback (struct qcow2_host *h, uint64_t start, uint64_t end)
{
  uint64_t upto;
  uint64_t window
    = h->io == QCOW2_IO_DROP ? QCOW2_DROP_WINDOW : QCOW2_WRITEBACK_WINDOW;

  if (h->no_writeback || h->odirect)
    return 0;
  if (sync_file_range (h->fd, (off_t) start, (off_t) (end - start),
                       SYNC_FILE_RANGE_WRITE)
      == -1)
    goto fail;
  if (end - h->written_back < 2 * window)
    return 0;
  upto = end - window;
  if (sync_file_range (h->fd, (off_t) h->written_back,
                       (off_t) (upto - h->written_back),
                       SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE
                         | SYNC_FILE_RANGE_WAIT_AFTER)
      == -1)
    goto fail;
  /* Written back: the pages are clean and go at once. */
  if (h->io == QCOW2_IO_DROP)
    drop_pages (h, h->written_back, upto);
  h->written_back = upto;
  return 0;

fail:
  if (errno == EINVAL || errno == ESPIPE || errno == ENOSYS
      || errno == EOPNOTSUPP) {
    h->no_writeback = true; /* not a file that has writeback */
    return 0;
  }
  set_error (errno, "writeback of the image up to file offset %" PRIu64, end);
  h->failed = true;
  return -1;
}

/* ---- the write buffer ---- */

static int
out_flush (struct qcow2_host *h)
{
  size_t len;

  if (h->buf_len == 0)
    return 0;
  if (qcow2_host_pwrite (h, h->buf, h->buf_len, h->end - h->buf_len) == -1)
    return -1;
  len = h->buf_len;
  h->buf_len = 0;
  return writeback (h, h->end - len, h->end);
}

/* Append len bytes at end (data NULL: zeros). */
static int
out_append (struct qcow2_host *h, const void *data, uint64_t len)
{
  const unsigned char *p = data;

  /* A file that was empty reads zeros where nothing was written: leave
   * the tails of tables and the like as holes, which take no space. */
  if (p == NULL && h->sparse && len >= QCOW2_SPARSE_MIN) {
    /* O_DIRECT writes end on a block boundary: zeros up to it. */
    uint64_t pad = h->odirect ? -h->end % QCOW2_DIRECT_ALIGN : 0;

    if (out_append (h, NULL, pad) == -1)
      return -1;
    len -= pad;
    if (out_flush (h) == -1)
      return -1;
    h->end += len;
    return 0;
  }
  if (p != NULL && len >= h->buf_size
      && (h->io != QCOW2_IO_DIRECT || direct_ok (h, p, len, h->end))) {
    if (out_flush (h) == -1)
      return -1;
    if (qcow2_host_pwrite (h, p, len, h->end) == -1)
      return -1;
    h->end += len;
    return writeback (h, h->end - len, h->end);
  }
  while (len > 0) {
    size_t room = h->buf_size - h->buf_len;
    size_t n;

    if (room == 0) {
      if (out_flush (h) == -1)
        return -1;
      continue;
    }
    n = (size_t) min_u64 (room, len);
    if (p != NULL) {
      memcpy (h->buf + h->buf_len, p, n);
      p += n;
    }
    else
      memset (h->buf + h->buf_len, 0, n);
    h->buf_len += n;
    h->end += n;
    len -= n;
  }
  return 0;
}

/* Room for one whole cluster at the tail of the buffer, which the caller
 * fills; end moves past it. */
static unsigned char *
out_cluster (struct qcow2_host *h)
{
  unsigned char *p;

  if (h->buf_size - h->buf_len < h->cluster_size && out_flush (h) == -1)
    return NULL;
  p = h->buf + h->buf_len;
  h->buf_len += h->cluster_size;
  h->end += h->cluster_size;
  return p;
}

/* ---- refcounts ---- */

/* end has left cur_range: its counts are final.  Queue its block. */
static void
range_complete (struct qcow2_host *h)
{
  bool ones = true;
  uint64_t i;
  uint16_t *t;

  for (i = 0; i < h->range_clusters && ones; i++)
    ones = h->cur_counts[i] == 1;

  if (ones && h->ones_first == h->ones_end) {
    h->ones_first = h->cur_range;
    h->ones_end = h->cur_range + 1;
  }
  else if (ones && h->ones_end == h->cur_range)
    h->ones_end++;
  else {
    /* Blocks are written before anything else is allocated, and a
     * compressed cluster crosses at most one range boundary, so the
     * slot is free here. */
    assert (!h->pending_mixed);
    t = h->pending_counts;
    h->pending_counts = h->cur_counts;
    h->cur_counts = t;
    h->pending_mixed = true;
    h->pending_range = h->cur_range;
  }
  memset (h->cur_counts, 0, h->range_clusters * sizeof (uint16_t));
  h->cur_range++;
}

/* Complete the ranges that end has moved past. */
static void
pass_ranges (struct qcow2_host *h)
{
  while ((h->end >> h->cluster_bits) / h->range_clusters > h->cur_range)
    range_complete (h);
}

/* One more reference to each of n clusters from cluster first, which is
 * the cluster end is in. */
static void
count_clusters (struct qcow2_host *h, uint64_t first, uint64_t n)
{
  while (n > 0) {
    uint64_t range = first / h->range_clusters;
    uint64_t index = first % h->range_clusters;
    uint64_t k = min_u64 (n, h->range_clusters - index);
    uint64_t i;

    while (range > h->cur_range)
      range_complete (h);
    for (i = index; i < index + k; i++) {
      assert (h->cur_counts[i] < QCOW2_REFCOUNT_MAX);
      h->cur_counts[i]++;
    }
    first += k;
    n -= k;
  }
}

static int
set_block_offset (struct qcow2_host *h, uint64_t range, uint64_t offset)
{
  while (h->blocks.len <= range) {
    if (qcow2_offset_vector_append (&h->blocks, 0) == -1) {
      set_error (ENOMEM, "growing the refcount table");
      h->failed = true;
      return -1;
    }
  }
  h->blocks.ptr[range] = offset;
  return 0;
}

static void
encode_counts (const struct qcow2_host *h, const uint16_t *counts,
               unsigned char *p)
{
  uint64_t i;

  for (i = 0; i < h->range_clusters; i++)
    qcow2_put_be16 (p + 2 * i, counts != NULL ? counts[i] : 1);
}

/* Write the refcount block of range at end (cluster aligned).  counts
 * NULL means every cluster of the range has refcount 1. */
static int
emit_block (struct qcow2_host *h, const uint16_t *counts, uint64_t range)
{
  uint64_t offset = h->end;
  unsigned char *p = out_cluster (h);

  if (p == NULL)
    return -1;
  encode_counts (h, counts, p);
  if (set_block_offset (h, range, offset) == -1)
    return -1;
  /* The block's own cluster is counted in the range it landed in. */
  count_clusters (h, offset >> h->cluster_bits, 1);
  pass_ranges (h);
  return 0;
}

/* Write every completed range's block.  end is cluster aligned. */
static int
emit_pending (struct qcow2_host *h)
{
  while (h->pending_mixed || h->ones_first < h->ones_end) {
    if (h->pending_mixed) {
      /* emit_block copies the counts before it can complete a range. */
      h->pending_mixed = false;
      if (emit_block (h, h->pending_counts, h->pending_range) == -1)
        return -1;
    }
    else if (emit_block (h, NULL, h->ones_first++) == -1)
      return -1;
  }
  return 0;
}

static bool
have_pending (const struct qcow2_host *h)
{
  return h->pending_mixed || h->ones_first < h->ones_end;
}

/* Move end to the next cluster boundary.  The tail of the cluster of
 * compressed data it leaves becomes the hole that later compressed data
 * fills.  Nothing reads what is there (compressed data says where it
 * ends), so it is not written: what stays unused is a hole in the file
 * too, and takes no space. */
static int
pad_to_cluster (struct qcow2_host *h)
{
  uint64_t rem = h->end & (h->cluster_size - 1);

  if (rem == 0)
    return 0;
  h->hole = h->end;
  h->hole_end = h->end + h->cluster_size - rem;
  if (out_flush (h) == -1)
    return -1;
  h->end = h->hole_end;
  pass_ranges (h);
  return 0;
}

/* Write len bytes at offset, below end: into the write buffer, or the
 * file for what is out of it already. */
static int
out_write_at (struct qcow2_host *h, const void *data, size_t len,
              uint64_t offset)
{
  uint64_t buf_start = h->end - h->buf_len;
  size_t before
    = offset < buf_start ? (size_t) min_u64 (len, buf_start - offset) : 0;

  if (before > 0 && qcow2_host_pwrite (h, data, before, offset) == -1)
    return -1;
  if (len > before)
    memcpy (h->buf + (offset + before - buf_start),
            (const unsigned char *) data + before, len - before);
  return 0;
}

/* Put clen bytes of compressed data in the hole if they fit; *done says
 * whether they went there. */
static int
fill_hole (struct qcow2_host *h, const void *data, size_t clen,
           uint64_t *offset, bool *done)
{
  uint64_t cluster = h->hole >> h->cluster_bits;

  *done = false;
  if (h->hole + clen > h->hole_end)
    return 0; /* smaller data may still fit */
  if (cluster / h->range_clusters != h->cur_range
      || h->cur_counts[cluster % h->range_clusters] == QCOW2_REFCOUNT_MAX) {
    h->hole = h->hole_end; /* its refcount cannot change any more */
    return 0;
  }
  if (out_write_at (h, data, clen, h->hole) == -1)
    return -1;
  count_clusters (h, cluster, 1);
  *offset = h->hole;
  h->hole += clen;
  *done = true;
  return 0;
}

static int
check_usable (struct qcow2_host *h)
{
  /* A write in flight that failed says why. */
  if (h->aio != NULL && qcow2_host_wait (h, 0, false) == -1)
    return -1;
  if (h->failed) {
    set_error (EIO, "the image is unusable after an earlier error");
    return -1;
  }
  return 0;
}

int
qcow2_host_write_clusters_v (struct qcow2_host *h, const struct iovec *iov,
                             int n, uint64_t len, uint64_t *offset)
{
  uint64_t nc = (len + h->cluster_size - 1) >> h->cluster_bits;
  uint64_t tail = (nc << h->cluster_bits) - len;

  if (check_usable (h) == -1 || pad_to_cluster (h) == -1
      || emit_pending (h) == -1)
    return -1;
  if (h->end + (nc << h->cluster_bits) > QCOW2_MAX_HOST_OFFSET) {
    set_error (EFBIG, "the image would grow past 64 PiB, the qcow2 limit");
    h->failed = true;
    return -1;
  }
  *offset = h->end;
  count_clusters (h, h->end >> h->cluster_bits, nc);
  if (tail == 0 && len >= QCOW2_WRITEV_MIN && iov[0].iov_base != NULL
      && (!h->odirect || iov_direct_ok (h, iov, n))) {
    /* Straight from the caller's buffers: no copy. */
    if (out_flush (h) == -1 || host_pwritev (h, iov, n, len, h->end) == -1)
      return -1;
    h->end += len;
    if (writeback (h, h->end - len, h->end) == -1)
      return -1;
  }
  else {
    for (int i = 0; i < n; i++)
      if (out_append (h, iov[i].iov_base, iov[i].iov_len) == -1)
        return -1;
    if (out_append (h, NULL, tail) == -1)
      return -1;
  }
  pass_ranges (h);
  return 0;
}

int
qcow2_host_write_clusters (struct qcow2_host *h, const void *data, uint64_t len,
                           uint64_t *offset)
{
  struct iovec v = { .iov_base = (void *) data, .iov_len = (size_t) len };

  return qcow2_host_write_clusters_v (h, &v, 1, len, offset);
}

int
qcow2_host_write_compressed (struct qcow2_host *h, const void *data,
                             size_t clen, uint64_t *offset)
{
  uint64_t first, last;

  assert (clen >= 1 && clen <= h->cluster_size);
  if (check_usable (h) == -1)
    return -1;
  if (h->hole < h->hole_end) {
    bool done;

    if (fill_hole (h, data, clen, offset, &done) == -1)
      return -1;
    if (done)
      return 0;
  }
  for (;;) {
    uint64_t index = (h->end >> h->cluster_bits) % h->range_clusters;
    bool aligned = (h->end & (h->cluster_size - 1)) == 0;

    if (have_pending (h)) {
      /* Blocks wait for no one: end the run of compressed data. */
      if (pad_to_cluster (h) == -1 || emit_pending (h) == -1)
        return -1;
    }
    else if (!aligned && h->cur_counts[index] == QCOW2_REFCOUNT_MAX) {
      /* The cluster cannot count one more compressed cluster. */
      if (pad_to_cluster (h) == -1)
        return -1;
    }
    else
      break;
  }
  if (h->end + clen > qcow2_compressed_offset_limit (h->cluster_bits)) {
    set_error (EFBIG,
               "compressed data cannot be stored past file offset %" PRIu64
               " with %" PRIu64 "-byte clusters",
               qcow2_compressed_offset_limit (h->cluster_bits),
               h->cluster_size);
    h->failed = true;
    return -1;
  }
  *offset = h->end;
  first = h->end >> h->cluster_bits;
  last = (h->end + clen - 1) >> h->cluster_bits;
  count_clusters (h, first, last - first + 1);
  if (out_append (h, data, clen) == -1)
    return -1;
  pass_ranges (h);
  return 0;
}

uint64_t
qcow2_refcount_table_clusters (uint64_t table_start, uint64_t range_clusters,
                               uint64_t cluster_size)
{
  uint64_t per_cluster = cluster_size / sizeof (uint64_t);
  uint64_t r = 1;

  for (;;) {
    /* After the table: the blocks of the ranges it completes (and of the
     * ranges those complete), then the last range's block. */
    uint64_t end = table_start + r + r / range_clusters + 4;
    uint64_t ranges = (end + range_clusters - 1) / range_clusters + 1;
    uint64_t need = (ranges + per_cluster - 1) / per_cluster;

    if (need <= r)
      return r;
    r = need;
  }
}

/* The block of the range end is in, written into that range itself. */
static int
emit_last_block (struct qcow2_host *h)
{
  uint64_t cluster = h->end >> h->cluster_bits;
  uint64_t offset = h->end;
  unsigned char *p;

  if (cluster % h->range_clusters == 0)
    return 0; /* nothing allocated in it */
  h->cur_counts[cluster % h->range_clusters]++;
  p = out_cluster (h);
  if (p == NULL)
    return -1;
  encode_counts (h, h->cur_counts, p);
  return set_block_offset (h, h->cur_range, offset);
}

static int
write_table (struct qcow2_host *h, uint64_t offset, uint64_t clusters)
{
  uint64_t size = clusters << h->cluster_bits;
  uint64_t ranges
    = ((h->end >> h->cluster_bits) + h->range_clusters - 1) / h->range_clusters;
  unsigned char *table;
  uint64_t i;
  int r;

  if (ranges > size / sizeof (uint64_t) || h->blocks.len != ranges) {
    set_error (EIO,
               "internal error: %" PRIu64
               " refcount blocks for a table of %" PRIu64 " clusters",
               ranges, clusters);
    return -1;
  }
  table = calloc (1, size);
  if (table == NULL) {
    set_error (ENOMEM, "allocating the refcount table");
    return -1;
  }
  for (i = 0; i < ranges; i++) {
    assert (h->blocks.ptr[i] != 0);
    qcow2_put_be64 (table + 8 * i, h->blocks.ptr[i]);
  }
  r = qcow2_host_pwrite (h, table, size, offset);
  free (table);
  return r;
}

int
qcow2_host_finish (struct qcow2_host *h, uint64_t *table_offset,
                   uint32_t *table_clusters)
{
  uint64_t clusters;

  h->finishing = true;
  if (qcow2_host_drain (h) == -1)
    return -1;
  if (h->aio != NULL) {
    struct qcow2_aio_stats st;

    qcow2_aio_get_stats (h->aio, &st);
    debug (DEBUG_QCOW2,
           "O_DIRECT writes in flight: %" PRIu64 " writes, %" PRIu64
           " bytes, up to %" PRIu64 " at once (of %u), %" PRIu64
           " waits for one",
           st.writes, st.bytes, st.max_in_flight, h->depth, st.waits);
  }
  /* The digest reads the header's segment back at the very end: its
   * pages come in while the tables are written and synced. */
  if (h->digest != NULL && h->io != QCOW2_IO_BUFFERED)
    (void) posix_fadvise (h->fd, 0, (off_t) DIGEST_SEGMENT,
                          POSIX_FADV_WILLNEED);
  if (check_usable (h) == -1 || pad_to_cluster (h) == -1
      || emit_pending (h) == -1 || out_flush (h) == -1)
    return -1;
  /* The table is reserved before the blocks and written after them: the
   * digest keeps what follows in memory rather than reading it back. */
  if (h->digest != NULL)
    digest_hold (h->digest);
  clusters = qcow2_refcount_table_clusters (h->end >> h->cluster_bits,
                                            h->range_clusters, h->cluster_size);
  if (clusters << h->cluster_bits > QCOW2_MAX_REFTABLE_BYTES) {
    set_error (EFBIG,
               "the image needs a refcount table of %" PRIu64
               " bytes, more than QEMU's limit of %" PRIu64
               ": use larger clusters",
               clusters << h->cluster_bits, QCOW2_MAX_REFTABLE_BYTES);
    h->failed = true;
    return -1;
  }
  /* Reserve the table; its entries are known once the blocks are out. */
  if (qcow2_host_write_clusters (h, NULL, clusters << h->cluster_bits,
                                 table_offset)
        == -1
      || emit_pending (h) == -1 || emit_last_block (h) == -1
      || out_flush (h) == -1
      || write_table (h, *table_offset, clusters) == -1) {
    h->failed = true;
    return -1;
  }
  *table_clusters = (uint32_t) clusters;
  return 0;
}
