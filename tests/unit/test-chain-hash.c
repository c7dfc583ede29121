/* SPDX-License-Identifier: Apache-2.0 */
/* test-chain-hash.c: image hashes against values from another tool. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "chain/internal.h"
#include "common/cleanup.h"
#include "common/digest.h"
#include "common/error.h"

/* The expected values were computed with the xxhsum tool of Debian's
 * xxhash package (0.8.1), "xxhsum -H2 FILE", which prints the canonical
 * (big-endian) XXH3-128 of the file: independent of knib's code.  The
 * empty input's value is also the well-known XXH3-128 of nothing.
 *
 *   printf '' > e.bin; printf 'knib' > k.bin
 *   head -c 3000000 /dev/zero | tr '\0' 'a' > big.bin
 *   xxhsum -H2 e.bin k.bin big.bin */
#define HASH_EMPTY "99aa06d3014798d86001c324468d497f"
#define HASH_KNIB "51750505550e6335c21cbd30b2cc1584"
#define HASH_BIG "9220778898dfe2af488fe7c89469a712"

/* The segmented digest (common/digest.h), from the same tool: cut the
 * file into 4 MiB pieces, xxhsum -H2 each, write the hex values as bytes
 * one after the other, and xxhsum -H2 that.  No segment: the empty
 * input's value.  HUGE is 9 MiB of 'a' (three segments).
 *
 *   split -b 4194304 -a 3 FILE part.
 *   for p in part.*; do xxhsum -H2 $p | cut -d' ' -f1; done \
 *     | (convert the hex lines to bytes) > sums.bin; xxhsum -H2 sums.bin */
#define SEG_EMPTY HASH_EMPTY
#define SEG_KNIB "18c1be7247fb7ab665e08b2e90d61cf7"
#define SEG_HUGE "53ce8bd368217fcab68edb1532571eba"
#define HUGE_LEN (9u * 1024 * 1024)

static char *
write_temp (const void *data, size_t len)
{
  const char *tmp = getenv ("TMPDIR");
  char *path;
  int fd;

  assert_true (asprintf (&path, "%s/knib-hash-XXXXXX", tmp ? tmp : "/tmp") > 0);
  fd = mkstemp (path);
  assert_true (fd >= 0);
  assert_int_equal (write (fd, data, len), (ssize_t) len);
  assert_int_equal (close (fd), 0);
  return path;
}

static void
check_kind (const void *data, size_t len, enum chain_hash_kind kind,
            const char *want)
{
  CLEANUP_FREE char *path = write_temp (data, len);
  char hex[CHAIN_HASH_HEX_LEN + 1];

  assert_int_equal (chain_hash_file (path, kind, hex), 0);
  assert_string_equal (hex, want);
  unlink (path);
}

static void
check (const void *data, size_t len, const char *want)
{
  check_kind (data, len, CHAIN_HASH_WHOLE, want);
}

static void
test_hash_empty (void **state)
{
  check ("", 0, HASH_EMPTY);
}

static void
test_hash_short (void **state)
{
  check ("knib", 4, HASH_KNIB);
}

/* Longer than the 1 MiB read size, not a multiple of it. */
static void
test_hash_several_reads (void **state)
{
  const size_t n = 3000000;
  CLEANUP_FREE char *data = malloc (n);

  assert_non_null (data);
  memset (data, 'a', n);
  check (data, n, HASH_BIG);
}

static void
test_segments_known (void **state)
{
  CLEANUP_FREE char *data = malloc (HUGE_LEN);

  assert_non_null (data);
  memset (data, 'a', HUGE_LEN);
  check_kind ("", 0, CHAIN_HASH_SEGMENTS, SEG_EMPTY);
  check_kind ("knib", 4, CHAIN_HASH_SEGMENTS, SEG_KNIB);
  check_kind (data, HUGE_LEN, CHAIN_HASH_SEGMENTS, SEG_HUGE);
}

/* A writer's write: to the file, then to the digest. */
static void
written (int fd, struct digest *d, const void *buf, size_t len, uint64_t off)
{
  assert_int_equal (pwrite (fd, buf, len, (off_t) off), (ssize_t) len);
  assert_int_equal (digest_wrote (d, buf, len, off), 0);
}

/* The digest of the file of size bytes, having read want_reread segments
 * back, equals the file's; d, fd and the file at path go. */
static void
check_finished (struct digest *d, int fd, const char *path, uint64_t size,
                uint64_t want_reread)
{
  char hex[DIGEST_HEX_LEN + 1], want[DIGEST_HEX_LEN + 1];

  assert_int_equal (digest_finish (d, fd, size, hex), 0);
  assert_int_equal (digest_reread (d), want_reread);
  digest_free (d);
  assert_int_equal (digest_fd (fd, want), 0);
  assert_string_equal (hex, want);
  assert_int_equal (close (fd), 0);
  unlink (path);
}

