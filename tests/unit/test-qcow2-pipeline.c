/* SPDX-License-Identifier: Apache-2.0 */
/* test-qcow2-pipeline.c: compression on worker threads, and the image reader. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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

#define assert_ok(call)                                                        \
  do {                                                                         \
    if ((call) == -1)                                                          \
      fail_msg ("%s: %s", #call, get_error ());                                \
  } while (0)

#define assert_contains(haystack, needle)                                      \
  do {                                                                         \
    const char *_h = (haystack), *_n = (needle);                               \
    if (_h == NULL || strstr (_h, _n) == NULL)                                 \
      fail_msg ("\"%s\" does not contain \"%s\"", _h ? _h : "(null)", _n);     \
  } while (0)

/* ---- fault injection and allocation counting (ld --wrap) ---- */

ssize_t __real_qcow2_compressor_compress (struct qcow2_compressor *c,
                                          const void *in, void *out,
                                          size_t out_size);
ssize_t __wrap_qcow2_compressor_compress (struct qcow2_compressor *c,
                                          const void *in, void *out,
                                          size_t out_size);
void *__real_malloc (size_t n);
void *__wrap_malloc (size_t n);

/* The compression call (counting from 1) that fails; 0: none. */
static atomic_long fail_at;
static atomic_long compress_calls;
/* Allocations of at least count_min bytes while counting. */
static atomic_bool counting;
static size_t count_min;
static atomic_long big_allocs;

ssize_t
__wrap_qcow2_compressor_compress (struct qcow2_compressor *c, const void *in,
                                  void *out, size_t out_size)
{
  long n = atomic_fetch_add (&compress_calls, 1) + 1;

  if (atomic_load (&fail_at) != 0 && n == atomic_load (&fail_at)) {
    set_error (EIO, "injected failure");
    return -1;
  }
  return __real_qcow2_compressor_compress (c, in, out, out_size);
}

void *
__wrap_malloc (size_t n)
{
  if (atomic_load (&counting) && n >= count_min)
    atomic_fetch_add (&big_allocs, 1);
  return __real_malloc (n);
}

/* ---- running programs ---- */

/* ---- data ---- */

static double
now_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- a disk's content, as a list of ranges ---- */

enum piece_kind { P_TEXT, P_RANDOM, P_ZERO, P_HOLE };

struct piece {
  enum piece_kind kind;
  uint64_t len;
};

/* The mixed disk most tests write: text, random, zeros, holes, clusters
 * alternating text and random, and a short last cluster. */
static const struct piece mixed[] = {
  { P_TEXT, 1 * MiB },    { P_RANDOM, 512 * KiB }, { P_ZERO, 256 * KiB },
  { P_HOLE, 512 * KiB },  { P_TEXT, 64 * KiB },    { P_RANDOM, 64 * KiB },
  { P_TEXT, 64 * KiB },   { P_ZERO, 64 * KiB },    { P_RANDOM, 64 * KiB },
  { P_TEXT, 64 * KiB },   { P_HOLE, 64 * KiB },    { P_TEXT, 768 * KiB },
  { P_RANDOM, 64 * KiB }, { P_TEXT, 1536 },
};

/* A writing target: a writer with or without a pipeline, and the raw
 * reference of what the image must read as. */
struct target {
  char path[PATH_MAX];
  char ref[PATH_MAX];
  int fd, rfd;
  struct qcow2_writer *w;
  struct qcow2_pipeline *p;
  uint64_t vs;
};

static uint64_t
pieces_size (const struct piece *pcs, size_t n)
{
  uint64_t size = 0;
  size_t i;

  for (i = 0; i < n; i++)
    size += pcs[i].len;
  return size;
}

