/* SPDX-License-Identifier: Apache-2.0 */
/* jsonutil.h: JSON files written atomically and read strictly. */
#ifndef KNIB_COMMON_JSONUTIL_H
#define KNIB_COMMON_JSONUTIL_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

/* The largest JSON file read (manifests and vm.json are far smaller). */
#define JSONUTIL_MAX (16u * 1024 * 1024)

/* Read a JSON object from path; errors "WHAT 'PATH': ..." (ENOENT kept
 * for a missing file, EINVAL for bad content). */
json_t *jsonutil_load (const char *path, const char *what)
  __attribute__ ((warn_unused_result));

/* Replace dir/name with j atomically (fs_replace_file).  Errors "WHAT
 * 'PATH': ...". */
int jsonutil_commit (const json_t *j, const char *dir, const char *name,
                     const char *what) __attribute__ ((warn_unused_result));

/* Errors of the readers below are "WHERE'KEY' must be ..." with errno
 * EINVAL; where is "" or a prefix such as "disk 'vda': ". */

/* Record the formatted message with EINVAL; returns -1. */
int jsonutil_invalid (const char *fmt, ...)
  __attribute__ ((format (printf, 1, 2)));

/* Every key of keys (NULL-terminated) present, and no other. */
int jsonutil_check_keys (const json_t *o, const char *const *keys,
                         const char *where)
  __attribute__ ((warn_unused_result));

/* A string (borrowed from o), or with nullable also null (NULL). */
int jsonutil_get_string (const json_t *o, const char *key, const char *where,
                         bool nullable, const char **out)
  __attribute__ ((warn_unused_result));

/* An integer in [min, max]; what describes it ("a positive integer"). */
int jsonutil_get_int (const json_t *o, const char *key, const char *where,
                      int64_t min, int64_t max, const char *what, int64_t *out)
  __attribute__ ((warn_unused_result));

#endif
