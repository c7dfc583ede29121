/* SPDX-License-Identifier: Apache-2.0 */
/* test-nbd-reader.c: drive src/nbd against a real server for tests/nbd-*.sh. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"
#include "nbd/nbd.h"

static const char usage[]
  = "usage: test-nbd-reader [options] SOCKET EXPORT\n"
    "  -b NAME     incremental: read the dirty clusters of bitmap NAME\n"
    "  -c BYTES    cluster size (default 65536)\n"
    "  -C N        connections (multi-conn)\n"
    "  -r N        requests in flight\n"
    "  -s BYTES    largest request\n"
    "  -w BYTES    block status window\n"
    "  -t MS       timeout\n"
    "  -o FILE     write DATA chunks into FILE at their offsets and zero\n"
    "              ZERO chunks (FILE is created, or its data kept)\n"
    "  -m FILE     list chunks as 'data|zero OFFSET LENGTH' lines\n"
    "  -p          plan only: list ranges on stdout, read nothing\n"
    "  -T N:FILE   create FILE once N bytes were delivered\n"
    "  -D MS       sleep MS after each chunk (a slow consumer)\n"
    "  -S          steal every buffer (and free it)\n"
    "  -v          debug output (KNIB_DEBUG=nbd)\n";

struct reader {
  int out_fd;
  FILE *map;
  uint64_t touch_after;
  const char *touch_file;
  bool touched;
  int delay_ms;
  bool steal;
  uint64_t delivered;
  uint64_t next_offset; /* chunks must come in order */
};

static int
pwrite_all (int fd, const void *buf, size_t len, uint64_t offset)
{
  const char *p = buf;
  ssize_t r;

  while (len > 0) {
    r = pwrite (fd, p, len, offset);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      set_error (errno, "write at %" PRIu64, offset);
      return -1;
    }
    p += r;
    len -= r;
    offset += r;
  }
  return 0;
}

static int
zero_range (int fd, uint64_t offset, uint64_t length)
{
  static const char zeroes[65536];
  size_t n;

  if (fallocate (fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)
      == 0)
    return 0;
  while (length > 0) {
    n = length < sizeof zeroes ? length : sizeof zeroes;
    if (pwrite_all (fd, zeroes, n, offset) == -1)
      return -1;
    offset += n;
    length -= n;
  }
  return 0;
}

static int
consume (void *opaque, struct nbd_chunk *chunk)
{
  struct reader *r = opaque;
  struct timespec ts;
  CLEANUP_FREE void *stolen = NULL;

  if (chunk->offset < r->next_offset) {
    set_error (EPROTO, "chunk at %" PRIu64 " arrived after %" PRIu64,
               chunk->offset, r->next_offset);
    return -1;
  }
  r->next_offset = chunk->offset + chunk->length;
  if (r->map)
    fprintf (r->map, "%s %" PRIu64 " %" PRIu64 "\n",
             chunk->kind == NBD_RANGE_DATA ? "data" : "zero", chunk->offset,
             chunk->length);
  if (r->out_fd >= 0) {
    switch (chunk->kind) {
    case NBD_RANGE_DATA:
      if (pwrite_all (r->out_fd, chunk->data, chunk->length, chunk->offset)
          == -1)
        return -1;
      break;
    case NBD_RANGE_ZERO:
      if (zero_range (r->out_fd, chunk->offset, chunk->length) == -1)
        return -1;
      break;
    }
  }
  if (r->steal && chunk->kind == NBD_RANGE_DATA)
    stolen = nbd_chunk_steal_data (chunk);

  r->delivered += chunk->length;
  if (r->touch_file && !r->touched && r->delivered >= r->touch_after) {
    int fd = open (r->touch_file, O_WRONLY | O_CREAT, 0600);
    if (fd >= 0)
      close (fd);
    r->touched = true;
  }
  if (r->delay_ms > 0) {
    ts.tv_sec = r->delay_ms / 1000;
    ts.tv_nsec = (long) (r->delay_ms % 1000) * 1000000;
    nanosleep (&ts, NULL);
  }
  return 0;
}

static int
print_range (void *opaque, const struct nbd_range *range)
{
  printf ("%s %" PRIu64 " %" PRIu64 "\n",
          range->kind == NBD_RANGE_DATA ? "data" : "zero", range->offset,
          range->length);
  return 0;
}

static int64_t
number (const char *what, const char *s, int64_t max)
{
  int64_t v;

  if (parse_int64 (what, s, 0, max, &v) == -1) {
    fprintf (stderr, "test-nbd-reader: %s\n", get_error ());
    exit (2);
  }
  return v;
}

