/* SPDX-License-Identifier: Apache-2.0 */
/* reader.c: the clusters one qcow2 image holds itself, trusting nothing in it. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "internal.h"

/* Bits of an L1 entry that must be zero: 1-8 and 56-62. */
#define L1_RESERVED UINT64_C (0x7f000000000001fe)
/* Bits of a standard L2 entry that must be zero: 1-8 and 56-61. */
#define L2_RESERVED UINT64_C (0x3f000000000001fe)

struct qcow2_reader {
  int fd;
  struct qcow2_info info;
  uint64_t cluster_size;
  uint64_t l2_entries;
  uint64_t *l1; /* host order */
  uint64_t *l2; /* the L2 table of l1 index l2_index, host order */
  uint64_t l2_index;
  bool l2_loaded;
};

/* pread all of len bytes at offset; bytes past the end of the file read
 * as zeros. */
static int
read_padded (int fd, void *buf, size_t len, uint64_t offset)
{
  unsigned char *p = buf;
  size_t got = 0;

  while (got < len) {
    ssize_t n = pread (fd, p + got, len - got, (off_t) (offset + got));

    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      set_error (errno, "read at file offset %" PRIu64, offset + got);
      return -1;
    }
    if (n == 0)
      break;
    got += (size_t) n;
  }
  memset (p + got, 0, len - got);
  return 0;
}

static int
check_supported (const struct qcow2_info *info)
{
  if (info->crypt_method != 0) {
    set_error (ENOTSUP, "encrypted images are not supported");
    return -1;
  }
  if (info->external_data_file) {
    set_error (ENOTSUP, "images with an external data file are not supported");
    return -1;
  }
  if (info->extended_l2) {
    set_error (ENOTSUP, "images with extended L2 entries are not supported");
    return -1;
  }
  return 0;
}

static int
load_l1 (struct qcow2_reader *r)
{
  uint64_t n = qcow2_l1_size (r->info.cluster_bits, r->info.virtual_size), i;
  CLEANUP_FREE unsigned char *raw = NULL;

  /* qcow2_probe checked that the table holds n entries inside the file. */
  r->l1 = calloc (n ? n : 1, sizeof (uint64_t));
  raw = malloc (n ? n * 8 : 1);
  if (r->l1 == NULL || raw == NULL) {
    set_error (ENOMEM, "allocating the L1 table");
    return -1;
  }
  if (n > 0 && read_padded (r->fd, raw, n * 8, r->info.l1_table_offset) == -1)
    return -1;
  for (i = 0; i < n; i++)
    r->l1[i] = qcow2_get_be64 (raw + 8 * i);
  return 0;
}

struct qcow2_reader *
qcow2_reader_new (int fd)
{
  struct qcow2_reader *r = calloc (1, sizeof *r);

  if (r == NULL) {
    set_error (ENOMEM, "allocating the qcow2 reader");
    return NULL;
  }
  r->fd = fd;
  if (qcow2_probe (fd, &r->info) == -1) {
    free (r);
    return NULL;
  }
  r->cluster_size = r->info.cluster_size;
  r->l2_entries = qcow2_l2_entries (r->info.cluster_bits);
  r->l2 = malloc (r->cluster_size);
  if (r->l2 == NULL) {
    set_error (ENOMEM, "allocating an L2 table");
    qcow2_reader_free (r);
    return NULL;
  }
  if (check_supported (&r->info) == -1 || load_l1 (r) == -1) {
    qcow2_reader_free (r);
    return NULL;
  }
  return r;
}

void
qcow2_reader_free (struct qcow2_reader *r)
{
  if (r == NULL)
    return;
  qcow2_info_release (&r->info);
  free (r->l1);
  free (r->l2);
  free (r);
}

const struct qcow2_info *
qcow2_reader_info (const struct qcow2_reader *r)
{
  return &r->info;
}

/* Make the L2 table of l1 index i current; *present false when the L1
 * entry maps none (every cluster unallocated). */