static void
target_start (struct target *t, const char *name, uint64_t vs,
              enum qcow2_compression type,
              const struct qcow2_pipeline_options *po)
{
  struct qcow2_writer_options wo = { .virtual_size = vs, .compression = type };
  char file[256];

  snprintf (file, sizeof file, "%s.qcow2", name);
  tmp_path (t->path, sizeof t->path, file);
  snprintf (file, sizeof file, "%s.raw", name);
  tmp_path (t->ref, sizeof t->ref, file);
  t->fd = open (t->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  t->rfd = open (t->ref, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true (t->fd >= 0 && t->rfd >= 0);
  assert_int_equal (ftruncate (t->rfd, (off_t) vs), 0);
  t->vs = vs;
  t->w = qcow2_writer_new (t->fd, &wo);
  if (t->w == NULL)
    fail_msg ("qcow2_writer_new: %s", get_error ());
  t->p = qcow2_pipeline_new (t->w, po);
  if (t->p == NULL)
    fail_msg ("qcow2_pipeline_new: %s", get_error ());
}

/* Write the pieces through the pipeline in chunks of at most chunk bytes
 * (like the NBD reader hands them over). */
static void
target_write (struct target *t, const struct piece *pcs, size_t n, size_t chunk,
              uint64_t seed)
{
  uint64_t off = 0;
  size_t i;

  for (i = 0; i < n; i++) {
    uint64_t len = pcs[i].len, done = 0;

    while (pcs[i].kind != P_HOLE && done < len) {
      size_t k = len - done < chunk ? (size_t) (len - done) : chunk;
      unsigned char *buf;

      if (pcs[i].kind == P_ZERO) {
        assert_ok (qcow2_pipeline_zero (t->p, off + done, len));
        break;
      }
      buf = malloc (k);
      assert_non_null (buf);
      if (pcs[i].kind == P_TEXT)
        fill_text (buf, k, seed + off + done);
      else
        fill_random (buf, k, seed + off + done);
      assert_ok (qcow2_pipeline_write (t->p, off + done, buf, k));
      pwrite_full (t->rfd, buf, k, off + done);
      /* The pipeline copied it: scribble over it. */
      memset (buf, 0xa5, k);
      free (buf);
      done += k;
    }
    off += len;
  }
}

static void
target_finish (struct target *t, struct qcow2_writer_stats *st)
{
  assert_ok (qcow2_pipeline_flush (t->p));
  qcow2_pipeline_free (t->p);
  t->p = NULL;
  assert_ok (qcow2_writer_finish (t->w));
  if (st != NULL)
    qcow2_writer_get_stats (t->w, st);
  qcow2_writer_free (t->w);
  t->w = NULL;
  assert_int_equal (close (t->fd), 0);
  assert_int_equal (close (t->rfd), 0);
}

static bool
same_files (const char *a, const char *b)
{
  const char *argv[] = { "cmp", "-s", a, b, NULL };

  return run (argv, NULL) == 0;
}

/* ==== images from the pipeline ==== */

static void
mixed_disk (enum qcow2_compression type, unsigned threads, const char *name)
{
  struct qcow2_pipeline_options po = { .compress = true, .threads = threads };
  size_t n = sizeof mixed / sizeof mixed[0];
  struct target t;
  struct qcow2_writer_stats st;

  need_qemu_img ();
  target_start (&t, name, pieces_size (mixed, n), type, &po);
  assert_int_equal (qcow2_pipeline_threads (t.p), threads);
  target_write (&t, mixed, n, 256 * KiB, 7);
  target_finish (&t, &st);
  check_clean (t.path);
  compare_with (t.path, t.ref);
  /* Text compresses (2 MiB of it, and the short last cluster), random
   * data stays raw (12 clusters), zeros are zero clusters (5). */
  assert_int_equal (st.compressed_clusters, 16 + 1 + 1 + 1 + 12 + 1);
  assert_int_equal (st.data_clusters, 8 + 1 + 1 + 1);
  assert_int_equal (st.zero_clusters, 4 + 1);
  assert_true (st.file_size < 2 * MiB);
}

static void
zstd_mixed_disk_one_thread (void **state)
{
  mixed_disk (QCOW2_COMPRESSION_ZSTD, 1, "zstd-1");
}

static void
zstd_mixed_disk_four_threads (void **state)
{
  char a[PATH_MAX], b[PATH_MAX];

  mixed_disk (QCOW2_COMPRESSION_ZSTD, 4, "zstd-4");
  /* Written in guest order, whatever the threads: the same bytes. */
  tmp_path (a, sizeof a, "zstd-1.qcow2");
  tmp_path (b, sizeof b, "zstd-4.qcow2");
  if (access (a, F_OK) == 0)
    assert_true (same_files (a, b));
}

static void
zlib_mixed_disk_one_thread (void **state)
{
  mixed_disk (QCOW2_COMPRESSION_ZLIB, 1, "zlib-1");
}

static void
zlib_mixed_disk_three_threads (void **state)
{
  char a[PATH_MAX], b[PATH_MAX];

  mixed_disk (QCOW2_COMPRESSION_ZLIB, 3, "zlib-3");
  tmp_path (a, sizeof a, "zlib-1.qcow2");
  tmp_path (b, sizeof b, "zlib-3.qcow2");
  if (access (a, F_OK) == 0)
    assert_true (same_files (a, b));
}

/* A short last cluster of random data is padded with zeros before it is
 * compressed, so it shrinks a little and is stored compressed; a whole
 * random cluster is stored raw. */
static void
short_last_cluster_of_random_data (void **state)
{
  static const struct piece pcs[] = {
    { P_TEXT, 128 * KiB },
    { P_RANDOM, 64 * KiB + 512 },
  };
  struct qcow2_pipeline_options po = { .compress = true, .threads = 2 };
  struct target t;
  struct qcow2_writer_stats st;

  need_qemu_img ();
  target_start (&t, "short", pieces_size (pcs, 2), QCOW2_COMPRESSION_ZSTD, &po);
  target_write (&t, pcs, 2, 1 * MiB, 3);
  target_finish (&t, &st);
  check_clean (t.path);
  compare_with (t.path, t.ref);
  assert_int_equal (st.compressed_clusters, 3);
  assert_int_equal (st.data_clusters, 1);
}

/* Compressible and random clusters in turn: the compressed ones fill
 * the free tails of the clusters that hold compressed data, as QEMU does,
 * so the image is no larger than qemu-img convert -c makes it. */
static void
alternating_clusters_share_host_clusters (void **state)
{
  struct qcow2_pipeline_options po = { .compress = true, .threads = 2 };
  struct piece pcs[128];
  struct target t;
  struct qcow2_writer_stats st;
  char qpath[PATH_MAX];
  struct stat sb;
  size_t i;

  need_qemu_img ();
  for (i = 0; i < 128; i++)
    pcs[i] = (struct piece) { i % 2 ? P_RANDOM : P_TEXT, 64 * KiB };
  target_start (&t, "alternate", pieces_size (pcs, 128), QCOW2_COMPRESSION_ZSTD,
                &po);
  target_write (&t, pcs, 128, 256 * KiB, 5);
  target_finish (&t, &st);
  check_clean (t.path);
  compare_with (t.path, t.ref);
  assert_int_equal (st.compressed_clusters, 64);
  assert_int_equal (st.data_clusters, 64);
  tmp_path (qpath, sizeof qpath, "alternate-qemu.qcow2");
  {
    const char *argv[] = { "qemu-img", "convert", "-c",
                           "-f",       "raw",     "-O",
                           "qcow2",    "-o",      "compression_type=zstd",
                           t.ref,      qpath,     NULL };
    run_ok (argv);
  }
  assert_int_equal (stat (qpath, &sb), 0);
  print_message ("alternating clusters: %" PRIu64 " bytes, qemu-img %lld\n",
                 st.file_size, (long long) sb.st_size);
  /* 64 raw clusters, the compressed ones packed in a few more. */
  assert_true (st.file_size <= (uint64_t) sb.st_size);
  assert_true (st.file_size < (64 + 8 + 6) * 64 * KiB);
}

/* Without compression the pipeline passes everything through. */
static void
no_compression_passes_through (void **state)
{
  struct qcow2_pipeline_options po = { .compress = false };
  size_t n = sizeof mixed / sizeof mixed[0];
  struct target t;
  struct qcow2_writer_stats st;

  need_qemu_img ();
  target_start (&t, "plain", pieces_size (mixed, n), QCOW2_COMPRESSION_ZLIB,
                &po);
  assert_int_equal (qcow2_pipeline_threads (t.p), 0);
  target_write (&t, mixed, n, 256 * KiB, 9);
  target_finish (&t, &st);
  check_clean (t.path);
  compare_with (t.path, t.ref);
  assert_int_equal (st.compressed_clusters, 0);
  assert_int_equal (st.data_clusters, 16 + 8 + 1 + 1 + 1 + 1 + 1 + 12 + 1 + 1);
}

/* Memory is the slots, allocated up front: nothing big is allocated
 * while a disk streams through, and threads never exceed slots. */
static void
memory_is_bounded_by_the_slots (void **state)
{
  struct qcow2_pipeline_options po
    = { .compress = true, .threads = 8, .slots = 4 };
  static const struct piece pcs[] = {
    { P_TEXT, 12 * MiB },
    { P_RANDOM, 4 * MiB },
    { P_ZERO, 1 * MiB },
    { P_TEXT, 3 * MiB },
  };
  struct target t;
  struct qcow2_writer_stats st;
  unsigned char *buf = malloc (1 * MiB);
  uint64_t off = 0;
  size_t i;

  need_qemu_img ();
  assert_non_null (buf);
  target_start (&t, "bounded", pieces_size (pcs, 4), QCOW2_COMPRESSION_ZSTD,
                &po);
  assert_int_equal (qcow2_pipeline_threads (t.p), 4);
  count_min = 64 * KiB;
  atomic_store (&big_allocs, 0);
  atomic_store (&counting, true);
  for (i = 0; i < 4; i++) {
    uint64_t done;

    for (done = 0; done < pcs[i].len; done += 1 * MiB) {
      if (pcs[i].kind == P_ZERO) {
        assert_ok (qcow2_pipeline_zero (t.p, off, pcs[i].len));
        break;
      }
      if (pcs[i].kind == P_TEXT)
        fill_text (buf, 1 * MiB, off + done);
      else
        fill_random (buf, 1 * MiB, off + done);
      assert_ok (qcow2_pipeline_write (t.p, off + done, buf, 1 * MiB));
      pwrite_full (t.rfd, buf, 1 * MiB, off + done);
    }
    off += pcs[i].len;
  }
  assert_ok (qcow2_pipeline_flush (t.p));
  atomic_store (&counting, false);
  assert_int_equal (atomic_load (&big_allocs), 0);
  target_finish (&t, &st);
  free (buf);
  check_clean (t.path);
  compare_with (t.path, t.ref);
  assert_int_equal (st.compressed_clusters, 240);
  assert_int_equal (st.data_clusters, 64);
}

static void
invalid_options_are_refused (void **state)
{
  struct qcow2_pipeline_options po = { .compress = true, .threads = 1000 };
  struct target t;

  /* The target needs a pipeline: make a valid one first, then try. */
  struct qcow2_pipeline_options ok = { .compress = false };
  target_start (&t, "invalid", 1 * MiB, QCOW2_COMPRESSION_ZSTD, &ok);
  assert_null (qcow2_pipeline_new (t.w, &po));
  assert_contains (get_error (), "1000 compression threads");
  po.threads = 1;
  po.slots = 100000;
  assert_null (qcow2_pipeline_new (t.w, &po));
  assert_contains (get_error (), "clusters in flight");
  po.slots = 0;
  po.level = 9999;
  /* zstd clamps levels; zlib refuses them. */
  qcow2_pipeline_free (t.p);
  t.p = NULL;
  qcow2_writer_free (t.w);
  close (t.fd);
  close (t.rfd);
  target_start (&t, "invalid", 1 * MiB, QCOW2_COMPRESSION_ZLIB, &ok);
  assert_null (qcow2_pipeline_new (t.w, &po));
  assert_contains (get_error (), "zlib");
  qcow2_pipeline_free (t.p);
  qcow2_writer_free (t.w);
  close (t.fd);
  close (t.rfd);
}

/* A worker's failure comes back from the producer's next call, with the
 * guest offset, and every later call fails too. */
static void
worker_error_propagates (void **state)
{
  struct qcow2_pipeline_options po = { .compress = true, .threads = 3 };
  struct target t;
  unsigned char *buf = malloc (1 * MiB);
  uint64_t off;
  int r = 0;

  assert_non_null (buf);
  fill_text (buf, 1 * MiB, 1);
  target_start (&t, "werror", 16 * MiB, QCOW2_COMPRESSION_ZSTD, &po);
  atomic_store (&compress_calls, 0);
  atomic_store (&fail_at, 21);
  for (off = 0; off < 16 * MiB && r == 0; off += 1 * MiB)
    r = qcow2_pipeline_write (t.p, off, buf, 1 * MiB);
  if (r == 0)
    r = qcow2_pipeline_flush (t.p);
  atomic_store (&fail_at, 0);
  assert_int_equal (r, -1);
  assert_int_equal (get_errno (), EIO);
  assert_contains (get_error (), "compressing the cluster at guest offset");
  assert_contains (get_error (), "injected failure");
  error_clear ();
  assert_int_equal (
    qcow2_pipeline_write (t.p, 16 * MiB - 64 * KiB, buf, 64 * KiB), -1);
  assert_contains (get_error (), "injected failure");
  assert_int_equal (qcow2_pipeline_flush (t.p), -1);
  qcow2_pipeline_free (t.p);
  qcow2_writer_free (t.w);
  close (t.fd);
  close (t.rfd);
  free (buf);
}

/* A writer's refusal (here: data out of order) breaks the pipeline. */
static void
writer_error_propagates (void **state)
{
  struct qcow2_pipeline_options po = { .compress = true, .threads = 2 };
  struct target t;
  unsigned char *buf = malloc (256 * KiB);
  int r;

  assert_non_null (buf);
  fill_text (buf, 256 * KiB, 1);
  target_start (&t, "wrerror", 4 * MiB, QCOW2_COMPRESSION_ZLIB, &po);
  assert_ok (qcow2_pipeline_write (t.p, 1 * MiB, buf, 256 * KiB));
  r = qcow2_pipeline_write (t.p, 0, buf, 256 * KiB);
  if (r == 0)
    r = qcow2_pipeline_flush (t.p);
  assert_int_equal (r, -1);
  assert_contains (get_error (), "clusters must come in increasing order");
  assert_int_equal (qcow2_pipeline_zero (t.p, 3 * MiB, 64 * KiB), -1);
  qcow2_pipeline_free (t.p);
  qcow2_writer_free (t.w);
  close (t.fd);
  close (t.rfd);
  free (buf);
}

/* The rate limit counts bytes written to the image: random data is
 * held to it, data that compresses to little is not.  Elapsed time only
 * gives lower bounds (a loaded machine or valgrind can only make a run
 * slower); what the limit counted shows that compressed text is not held
 * to its guest size. */
static void
rate_limit_caps_written_bytes (void **state)
{
  static const struct piece random2[] = { { P_RANDOM, 2 * MiB } };
  static const struct piece text1[] = { { P_TEXT, 1 * MiB } };
  static const struct piece text2[] = { { P_TEXT, 2 * MiB } };
  struct qcow2_pipeline_options po
    = { .compress = true, .threads = 2, .rate_limit = 1 };
  struct qcow2_pipeline_options plain = { .compress = false, .rate_limit = 1 };
  struct target t;
  double t0, secs;
  uint64_t counted;

  t0 = now_s ();
  target_start (&t, "rate-random", 2 * MiB, QCOW2_COMPRESSION_ZSTD, &po);
  target_write (&t, random2, 1, 256 * KiB, 1);
  assert_ok (qcow2_pipeline_flush (t.p));
  counted = qcow2_pipeline_throttled_bytes (t.p);
  target_finish (&t, NULL);
  secs = now_s () - t0;
  print_message ("2 MiB of random data at 1 MiB/s: %.2f s, %" PRIu64
                 " bytes counted\n",
                 secs, counted);
  assert_true (secs >= 1.6);
  assert_true (counted >= 2 * MiB);

  t0 = now_s ();
  target_start (&t, "rate-plain", 1 * MiB, QCOW2_COMPRESSION_ZSTD, &plain);
  target_write (&t, text1, 1, 256 * KiB, 1);
  assert_ok (qcow2_pipeline_flush (t.p));
  counted = qcow2_pipeline_throttled_bytes (t.p);
  target_finish (&t, NULL);
  secs = now_s () - t0;
  print_message ("1 MiB uncompressed at 1 MiB/s: %.2f s, %" PRIu64
                 " bytes counted\n",
                 secs, counted);
  assert_true (secs >= 0.8);
  assert_true (counted == 1 * MiB);

  target_start (&t, "rate-text", 2 * MiB, QCOW2_COMPRESSION_ZSTD, &po);
  target_write (&t, text2, 1, 256 * KiB, 1);
  assert_ok (qcow2_pipeline_flush (t.p));
  counted = qcow2_pipeline_throttled_bytes (t.p);
  target_finish (&t, NULL);
  print_message ("2 MiB of text, compressed, at 1 MiB/s: %" PRIu64
                 " bytes counted\n",
                 counted);
  assert_true (counted > 0 && counted < MiB / 2);
}

/* ==== against the images qemu-img writes ==== */

/* One cluster of an image as qemu-img map describes it. */
struct cluster_map {
  bool present, zero, data, has_offset;
};

/* qemu-img map of path (top image only), one entry per cluster. */
static struct cluster_map *
qemu_map (const char *path, uint64_t vs, uint64_t cs)
{
  const char *argv[]
    = { "qemu-img", "map", "--output=json", "-f", "qcow2", path, NULL };
  uint64_t n = (vs + cs - 1) / cs;
  struct cluster_map *m = calloc (n, sizeof *m);
  json_error_t err;
  json_t *j, *e;
  size_t i;
  char *out;

  assert_non_null (m);
  assert_int_equal (run (argv, &out), 0);
  j = json_loads (out, 0, &err);
  if (j == NULL)
    fail_msg ("qemu-img map: %s:\n%s", err.text, out);
  json_array_foreach (j, i, e)
  {
    uint64_t start = json_integer_value (json_object_get (e, "start"));
    uint64_t len = json_integer_value (json_object_get (e, "length"));
    uint64_t c;

    if (json_integer_value (json_object_get (e, "depth")) != 0)
      continue;
    for (c = start / cs; c < (start + len + cs - 1) / cs; c++) {
      m[c].present = json_is_true (json_object_get (e, "present"));
      m[c].zero = json_is_true (json_object_get (e, "zero"));
      m[c].data = json_is_true (json_object_get (e, "data"));
      m[c].has_offset = json_object_get (e, "offset") != NULL;
    }
  }
  json_decref (j);
  free (out);
  return m;
}

/* The L2 entry of guest cluster g of a qcow2 file, read by hand. */
static uint64_t
l2_entry (int fd, uint64_t g)
{
  unsigned char h[QCOW2_HEADER_LENGTH], e[8];
  uint32_t bits;
  uint64_t l1_off, l2_off, per_table;

  assert_int_equal (pread (fd, h, sizeof h, 0), sizeof h);
  bits = qcow2_get_be32 (h + QCOW2_OFF_CLUSTER_BITS);
  l1_off = qcow2_get_be64 (h + QCOW2_OFF_L1_TABLE_OFFSET);
  per_table = (UINT64_C (1) << bits) / 8;
  assert_int_equal (pread (fd, e, 8, (off_t) (l1_off + 8 * (g / per_table))),
                    8);
  l2_off = qcow2_get_be64 (e) & QCOW2_OFFSET_MASK;
  if (l2_off == 0)
    return 0;
  assert_int_equal (pread (fd, e, 8, (off_t) (l2_off + 8 * (g % per_table))),
                    8);
  return qcow2_get_be64 (e);
}

/* Decompress the stream at in (avail bytes) into one cluster; returns
 * the bytes of the stream it used. */
static size_t
decompress (enum qcow2_compression type, const unsigned char *in, size_t avail,
            unsigned char *out, size_t cs)
{
  if (type == QCOW2_COMPRESSION_ZSTD) {
    size_t used = ZSTD_findFrameCompressedSize (in, avail);
    size_t r;

    assert_false (ZSTD_isError (used));
    r = ZSTD_decompress (out, cs, in, used);
    assert_false (ZSTD_isError (r));
    assert_int_equal (r, cs);
    return used;
  }
  else {
    z_stream z;

    memset (&z, 0, sizeof z);
    assert_int_equal (inflateInit2 (&z, -12), Z_OK);
    z.next_in = (Bytef *) in;
    z.avail_in = (uInt) avail;
    z.next_out = out;
    z.avail_out = (uInt) cs;
    assert_int_equal (inflate (&z, Z_FINISH), Z_STREAM_END);
    assert_int_equal (z.total_out, cs);
    inflateEnd (&z);
    return z.total_in;
  }
}

/* qemu-img convert -c writes an image of the mixed disk; we write one
 * through the pipeline.  Every compressed descriptor of qemu-img's image
 * is what qcow2_l2_compressed_entry encodes for the same place and
 * length, its data decompresses to the source, and both images
 * compress the same clusters (qemu-img map shows no offset for them). */
static void
descriptors_match_qemu_img (enum qcow2_compression type, const char *name)
{
  struct qcow2_pipeline_options po = { .compress = true, .threads = 2 };
  size_t n = sizeof mixed / sizeof mixed[0];
  uint64_t vs = pieces_size (mixed, n), cs = 64 * KiB, g, compressed = 0;
  char qpath[PATH_MAX], file[256], ctype[64];
  struct cluster_map *ours, *theirs;
  unsigned char *raw = malloc (cs), *stream = malloc (cs + 1024),
                *plain = malloc (cs);
  struct target t;
  int qfd, rfd;

  need_qemu_img ();
  assert_true (raw && stream && plain);
  target_start (&t, name, vs, type, &po);
  target_write (&t, mixed, n, 256 * KiB, 11);
  target_finish (&t, NULL);

  snprintf (file, sizeof file, "%s-qemu.qcow2", name);
  tmp_path (qpath, sizeof qpath, file);
  snprintf (ctype, sizeof ctype, "compression_type=%s",
            qcow2_compression_name (type));
  {
    const char *argv[] = { "qemu-img", "convert", "-c",  "-f",  "raw", "-O",
                           "qcow2",    "-o",      ctype, t.ref, qpath, NULL };
    run_ok (argv);
  }

  ours = qemu_map (t.path, vs, cs);
  theirs = qemu_map (qpath, vs, cs);
  qfd = open (qpath, O_RDONLY | O_CLOEXEC);
  rfd = open (t.ref, O_RDONLY | O_CLOEXEC);
  assert_true (qfd >= 0 && rfd >= 0);
  for (g = 0; g * cs < vs; g++) {
    uint64_t entry, host, extra, in_len;
    size_t avail, used;

    /* qemu-img leaves our zero clusters unallocated: both read zeros. */
    if (ours[g].zero && !ours[g].data)
      assert_true (theirs[g].zero);
    else if (memcmp (&ours[g], &theirs[g], sizeof ours[g]) != 0)
      fail_msg ("cluster %" PRIu64 ": ours data=%d offset=%d, qemu-img's "
                "data=%d offset=%d",
                g, ours[g].data, ours[g].has_offset, theirs[g].data,
                theirs[g].has_offset);
    entry = l2_entry (qfd, g);
    if (!(entry & QCOW2_OFLAG_COMPRESSED))
      continue;
    compressed++;
    assert_true (theirs[g].data && !theirs[g].has_offset);
    qcow2_compressed_entry_decode (16, entry, &host, &extra);
    /* The sectors the descriptor covers, from the first byte on. */
    avail = (size_t) ((extra + 1) * 512 - host % 512);
    assert_true (avail <= cs + 1024);
    assert_int_equal (pread (qfd, stream, avail, (off_t) host),
                      (ssize_t) avail);
    used = decompress (type, stream, avail, plain, cs);
    in_len = vs - g * cs < cs ? vs - g * cs : cs;
    memset (raw, 0, cs);
    assert_int_equal (pread (rfd, raw, in_len, (off_t) (g * cs)),
                      (ssize_t) in_len);
    assert_memory_equal (plain, raw, cs);
    /* Our encoding of the same place and length is qemu-img's entry. */
    assert_int_equal (qcow2_l2_compressed_entry (16, host, used), entry);
  }
  assert_int_equal (compressed, 16 + 1 + 1 + 1 + 12 + 1);
  {
    struct stat a, b;

    assert_int_equal (stat (t.path, &a), 0);
    assert_int_equal (stat (qpath, &b), 0);
    print_message ("%s: %lld bytes, qemu-img %lld\n", name,
                   (long long) a.st_size, (long long) b.st_size);
    assert_true (a.st_size <= b.st_size);
  }
  close (qfd);
  close (rfd);
  free (ours);
  free (theirs);
  free (raw);
  free (stream);
  free (plain);
}

static void
zstd_descriptors_match_qemu_img (void **state)
{
  descriptors_match_qemu_img (QCOW2_COMPRESSION_ZSTD, "desc-zstd");
}

static void
zlib_descriptors_match_qemu_img (void **state)
{
  descriptors_match_qemu_img (QCOW2_COMPRESSION_ZLIB, "desc-zlib");
}

/* ==== the reader ==== */

/* An overlay qemu-io writes data, zeros and leaves holes in: the reader
 * sees what qemu-img map sees of the top image, and reads its data. */
static void
reader_agrees_with_qemu_img_map (void **state)
{
  char base[PATH_MAX], top[PATH_MAX], raw[PATH_MAX];
  const char *create_base[]
    = { "qemu-img", "create", "-q", "-f", "qcow2", base, "8M", NULL };
  const char *create_top[]
    = { "qemu-img", "create", "-q",    "-f", "qcow2", "-b",
        base,       "-F",     "qcow2", top,  NULL };
  const char *io_base[]
    = { "qemu-io", "-f", "qcow2", "-c", "write -P 0x11 0 8M", base, NULL };
  const char *io_top[] = { "qemu-io",
                           "-f",
                           "qcow2",
                           "-c",
                           "write -P 0x22 64k 192k",
                           "-c",
                           "write -z 1M 128k",
                           "-c",
                           "write -P 0x33 2M 64k",
                           "-c",
                           "write -P 0x44 8128k 64k",
                           "-c",
                           "write -z 4M 64k",
                           top,
                           NULL };
  const char *to_raw[]
    = { "qemu-img", "convert", "-f", "qcow2", "-O", "raw", top, raw, NULL };
  uint64_t cs = 64 * KiB, vs = 8 * MiB, off = 0;
  struct cluster_map *m;
  struct qcow2_reader *r;
  unsigned char *buf = malloc (1 * MiB), *want = malloc (1 * MiB);
  int fd, rfd;
  size_t data = 0, zero = 0;

  need_qemu_img ();
  tmp_path (base, sizeof base, "rbase.qcow2");
  tmp_path (top, sizeof top, "rtop.qcow2");
  tmp_path (raw, sizeof raw, "rtop.raw");
  run_ok (create_base);
  run_ok (io_base);
  run_ok (create_top);
  run_ok (io_top);
  run_ok (to_raw);
  m = qemu_map (top, vs, cs);
  fd = open (top, O_RDONLY | O_CLOEXEC);
  rfd = open (raw, O_RDONLY | O_CLOEXEC);
  assert_true (fd >= 0 && rfd >= 0);
  r = qcow2_reader_new (fd);
  if (r == NULL)
    fail_msg ("qcow2_reader_new: %s", get_error ());
  assert_string_equal (qcow2_reader_info (r)->backing_file, base);
  while (off < vs) {
    struct qcow2_extent e;
    uint64_t g;

    assert_ok (qcow2_reader_map (r, off, 1 * MiB, &e));
    assert_int_equal (e.offset, off);
    assert_true (e.length > 0 && e.length <= 1 * MiB);
    for (g = off / cs; g < (off + e.length) / cs; g++) {
      switch (e.kind) {
      case QCOW2_EXTENT_UNALLOCATED:
        assert_false (m[g].present);
        break;
      case QCOW2_EXTENT_ZERO:
        assert_true (m[g].present && m[g].zero && !m[g].data);
        zero++;
        break;
      case QCOW2_EXTENT_DATA:
        assert_true (m[g].present && m[g].data && m[g].has_offset);
        data++;
        break;
      case QCOW2_EXTENT_COMPRESSED:
        fail_msg ("no cluster is compressed");
      }
    }
    if (e.kind == QCOW2_EXTENT_DATA) {
      assert_ok (qcow2_reader_read (r, &e, 0, buf, e.length));
      assert_int_equal (pread (rfd, want, e.length, (off_t) off),
                        (ssize_t) e.length);
      assert_memory_equal (buf, want, e.length);
    }
    off += e.length;
  }
  assert_int_equal (data, 3 + 1 + 1);
  assert_int_equal (zero, 2 + 1);
  qcow2_reader_free (r);
  close (fd);
  close (rfd);
  free (m);
  free (buf);
  free (want);
}

/* The reader sees qemu-img's compressed clusters as such. */
static void
reader_sees_compressed_clusters (void **state)
{
  struct qcow2_pipeline_options po = { .compress = true, .threads = 2 };
  static const struct piece pcs[] = {
    { P_TEXT, 128 * KiB },
    { P_RANDOM, 128 * KiB },
    { P_HOLE, 128 * KiB },
    { P_ZERO, 128 * KiB },
  };
  enum qcow2_extent_kind want[] = {
    QCOW2_EXTENT_COMPRESSED,  QCOW2_EXTENT_COMPRESSED, QCOW2_EXTENT_DATA,
    QCOW2_EXTENT_UNALLOCATED, QCOW2_EXTENT_ZERO,
  };
  uint64_t lens[] = { 64 * KiB, 64 * KiB, 128 * KiB, 128 * KiB, 128 * KiB };
  struct target t;
  struct qcow2_reader *r;
  uint64_t off = 0;
  size_t i;
  int fd;

  target_start (&t, "rcomp", pieces_size (pcs, 4), QCOW2_COMPRESSION_ZSTD, &po);
  target_write (&t, pcs, 4, 256 * KiB, 1);
  target_finish (&t, NULL);
  fd = open (t.path, O_RDONLY | O_CLOEXEC);
  r = qcow2_reader_new (fd);
  assert_non_null (r);
  assert_int_equal (qcow2_reader_info (r)->compression, QCOW2_COMPRESSION_ZSTD);
  for (i = 0; i < 5; i++) {
    struct qcow2_extent e;

    assert_ok (qcow2_reader_map (r, off, 1 * MiB, &e));
    assert_int_equal (e.kind, want[i]);
    assert_int_equal (e.length, lens[i]);
    off += e.length;
  }
  assert_int_equal (off, pieces_size (pcs, 4));
  qcow2_reader_free (r);
  close (fd);
}

/* A table entry pointing outside the file is an error, not a crash. */
static void
reader_refuses_corrupt_tables (void **state)
{
  struct qcow2_pipeline_options po = { .compress = false };
  static const struct piece pcs[] = { { P_RANDOM, 256 * KiB } };
  struct target t;
  struct qcow2_reader *r;
  struct qcow2_extent e;
  unsigned char h[QCOW2_HEADER_LENGTH], b[8];
  uint64_t l1_off, l2_off;
  int fd;

  target_start (&t, "corrupt", 256 * KiB, QCOW2_COMPRESSION_ZLIB, &po);
  target_write (&t, pcs, 1, 256 * KiB, 1);
  target_finish (&t, NULL);
  fd = open (t.path, O_RDWR | O_CLOEXEC);
  assert_int_equal (pread (fd, h, sizeof h, 0), sizeof h);
  l1_off = qcow2_get_be64 (h + QCOW2_OFF_L1_TABLE_OFFSET);
  assert_int_equal (pread (fd, b, 8, (off_t) l1_off), 8);
  l2_off = qcow2_get_be64 (b) & QCOW2_OFFSET_MASK;
  /* Cluster 1's data far past the end of the file. */
  qcow2_put_be64 (b, QCOW2_OFLAG_COPIED | (UINT64_C (1) << 40));
  assert_int_equal (pwrite (fd, b, 8, (off_t) (l2_off + 8)), 8);
  r = qcow2_reader_new (fd);
  assert_non_null (r);
  assert_int_equal (qcow2_reader_map (r, 0, 1 * MiB, &e), -1);
  assert_contains (get_error (), "guest offset 65536");
  assert_contains (get_error (), "not a cluster inside the file");
  qcow2_reader_free (r);
  /* Reserved bits in the L1 entry. */
  qcow2_put_be64 (b, l2_off | 0x2);
  assert_int_equal (pwrite (fd, b, 8, (off_t) l1_off), 8);
  r = qcow2_reader_new (fd);
  assert_non_null (r);
  assert_int_equal (qcow2_reader_map (r, 0, 1 * MiB, &e), -1);
  assert_contains (get_error (), "reserved bits");
  qcow2_reader_free (r);
  close (fd);
}

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

  snprintf (tmpdir, sizeof tmpdir, "%s/knib-pipeline.XXXXXX", base);
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

/* ---- writes in flight (aio.c) ---- */

/* Writes queued back to front all land, whatever order they complete
 * in, and a ticket is done only once every write before it is. */
static void
writes_in_flight_land_in_any_order (void **state)
{
  enum { N = 12, LEN = 64 * 1024 };
  char path[PATH_MAX];
  static unsigned char data[N][LEN], back[LEN];
  struct qcow2_aio *a;
  uint64_t t;
  int fd;

  (void) state;
  tmp_path (path, sizeof path, "aio.raw");
  fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  assert_true (fd >= 0);
  a = qcow2_aio_new (fd, 4);
  assert_non_null (a);
  assert_int_equal (qcow2_aio_ticket (a), 0);
  assert_int_equal (qcow2_aio_wait (a, 0, false), 1);
  for (int i = N - 1; i >= 0; i--) {
    struct iovec v[2]
      = { { data[i], LEN / 2 }, { data[i] + LEN / 2, LEN / 2 } };

    memset (data[i], 'a' + i, LEN);
    assert_ok (qcow2_aio_submit (a, v, 2, LEN, (uint64_t) i * LEN));
  }
  t = qcow2_aio_ticket (a);
  assert_int_equal (t, N);
  assert_int_equal (qcow2_aio_wait (a, t, true), 1);
  for (int i = 0; i < N; i++) {
    assert_int_equal (pread (fd, back, LEN, (off_t) i * LEN), LEN);
    assert_memory_equal (back, data[i], LEN);
  }
  qcow2_aio_free (a);
  close (fd);
  unlink (path);
}

/* A write that fails says which and why, frees its memory, and every
 * later submit repeats the error. */
static void
failed_write_in_flight_fails_what_follows (void **state)
{
  static unsigned char buf[4096];
  struct iovec v = { buf, sizeof buf };
  char path[PATH_MAX];
  struct qcow2_aio *a;
  int fd, r;

  (void) state;
  tmp_path (path, sizeof path, "aio-ro.raw");
  fd = open (path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  assert_true (fd >= 0);
  close (fd);
  fd = open (path, O_RDONLY | O_CLOEXEC); /* every write fails: EBADF */
  assert_true (fd >= 0);
  a = qcow2_aio_new (fd, 2);
  assert_non_null (a);
  assert_ok (qcow2_aio_submit (a, &v, 1, sizeof buf, 8192));
  assert_int_equal (qcow2_aio_wait (a, qcow2_aio_ticket (a), true), -1);
  assert_int_equal (get_errno (), EBADF);
  assert_contains (get_error (), "write at file offset 8192");
  error_clear ();
  r = qcow2_aio_submit (a, &v, 1, sizeof buf, 0);
  assert_int_equal (r, -1);
  assert_contains (get_error (), "write at file offset 8192");
  assert_null (qcow2_aio_new (fd, QCOW2_AIO_MAX_DEPTH + 1));
  qcow2_aio_free (a);
  close (fd);
  unlink (path);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (zstd_mixed_disk_one_thread),
    cmocka_unit_test (zstd_mixed_disk_four_threads),
    cmocka_unit_test (zlib_mixed_disk_one_thread),
    cmocka_unit_test (zlib_mixed_disk_three_threads),
    cmocka_unit_test (short_last_cluster_of_random_data),
    cmocka_unit_test (alternating_clusters_share_host_clusters),
    cmocka_unit_test (no_compression_passes_through),
    cmocka_unit_test (memory_is_bounded_by_the_slots),
    cmocka_unit_test (invalid_options_are_refused),
    cmocka_unit_test (worker_error_propagates),
    cmocka_unit_test (writer_error_propagates),
    cmocka_unit_test (writes_in_flight_land_in_any_order),
    cmocka_unit_test (failed_write_in_flight_fails_what_follows),
    cmocka_unit_test (rate_limit_caps_written_bytes),
    cmocka_unit_test (zstd_descriptors_match_qemu_img),
    cmocka_unit_test (zlib_descriptors_match_qemu_img),
    cmocka_unit_test (reader_agrees_with_qemu_img_map),
    cmocka_unit_test (reader_sees_compressed_clusters),
    cmocka_unit_test (reader_refuses_corrupt_tables),
  };

  if (getenv ("TEST_FILTER") != NULL)
    cmocka_set_test_filter (getenv ("TEST_FILTER"));
  return cmocka_run_group_tests (tests, setup, teardown);
}
