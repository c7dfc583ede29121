/* SPDX-License-Identifier: Apache-2.0 */
/* writer.c: the streaming qcow2 writer: guest clusters in, L1/L2 tables out. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "internal.h"

enum writer_state {
  WRITER_OPEN,
  WRITER_FAILED,
  WRITER_FINISHED,
};

struct qcow2_writer {
  int fd;
  struct qcow2_host host;
  uint32_t cluster_bits;
  uint64_t cluster_size;
  uint64_t virtual_size;
  char *backing_file;
  char *backing_format;
  enum qcow2_compression compression;
  bool no_sync;

  uint64_t *l1; /* host order */
  uint64_t l1_size;
  uint64_t *l2;      /* the current L2 table, host order */
  uint64_t l2_index; /* the L1 index l2 belongs to */
  bool l2_used;      /* l2 has an entry to write */
  uint64_t l2_entries;

  char digest[DIGEST_HEX_LEN + 1]; /* once finished, when asked for */
  uint64_t next_offset; /* no call may start below this guest offset */
  struct qcow2_writer_stats stats;
  enum writer_state state;
};

static int
check_cluster_size (uint32_t size, uint32_t *bits)
{
  uint32_t b;

  for (b = QCOW2_MIN_CLUSTER_BITS; b <= QCOW2_MAX_CLUSTER_BITS; b++) {
    if (size == UINT32_C (1) << b) {
      *bits = b;
      return 0;
    }
  }
  set_error (EINVAL,
             "invalid cluster size %" PRIu32
             ": use a power of two from %u to %u",
             size, QCOW2_MIN_CLUSTER_SIZE, QCOW2_MAX_CLUSTER_SIZE);
  return -1;
}

static int
check_virtual_size (uint64_t size, uint32_t bits)
{
  uint64_t l1_bytes;

  if (size == 0 || size % 512 != 0) {
    set_error (EINVAL,
               "invalid virtual size %" PRIu64
               ": it must be a positive multiple of 512",
               size);
    return -1;
  }
  l1_bytes = qcow2_l1_size (bits, size) * sizeof (uint64_t);
  if (l1_bytes > QCOW2_MAX_L1_BYTES) {
    set_error (EFBIG,
               "virtual size %" PRIu64 " is too large for %" PRIu32
               "-byte clusters: use larger clusters",
               size, UINT32_C (1) << bits);
    return -1;
  }
  return 0;
}

static bool
format_name_ok (const char *name)
{
  size_t len = strlen (name), i;

  if (len == 0 || len > QCOW2_MAX_BACKING_FORMAT)
    return false;
  for (i = 0; i < len; i++) {
    char c = name[i];

    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'
          || c == '_'))
      return false;
  }
  return true;
}

static int
check_backing (const struct qcow2_writer_options *opts, uint32_t bits,
               const char **format)
{
  size_t len, room;

  *format = opts->backing_format != NULL ? opts->backing_format : "qcow2";
  if (opts->backing_file == NULL)
    return 0;
  len = strlen (opts->backing_file);
  if (len == 0 || len > QCOW2_MAX_BACKING_FILE) {
    set_error (EINVAL,
               "invalid backing file name '%s': it must have 1 to %u bytes",
               opts->backing_file, QCOW2_MAX_BACKING_FILE);
    return -1;
  }
  if (!format_name_ok (*format)) {
    set_error (EINVAL, "invalid backing format '%s'", *format);
    return -1;
  }
  if (qcow2_header_bytes (opts->backing_file, *format) > UINT32_C (1) << bits) {
    room = (UINT32_C (1) << bits) - qcow2_header_bytes ("", *format);
    set_error (EINVAL,
               "backing file name '%s' is too long for %" PRIu32
               "-byte clusters (at most %zu bytes fit): use larger clusters",
               opts->backing_file, UINT32_C (1) << bits, room);
    return -1;
  }
  return 0;
}

static int
check_options (const struct qcow2_writer_options *opts, uint32_t *bits,
               const char **format)
{
  if (opts == NULL) {
    set_error (EINVAL, "no qcow2 writer options");
    return -1;
  }
  if (check_cluster_size (opts->cluster_size ? opts->cluster_size
                                             : QCOW2_DEFAULT_CLUSTER_SIZE,
                          bits)
        == -1
      || check_virtual_size (opts->virtual_size, *bits) == -1
      || check_backing (opts, *bits, format) == -1)
    return -1;
  switch (opts->compression) {
  case QCOW2_COMPRESSION_ZLIB:
  case QCOW2_COMPRESSION_ZSTD:
    return 0;
  }
  set_error (EINVAL, "invalid compression type %d", (int) opts->compression);
  return -1;
}

