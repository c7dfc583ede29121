/* SPDX-License-Identifier: Apache-2.0 */
/* hash.c: the hashes of image files, as recorded in manifests. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/digest.h"
#include "common/error.h"
#include "internal.h"

int
chain_hash_fd (int fd, enum chain_hash_kind kind,
               char hex[CHAIN_HASH_HEX_LEN + 1])
{
  switch (kind) {
  case CHAIN_HASH_SEGMENTS:
    return digest_fd (fd, hex);
  case CHAIN_HASH_WHOLE:
    return digest_fd_whole (fd, hex);
  }
  set_error (EINVAL, "unknown hash kind %d", (int) kind);
  return -1;
}

int
chain_hash_file (const char *path, enum chain_hash_kind kind,
                 char hex[CHAIN_HASH_HEX_LEN + 1])
{
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_CLOEXEC);

  if (fd == -1) {
    set_error (errno, "cannot open '%s' to hash it", path);
    return -1;
  }
  if (chain_hash_fd (fd, kind, hex) == -1) {
    error_prepend ("hash of '%s'", path);
    return -1;
  }
  return 0;
}