static int
open_output (const char *path, uint64_t size)
{
  struct stat st;
  int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

  if (fd == -1 || fstat (fd, &st) == -1) {
    set_error (errno, "open '%s'", path);
    return -1;
  }
  if ((uint64_t) st.st_size < size && ftruncate (fd, size) == -1) {
    set_error (errno, "truncate '%s'", path);
    close (fd);
    return -1;
  }
  return fd;
}

int
main (int argc, char **argv)
{
  struct nbd_source_options so = { 0 };
  struct nbd_read_options ro = { 0 };
  struct nbd_copy_stats stats;
  struct reader r = { .out_fd = -1 };
  struct nbd_source *s;
  const char *out = NULL, *map = NULL;
  bool plan_only = false;
  char *colon;
  int c, rc;
  int64_t t0, ms;

  while ((c = getopt (argc, argv, "b:c:C:r:s:w:t:o:m:pT:D:Sv")) != -1) {
    switch (c) {
    case 'b':
      so.bitmap = optarg;
      break;
    case 'c':
      ro.cluster_size = number ("cluster size", optarg, UINT32_MAX);
      break;
    case 'C':
      so.connections = number ("connections", optarg, 1000);
      break;
    case 'r':
      ro.max_requests = number ("requests", optarg, 100000);
      break;
    case 's':
      ro.request_size = number ("request size", optarg, UINT32_MAX);
      break;
    case 'w':
      ro.window_size = number ("window", optarg, INT64_MAX);
      break;
    case 't':
      ro.timeout_ms = so.timeout_ms = number ("timeout", optarg, INT32_MAX);
      break;
    case 'o':
      out = optarg;
      break;
    case 'm':
      map = optarg;
      break;
    case 'p':
      plan_only = true;
      break;
    case 'T':
      colon = strchr (optarg, ':');
      if (colon == NULL) {
        fputs (usage, stderr);
        return 2;
      }
      *colon = '\0';
      r.touch_after = number ("-T bytes", optarg, INT64_MAX);
      r.touch_file = colon + 1;
      break;
    case 'D':
      r.delay_ms = number ("delay", optarg, 100000);
      break;
    case 'S':
      r.steal = true;
      break;
    case 'v':
      debug_set (DEBUG_NBD);
      break;
    default:
      fputs (usage, stderr);
      return 2;
    }
  }
  if (argc - optind != 2) {
    fputs (usage, stderr);
    return 2;
  }
  so.socket = argv[optind];
  so.export_name = argv[optind + 1];

  t0 = monotonic_ms ();
  s = nbd_source_connect (&so);
  if (s == NULL) {
    fprintf (stderr, "test-nbd-reader: %s\n", get_error ());
    return 1;
  }
  if (plan_only) {
    rc = nbd_source_plan (s, &ro, print_range, NULL);
    if (rc == -1)
      fprintf (stderr, "test-nbd-reader: %s\n", get_error ());
    nbd_source_free (s);
    return rc == 0 ? 0 : 1;
  }
  if (out) {
    r.out_fd = open_output (out, nbd_source_size (s));
    if (r.out_fd == -1) {
      fprintf (stderr, "test-nbd-reader: %s\n", get_error ());
      nbd_source_free (s);
      return 1;
    }
  }
  if (map && (r.map = fopen (map, "w")) == NULL) {
    fprintf (stderr, "test-nbd-reader: %s: %s\n", map, strerror (errno));
    nbd_source_free (s);
    return 1;
  }

  rc = nbd_source_copy (s, &ro, consume, &r, &stats);
  ms = monotonic_ms () - t0;
  if (rc == -1)
    fprintf (stderr, "test-nbd-reader: %s\n", get_error ());
  printf ("size %" PRIu64 " connections %u read %" PRIu64 " zero %" PRIu64
          " requests %" PRIu64 " windows %" PRIu64 " offset %" PRIu64
          " ms %" PRId64 "\n",
          nbd_source_size (s), nbd_source_connections (s), stats.bytes_read,
          stats.bytes_zero, stats.requests, stats.windows, stats.offset, ms);
  nbd_source_free (s);
  if (r.map && fclose (r.map) == EOF && rc == 0) {
    fprintf (stderr, "test-nbd-reader: %s: %s\n", map, strerror (errno));
    rc = -1;
  }
  if (r.out_fd >= 0 && close (r.out_fd) == -1 && rc == 0) {
    fprintf (stderr, "test-nbd-reader: %s: %s\n", out, strerror (errno));
    rc = -1;
  }
  return rc == 0 ? 0 : 1;
}
