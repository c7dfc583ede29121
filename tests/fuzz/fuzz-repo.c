/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-repo.c: fuzz target: a repository's knib-repo.json, read as every command opens the repository.
 *
 * The input is knib-repo.json of a directory of its own (a regular
 * file, as fuzz-manifest.c says: the reader refuses anything else
 * before it parses a byte), opened with chain_repo_open.  A repository
 * made before ids is then given one (chain_repo_ensure_id, as a backup
 * does: the file read again and rewritten under the directory's lock),
 * and must open again with that id: what knib read, it can write back. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "chain/internal.h"
#include "common/error.h"
#include "fuzz.h"

#define MAX_INPUT (64u * 1024)

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct chain_repo *repo;

  if (size > MAX_INPUT)
    return 0;
  fuzz_file_named (CHAIN_REPO_FILE, data, size);
  repo = chain_repo_open (fuzz_file_dir (), false);
  if (repo != NULL && chain_repo_id (repo)[0] == '\0') {
    struct chain_repo *again;

    if (chain_repo_ensure_id (repo) == -1 || chain_repo_id (repo)[0] == '\0')
      abort (); /* a repository knib opened, it can give an id */
    again = chain_repo_open (fuzz_file_dir (), false);
    if (again == NULL
        || strcmp (chain_repo_id (again), chain_repo_id (repo)) != 0
        || (chain_repo_group (again) == NULL)
             != (chain_repo_group (repo) == NULL))
      abort (); /* the rewritten file says what the first one did */
    chain_repo_free (again);
  }
  chain_repo_free (repo);
  error_clear ();
  return 0;
}