/* The writer needs a file it can pwrite: say so now rather than at the
 * first flush. */
static int
check_fd (int fd)
{
  struct stat st;
  int flags = fcntl (fd, F_GETFL);

  if (flags == -1 || fstat (fd, &st) == -1) {
    set_error (errno, "qcow2 output file");
    return -1;
  }
  if ((flags & O_ACCMODE) == O_RDONLY) {
    set_error (EBADF, "qcow2 output file is not open for writing");
    return -1;
  }
  if (!S_ISREG (st.st_mode) && !S_ISBLK (st.st_mode) && !S_ISCHR (st.st_mode)) {
    set_error (ESPIPE, "qcow2 output file is not a regular file");
    return -1;
  }
  return 0;
}

struct qcow2_writer *
qcow2_writer_new (int fd, const struct qcow2_writer_options *opts)
{
  struct qcow2_writer *w;
  const char *format;
  uint32_t bits;
  uint64_t header_offset;

  if (check_options (opts, &bits, &format) == -1 || check_fd (fd) == -1)
    return NULL;
  w = calloc (1, sizeof *w);
  if (w == NULL) {
    set_error (ENOMEM, "allocating the qcow2 writer");
    return NULL;
  }
  w->fd = fd;
  w->no_sync = opts->no_sync;
  w->cluster_bits = bits;
  w->cluster_size = UINT64_C (1) << bits;
  w->virtual_size = opts->virtual_size;
  w->compression = opts->compression;
  w->l1_size = qcow2_l1_size (bits, opts->virtual_size);
  w->l2_entries = qcow2_l2_entries (bits);
  w->l1 = calloc (w->l1_size, sizeof (uint64_t));
  w->l2 = calloc (w->l2_entries, sizeof (uint64_t));
  if (opts->backing_file != NULL) {
    w->backing_file = strdup (opts->backing_file);
    w->backing_format = strdup (format);
  }
  if (w->l1 == NULL || w->l2 == NULL
      || (opts->backing_file != NULL
          && (w->backing_file == NULL || w->backing_format == NULL))) {
    qcow2_writer_free (w);
    set_error (ENOMEM, "allocating the qcow2 writer");
    return NULL;
  }
  if (qcow2_host_init (&w->host, fd, bits, opts->io, opts->digest) == -1
      || (opts->write_depth > 1
          && qcow2_host_set_depth (&w->host, opts->write_depth) == -1)) {
    qcow2_writer_free (w);
    return NULL;
  }
  /* The first cluster holds the header, written by qcow2_writer_finish. */
  if (qcow2_host_write_clusters (&w->host, NULL, w->cluster_size,
                                 &header_offset)
      == -1) {
    qcow2_writer_free (w);
    return NULL;
  }
  debug (DEBUG_QCOW2,
         "new image: virtual size %" PRIu64 ", cluster size %" PRIu64
         ", backing '%s' (%s), compression %s, written %s%s%s",
         w->virtual_size, w->cluster_size,
         w->backing_file ? w->backing_file : "", format,
         qcow2_compression_name (w->compression), qcow2_io_name (w->host.io),
         w->host.aio != NULL ? " with writes in flight" : "",
         opts->digest ? ", digest while writing" : "");
  return w;
}

void
qcow2_writer_free (struct qcow2_writer *w)
{
  if (w == NULL)
    return;
  qcow2_host_release (&w->host);
  free (w->l1);
  free (w->l2);
  free (w->backing_file);
  free (w->backing_format);
  free (w);
}

uint32_t
qcow2_writer_cluster_size (const struct qcow2_writer *w)
{
  return (uint32_t) w->cluster_size;
}

enum qcow2_io
qcow2_writer_io (const struct qcow2_writer *w)
{
  return w->host.io;
}

uint64_t
qcow2_writer_ticket (struct qcow2_writer *w)
{
  return qcow2_host_ticket (&w->host);
}

int
qcow2_writer_wait (struct qcow2_writer *w, uint64_t ticket, bool block)
{
  int r = qcow2_host_wait (&w->host, ticket, block);

  if (r == -1)
    w->state = WRITER_FAILED;
  return r;
}

