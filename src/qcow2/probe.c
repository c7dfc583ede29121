/* SPDX-License-Identifier: Apache-2.0 */
/* probe.c: read and validate a qcow2 header, trusting nothing in the file. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "internal.h"

/* What the fixed part of the header says. */
struct raw_header {
  uint32_t version;
  uint64_t backing_offset;
  uint32_t backing_size;
  uint32_t cluster_bits;
  uint64_t size;
  uint32_t crypt_method;
  uint32_t l1_size;
  uint64_t l1_offset;
  uint64_t rt_offset;
  uint32_t rt_clusters;
  uint32_t nb_snapshots;
  uint64_t snapshots_offset;
  uint64_t incompatible, compatible, autoclear;
  uint32_t refcount_order;
  uint32_t header_length;
  uint32_t compression_type;
};

/* Read up to len bytes at offset; *got says how many (fewer at EOF). */
static int
read_at (int fd, void *buf, size_t len, uint64_t offset, size_t *got)
{
  unsigned char *p = buf;

  *got = 0;
  while (*got < len) {
    ssize_t n = pread (fd, p + *got, len - *got, (off_t) (offset + *got));

    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      set_error (errno, "read at file offset %" PRIu64, offset + *got);
      return -1;
    }
    if (n == 0)
      break;
    *got += (size_t) n;
  }
  return 0;
}

static int
file_size (int fd, uint64_t *size)
{
  struct stat st;
  off_t pos, end;

  if (fstat (fd, &st) == -1) {
    set_error (errno, "fstat");
    return -1;
  }
  if (S_ISREG (st.st_mode)) {
    *size = (uint64_t) st.st_size;
    return 0;
  }
  if (!S_ISBLK (st.st_mode)) {
    set_error (EINVAL, "not a regular file or block device");
    return -1;
  }
  /* A block device: its size is where a seek to the end lands. */
  pos = lseek (fd, 0, SEEK_CUR);
  end = lseek (fd, 0, SEEK_END);
  if (pos == -1 || end == -1 || lseek (fd, pos, SEEK_SET) == -1) {
    set_error (errno, "finding the size of the file");
    return -1;
  }
  *size = (uint64_t) end;
  return 0;
}

static void
decode_fixed (const unsigned char *b, struct raw_header *h)
{
  memset (h, 0, sizeof *h);
  h->version = qcow2_get_be32 (b + QCOW2_OFF_VERSION);
  h->backing_offset = qcow2_get_be64 (b + QCOW2_OFF_BACKING_FILE_OFFSET);
  h->backing_size = qcow2_get_be32 (b + QCOW2_OFF_BACKING_FILE_SIZE);
  h->cluster_bits = qcow2_get_be32 (b + QCOW2_OFF_CLUSTER_BITS);
  h->size = qcow2_get_be64 (b + QCOW2_OFF_SIZE);
  h->crypt_method = qcow2_get_be32 (b + QCOW2_OFF_CRYPT_METHOD);
  h->l1_size = qcow2_get_be32 (b + QCOW2_OFF_L1_SIZE);
  h->l1_offset = qcow2_get_be64 (b + QCOW2_OFF_L1_TABLE_OFFSET);
  h->rt_offset = qcow2_get_be64 (b + QCOW2_OFF_REFCOUNT_TABLE_OFFSET);
  h->rt_clusters = qcow2_get_be32 (b + QCOW2_OFF_REFCOUNT_TABLE_CLUSTERS);
  h->nb_snapshots = qcow2_get_be32 (b + QCOW2_OFF_NB_SNAPSHOTS);
  h->snapshots_offset = qcow2_get_be64 (b + QCOW2_OFF_SNAPSHOTS_OFFSET);
  /* Version 2 defaults. */
  h->refcount_order = QCOW2_REFCOUNT_ORDER;
  h->header_length = QCOW2_V2_HEADER_LENGTH;
}

