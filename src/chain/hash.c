/* SPDX-License-Identifier: Apache-2.0 */
/* hash.c: xxh3-128 of image files, as recorded in manifests. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <xxhash.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "internal.h"

#define HASH_CHUNK (1024 * 1024)

int
chain_hash_fd (int fd, char hex[CHAIN_HASH_HEX_LEN + 1])
{
  CLEANUP_FREE char *buf = malloc (HASH_CHUNK);
  XXH3_state_t *state = XXH3_createState ();
  XXH128_canonical_t canon;
  off_t pos = 0;
  ssize_t n;

  if (buf == NULL || state == NULL) {
    XXH3_freeState (state);
    set_error (ENOMEM, "hash");
    return -1;
  }
  XXH3_128bits_reset (state);
  posix_fadvise (fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  while ((n = pread (fd, buf, HASH_CHUNK, pos)) != 0) {
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      int e = errno;
      XXH3_freeState (state);
      set_error (e, "read at %lld", (long long) pos);
      return -1;
    }
    XXH3_128bits_update (state, buf, n);
    pos += n;
  }
  /* The image was just written or is only checked: leave no copy of it
   * in the page cache (clean pages go at once). */
  posix_fadvise (fd, 0, 0, POSIX_FADV_DONTNEED);
  XXH128_canonicalFromHash (&canon, XXH3_128bits_digest (state));
  XXH3_freeState (state);
  for (size_t i = 0; i < sizeof canon.digest; i++)
    snprintf (hex + 2 * i, 3, "%02x", canon.digest[i]);
  return 0;
}

int
chain_hash_file (const char *path, char hex[CHAIN_HASH_HEX_LEN + 1])
{
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd == -1) {
    set_error (errno, "cannot open '%s' to hash it", path);
    return -1;
  }
  if (chain_hash_fd (fd, hex) == -1) {
    error_prepend ("hash of '%s'", path);
    return -1;
  }
  return 0;
}
