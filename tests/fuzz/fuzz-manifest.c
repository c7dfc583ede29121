/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-manifest.c: fuzz target: a backup's manifest.json, read as a file.
 *
 * A regular file, not /proc/self/fd/N: manifests are opened without
 * following symbolic links, so a memfd's path is refused before the
 * parser sees a byte. */
#include <config.h>

#include "chain/internal.h"
#include "common/error.h"
#include "fuzz.h"

#define MAX_INPUT (64u * 1024)

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct chain_manifest *m;

  if (size > MAX_INPUT)
    return 0;
  m = chain_manifest_load (fuzz_file (data, size));
  if (m != NULL) {
    /* What knib read, it can write back. */
    json_t *j = chain_manifest_to_json (m);
    struct chain_manifest *again = j ? chain_manifest_from_json (j) : NULL;

    chain_manifest_free (again);
    json_decref (j);
    chain_manifest_free (m);
  }
  error_clear ();
  return 0;
}
