/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-batch.c: fuzz target: the lines "knib files batch" reads from stdin.
 *
 * The input is the batch's stdin: each line (up to and with its newline,
 * as getline gives it; a NUL byte ends the line's text as it does for
 * the batch) is read, split into words and parsed as the batch does it
 * (cli_files_batch_parse, parse only: nothing is run, no appliance,
 * nothing printed). */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/error.h"
#include "fuzz.h"

#define MAX_INPUT 4096u

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char *copy;
  size_t start = 0;

  if (size > MAX_INPUT)
    return 0;
  cli_set_quiet (true);
  copy = malloc (size + 1);
  if (copy == NULL)
    abort ();
  while (start < size) {
    const uint8_t *nl = memchr (data + start, '\n', size - start);
    size_t len = nl ? (size_t) (nl - data) + 1 - start : size - start;

    memcpy (copy, data + start, len);
    copy[len] = '\0';
    (void) cli_files_batch_parse (copy);
    error_clear ();
    start += len;
  }
  free (copy);
  return 0;
}
