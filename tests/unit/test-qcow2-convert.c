/* SPDX-License-Identifier: Apache-2.0 */
/* test-qcow2-convert.c: raw to qcow2 through the writer, for qcow2-*.sh and timing. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "qcow2/qcow2.h"

/* Bytes read from the raw file at a time. */
#define CHUNK (4u * 1024 * 1024)

static void
usage (void)
{
  fprintf (
    stderr,
    "usage: test-qcow2-convert [-c CLUSTER_SIZE] [-z zlib|zstd] [-b BACKING [-F FORMAT]]\n"
    "                          [-d PREVIOUS_RAW] [-o buffered|drop|direct] [-D]\n"
    "                          [-t] RAW QCOW2\n"
    "Clusters of zeros stay unallocated; with -d only the clusters that\n"
    "differ from PREVIOUS_RAW are written (zeros as zero clusters), like\n"
    "an incremental backup.  -o says how the image is written; the way\n"
    "used is printed (\"io: ...\").  -D prints the digest computed while\n"
    "writing (\"digest: HEX\").  -t prints the time taken.\n");
  exit (2);
}

static void
die (const char *what)
{
  fprintf (stderr, "test-qcow2-convert: %s: %s\n", what, get_error ());
  exit (1);
}

static void
die_errno (const char *what)
{
  fprintf (stderr, "test-qcow2-convert: %s: %s\n", what, strerror (errno));
  exit (1);
}

static bool
is_zero (const unsigned char *p, size_t len)
{
  return p[0] == 0 && memcmp (p, p + 1, len - 1) == 0;
}

static size_t
read_full (int fd, unsigned char *buf, size_t len, uint64_t off)
{
  size_t got = 0;

  while (got < len) {
    ssize_t n = pread (fd, buf + got, len - got, (off_t) (off + got));

    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1)
      die_errno ("read");
    if (n == 0)
      break;
    got += (size_t) n;
  }
  return got;
}

struct converter {
  struct qcow2_writer *w;
  struct qcow2_compressor *comp;
  size_t cs;
  unsigned char *cbuf;
  /* A run of raw clusters not yet handed to the writer. */
  uint64_t run_start;
  size_t run_len;
  const unsigned char *run_buf;
};

static void
flush_run (struct converter *c)
{
  if (c->run_len > 0
      && qcow2_writer_write (c->w, c->run_start, c->run_buf, c->run_len) == -1)
    die ("write");
  c->run_len = 0;
}

static void
store (struct converter *c, uint64_t off, const unsigned char *p, size_t len)
{
  ssize_t clen = 0;

  if (c->comp != NULL) {
    /* The compressor takes whole clusters: pad the disk's last one. */
    if (len < c->cs) {
      unsigned char *pad = calloc (1, c->cs);

      if (pad == NULL)
        die_errno ("calloc");
      memcpy (pad, p, len);
      clen = qcow2_compressor_compress (c->comp, pad, c->cbuf, c->cs);
      free (pad);
    }
    else
      clen = qcow2_compressor_compress (c->comp, p, c->cbuf, c->cs);
    if (clen == -1)
      die ("compress");
  }
  if (clen > 0) {
    flush_run (c);
    if (qcow2_writer_write_compressed (c->w, off, c->cbuf, (size_t) clen) == -1)
      die ("write compressed");
    return;
  }
  if (c->run_len > 0 && c->run_start + c->run_len == off) {
    c->run_len += len;
    return;
  }
  flush_run (c);
  c->run_start = off;
  c->run_buf = p;
  c->run_len = len;
}

