/* SPDX-License-Identifier: Apache-2.0 */
/* progress.h: a one-line progress bar on a terminal, silence otherwise;
 * for knibd, the figures in a file. */
#ifndef KNIB_CLI_PROGRESS_H
#define KNIB_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/util.h"

struct progress;

/* Every bar also writes its figures to the file $KNIB_PROGRESS_FILE
 * names, bar or no bar (see PROGRESS_FILE_ENV in common/util.h). */

/* A bar on stderr when enabled and stderr is a terminal; otherwise every
 * call does nothing.  NULL when out of memory (which callers may treat
 * as "no bar"). */
struct progress *progress_new (bool enabled);

/* label (a disk) has passed done of total bytes.  Redraws at most ten
 * times a second: "vda  [#####     ] 1.2 GiB/8.0 GiB  210 MiB/s  ETA 0:33". */
void progress_update (struct progress *p, const char *label, uint64_t done,
                      uint64_t total);

/* Clear the line.  NULL is a no-op. */
void progress_free (struct progress *p);

/* "1.5 GiB", "512 KiB", "12 B" into buf. */
void progress_format_bytes (uint64_t n, char *buf, size_t len);

#endif