static int
select_l2 (struct qcow2_reader *r, uint64_t i, bool *present)
{
  uint64_t entry = r->l1[i], offset = entry & QCOW2_OFFSET_MASK, k;
  unsigned char *p = (unsigned char *) r->l2;

  if ((entry & L1_RESERVED) != 0) {
    set_error (EINVAL,
               "L1 entry %" PRIu64 " has reserved bits set (0x%" PRIx64
               "): the image is corrupt",
               i, entry);
    return -1;
  }
  *present = offset != 0;
  if (!*present || (r->l2_loaded && r->l2_index == i))
    return 0;
  if (offset % r->cluster_size != 0 || offset >= r->info.file_size
      || r->cluster_size > r->info.file_size - offset) {
    set_error (EINVAL,
               "L2 table at file offset %" PRIu64
               " is not a cluster inside the file: the image is corrupt",
               offset);
    return -1;
  }
  r->l2_loaded = false;
  if (read_padded (r->fd, p, r->cluster_size, offset) == -1)
    return -1;
  for (k = 0; k < r->l2_entries; k++)
    r->l2[k] = qcow2_get_be64 (p + 8 * k);
  r->l2_index = i;
  r->l2_loaded = true;
  return 0;
}

/* The kind of guest cluster g (and its host offset). */
static int
classify (struct qcow2_reader *r, uint64_t g, enum qcow2_extent_kind *kind,
          uint64_t *host)
{
  uint64_t entry, offset;
  bool present;

  if (select_l2 (r, g / r->l2_entries, &present) == -1)
    return -1;
  *host = 0;
  if (!present) {
    *kind = QCOW2_EXTENT_UNALLOCATED;
    return 0;
  }
  entry = r->l2[g % r->l2_entries];
  if (entry & QCOW2_OFLAG_COMPRESSED) {
    *kind = QCOW2_EXTENT_COMPRESSED;
    return 0;
  }
  if ((entry & L2_RESERVED) != 0) {
    set_error (EINVAL, "L2 entry has reserved bits set (0x%" PRIx64 ")", entry);
    return -1;
  }
  offset = entry & QCOW2_OFFSET_MASK;
  if (r->info.version >= 3 && (entry & QCOW2_OFLAG_ZERO)) {
    *kind = QCOW2_EXTENT_ZERO;
    return 0;
  }
  if (offset == 0) {
    *kind = QCOW2_EXTENT_UNALLOCATED;
    return 0;
  }
  if (offset % r->cluster_size != 0 || offset >= r->info.file_size) {
    set_error (EINVAL,
               "data cluster at file offset %" PRIu64
               " is not a cluster inside the file",
               offset);
    return -1;
  }
  *kind = QCOW2_EXTENT_DATA;
  *host = offset;
  return 0;
}

int
qcow2_reader_map (struct qcow2_reader *r, uint64_t offset, uint64_t max_len,
                  struct qcow2_extent *e)
{
  uint64_t size = r->info.virtual_size, g, end;

  if (offset % r->cluster_size != 0 || offset >= size) {
    set_error (EINVAL, "guest offset %" PRIu64 " is not a cluster of the disk",
               offset);
    return -1;
  }
  max_len -= max_len % r->cluster_size;
  if (max_len == 0)
    max_len = r->cluster_size;
  end = size - offset > max_len ? offset + max_len : size;
  g = offset / r->cluster_size;
  if (classify (r, g, &e->kind, &e->host_offset) == -1)
    goto fail;
  e->offset = offset;
  e->length = r->cluster_size;
  if (e->kind != QCOW2_EXTENT_COMPRESSED) {
    for (g++; g * r->cluster_size < end; g++) {
      enum qcow2_extent_kind kind;
      uint64_t host;

      if (classify (r, g, &kind, &host) == -1)
        goto fail;
      if (kind != e->kind
          || (kind == QCOW2_EXTENT_DATA && host != e->host_offset + e->length))
        break;
      e->length += r->cluster_size;
    }
  }
  if (e->length > size - offset)
    e->length = size - offset;
  if (e->length > end - offset)
    e->length = end - offset;
  return 0;
fail:
  error_prepend ("guest offset %" PRIu64, g * r->cluster_size);
  return -1;
}

int
qcow2_reader_read (struct qcow2_reader *r, const struct qcow2_extent *e,
                   uint64_t skip, void *buf, size_t len)
{
  if (e->kind != QCOW2_EXTENT_DATA || skip > e->length
      || len > e->length - skip) {
    set_error (EINVAL,
               "read of %zu bytes at guest offset %" PRIu64
               " is not inside a data extent",
               len, e->offset + skip);
    return -1;
  }
  return read_padded (r->fd, buf, len, e->host_offset + skip);
}