/* A writer's way: a gap left as a hole, the first bytes written last, a
 * range written twice, and the end never written (a hole up to the
 * size).  The digest follows the writes and reads back only what was
 * written out of order; it equals the file's. */
static void
test_segments_while_writing (void **state)
{
  const uint64_t seg = DIGEST_SEGMENT;
  CLEANUP_FREE unsigned char *a = malloc (seg), *b = malloc (seg);
  CLEANUP_FREE char *path = write_temp ("", 0);
  struct digest *d = digest_new ();
  int fd = open (path, O_RDWR);

  assert_non_null (a);
  assert_non_null (b);
  assert_non_null (d);
  assert_true (fd >= 0);
  for (uint64_t i = 0; i < seg; i++) {
    a[i] = (unsigned char) (i * 7 + 1);
    b[i] = (unsigned char) (i * 13 + 5);
  }
#define WRITE(buf, len, off) written (fd, d, buf, len, off)
  WRITE (a, seg, 65536);       /* [0, 64k) stays a hole for now */
  WRITE (b, seg / 2, 3 * seg); /* a hole of a segment before it */
  WRITE (a, seg, 3 * seg + seg / 2);
  WRITE (b, 4096, seg + 100); /* rewritten: read back */
  WRITE (b, 512, 0);          /* the header, last */
#undef WRITE
  assert_int_equal (ftruncate (fd, 6 * seg + 12345), 0);
  check_finished (d, fd, path, 6 * seg + 12345, 2);
}

/* An image's end: digest_hold, a table reserved (a hole), blocks after
 * it, then the table written behind them.  Only the header's segment is
 * read back; a hold that grows past DIGEST_HOLD_MAX falls back to reading
 * back.  Either way the digest equals the file's. */
static void
check_hold (uint64_t tail, uint64_t want_reread)
{
  const uint64_t seg = DIGEST_SEGMENT;
  /* The hold starts mid-segment; the table's second half is in the next. */
  const uint64_t start = 3 * seg - 32768;
  const uint64_t n = (tail > seg ? tail : seg) + 16;
  CLEANUP_FREE unsigned char *a = malloc (n);
  CLEANUP_FREE char *path = write_temp ("", 0);
  struct digest *d = digest_new ();
  int fd = open (path, O_RDWR);

  assert_non_null (a);
  assert_non_null (d);
  assert_true (fd >= 0);
  for (uint64_t i = 0; i < n; i++)
    a[i] = (unsigned char) (i * 11 + 3);
#define WRITE(buf, len, off) written (fd, d, buf, len, off)
  WRITE (a, seg, 65536);
  WRITE (a + 1, seg, start - seg);
  digest_hold (d);
  assert_int_equal (digest_wrote (d, NULL, 65536, start), 0); /* reserved */
  WRITE (a + 2, tail - 65536, start + 65536 + 4096);          /* after a gap */
  WRITE (a + 5, 32768, start + 32768);                        /* the table */
  WRITE (a + 7, 4096, start - 1024); /* across the hold's start */
  WRITE (a + 9, 512, 0);             /* the header */
#undef WRITE
  check_finished (d, fd, path, start + tail + 4096, want_reread);
}

static void
test_segments_hold (void **state)
{
  /* Segment 0 (the header) and segment 2 (the write across the hold's
   * start); the table's segment 3 is not read back. */
  check_hold (3 * 65536, 2);
  /* Past DIGEST_HOLD_MAX: the table's segments are read back too. */
  check_hold (DIGEST_HOLD_MAX + 65536, 3);
}

static void
test_hash_missing_file (void **state)
{
  char hex[CHAIN_HASH_HEX_LEN + 1];

  assert_int_equal (
    chain_hash_file ("/knib/no/such/image.qcow2", CHAIN_HASH_WHOLE, hex), -1);
  assert_string_equal (get_error (), "cannot open '/knib/no/such/image.qcow2' "
                                     "to hash it: No such file or directory");
}

static void
test_hash_directory (void **state)
{
  char hex[CHAIN_HASH_HEX_LEN + 1];

  assert_int_equal (chain_hash_file ("/", CHAIN_HASH_SEGMENTS, hex), -1);
  assert_string_equal (get_error (), "hash of '/': read at 0: Is a directory");
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_hash_empty),
    cmocka_unit_test (test_hash_short),
    cmocka_unit_test (test_hash_several_reads),
    cmocka_unit_test (test_segments_known),
    cmocka_unit_test (test_segments_while_writing),
    cmocka_unit_test (test_segments_hold),
    cmocka_unit_test (test_hash_missing_file),
    cmocka_unit_test (test_hash_directory),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
