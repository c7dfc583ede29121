/* SPDX-License-Identifier: Apache-2.0 */
/* test-chain-hash.c: image hashes against values from another tool. */
#include <config.h>

#include <errno.h>
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
check (const void *data, size_t len, const char *want)
{
  CLEANUP_FREE char *path = write_temp (data, len);
  char hex[CHAIN_HASH_HEX_LEN + 1];

  assert_int_equal (chain_hash_file (path, hex), 0);
  assert_string_equal (hex, want);
  unlink (path);
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
test_hash_missing_file (void **state)
{
  char hex[CHAIN_HASH_HEX_LEN + 1];

  assert_int_equal (chain_hash_file ("/knib/no/such/image.qcow2", hex), -1);
  assert_string_equal (get_error (), "cannot open '/knib/no/such/image.qcow2' "
                                     "to hash it: No such file or directory");
}

static void
test_hash_directory (void **state)
{
  char hex[CHAIN_HASH_HEX_LEN + 1];

  assert_int_equal (chain_hash_file ("/", hex), -1);
  assert_string_equal (get_error (), "hash of '/': read at 0: Is a directory");
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_hash_empty),
    cmocka_unit_test (test_hash_short),
    cmocka_unit_test (test_hash_several_reads),
    cmocka_unit_test (test_hash_missing_file),
    cmocka_unit_test (test_hash_directory),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
