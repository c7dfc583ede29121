/* SPDX-License-Identifier: Apache-2.0 */
/* notes.c: notes that the long operations of the repository collect. */
#include <config.h>

#include <stdlib.h>

#include "internal.h"

void
chain_note_add (chain_string_vector *notes, char *line)
{
  if (line != NULL && chain_string_vector_append (notes, line) == -1)
    free (line);
}
