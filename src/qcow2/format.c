/* SPDX-License-Identifier: Apache-2.0 */
/* format.c: encodings of qcow2 table entries and of the image header. */
#include <config.h>

#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

const char *
qcow2_compression_name (enum qcow2_compression type)
{
  switch (type) {
  case QCOW2_COMPRESSION_ZLIB:
    return "zlib";
  case QCOW2_COMPRESSION_ZSTD:
    return "zstd";
  }
  return "unknown";
}

uint64_t
qcow2_l1_size (uint32_t cluster_bits, uint64_t virtual_size)
{
  uint64_t clusters
    = (virtual_size >> cluster_bits)
      + ((virtual_size & ((UINT64_C (1) << cluster_bits) - 1)) != 0);
  uint64_t per_table = qcow2_l2_entries (cluster_bits);

  return clusters / per_table + (clusters % per_table != 0);
}

uint64_t
qcow2_l1_entry (uint64_t host_offset)
{
  return (host_offset & QCOW2_OFFSET_MASK) | QCOW2_OFLAG_COPIED;
}

uint64_t
qcow2_l2_data_entry (uint64_t host_offset)
{
  return (host_offset & QCOW2_OFFSET_MASK) | QCOW2_OFLAG_COPIED;
}

uint64_t
qcow2_l2_zero_entry (void)
{
  return QCOW2_OFLAG_ZERO;
}

unsigned
qcow2_csize_shift (uint32_t cluster_bits)
{
  return 62 - (cluster_bits - 8);
}

uint64_t
qcow2_compressed_offset_limit (uint32_t cluster_bits)
{
  uint64_t limit = UINT64_C (1) << qcow2_csize_shift (cluster_bits);

  /* With small clusters the field is wider than the 56 bits allowed. */
  return limit < QCOW2_MAX_HOST_OFFSET ? limit : QCOW2_MAX_HOST_OFFSET;
}

uint64_t
qcow2_l2_compressed_entry (uint32_t cluster_bits, uint64_t host_offset,
                           size_t clen)
{
  uint64_t first_sector = host_offset >> 9;
  uint64_t last_sector = (host_offset + clen - 1) >> 9;
  uint64_t extra = last_sector - first_sector;

  assert (clen >= 1 && clen <= (UINT64_C (1) << cluster_bits));
  assert (host_offset < qcow2_compressed_offset_limit (cluster_bits));
  return QCOW2_OFLAG_COMPRESSED | extra << qcow2_csize_shift (cluster_bits)
         | host_offset;
}

void
qcow2_compressed_entry_decode (uint32_t cluster_bits, uint64_t entry,
                               uint64_t *host_offset, uint64_t *extra_sectors)
{
  unsigned shift = qcow2_csize_shift (cluster_bits);
  uint64_t offset_mask = (UINT64_C (1) << shift) - 1;
  uint64_t count_mask = (UINT64_C (1) << (cluster_bits - 8)) - 1;

  *host_offset = entry & offset_mask;
  *extra_sectors = (entry >> shift) & count_mask;
}

static size_t
pad8 (size_t n)
{
  return (n + 7) & ~(size_t) 7;
}

size_t
qcow2_header_bytes (const char *backing_file, const char *backing_format)
{
  size_t n = QCOW2_HEADER_LENGTH;

  if (backing_file != NULL)
    n += 8 + pad8 (strlen (backing_format));
  n += 8; /* end of the extensions */
  if (backing_file != NULL)
    n += strlen (backing_file);
  return n;
}

void
qcow2_header_encode (const struct qcow2_header_fields *h, unsigned char *buf,
                     size_t size)
{
  size_t pos = QCOW2_HEADER_LENGTH;
  uint64_t incompatible = 0;

  assert (size >= qcow2_header_bytes (h->backing_file, h->backing_format));
  memset (buf, 0, size);
  if (h->compression != QCOW2_COMPRESSION_ZLIB)
    incompatible |= QCOW2_INCOMPAT_COMPRESSION;

  qcow2_put_be32 (buf + QCOW2_OFF_MAGIC, QCOW2_MAGIC);
  qcow2_put_be32 (buf + QCOW2_OFF_VERSION, 3);
  qcow2_put_be32 (buf + QCOW2_OFF_CLUSTER_BITS, h->cluster_bits);
  qcow2_put_be64 (buf + QCOW2_OFF_SIZE, h->virtual_size);
  qcow2_put_be32 (buf + QCOW2_OFF_CRYPT_METHOD, 0);
  qcow2_put_be32 (buf + QCOW2_OFF_L1_SIZE, h->l1_size);
  qcow2_put_be64 (buf + QCOW2_OFF_L1_TABLE_OFFSET, h->l1_table_offset);
  qcow2_put_be64 (buf + QCOW2_OFF_REFCOUNT_TABLE_OFFSET,
                  h->refcount_table_offset);
  qcow2_put_be32 (buf + QCOW2_OFF_REFCOUNT_TABLE_CLUSTERS,
                  h->refcount_table_clusters);
  qcow2_put_be64 (buf + QCOW2_OFF_INCOMPATIBLE, incompatible);
  qcow2_put_be32 (buf + QCOW2_OFF_REFCOUNT_ORDER, QCOW2_REFCOUNT_ORDER);
  qcow2_put_be32 (buf + QCOW2_OFF_HEADER_LENGTH, QCOW2_HEADER_LENGTH);
  buf[QCOW2_OFF_COMPRESSION_TYPE] = (unsigned char) h->compression;

  if (h->backing_file != NULL) {
    size_t len = strlen (h->backing_format);

    qcow2_put_be32 (buf + pos, QCOW2_EXT_BACKING_FORMAT);
    qcow2_put_be32 (buf + pos + 4, len);
    memcpy (buf + pos + 8, h->backing_format, len);
    pos += 8 + pad8 (len);
  }
  qcow2_put_be32 (buf + pos, QCOW2_EXT_END);
  qcow2_put_be32 (buf + pos + 4, 0);
  pos += 8;

  if (h->backing_file != NULL) {
    size_t len = strlen (h->backing_file);

    memcpy (buf + pos, h->backing_file, len);
    qcow2_put_be64 (buf + QCOW2_OFF_BACKING_FILE_OFFSET, pos);
    qcow2_put_be32 (buf + QCOW2_OFF_BACKING_FILE_SIZE, len);
  }
}