static void
decode_v3 (const unsigned char *b, size_t got, struct raw_header *h)
{
  h->incompatible = qcow2_get_be64 (b + QCOW2_OFF_INCOMPATIBLE);
  h->compatible = qcow2_get_be64 (b + QCOW2_OFF_COMPATIBLE);
  h->autoclear = qcow2_get_be64 (b + QCOW2_OFF_AUTOCLEAR);
  h->refcount_order = qcow2_get_be32 (b + QCOW2_OFF_REFCOUNT_ORDER);
  h->header_length = qcow2_get_be32 (b + QCOW2_OFF_HEADER_LENGTH);
  if (h->header_length > QCOW2_OFF_COMPRESSION_TYPE
      && got > QCOW2_OFF_COMPRESSION_TYPE)
    h->compression_type = b[QCOW2_OFF_COMPRESSION_TYPE];
}

/* The fields that do not depend on the file's size. */
static int
check_fields (const struct raw_header *h, size_t got)
{
  uint64_t cluster_size;

  if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS
      || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
    set_error (EINVAL, "cluster_bits %" PRIu32 " is out of range (%u to %u)",
               h->cluster_bits, QCOW2_MIN_CLUSTER_BITS, QCOW2_MAX_CLUSTER_BITS);
    return -1;
  }
  cluster_size = UINT64_C (1) << h->cluster_bits;
  if (h->version == 3
      && (h->header_length < QCOW2_V3_MIN_HEADER_LENGTH
          || h->header_length % 8 != 0 || h->header_length > cluster_size)) {
    set_error (EINVAL, "invalid header length %" PRIu32, h->header_length);
    return -1;
  }
  if (h->header_length > got && got < QCOW2_HEADER_LENGTH) {
    set_error (EINVAL, "truncated header (%zu of %" PRIu32 " bytes)", got,
               h->header_length);
    return -1;
  }
  if ((h->incompatible & ~QCOW2_INCOMPAT_KNOWN) != 0) {
    set_error (ENOTSUP, "unsupported incompatible features 0x%" PRIx64,
               h->incompatible & ~QCOW2_INCOMPAT_KNOWN);
    return -1;
  }
  if (h->compression_type > QCOW2_COMPRESSION_ZSTD) {
    set_error (ENOTSUP, "unknown compression type %" PRIu32,
               h->compression_type);
    return -1;
  }
  if ((h->compression_type != 0)
      != ((h->incompatible & QCOW2_INCOMPAT_COMPRESSION) != 0)) {
    set_error (EINVAL,
               "compression type %" PRIu32
               " does not match the compression type feature bit",
               h->compression_type);
    return -1;
  }
  if (h->refcount_order > 6) {
    set_error (EINVAL, "refcount order %" PRIu32 " is out of range (0 to 6)",
               h->refcount_order);
    return -1;
  }
  if (h->crypt_method > 2) {
    set_error (EINVAL, "unknown encryption method %" PRIu32, h->crypt_method);
    return -1;
  }
  return 0;
}

/* A cluster-aligned table of bytes bytes at offset lies inside the file. */
static int
check_table (const char *what, uint64_t offset, uint64_t bytes,
             uint64_t cluster_size, uint64_t size)
{
  if (offset % cluster_size != 0) {
    set_error (EINVAL, "%s offset %" PRIu64 " is not cluster aligned", what,
               offset);
    return -1;
  }
  if (offset == 0 || offset > size || bytes > size - offset) {
    set_error (EINVAL,
               "%s at offset %" PRIu64 " (%" PRIu64
               " bytes) lies outside the file (%" PRIu64
               " bytes): the image is truncated or corrupt",
               what, offset, bytes, size);
    return -1;
  }
  return 0;
}

static int
check_tables (const struct raw_header *h, uint64_t size)
{
  uint64_t cluster_size = UINT64_C (1) << h->cluster_bits;
  uint64_t l1_bytes = (uint64_t) h->l1_size * sizeof (uint64_t);
  uint64_t rt_bytes = (uint64_t) h->rt_clusters << h->cluster_bits;

  if (l1_bytes > QCOW2_MAX_L1_BYTES) {
    set_error (EINVAL, "L1 table of %" PRIu32 " entries is too large",
               h->l1_size);
    return -1;
  }
  if (h->l1_size < qcow2_l1_size (h->cluster_bits, h->size)) {
    set_error (EINVAL,
               "L1 table of %" PRIu32
               " entries is too small for a virtual size of %" PRIu64,
               h->l1_size, h->size);
    return -1;
  }
  if (h->l1_size > 0
      && check_table ("L1 table", h->l1_offset, l1_bytes, cluster_size, size)
           == -1)
    return -1;
  if (h->rt_clusters == 0 || rt_bytes > QCOW2_MAX_REFTABLE_BYTES) {
    set_error (EINVAL, "invalid refcount table size (%" PRIu32 " clusters)",
               h->rt_clusters);
    return -1;
  }
  if (check_table ("refcount table", h->rt_offset, rt_bytes, cluster_size, size)
      == -1)
    return -1;
  if (h->nb_snapshots > 0
      && check_table ("snapshot table", h->snapshots_offset, 0, cluster_size,
                      size)
           == -1)
    return -1;
  return 0;
}

