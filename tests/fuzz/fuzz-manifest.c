/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-manifest.c: fuzz target: a backup's manifest.json, read as a file. */
#include <config.h>

#include <unistd.h>

#include "chain/internal.h"
#include "common/error.h"
#include "fuzz.h"

#define MAX_INPUT (64u * 1024)

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char path[FUZZ_FD_PATH_MAX];
  struct chain_manifest *m;
  int fd;

  if (size > MAX_INPUT)
    return 0;
  fd = fuzz_memfd (data, size);
  fuzz_fd_path (fd, path);
  m = chain_manifest_load (path);
  if (m != NULL) {
    /* What knib read, it can write back. */
    json_t *j = chain_manifest_to_json (m);
    struct chain_manifest *again = j ? chain_manifest_from_json (j) : NULL;

    chain_manifest_free (again);
    json_decref (j);
    chain_manifest_free (m);
  }
  close (fd);
  error_clear ();
  return 0;
}
