/* SPDX-License-Identifier: Apache-2.0 */
/* test-qcow2.c: the qcow2 writer's encodings, and its images as qemu-img sees them. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <zlib.h>
#include <zstd.h>

#include "common/error.h"
#include "qcow2/internal.h"
#include "qcow2/qcow2.h"

#include "qcow2-fixture.h"

#define KiB (UINT64_C (1) << 10)
#define MiB (UINT64_C (1) << 20)
#define GiB (UINT64_C (1) << 30)

#define assert_contains(haystack, needle)                                      \
  do {                                                                         \
    const char *_h = (haystack), *_n = (needle);                               \
    if (_h == NULL || strstr (_h, _n) == NULL)                                 \
      fail_msg ("\"%s\" does not contain \"%s\"", _h ? _h : "(null)", _n);     \
  } while (0)

#define assert_ok(call)                                                        \
  do {                                                                         \
    if ((call) == -1)                                                          \
      fail_msg ("%s: %s", #call, get_error ());                                \
  } while (0)

/* ---- running qemu-img ---- */

static json_t *
image_info (const char *path)
{
  const char *argv[]
    = { "qemu-img", "info", "--output=json", "-f", "qcow2", path, NULL };
  char *out;
  json_t *info;
  json_error_t err;

  assert_int_equal (run (argv, &out), 0);
  info = json_loads (out, 0, &err);
  if (info == NULL)
    fail_msg ("qemu-img info: %s:\n%s", err.text, out);
  free (out);
  return info;
}

static const char *
json_path_string (json_t *root, const char *a, const char *b, const char *c)
{
  json_t *v = json_object_get (root, a);

  if (b != NULL)
    v = json_object_get (v, b);
  if (c != NULL)
    v = json_object_get (v, c);
  return json_string_value (v);
}

/* ---- files and patterns ---- */

static void
copy_file (const char *from, int to)
{
  int fd = open (from, O_RDONLY | O_CLOEXEC);
  unsigned char buf[65536];
  uint64_t off = 0;
  ssize_t n;

  assert_true (fd >= 0);
  while ((n = read (fd, buf, sizeof buf)) > 0) {
    pwrite_full (to, buf, (size_t) n, off);
    off += (uint64_t) n;
  }
  assert_int_equal (n, 0);
  close (fd);
}

static size_t
deflate_raw12 (const void *in, size_t len, void *out, size_t cap)
{
  z_stream z;

  memset (&z, 0, sizeof z);
  assert_int_equal (
    deflateInit2 (&z, 6, Z_DEFLATED, -12, 8, Z_DEFAULT_STRATEGY), Z_OK);
  z.next_in = (Bytef *) in;
  z.avail_in = (uInt) len;
  z.next_out = out;
  z.avail_out = (uInt) cap;
  assert_int_equal (deflate (&z, Z_FINISH), Z_STREAM_END);
  deflateEnd (&z);
  return z.total_out;
}

static size_t
zstd_frame (const void *in, size_t len, void *out, size_t cap)
{
  size_t r = ZSTD_compress (out, cap, in, len, 3);

  assert_false (ZSTD_isError (r));
  return r;
}

/* ---- an image under construction and its raw twin ---- */

struct img {
  char path[PATH_MAX];
  char ref[PATH_MAX];
  int fd, rfd;
  struct qcow2_writer *w;
  uint64_t cs, vs;
  enum qcow2_compression compression;
};

/* Start NAME.qcow2 and NAME.raw, the content it must read as (a copy of
 * base_raw for an overlay, else zeros). */