/* Copy a string field that must not contain NUL bytes. */
static char *
dup_name (const char *what, const unsigned char *p, size_t len)
{
  char *s;

  if (memchr (p, '\0', len) != NULL) {
    set_error (EINVAL, "%s contains a NUL byte", what);
    return NULL;
  }
  s = malloc (len + 1);
  if (s == NULL) {
    set_error (ENOMEM, "allocating the %s", what);
    return NULL;
  }
  memcpy (s, p, len);
  s[len] = '\0';
  return s;
}

/* The header extensions between the header and end (exclusive). */
static int
parse_extensions (const unsigned char *c, size_t got, uint64_t pos,
                  uint64_t end, struct qcow2_info *info)
{
  while (pos < end) {
    uint32_t type, len;

    if (end - pos < 8) {
      set_error (EINVAL,
                 "header extension at offset %" PRIu64
                 " does not fit in the header area",
                 pos);
      return -1;
    }
    if (pos + 8 > got) {
      set_error (EINVAL, "header extension at offset %" PRIu64 " is truncated",
                 pos);
      return -1;
    }
    type = qcow2_get_be32 (c + pos);
    len = qcow2_get_be32 (c + pos + 4);
    if (type == QCOW2_EXT_END)
      return 0;
    if (len > end - pos - 8) {
      set_error (EINVAL,
                 "header extension 0x%08" PRIx32 " at offset %" PRIu64
                 " (%" PRIu32 " bytes) does not fit in the header area",
                 type, pos, len);
      return -1;
    }
    if (pos + 8 + len > got) {
      set_error (EINVAL,
                 "header extension 0x%08" PRIx32 " at offset %" PRIu64
                 " is truncated",
                 type, pos);
      return -1;
    }
    if (type == QCOW2_EXT_BACKING_FORMAT) {
      if (info->backing_format != NULL || len == 0
          || len > QCOW2_MAX_BACKING_FORMAT) {
        set_error (
          EINVAL, "invalid backing format header extension (%" PRIu32 " bytes)",
          len);
        return -1;
      }
      info->backing_format = dup_name ("backing format", c + pos + 8, len);
      if (info->backing_format == NULL)
        return -1;
    }
    pos += 8 + (((uint64_t) len + 7) & ~UINT64_C (7));
  }
  return 0;
}

static int
parse_backing (const struct raw_header *h, const unsigned char *c, size_t got,
               struct qcow2_info *info)
{
  uint64_t cluster_size = UINT64_C (1) << h->cluster_bits;

  if (h->backing_offset == 0)
    return 0;
  if (h->backing_size == 0 || h->backing_size > QCOW2_MAX_BACKING_FILE) {
    set_error (EINVAL, "invalid backing file name length %" PRIu32,
               h->backing_size);
    return -1;
  }
  if (h->backing_offset < h->header_length || h->backing_offset > cluster_size
      || h->backing_size > cluster_size - h->backing_offset) {
    set_error (EINVAL,
               "backing file name at offset %" PRIu64 " (%" PRIu32
               " bytes) is outside the first cluster",
               h->backing_offset, h->backing_size);
    return -1;
  }
  if (h->backing_offset + h->backing_size > got) {
    set_error (EINVAL, "backing file name at offset %" PRIu64 " is truncated",
               h->backing_offset);
    return -1;
  }
  info->backing_file
    = dup_name ("backing file name", c + h->backing_offset, h->backing_size);
  return info->backing_file != NULL ? 0 : -1;
}