int
qcow2_writer_digest (const struct qcow2_writer *w, char hex[DIGEST_HEX_LEN + 1])
{
  if (w->state != WRITER_FINISHED || w->digest[0] == '\0') {
    set_error (EINVAL, "the image has no digest: it is not finished or "
                       "was written without one");
    return -1;
  }
  memcpy (hex, w->digest, DIGEST_HEX_LEN + 1);
  return 0;
}

enum qcow2_compression
qcow2_writer_compression (const struct qcow2_writer *w)
{
  return w->compression;
}

void
qcow2_writer_get_stats (const struct qcow2_writer *w,
                        struct qcow2_writer_stats *stats)
{
  *stats = w->stats;
  stats->file_size = w->host.end;
}

/* Fail after an I/O error: the image cannot be completed any more. */
static int
writer_break (struct qcow2_writer *w)
{
  w->state = WRITER_FAILED;
  return -1;
}

static int
check_state (const struct qcow2_writer *w)
{
  switch (w->state) {
  case WRITER_OPEN:
    return 0;
  case WRITER_FAILED:
    set_error (EIO, "the image is unusable after an earlier error");
    return -1;
  case WRITER_FINISHED:
    set_error (EINVAL, "the image is already finished");
    return -1;
  }
  return -1;
}

/* A range of guest clusters a call may take: aligned, in order, inside
 * the disk, whole clusters except at the disk's end. */
static int
check_range (const struct qcow2_writer *w, uint64_t offset, uint64_t len)
{
  if (check_state (w) == -1)
    return -1;
  if (offset % w->cluster_size != 0) {
    set_error (EINVAL,
               "guest offset %" PRIu64
               " is not a multiple of the cluster size %" PRIu64,
               offset, w->cluster_size);
    return -1;
  }
  if (offset < w->next_offset) {
    set_error (EINVAL,
               "guest offset %" PRIu64
               " is below the end of the previous range (%" PRIu64
               "): clusters must come in increasing order",
               offset, w->next_offset);
    return -1;
  }
  if (len == 0) {
    set_error (EINVAL, "empty range at guest offset %" PRIu64, offset);
    return -1;
  }
  if (offset >= w->virtual_size || len > w->virtual_size - offset) {
    set_error (EINVAL,
               "range of %" PRIu64 " bytes at guest offset %" PRIu64
               " goes past the end of the disk (%" PRIu64 " bytes)",
               len, offset, w->virtual_size);
    return -1;
  }
  if (len % w->cluster_size != 0 && offset + len != w->virtual_size) {
    set_error (EINVAL,
               "range of %" PRIu64 " bytes at guest offset %" PRIu64
               " is not whole clusters",
               len, offset);
    return -1;
  }
  return 0;
}

static uint64_t
round_up_cluster (const struct qcow2_writer *w, uint64_t n)
{
  return (n + w->cluster_size - 1) & ~(w->cluster_size - 1);
}

/* Write the current L2 table, if it maps anything, and point L1 at it. */
static int
flush_l2 (struct qcow2_writer *w)
{
  unsigned char *p = (unsigned char *) w->l2;
  uint64_t i, offset;

  if (!w->l2_used)
    return 0;
  for (i = 0; i < w->l2_entries; i++)
    qcow2_put_be64 (p + 8 * i, w->l2[i]);
  if (qcow2_host_write_clusters (&w->host, p, w->cluster_size, &offset) == -1)
    return -1;
  w->l1[w->l2_index] = qcow2_l1_entry (offset);
  w->l2_used = false;
  memset (w->l2, 0, w->cluster_size);
  return 0;
}

/* Make the L2 table of guest cluster g the current one; returns g's index
 * in it. */
static int
select_l2 (struct qcow2_writer *w, uint64_t g, uint64_t *index)
{
  uint64_t l1_index = g / w->l2_entries;

  if (l1_index != w->l2_index) {
    if (flush_l2 (w) == -1)
      return -1;
    w->l2_index = l1_index;
  }
  *index = g % w->l2_entries;
  return 0;
}

/* The pieces of iov for len bytes from the cursor (*i, *skip), into out
 * (at most QCOW2_MAX_IOV); the cursor moves past them. */
static int
iov_take (const struct iovec *iov, int *i, size_t *skip, uint64_t len,
          struct iovec *out)
{
  int k = 0;