int
main (int argc, char **argv)
{
  struct qcow2_writer_options o = { 0 };
  struct qcow2_writer_stats st;
  struct converter c = { 0 };
  const char *prev = NULL, *compress = NULL;
  bool timing = false;
  unsigned char *buf, *pbuf = NULL;
  int opt, in, out, pfd = -1;
  struct stat sb;
  struct timespec t0, t1;
  uint64_t off;
  double secs;

  while ((opt = getopt (argc, argv, "c:z:b:F:d:o:Dt")) != -1) {
    switch (opt) {
    case 'c':
      o.cluster_size = (uint32_t) strtoul (optarg, NULL, 0);
      break;
    case 'z':
      compress = optarg;
      break;
    case 'b':
      o.backing_file = optarg;
      break;
    case 'F':
      o.backing_format = optarg;
      break;
    case 'd':
      prev = optarg;
      break;
    case 'o':
      if (strcmp (optarg, "buffered") == 0)
        o.io = QCOW2_IO_BUFFERED;
      else if (strcmp (optarg, "drop") == 0)
        o.io = QCOW2_IO_DROP;
      else if (strcmp (optarg, "direct") == 0)
        o.io = QCOW2_IO_DIRECT;
      else
        usage ();
      break;
    case 'D':
      o.digest = true;
      break;
    case 't':
      timing = true;
      break;
    default:
      usage ();
    }
  }
  if (argc - optind != 2)
    usage ();
  if (compress != NULL && strcmp (compress, "zstd") == 0)
    o.compression = QCOW2_COMPRESSION_ZSTD;
  else if (compress != NULL && strcmp (compress, "zlib") != 0)
    usage ();

  clock_gettime (CLOCK_MONOTONIC, &t0);
  in = open (argv[optind], O_RDONLY | O_CLOEXEC);
  if (in == -1 || fstat (in, &sb) == -1)
    die_errno (argv[optind]);
  if (prev != NULL && (pfd = open (prev, O_RDONLY | O_CLOEXEC)) == -1)
    die_errno (prev);
  out = open (argv[optind + 1], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out == -1)
    die_errno (argv[optind + 1]);
  o.virtual_size = (uint64_t) sb.st_size;
  c.w = qcow2_writer_new (out, &o);
  if (c.w == NULL)
    die ("qcow2_writer_new");
  c.cs = qcow2_writer_cluster_size (c.w);
  if (compress != NULL) {
    c.comp = qcow2_compressor_new (o.compression, (uint32_t) c.cs, 0);
    c.cbuf = malloc (c.cs);
    if (c.comp == NULL || c.cbuf == NULL)
      die ("qcow2_compressor_new");
  }
  /* Aligned: long runs go to the file straight from it. */
  if (posix_memalign ((void **) &buf, 4096, CHUNK) != 0)
    buf = NULL;
  if (prev != NULL)
    pbuf = malloc (CHUNK);
  if (buf == NULL || (prev != NULL && pbuf == NULL))
    die_errno ("malloc");

  for (off = 0; off < o.virtual_size; off += CHUNK) {
    size_t len = read_full (in, buf, CHUNK, off), i;

    if (pbuf != NULL) {
      size_t plen = read_full (pfd, pbuf, CHUNK, off);

      memset (pbuf + plen, 0, CHUNK - plen);
    }
    for (i = 0; i < len; i += c.cs) {
      size_t n = len - i < c.cs ? len - i : c.cs;
      bool zero = is_zero (buf + i, n);

      if (pbuf != NULL && memcmp (buf + i, pbuf + i, n) == 0)
        continue; /* not dirty */
      if (zero && pbuf != NULL) {
        flush_run (&c);
        if (qcow2_writer_zero (c.w, off + i, n) == -1)
          die ("zero");
      }
      else if (!zero)
        store (&c, off + i, buf + i, n);
    }
    flush_run (&c); /* the buffer is reused */
  }
  if (qcow2_writer_finish (c.w) == -1)
    die ("finish");
  printf ("io: %s\n", qcow2_io_name (qcow2_writer_io (c.w)));
  if (o.digest) {
    char hex[DIGEST_HEX_LEN + 1];

    if (qcow2_writer_digest (c.w, hex) == -1)
      die ("digest");
    printf ("digest: %s\n", hex);
  }
  clock_gettime (CLOCK_MONOTONIC, &t1);
  qcow2_writer_get_stats (c.w, &st);
  if (timing) {
    secs = (double) (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf (
      stderr,
      "%" PRIu64 " bytes in %.2f s (%.0f MiB/s): %" PRIu64 " data, %" PRIu64
      " compressed, %" PRIu64 " zero clusters; image %" PRIu64 " bytes\n",
      o.virtual_size, secs, o.virtual_size / secs / 1048576, st.data_clusters,
      st.compressed_clusters, st.zero_clusters, st.file_size);
  }
  qcow2_writer_free (c.w);
  qcow2_compressor_free (c.comp);
  if (close (out) == -1)
    die_errno ("close");
  close (in);
  if (pfd != -1)
    close (pfd);
  free (buf);
  free (pbuf);
  free (c.cbuf);
  return 0;
}