static void
fill_info (const struct raw_header *h, struct qcow2_info *info)
{
  info->version = h->version;
  info->virtual_size = h->size;
  info->cluster_bits = h->cluster_bits;
  info->cluster_size = UINT32_C (1) << h->cluster_bits;
  info->compression = h->compression_type == QCOW2_COMPRESSION_ZSTD
                        ? QCOW2_COMPRESSION_ZSTD
                        : QCOW2_COMPRESSION_ZLIB;
  info->refcount_order = h->refcount_order;
  info->header_length = h->header_length;
  info->incompatible_features = h->incompatible;
  info->compatible_features = h->compatible;
  info->autoclear_features = h->autoclear;
  info->crypt_method = h->crypt_method;
  info->nb_snapshots = h->nb_snapshots;
  info->dirty = (h->incompatible & QCOW2_INCOMPAT_DIRTY) != 0;
  info->corrupt = (h->incompatible & QCOW2_INCOMPAT_CORRUPT) != 0;
  info->external_data_file = (h->incompatible & QCOW2_INCOMPAT_DATA_FILE) != 0;
  info->extended_l2 = (h->incompatible & QCOW2_INCOMPAT_EXTL2) != 0;
  info->l1_table_offset = h->l1_offset;
  info->l1_size = h->l1_size;
}

/* Everything but the magic, with the first got bytes of the file in b. */
static int
probe_header (int fd, const unsigned char *b, size_t got, uint64_t size,
              struct qcow2_info *info)
{
  struct raw_header h;
  CLEANUP_FREE unsigned char *c = NULL;
  size_t cgot;
  uint64_t cluster_size, ext_end;

  if (got < 8) {
    set_error (EINVAL, "truncated header (%zu bytes)", got);
    return -1;
  }
  decode_fixed (b, &h);
  if (h.version != 2 && h.version != 3) {
    set_error (ENOTSUP, "unsupported qcow2 version %" PRIu32, h.version);
    return -1;
  }
  if (got < (h.version == 2 ? QCOW2_V2_HEADER_LENGTH
                            : QCOW2_V3_MIN_HEADER_LENGTH)) {
    set_error (EINVAL, "truncated header (%zu bytes)", got);
    return -1;
  }
  if (h.version == 3)
    decode_v3 (b, got, &h);
  if (check_fields (&h, got) == -1 || check_tables (&h, size) == -1)
    return -1;

  /* The extensions and the backing file name live in the first cluster. */
  cluster_size = UINT64_C (1) << h.cluster_bits;
  c = malloc (cluster_size);
  if (c == NULL) {
    set_error (ENOMEM, "allocating a cluster");
    return -1;
  }
  if (read_at (fd, c, cluster_size, 0, &cgot) == -1)
    return -1;
  ext_end = h.backing_offset != 0 && h.backing_offset < cluster_size
              ? h.backing_offset
              : cluster_size;
  if (parse_extensions (c, cgot, h.header_length, ext_end, info) == -1
      || parse_backing (&h, c, cgot, info) == -1)
    return -1;
  fill_info (&h, info);
  info->file_size = size;
  return 0;
}

int
qcow2_probe (int fd, struct qcow2_info *info)
{
  unsigned char b[QCOW2_HEADER_LENGTH];
  size_t got;
  uint64_t size;

  memset (info, 0, sizeof *info);
  memset (b, 0, sizeof b);
  if (file_size (fd, &size) == -1 || read_at (fd, b, sizeof b, 0, &got) == -1)
    return -1;
  if (got < 4) {
    set_error (EINVAL, "not a qcow2 image (the file has only %zu bytes)", got);
    return -1;
  }
  if (qcow2_get_be32 (b) != QCOW2_MAGIC) {
    set_error (EINVAL, "not a qcow2 image (bad magic)");
    return -1;
  }
  if (probe_header (fd, b, got, size, info) == -1) {
    qcow2_info_release (info);
    return -1;
  }
  return 0;
}

void
qcow2_info_release (struct qcow2_info *info)
{
  free (info->backing_file);
  free (info->backing_format);
  info->backing_file = NULL;
  info->backing_format = NULL;
}