  while (len > 0) {
    size_t n = iov[*i].iov_len - *skip;

    if (n > len)
      n = (size_t) len;
    out[k].iov_base = (char *) iov[*i].iov_base + *skip;
    out[k++].iov_len = n;
    len -= n;
    *skip += n;
    if (*skip == iov[*i].iov_len) {
      (*i)++;
      *skip = 0;
    }
  }
  return k;
}

int
qcow2_writer_writev (struct qcow2_writer *w, uint64_t guest_offset,
                     const struct iovec *iov, int n)
{
  struct iovec part[QCOW2_MAX_IOV];
  uint64_t pos = guest_offset, len = 0, left;
  size_t skip = 0;
  int i = 0, k;

  if (n < 1 || n > QCOW2_MAX_IOV) {
    set_error (EINVAL, "%d pieces of guest data: 1 to %d can be written", n,
               QCOW2_MAX_IOV);
    return -1;
  }
  for (k = 0; k < n; k++)
    len += iov[k].iov_len;
  if (check_range (w, guest_offset, len) == -1)
    return -1;
  for (left = len; left > 0;) {
    uint64_t index, host, seg, nc, j;

    if (select_l2 (w, pos >> w->cluster_bits, &index) == -1)
      return writer_break (w);
    seg = (w->l2_entries - index) << w->cluster_bits;
    if (seg > left)
      seg = left;
    k = iov_take (iov, &i, &skip, seg, part);
    if (qcow2_host_write_clusters_v (&w->host, part, k, seg, &host) == -1) {
      error_prepend ("guest offset %" PRIu64, pos);
      return writer_break (w);
    }
    nc = round_up_cluster (w, seg) >> w->cluster_bits;
    for (j = 0; j < nc; j++)
      w->l2[index + j] = qcow2_l2_data_entry (host + (j << w->cluster_bits));
    w->l2_used = true;
    w->stats.data_clusters += nc;
    pos += seg;
    left -= seg;
  }
  w->next_offset = round_up_cluster (w, guest_offset + len);
  return 0;
}

int
qcow2_writer_write (struct qcow2_writer *w, uint64_t guest_offset,
                    const void *buf, size_t len)
{
  struct iovec v = { .iov_base = (void *) buf, .iov_len = len };

  return qcow2_writer_writev (w, guest_offset, &v, 1);
}

int
qcow2_writer_write_compressed (struct qcow2_writer *w, uint64_t guest_offset,
                               const void *cbuf, size_t clen)
{
  uint64_t len, index, host;

  if (check_state (w) == -1)
    return -1;
  len = guest_offset < w->virtual_size ? w->virtual_size - guest_offset : 1;
  if (len > w->cluster_size)
    len = w->cluster_size;
  if (check_range (w, guest_offset, len) == -1)
    return -1;
  if (clen == 0 || clen > w->cluster_size) {
    set_error (EINVAL,
               "compressed cluster at guest offset %" PRIu64
               " has %zu bytes: it must have 1 to %" PRIu64,
               guest_offset, clen, w->cluster_size);
    return -1;
  }
  if (select_l2 (w, guest_offset >> w->cluster_bits, &index) == -1)
    return writer_break (w);
  if (qcow2_host_write_compressed (&w->host, cbuf, clen, &host) == -1) {
    error_prepend ("guest offset %" PRIu64, guest_offset);
    return writer_break (w);
  }
  w->l2[index] = qcow2_l2_compressed_entry (w->cluster_bits, host, clen);
  w->l2_used = true;
  w->stats.compressed_clusters++;
  w->stats.compressed_bytes += clen;
  w->next_offset = guest_offset + w->cluster_size;
  return 0;
}

int
qcow2_writer_zero (struct qcow2_writer *w, uint64_t guest_offset, uint64_t len)
{
  uint64_t g, end;

  if (check_range (w, guest_offset, len) == -1)
    return -1;
  end = round_up_cluster (w, guest_offset + len) >> w->cluster_bits;
  for (g = guest_offset >> w->cluster_bits; g < end; g++) {
    uint64_t index;

    if (select_l2 (w, g, &index) == -1)
      return writer_break (w);
    w->l2[index] = qcow2_l2_zero_entry ();
    w->l2_used = true;
  }
  w->stats.zero_clusters += end - (guest_offset >> w->cluster_bits);
  w->next_offset = end << w->cluster_bits;
  return 0;
}

