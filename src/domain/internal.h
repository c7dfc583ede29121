/* SPDX-License-Identifier: Apache-2.0 */
/* internal.h: what the files of src/domain share. */
#ifndef KNIB_DOMAIN_INTERNAL_H
#define KNIB_DOMAIN_INTERNAL_H

#include <stddef.h>

#include "domain/domain.h"

void domain_disk_release (struct domain_disk *d);

/* "<base>/<sub>/<name><suffix>" after checking that name is a valid
 * knib name (so it stays one path component). */
char *domain_path (const char *base, const char *sub, const char *name,
                   const char *suffix) __attribute__ ((warn_unused_result));

/* Write data to path atomically (a temporary file beside it, then
 * rename), mode 0600; the directory is made (0700) when missing. */
int domain_write_file (const char *path, const char *data, size_t len)
  __attribute__ ((warn_unused_result));

/* The whole of a file (NUL-terminated); NULL with set_error (errno
 * ENOENT when missing). */
char *domain_read_file (const char *path, size_t max, size_t *len)
  __attribute__ ((warn_unused_result));

#endif