static void
img_start (struct img *im, const char *name,
           const struct qcow2_writer_options *opts, const char *base_raw)
{
  char file[256];

  snprintf (file, sizeof file, "%s.qcow2", name);
  tmp_path (im->path, sizeof im->path, file);
  snprintf (file, sizeof file, "%s.raw", name);
  tmp_path (im->ref, sizeof im->ref, file);
  im->fd = open (im->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  im->rfd = open (im->ref, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true (im->fd >= 0 && im->rfd >= 0);
  if (base_raw != NULL)
    copy_file (base_raw, im->rfd);
  assert_int_equal (ftruncate (im->rfd, (off_t) opts->virtual_size), 0);
  im->w = qcow2_writer_new (im->fd, opts);
  if (im->w == NULL)
    fail_msg ("qcow2_writer_new: %s", get_error ());
  im->cs = qcow2_writer_cluster_size (im->w);
  im->vs = opts->virtual_size;
  im->compression = opts->compression;
}

static uint64_t
clamp_len (const struct img *im, uint64_t off, uint64_t len)
{
  return off + len > im->vs ? im->vs - off : len;
}

/* Guest data (random or text) at off, len bytes, in one call. */
static void
img_data (struct img *im, uint64_t off, uint64_t len, uint64_t seed, bool text)
{
  unsigned char *buf;

  len = clamp_len (im, off, len);
  buf = malloc (len);
  assert_non_null (buf);
  if (text)
    fill_text (buf, len, seed);
  else
    fill_random (buf, len, seed);
  assert_ok (qcow2_writer_write (im->w, off, buf, len));
  pwrite_full (im->rfd, buf, len, off);
  free (buf);
}

static void
img_zero (struct img *im, uint64_t off, uint64_t len)
{
  unsigned char *zero;

  len = clamp_len (im, off, len);
  assert_ok (qcow2_writer_zero (im->w, off, len));
  /* A hole in the reference is quicker than writing zeros. */
  if (fallocate (im->rfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                 (off_t) off, (off_t) len)
      == 0)
    return;
  zero = calloc (1, len);
  assert_non_null (zero);
  pwrite_full (im->rfd, zero, len, off);
  free (zero);
}

/* One text cluster, compressed here with zlib or zstd directly; returns
 * the compressed length. */
static size_t
img_compressed (struct img *im, uint64_t off, uint64_t seed)
{
  unsigned char *in = calloc (1, im->cs), *out = malloc (2 * im->cs);
  uint64_t len = clamp_len (im, off, im->cs);
  size_t clen = 0;

  assert_non_null (in);
  assert_non_null (out);
  fill_text (in, len, seed); /* a short last cluster stays zero padded */
  switch (im->compression) {
  case QCOW2_COMPRESSION_ZLIB:
    clen = deflate_raw12 (in, im->cs, out, 2 * im->cs);
    break;
  case QCOW2_COMPRESSION_ZSTD:
    clen = zstd_frame (in, im->cs, out, 2 * im->cs);
    break;
  }
  assert_true (clen > 0 && clen < im->cs);
  assert_ok (qcow2_writer_write_compressed (im->w, off, out, clen));
  pwrite_full (im->rfd, in, len, off);
  free (in);
  free (out);
  return clen;
}

/* Finish, close, and ask qemu-img whether the image is clean and reads
 * as the reference. */
static void
img_finish (struct img *im)
{
  assert_ok (qcow2_writer_finish (im->w));
  qcow2_writer_free (im->w);
  im->w = NULL;
  assert_int_equal (close (im->fd), 0);
  assert_int_equal (close (im->rfd), 0);
  check_clean (im->path);
  compare_with (im->path, im->ref);
}

/* The number of refcount blocks the image's refcount table points at. */
static uint64_t
count_refcount_blocks (const char *path)
{
  unsigned char h[QCOW2_HEADER_LENGTH], e[8];
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  uint64_t off, n = 0, i, entries;

  assert_true (fd >= 0);
  assert_int_equal (pread (fd, h, sizeof h, 0), sizeof h);
  off = qcow2_get_be64 (h + QCOW2_OFF_REFCOUNT_TABLE_OFFSET);
  entries = ((uint64_t) qcow2_get_be32 (h + QCOW2_OFF_REFCOUNT_TABLE_CLUSTERS)
             << qcow2_get_be32 (h + QCOW2_OFF_CLUSTER_BITS))
            / 8;
  for (i = 0; i < entries; i++) {
    assert_int_equal (pread (fd, e, 8, (off_t) (off + 8 * i)), 8);
    n += qcow2_get_be64 (e) != 0;
  }
  close (fd);
  return n;
}

/* ==== encodings ==== */

static void
compressed_descriptor_follows_the_spec (void **state)
{
  uint64_t off, extra;

  /* x = 62 - (cluster_bits - 8) */
  assert_int_equal (qcow2_csize_shift (9), 61);
  assert_int_equal (qcow2_csize_shift (12), 58);
  assert_int_equal (qcow2_csize_shift (16), 54);
  assert_int_equal (qcow2_csize_shift (21), 49);

  /* 512-byte clusters: one bit of sector count.  Bytes 1000..1023 stay in
   * sector 1; bytes 1000..1029 reach into sector 2. */
  assert_int_equal (qcow2_l2_compressed_entry (9, 1000, 24),
                    UINT64_C (0x40000000000003e8));
  assert_int_equal (qcow2_l2_compressed_entry (9, 1000, 30),
                    UINT64_C (0x60000000000003e8));

  /* 4 KiB clusters: 4096 bytes at 0x10fa0 run from sector 135 to 143. */
  assert_int_equal (qcow2_l2_compressed_entry (12, 0x10fa0, 4096),
                    UINT64_C (0x6000000000010fa0));

  /* 64 KiB clusters: 1000 bytes at 0x12345, sectors 145 to 147. */
  assert_int_equal (qcow2_l2_compressed_entry (16, 0x12345, 1000),
                    UINT64_C (0x4080000000012345));
  /* Data ending on the last byte of a sector needs no extra sector. */
  assert_int_equal (qcow2_l2_compressed_entry (16, 0x10000, 512),
                    UINT64_C (0x4000000000010000));

  /* 2 MiB clusters: 2 MiB at 2^40 + 7 spans 4097 sectors. */
  assert_int_equal (
    qcow2_l2_compressed_entry (21, (UINT64_C (1) << 40) + 7, 2 * MiB),
    UINT64_C (0x6000010000000007));

  qcow2_compressed_entry_decode (16, UINT64_C (0x4080000000012345), &off,
                                 &extra);
  assert_int_equal (off, 0x12345);
  assert_int_equal (extra, 2);
  qcow2_compressed_entry_decode (21, UINT64_C (0x6000010000000007), &off,
                                 &extra);
  assert_int_equal (off, (UINT64_C (1) << 40) + 7);
  assert_int_equal (extra, 4096);

  /* The offset field is 49 bits wide with 2 MiB clusters, capped at 56. */
  assert_int_equal (qcow2_compressed_offset_limit (21), UINT64_C (1) << 49);
  assert_int_equal (qcow2_compressed_offset_limit (9), UINT64_C (1) << 56);
}

static void
table_entries_follow_the_spec (void **state)
{
  assert_int_equal (qcow2_l2_data_entry (0x50000),
                    UINT64_C (0x8000000000050000));
  assert_int_equal (qcow2_l2_zero_entry (), 1);
  assert_int_equal (qcow2_l1_entry (UINT64_C (0x123450000)),
                    UINT64_C (0x8000000123450000));

  /* One L2 table maps cluster_size / 8 clusters. */
  assert_int_equal (qcow2_l1_size (16, 512 * MiB), 1);
  assert_int_equal (qcow2_l1_size (16, 512 * MiB + 512), 2);
  assert_int_equal (qcow2_l1_size (9, GiB), 32768);
  assert_int_equal (qcow2_l1_size (21, 512), 1);
}

static void
refcount_table_is_large_enough (void **state)
{
  uint64_t start;

  /* 64 KiB clusters: one table cluster covers 8192 blocks of 2 GiB. */
  assert_int_equal (qcow2_refcount_table_clusters (10, 32768, 65536), 1);
  /* 512-byte clusters: 64 entries per table cluster, 256 per block. */
  for (start = 0; start < 100000; start += 997) {
    uint64_t r = qcow2_refcount_table_clusters (start, 256, 512);
    uint64_t end = start + r + r / 256 + 3;

    assert_true (r * 64 >= (end + 255) / 256);
  }
}

static void
header_records_backing_file_and_zstd (void **state)
{
  char path[PATH_MAX];
  unsigned char h[256];
  struct qcow2_writer_options o = {
    .virtual_size = 10 * MiB,
    .backing_file = "../vm/base.qcow2",
    .compression = QCOW2_COMPRESSION_ZSTD,
  };
  struct qcow2_writer *w;
  int fd;

  tmp_path (path, sizeof path, "header.qcow2");
  fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true (fd >= 0);
  w = qcow2_writer_new (fd, &o);
  assert_non_null (w);
  assert_ok (qcow2_writer_finish (w));
  qcow2_writer_free (w);
  assert_int_equal (pread (fd, h, sizeof h, 0), sizeof h);
  close (fd);

  assert_memory_equal (h, "QFI\xfb", 4);
  assert_int_equal (qcow2_get_be32 (h + 4), 3);
  /* Header (112) + backing format extension (8 + 8) + end (8). */
  assert_int_equal (qcow2_get_be64 (h + 8), 136);
  assert_int_equal (qcow2_get_be32 (h + 16), strlen ("../vm/base.qcow2"));
  assert_int_equal (qcow2_get_be32 (h + 20), 16);
  assert_int_equal (qcow2_get_be64 (h + 24), 10 * MiB);
  assert_int_equal (qcow2_get_be32 (h + 32), 0);
  assert_int_equal (qcow2_get_be32 (h + 36), 1);
  assert_int_equal (qcow2_get_be32 (h + 60), 0);
  assert_int_equal (qcow2_get_be64 (h + 72), 8); /* compression type bit */
  assert_int_equal (qcow2_get_be64 (h + 80), 0);
  assert_int_equal (qcow2_get_be64 (h + 88), 0);
  assert_int_equal (qcow2_get_be32 (h + 96), 4);
  assert_int_equal (qcow2_get_be32 (h + 100), 112);
  assert_int_equal (h[104], 1);
  assert_int_equal (qcow2_get_be32 (h + 112), 0xe2792aca);
  assert_int_equal (qcow2_get_be32 (h + 116), 5);
  assert_memory_equal (h + 120, "qcow2\0\0\0", 8);
  assert_int_equal (qcow2_get_be64 (h + 128), 0);
  assert_memory_equal (h + 136, "../vm/base.qcow2", 16);
}

/* One image of 8 MiB with data here and there, written with or without
 * no_sync, into path. */
static void
write_sync_image (const char *path, bool no_sync)
{
  struct qcow2_writer_options o
    = { .virtual_size = 8 * MiB, .digest = true, .no_sync = no_sync };
  unsigned char buf[65536];
  struct qcow2_writer *w;
  int fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

  assert_true (fd >= 0);
  w = qcow2_writer_new (fd, &o);
  assert_non_null (w);
  fill_random (buf, sizeof buf, 7);
  assert_ok (qcow2_writer_write (w, 0, buf, sizeof buf));
  assert_ok (qcow2_writer_write (w, 5 * MiB, buf, sizeof buf));
  assert_ok (qcow2_writer_finish (w));
  qcow2_writer_free (w);
  assert_int_equal (close (fd), 0);
}

/* no_sync (a scratch image) leaves out the fsyncs, nothing else: the
 * same bytes as a synced image, and a clean one. */
static void
no_sync_image_is_the_same (void **state)
{
  char a[PATH_MAX], b[PATH_MAX];
  const char *cmp[] = { "cmp", a, b, NULL };

  need_qemu_img ();
  tmp_path (a, sizeof a, "synced.qcow2");
  tmp_path (b, sizeof b, "unsynced.qcow2");
  write_sync_image (a, false);
  write_sync_image (b, true);
  run_ok (cmp);
  check_clean (b);
}

/* Pages of the file in [offset, offset + len) that are in the page
 * cache. */
static size_t
cached_pages (int fd, uint64_t offset, uint64_t len)
{
  long page = sysconf (_SC_PAGESIZE);
  size_t n = (size_t) (len / (uint64_t) page), cached = 0;
  unsigned char *vec = malloc (n);
  void *map = mmap (NULL, len, PROT_READ, MAP_SHARED, fd, (off_t) offset);

  assert_non_null (vec);
  assert_true (map != MAP_FAILED);
  assert_int_equal (mincore (map, len, vec), 0);
  for (size_t i = 0; i < n; i++)
    cached += vec[i] & 1;
  munmap (map, len);
  free (vec);
  return cached;
}

/* A compressed image kept out of the page cache (QCOW2_IO_DROP) with its
 * digest: compressed data that fills a hole behind a raw cluster makes
 * the digest read that segment back at the end, so its pages stay
 * cached; the pages of the segments after it, raw data only, go.  The
 * digest is the file's. */
static void
drop_keeps_segments_read_back (void **state)
{
  const uint64_t cluster = 65536, raw_end = 48 * MiB;
  struct qcow2_writer_options o = { .virtual_size = 64 * MiB,
                                    .compression = QCOW2_COMPRESSION_ZSTD,
                                    .io = QCOW2_IO_DROP,
                                    .digest = true };
  unsigned char *raw = malloc (cluster);
  unsigned char small[1000];
  char path[PATH_MAX], hex[DIGEST_HEX_LEN + 1], want[DIGEST_HEX_LEN + 1];
  struct qcow2_writer *w;
  struct statfs fs;
  uint64_t g;
  int fd;

  assert_non_null (raw);
  fill_random (raw, cluster, 3);
  memset (small, 'k', sizeof small);
  tmp_path (path, sizeof path, "drop.qcow2");
  fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true (fd >= 0);
  w = qcow2_writer_new (fd, &o);
  assert_non_null (w);
  /* Compressed, raw, compressed...: every raw cluster leaves a hole
   * after the compressed bytes before it, which the next fill. */
  for (g = 0; g < 8 * cluster; g += cluster)
    assert_ok ((g / cluster) % 2 == 0
                 ? qcow2_writer_write_compressed (w, g, small, sizeof small)
                 : qcow2_writer_write (w, g, raw, cluster));
  /* Raw only: no hole, nothing read back. */
  for (; g < raw_end; g += cluster)
    assert_ok (qcow2_writer_write (w, g, raw, cluster));
  assert_int_equal (fstatfs (fd, &fs), 0);
  /* tmpfs: the pages are the file, nothing is dropped. */
  if (fs.f_type != 0x01021994 && qcow2_writer_io (w) == QCOW2_IO_DROP) {
    assert_true (cached_pages (fd, 0, DIGEST_SEGMENT) > 0);
    assert_int_equal (cached_pages (fd, 2 * DIGEST_SEGMENT, DIGEST_SEGMENT), 0);
  }
  assert_ok (qcow2_writer_finish (w));
  assert_ok (qcow2_writer_digest (w, hex));
  qcow2_writer_free (w);
  assert_int_equal (digest_fd (fd, want), 0);
  assert_string_equal (hex, want);
  assert_int_equal (close (fd), 0);
  free (raw);
}

static void
header_of_zlib_image_has_no_feature_bits (void **state)
{
  unsigned char h[QCOW2_HEADER_LENGTH + 8];
  struct qcow2_header_fields f = {
    .cluster_bits = 12,
    .virtual_size = MiB,
    .l1_size = 1,
    .l1_table_offset = 4096,
    .refcount_table_offset = 8192,
    .refcount_table_clusters = 1,
    .compression = QCOW2_COMPRESSION_ZLIB,
  };

  assert_int_equal (qcow2_header_bytes (NULL, NULL), sizeof h);
  qcow2_header_encode (&f, h, sizeof h);
  assert_int_equal (qcow2_get_be64 (h + 8), 0);
  assert_int_equal (qcow2_get_be64 (h + 40), 4096);
  assert_int_equal (qcow2_get_be64 (h + 48), 8192);
  assert_int_equal (qcow2_get_be32 (h + 56), 1);
  assert_int_equal (qcow2_get_be64 (h + 72), 0);
  assert_int_equal (h[104], 0);
  assert_int_equal (qcow2_get_be64 (h + 112), 0); /* end of extensions */
}

/* ==== options and call order ==== */

static void
expect_new_fails (const struct qcow2_writer_options *o, const char *msg)
{
  int fd = open ("/dev/null", O_WRONLY | O_CLOEXEC);

  assert_null (qcow2_writer_new (fd, o));
  assert_contains (get_error (), msg);
  close (fd);
}

static void
invalid_options_are_refused_clearly (void **state)
{
  char long_name[1100];
  struct qcow2_writer_options o = { .virtual_size = MiB };

  expect_new_fails (NULL, "no qcow2 writer options");
  o.cluster_size = 3000;
  expect_new_fails (&o, "invalid cluster size 3000");
  o.cluster_size = 256;
  expect_new_fails (&o, "invalid cluster size 256");
  o.cluster_size = 4 * MiB;
  expect_new_fails (&o, "invalid cluster size 4194304");
  o.cluster_size = 0;
  o.virtual_size = 0;
  expect_new_fails (&o, "invalid virtual size 0");
  o.virtual_size = MiB + 100;
  expect_new_fails (&o, "invalid virtual size 1048676");
  /* QEMU's L1 limit: 512-byte clusters reach only 128 GiB. */
  o.virtual_size = 256 * GiB;
  o.cluster_size = 512;
  expect_new_fails (&o, "too large for 512-byte clusters");
  o.virtual_size = MiB;
  o.backing_file = "";
  expect_new_fails (&o, "invalid backing file name ''");
  memset (long_name, 'a', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  o.cluster_size = 0;
  o.backing_file = long_name;
  expect_new_fails (&o, "it must have 1 to 1023 bytes");
  long_name[400] = '\0';
  o.cluster_size = 512;
  expect_new_fails (&o, "is too long for 512-byte clusters");
  o.backing_file = "base.qcow2";
  o.backing_format = "QCOW2; rm";
  expect_new_fails (&o, "invalid backing format");
  o.backing_format = NULL;
  o.compression = (enum qcow2_compression) 7;
  expect_new_fails (&o, "invalid compression type 7");
  o.compression = QCOW2_COMPRESSION_ZLIB;
  {
    int fd = open ("/dev/null", O_RDONLY | O_CLOEXEC), p[2];

    assert_null (qcow2_writer_new (fd, &o));
    assert_contains (get_error (), "is not open for writing");
    close (fd);
    assert_int_equal (pipe2 (p, O_CLOEXEC), 0);
    assert_null (qcow2_writer_new (p[1], &o));
    assert_contains (get_error (), "is not a regular file");
    close (p[0]);
    close (p[1]);
    assert_null (qcow2_writer_new (-1, &o));
    assert_contains (get_error (), "qcow2 output file: Bad file descriptor");
  }
}

static void
calls_out_of_order_are_refused (void **state)
{
  unsigned char buf[8192];
  struct qcow2_writer_options o
    = { .virtual_size = 64 * KiB + 1024, .cluster_size = 4096 };
  struct qcow2_writer *w;
  char path[PATH_MAX];
  int fd;

  tmp_path (path, sizeof path, "order.qcow2");
  fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true (fd >= 0);
  memset (buf, 1, sizeof buf);
  w = qcow2_writer_new (fd, &o);
  assert_non_null (w);
  assert_int_equal (qcow2_writer_write (w, 100, buf, 4096), -1);
  assert_contains (get_error (), "guest offset 100 is not a multiple");
  assert_int_equal (qcow2_writer_write (w, 0, buf, 100), -1);
  assert_contains (get_error (), "is not whole clusters");
  assert_int_equal (qcow2_writer_write (w, 0, buf, 0), -1);
  assert_contains (get_error (), "empty range");
  assert_int_equal (qcow2_writer_zero (w, 64 * KiB, 8192), -1);
  assert_contains (get_error (), "goes past the end of the disk");
  assert_int_equal (qcow2_writer_write_compressed (w, 0, buf, 0), -1);
  assert_contains (get_error (), "it must have 1 to 4096");
  assert_int_equal (qcow2_writer_write_compressed (w, 0, buf, 4097), -1);

  /* Misuse does not break the writer. */
  assert_ok (qcow2_writer_write (w, 8192, buf, 8192));
  assert_int_equal (qcow2_writer_write (w, 12288, buf, 4096), -1);
  assert_contains (get_error (), "below the end of the previous range (16384)");
  assert_int_equal (qcow2_writer_zero (w, 0, 4096), -1);
  /* The short last cluster may be given short. */
  assert_ok (qcow2_writer_zero (w, 64 * KiB, 1024));
  assert_ok (qcow2_writer_finish (w));
  assert_int_equal (qcow2_writer_finish (w), -1);
  assert_contains (get_error (), "already finished");
  assert_int_equal (qcow2_writer_write (w, 32768, buf, 4096), -1);
  qcow2_writer_free (w);
  qcow2_writer_free (NULL);
  close (fd);
}

/* ==== images checked by qemu-img ==== */

static void
image_with_data_zero_and_holes (void **state)
{
  struct qcow2_writer_options o = { .virtual_size = 9 * MiB + 3 * 512 };
  struct img im;
  struct qcow2_writer_stats st;

  need_qemu_img ();
  img_start (&im, "patterns", &o, NULL);
  img_data (&im, 0, 64 * KiB, 1, false);
  img_zero (&im, 64 * KiB, 64 * KiB);
  /* cluster 2 stays unallocated */
  img_data (&im, 3 * 64 * KiB, 8 * 64 * KiB, 2, false);
  img_zero (&im, 11 * 64 * KiB, 10 * 64 * KiB);
  img_data (&im, 21 * 64 * KiB, 64 * KiB, 3, true);
  img_data (&im, 100 * 64 * KiB, 20 * 64 * KiB, 4, false);
  /* The disk ends 1536 bytes into cluster 144. */
  img_data (&im, 144 * 64 * KiB, 1536, 5, false);
  qcow2_writer_get_stats (im.w, &st);
  assert_int_equal (st.data_clusters, 1 + 8 + 1 + 20 + 1);
  assert_int_equal (st.zero_clusters, 11);
  img_finish (&im);
}

static void
empty_image_reads_as_zeros (void **state)
{
  struct qcow2_writer_options o = { .virtual_size = 3 * GiB };
  struct img im;

  need_qemu_img ();
  img_start (&im, "empty", &o, NULL);
  img_finish (&im);
}

static void
short_last_cluster_can_be_zero (void **state)
{
  struct qcow2_writer_options o
    = { .virtual_size = 100 * KiB, .cluster_size = 64 * KiB };
  struct img im;

  need_qemu_img ();
  img_start (&im, "short-zero", &o, NULL);
  img_data (&im, 0, 64 * KiB, 9, false);
  img_zero (&im, 64 * KiB, 36 * KiB);
  img_finish (&im);
}

static void
large_disk_uses_several_l2_tables (void **state)
{
  struct qcow2_writer_options o = { .virtual_size = 1536 * MiB + 512 };
  struct img im;

  need_qemu_img ();
  img_start (&im, "several-l2", &o, NULL);
  img_data (&im, 0, 2 * MiB, 1, false);
  /* One write across the first L2 table's end at 512 MiB. */
  img_data (&im, 512 * MiB - 256 * KiB, MiB, 2, false);
  img_zero (&im, 600 * MiB, 512 * MiB);
  img_data (&im, 1200 * MiB, 64 * KiB, 3, true);
  img_data (&im, 1536 * MiB, 512, 4, false);
  img_finish (&im);
  assert_int_equal (count_refcount_blocks (im.path), 1);
}

/* With 512-byte clusters a refcount block covers only 256 clusters, and
 * the L1 table of a 600 MiB disk (300 clusters) covers whole ranges. */
static void
small_clusters_need_many_refcount_blocks (void **state)
{
  struct qcow2_writer_options o
    = { .virtual_size = 600 * MiB, .cluster_size = 512 };
  struct img im;
  uint64_t off = 0, i;

  need_qemu_img ();
  img_start (&im, "refblocks-512", &o, NULL);
  for (i = 0; i < 200; i++) {
    img_data (&im, off, (i % 7 + 1) * 512 * 9, i, i % 3 == 0);
    off += (i % 7 + 1) * 512 * 9;
    if (i % 5 == 0) {
      img_zero (&im, off, 512 * (i % 11 + 1));
      off += 512 * (i % 11 + 1);
    }
    if (i % 4 == 1) {
      img_compressed (&im, off, i);
      off += 512;
    }
    off += (i % 13) * 512 + (i % 17 == 0 ? 3 * MiB : 0);
  }
  img_data (&im, 600 * MiB - 512, 512, 999, false);
  img_finish (&im);
  assert_true (count_refcount_blocks (im.path) > 10);
}

static void
four_k_clusters_with_several_refcount_blocks (void **state)
{
  struct qcow2_writer_options o
    = { .virtual_size = 64 * MiB, .cluster_size = 4096 };
  struct img im;

  need_qemu_img ();
  img_start (&im, "refblocks-4k", &o, NULL);
  /* 4 KiB clusters: a refcount block counts 8 MiB of the file. */
  img_data (&im, 0, 20 * MiB, 1, false);
  img_zero (&im, 20 * MiB, 4 * MiB);
  img_data (&im, 30 * MiB, 3 * MiB, 2, false);
  img_data (&im, 64 * MiB - 4096, 4096, 3, false);
  img_finish (&im);
  assert_int_equal (count_refcount_blocks (im.path), 3);
}

/* Compressed clusters of one type, mixed with raw, zero and unallocated
 * clusters; the last cluster of the disk is short and compressed. */
static void
compressed_image (enum qcow2_compression type, uint32_t cs, const char *name)
{
  uint64_t whole = 6 * (uint64_t) cs > 3 * MiB ? 6 * (uint64_t) cs : 3 * MiB;
  struct qcow2_writer_options o
    = { .virtual_size = whole + 1536, .cluster_size = cs, .compression = type };
  struct img im;
  struct qcow2_writer_stats st;
  uint64_t off, n = 0;
  json_t *info;

  need_qemu_img ();
  img_start (&im, name, &o, NULL);
  for (off = 0; off < whole; off += cs, n++) {
    switch (n % 6) {
    case 0:
    case 1:
    case 3:
      img_compressed (&im, off, n);
      break;
    case 2:
      img_data (&im, off, cs, n, false);
      break;
    case 4:
      img_zero (&im, off, cs);
      break;
    case 5:
      break;
    }
  }
  img_compressed (&im, whole, 7777);
  qcow2_writer_get_stats (im.w, &st);
  assert_true (st.compressed_clusters > 0);
  img_finish (&im);

  info = image_info (im.path);
  assert_string_equal (
    json_path_string (info, "format-specific", "data", "compression-type"),
    qcow2_compression_name (type));
  assert_null (json_object_get (info, "backing-filename"));
  json_decref (info);
}

static void
zlib_compressed_clusters_64k (void **state)
{
  compressed_image (QCOW2_COMPRESSION_ZLIB, 64 * KiB, "zlib-64k");
}

static void
zlib_compressed_clusters_512 (void **state)
{
  compressed_image (QCOW2_COMPRESSION_ZLIB, 512, "zlib-512");
}

static void
zstd_compressed_clusters_64k (void **state)
{
  compressed_image (QCOW2_COMPRESSION_ZSTD, 64 * KiB, "zstd-64k");
}

static void
zstd_compressed_clusters_4k (void **state)
{
  compressed_image (QCOW2_COMPRESSION_ZSTD, 4096, "zstd-4k");
}

static void
zstd_compressed_clusters_2m (void **state)
{
  compressed_image (QCOW2_COMPRESSION_ZSTD, 2 * MiB, "zstd-2m");
}

/* Compressed clusters are packed byte by byte across host clusters. */
static void
compressed_clusters_are_packed (void **state)
{
  struct qcow2_writer_options o = { .virtual_size = 8 * MiB,
                                    .cluster_size = 4096,
                                    .compression = QCOW2_COMPRESSION_ZLIB };
  struct img im;
  struct qcow2_writer_stats st;
  uint64_t off, payload = 0;

  need_qemu_img ();
  img_start (&im, "packed", &o, NULL);
  for (off = 0; off < 8 * MiB; off += 4096)
    payload += img_compressed (&im, off, off / 4096);
  qcow2_writer_get_stats (im.w, &st);
  assert_int_equal (st.compressed_bytes, payload);
  /* Text shrinks to a fraction, and the file holds little but it: the
   * header, the L2 tables (each may leave the rest of a cluster unused)
   * and a refcount block. */
  assert_true (payload < 2 * MiB);
  assert_true (st.file_size <= payload + 10 * 4096);
  img_finish (&im);
}

/* Made with the library's compressor, and read back with zlib/zstd. */
static void
compressor_output_decompresses_to_the_cluster (void **state)
{
  enum qcow2_compression types[]
    = { QCOW2_COMPRESSION_ZLIB, QCOW2_COMPRESSION_ZSTD };
  size_t cs = 64 * KiB, i;
  unsigned char *in = malloc (cs), *out = malloc (cs), *back = malloc (cs);

  assert_true (in && out && back);
  for (i = 0; i < 2; i++) {
    struct qcow2_compressor *c = qcow2_compressor_new (types[i], cs, 0);
    ssize_t n;

    assert_non_null (c);
    fill_text (in, cs, i);
    n = qcow2_compressor_compress (c, in, out, cs);
    assert_true (n > 0 && (size_t) n < cs);
    if (types[i] == QCOW2_COMPRESSION_ZLIB) {
      z_stream z;

      memset (&z, 0, sizeof z);
      assert_int_equal (inflateInit2 (&z, -12), Z_OK);
      z.next_in = out;
      z.avail_in = (uInt) n;
      z.next_out = back;
      z.avail_out = (uInt) cs;
      assert_int_equal (inflate (&z, Z_FINISH), Z_STREAM_END);
      assert_int_equal (z.total_out, cs);
      inflateEnd (&z);
    }
    else
      assert_int_equal (ZSTD_decompress (back, cs, out, (size_t) n), cs);
    assert_memory_equal (in, back, cs);

    /* Random data does not shrink: store it raw. */
    fill_random (in, cs, i);
    assert_int_equal (qcow2_compressor_compress (c, in, out, cs), 0);
    qcow2_compressor_free (c);
  }
  assert_null (qcow2_compressor_new (QCOW2_COMPRESSION_ZSTD, 1000, 0));
  assert_contains (get_error (), "invalid cluster size 1000");
  qcow2_compressor_free (NULL);
  free (in);
  free (out);
  free (back);
}

/* A cluster holding many tiny compressed clusters stops at the 16-bit
 * refcount limit and the next one begins.  (The payloads are not valid
 * compressed data: only the refcounts are under test here.) */
static void
refcount_of_packed_cluster_never_overflows (void **state)
{
  uint64_t n = 70000, i;
  struct qcow2_writer_options o = { .virtual_size = n * 2 * MiB,
                                    .cluster_size = 2 * MiB,
                                    .compression = QCOW2_COMPRESSION_ZSTD };
  char path[PATH_MAX];
  struct qcow2_writer *w;
  int fd;

  need_qemu_img ();
  tmp_path (path, sizeof path, "saturated.qcow2");
  fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true (fd >= 0);
  w = qcow2_writer_new (fd, &o);
  assert_non_null (w);
  for (i = 0; i < n; i++)
    assert_ok (qcow2_writer_write_compressed (w, i * 2 * MiB, "12345678", 8));
  assert_ok (qcow2_writer_finish (w));
  qcow2_writer_free (w);
  close (fd);
  check_clean (path);
}

/* Random streams of data, zero, compressed and skipped ranges: whatever
 * the mix and the cluster size, the refcounts and tables come out right. */
static void
random_streams_make_clean_images (void **state)
{
  /* QCOW2_STRESS_SEEDS=200 runs a longer soak. */
  const char *env = getenv ("QCOW2_STRESS_SEEDS");
  uint64_t seed, seeds = env != NULL ? strtoull (env, NULL, 10) : 4;

  need_qemu_img ();
  for (seed = 1; seed <= seeds; seed++) {
    uint64_t s = seed * 7919, cs = UINT64_C (512) << ((seed - 1) % 7 * 2 % 13);
    struct qcow2_writer_options o = {
      .virtual_size = 300 * MiB + 512,
      .cluster_size = (uint32_t) cs,
      .compression = seed % 2 ? QCOW2_COMPRESSION_ZSTD : QCOW2_COMPRESSION_ZLIB,
    };
    struct img im;
    uint64_t off = 0;
    char name[32];

    snprintf (name, sizeof name, "random-%u", (unsigned) seed);
    img_start (&im, name, &o, NULL);
    while (off < o.virtual_size) {
      uint64_t n = 1 + xorshift (&s) % 24, len = n * cs;

      switch (xorshift (&s) % 5) {
      case 0:
        img_data (&im, off, len, off, xorshift (&s) % 2);
        break;
      case 1:
        img_zero (&im, off, len);
        break;
      case 2:
      case 3:
        for (len = 0; len < n * cs && off + len < o.virtual_size; len += cs)
          img_compressed (&im, off + len, off + len);
        break;
      case 4:
        if (xorshift (&s) % 8 == 0)
          len += (xorshift (&s) % 32) * 2 * MiB;
        break;
      }
      off += len;
    }
    img_finish (&im);
  }
}

/* The base made by qemu-img, then two incrementals of ours on it. */
static void
overlays_on_a_qemu_img_base (void **state)
{
  char base_raw[PATH_MAX], base[PATH_MAX], sub[PATH_MAX], moved[PATH_MAX];
  char path[PATH_MAX];
  const char *argv[] = { "qemu-img", "convert", "-f", "raw", "-O",
                         "qcow2",    base_raw,  base, NULL };
  struct qcow2_writer_options o1 = { .virtual_size = 4 * MiB + 512,
                                     .backing_file = "base.qcow2",
                                     .backing_format = "qcow2",
                                     .compression = QCOW2_COMPRESSION_ZSTD };
  struct qcow2_writer_options o2
    = { .virtual_size = 4 * MiB + 512, .backing_file = "inc1.qcow2" };
  struct img inc1, inc2;
  json_t *info;
  int fd;

  need_qemu_img ();
  /* The base: random data everywhere. */
  tmp_path (sub, sizeof sub, "chain");
  assert_int_equal (mkdir (sub, 0700), 0);
  tmp_path (base_raw, sizeof base_raw, "chain/base.raw");
  tmp_path (base, sizeof base, "chain/base.qcow2");
  fd = open (base_raw, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true (fd >= 0);
  {
    unsigned char *b = malloc (4 * MiB + 512);

    assert_non_null (b);
    fill_random (b, 4 * MiB + 512, 42);
    pwrite_full (fd, b, 4 * MiB + 512, 0);
    free (b);
  }
  close (fd);
  run_ok (argv);

  /* inc1: new data, zeros over old data, a compressed cluster, and the
   * rest left to the base. */
  img_start (&inc1, "chain/inc1", &o1, base_raw);
  img_data (&inc1, 64 * KiB, 128 * KiB, 1, false);
  img_zero (&inc1, 512 * KiB, 256 * KiB);
  img_compressed (&inc1, MiB, 5);
  img_zero (&inc1, 4 * MiB, 512); /* the short last cluster */
  img_finish (&inc1);

  img_start (&inc2, "chain/inc2", &o2, inc1.ref);
  img_zero (&inc2, 0, 64 * KiB);
  img_data (&inc2, 512 * KiB, 64 * KiB, 2, true);
  img_data (&inc2, 2 * MiB, MiB, 3, false);
  img_finish (&inc2);

  info = image_info (inc1.path);
  assert_string_equal (json_path_string (info, "backing-filename", NULL, NULL),
                       "base.qcow2");
  assert_string_equal (
    json_path_string (info, "backing-filename-format", NULL, NULL), "qcow2");
  assert_contains (json_path_string (info, "full-backing-filename", NULL, NULL),
                   "/chain/base.qcow2");
  assert_string_equal (
    json_path_string (info, "format-specific", "data", "compression-type"),
    "zstd");
  json_decref (info);

  /* The chain's names are relative: it still opens after a move. */
  tmp_path (moved, sizeof moved, "chain-moved");
  assert_int_equal (rename (sub, moved), 0);
  tmp_path (path, sizeof path, "chain-moved/inc2.qcow2");
  tmp_path (inc2.ref, sizeof inc2.ref, "chain-moved/inc2.raw");
  compare_with (path, inc2.ref);
  check_clean (path);
}

/* ==== failures ==== */

static void
no_space_left_is_reported_with_the_offset (void **state)
{
  struct qcow2_writer_options o = { .virtual_size = 64 * MiB };
  struct qcow2_writer *w;
  unsigned char *buf = calloc (1, 8 * MiB);
  int fd = open ("/dev/full", O_WRONLY | O_CLOEXEC);

  if (fd == -1) {
    print_message ("/dev/full is missing\n");
    free (buf);
    skip ();
  }
  assert_non_null (buf);
  w = qcow2_writer_new (fd, &o);
  assert_non_null (w);
  assert_int_equal (qcow2_writer_write (w, 0, buf, 8 * MiB), -1);
  assert_int_equal (get_errno (), ENOSPC);
  assert_contains (get_error (),
                   "write at file offset 0: No space left on device");
  /* The writer is broken for good, and says so. */
  assert_int_equal (qcow2_writer_zero (w, 8 * MiB, 64 * KiB), -1);
  assert_contains (get_error (), "unusable after an earlier error");
  assert_int_equal (qcow2_writer_finish (w), -1);
  qcow2_writer_free (w);
  close (fd);
  free (buf);
}

static void
file_size_limit_is_reported_with_the_offset (void **state)
{
  struct qcow2_writer_options o = { .virtual_size = 64 * MiB };
  struct qcow2_writer *w;
  unsigned char *buf = malloc (MiB);
  struct rlimit old, small;
  char path[PATH_MAX];
  uint64_t off;
  int fd, r = 0;

  assert_non_null (buf);
  fill_random (buf, MiB, 3);
  tmp_path (path, sizeof path, "fsize.qcow2");
  fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true (fd >= 0);
  w = qcow2_writer_new (fd, &o);
  assert_non_null (w);

  assert_int_equal (getrlimit (RLIMIT_FSIZE, &old), 0);
  small = old;
  small.rlim_cur = 3 * MiB;
  signal (SIGXFSZ, SIG_IGN);
  assert_int_equal (setrlimit (RLIMIT_FSIZE, &small), 0);
  for (off = 0; off < 16 * MiB && r == 0; off += MiB)
    r = qcow2_writer_write (w, off, buf, MiB);
  if (r == 0)
    r = qcow2_writer_finish (w);
  assert_int_equal (setrlimit (RLIMIT_FSIZE, &old), 0);
  signal (SIGXFSZ, SIG_DFL);

  assert_int_equal (r, -1);
  assert_int_equal (get_errno (), EFBIG);
  assert_contains (get_error (),
                   "write at file offset 3145728: File too large");
  qcow2_writer_free (w);
  close (fd);
  free (buf);
}

/* Until finish, the file is not an image anyone could mistake for one. */
static void
unfinished_image_has_no_header (void **state)
{
  struct qcow2_writer_options o = { .virtual_size = 64 * MiB };
  unsigned char *buf = calloc (1, 8 * MiB);
  struct qcow2_writer *w;
  struct qcow2_info info;
  char path[PATH_MAX];
  int fd;

  assert_non_null (buf);
  tmp_path (path, sizeof path, "unfinished.qcow2");
  fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true (fd >= 0);
  w = qcow2_writer_new (fd, &o);
  assert_non_null (w);
  assert_ok (qcow2_writer_write (w, 0, buf, 8 * MiB));
  qcow2_writer_free (w);
  assert_int_equal (qcow2_probe (fd, &info), -1);
  assert_contains (get_error (), "not a qcow2 image");
  close (fd);
  free (buf);
}

/* ==== setup ==== */

static int
remove_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  return remove (path);
}

static int
setup (void **state)
{
  const char *argv[] = { "qemu-img", "--version", NULL };
  const char *base = getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp";

  snprintf (tmpdir, sizeof tmpdir, "%s/knib-qcow2.XXXXXX", base);
  if (mkdtemp (tmpdir) == NULL)
    return -1;
  have_qemu_img = run (argv, NULL) == 0;
  return 0;
}

static int
teardown (void **state)
{
  return nftw (tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (compressed_descriptor_follows_the_spec),
    cmocka_unit_test (table_entries_follow_the_spec),
    cmocka_unit_test (refcount_table_is_large_enough),
    cmocka_unit_test (header_records_backing_file_and_zstd),
    cmocka_unit_test (no_sync_image_is_the_same),
    cmocka_unit_test (drop_keeps_segments_read_back),
    cmocka_unit_test (header_of_zlib_image_has_no_feature_bits),
    cmocka_unit_test (invalid_options_are_refused_clearly),
    cmocka_unit_test (calls_out_of_order_are_refused),
    cmocka_unit_test (image_with_data_zero_and_holes),
    cmocka_unit_test (empty_image_reads_as_zeros),
    cmocka_unit_test (short_last_cluster_can_be_zero),
    cmocka_unit_test (large_disk_uses_several_l2_tables),
    cmocka_unit_test (small_clusters_need_many_refcount_blocks),
    cmocka_unit_test (four_k_clusters_with_several_refcount_blocks),
    cmocka_unit_test (zlib_compressed_clusters_64k),
    cmocka_unit_test (zlib_compressed_clusters_512),
    cmocka_unit_test (zstd_compressed_clusters_64k),
    cmocka_unit_test (zstd_compressed_clusters_4k),
    cmocka_unit_test (zstd_compressed_clusters_2m),
    cmocka_unit_test (compressed_clusters_are_packed),
    cmocka_unit_test (compressor_output_decompresses_to_the_cluster),
    cmocka_unit_test (refcount_of_packed_cluster_never_overflows),
    cmocka_unit_test (random_streams_make_clean_images),
    cmocka_unit_test (overlays_on_a_qemu_img_base),
    cmocka_unit_test (no_space_left_is_reported_with_the_offset),
    cmocka_unit_test (file_size_limit_is_reported_with_the_offset),
    cmocka_unit_test (unfinished_image_has_no_header),
  };

  if (getenv ("TEST_FILTER") != NULL)
    cmocka_set_test_filter (getenv ("TEST_FILTER"));
  return cmocka_run_group_tests (tests, setup, teardown);
}