static int
write_l1 (struct qcow2_writer *w, uint64_t *offset)
{
  CLEANUP_FREE unsigned char *buf = malloc (w->l1_size * sizeof (uint64_t));
  uint64_t i;

  if (buf == NULL) {
    set_error (ENOMEM, "allocating the L1 table");
    return -1;
  }
  for (i = 0; i < w->l1_size; i++)
    qcow2_put_be64 (buf + 8 * i, w->l1[i]);
  return qcow2_host_write_clusters (&w->host, buf,
                                    w->l1_size * sizeof (uint64_t), offset);
}

static int
sync_file (struct qcow2_writer *w)
{
  if (w->no_sync)
    return 0;
  if (fsync (w->fd) == -1) {
    set_error (errno, "fsync");
    return -1;
  }
  return 0;
}

/* Cut a regular file at the image's end (it may have held more). */
static int
truncate_file (struct qcow2_writer *w)
{
  struct stat st;

  if (fstat (w->fd, &st) == -1) {
    set_error (errno, "fstat");
    return -1;
  }
  if (S_ISREG (st.st_mode) && (uint64_t) st.st_size != w->host.end
      && ftruncate (w->fd, (off_t) w->host.end) == -1) {
    set_error (errno, "truncate to %" PRIu64 " bytes", w->host.end);
    return -1;
  }
  return 0;
}

static int
write_header (struct qcow2_writer *w, uint64_t l1_offset, uint64_t table_offset,
              uint32_t table_clusters)
{
  struct qcow2_header_fields h = {
    .cluster_bits = w->cluster_bits,
    .virtual_size = w->virtual_size,
    .l1_size = (uint32_t) w->l1_size,
    .l1_table_offset = l1_offset,
    .refcount_table_offset = table_offset,
    .refcount_table_clusters = table_clusters,
    .compression = w->compression,
    .backing_file = w->backing_file,
    .backing_format = w->backing_format,
  };
  size_t size = qcow2_header_bytes (w->backing_file, w->backing_format);
  CLEANUP_FREE unsigned char *buf = malloc (size);

  if (buf == NULL) {
    set_error (ENOMEM, "allocating the qcow2 header");
    return -1;
  }
  qcow2_header_encode (&h, buf, size);
  return qcow2_host_pwrite (&w->host, buf, size, 0);
}

/* Every byte is written: the segments written out of order (the header's)
 * are read back. */
static int
finish_digest (struct qcow2_writer *w)
{
  if (w->host.digest == NULL)
    return 0;
  if (digest_finish (w->host.digest, w->fd, w->host.end, w->digest) == -1) {
    error_prepend ("digest of the image");
    return -1;
  }
  debug (DEBUG_QCOW2,
         "digest %s while writing (%" PRIu64 " segment(s) read back)",
         w->digest, digest_reread (w->host.digest));
  return 0;
}

/* An image kept out of the page cache leaves none of it there at the
 * end either (the tables and the header went the buffered way). */
static void
drop_cache (struct qcow2_writer *w)
{
  if (w->host.io != QCOW2_IO_BUFFERED)
    (void) posix_fadvise (w->fd, 0, 0, POSIX_FADV_DONTNEED);
}

int
qcow2_writer_finish (struct qcow2_writer *w)
{
  uint64_t l1_offset, table_offset;
  uint32_t table_clusters;

  if (check_state (w) == -1)
    return -1;
  /* The tables and the header are small writes, never O_DIRECT. */
  w->host.finishing = true;
  /* Everything but the header reaches the disk first, so a crash never
   * leaves a header that points at missing tables. */
  if (flush_l2 (w) == -1 || write_l1 (w, &l1_offset) == -1
      || qcow2_host_finish (&w->host, &table_offset, &table_clusters) == -1
      || truncate_file (w) == -1 || sync_file (w) == -1
      || write_header (w, l1_offset, table_offset, table_clusters) == -1
      || sync_file (w) == -1 || finish_digest (w) == -1)
    return writer_break (w);
  drop_cache (w);
  w->state = WRITER_FINISHED;
  debug (DEBUG_QCOW2,
         "finished image: %" PRIu64 " data, %" PRIu64 " compressed, %" PRIu64
         " zero clusters, %" PRIu64 " bytes",
         w->stats.data_clusters, w->stats.compressed_clusters,
         w->stats.zero_clusters, w->host.end);
  return 0;
}
