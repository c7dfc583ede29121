/* SPDX-License-Identifier: Apache-2.0 */
/* show.h: how list, info and verify present backups (text and JSON). */
#ifndef KNIB_CLI_SHOW_H
#define KNIB_CLI_SHOW_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "chain/chain.h"

/* A backup as JSON: its manifest's fields, the size of its images on
 * disk and its disks (names only, or with detail every field, the
 * image's path and the backing file the image records).  What cannot be
 * read (a missing image) is null and goes to problems.  NULL with
 * set_error on ENOMEM. */
json_t *show_backup_json (struct chain_repo *repo,
                          const struct chain_manifest *m, bool detail,
                          chain_string_vector *problems)
  __attribute__ ((warn_unused_result));

/* Print v (indented, or compact) and a newline on stdout. */
void show_json (const json_t *v, bool compact);

/* Append the last error to problems; -1 (with set_error) on ENOMEM. */
int show_problem (chain_string_vector *problems)
  __attribute__ ((warn_unused_result));

/* Print each problem on stderr ("knib: PROBLEM"). */
void show_problems (const chain_string_vector *problems);

/* A list of disk names: "vda,vdb". */
char *show_disk_names (const struct chain_manifest *m)
  __attribute__ ((warn_unused_result));

/* A backup's validation as JSON (NULL: json null), as the manifest
 * records it. */
json_t *show_validation_json (const struct chain_validation *v);

/* Its steps, one line each ("  boot        passed   12.3 s  ..."). */
void show_validation_steps (const struct chain_validation *v, FILE *fp);

/* One word for tables: "passed 23s", "FAILED", "-". */
void show_validation_short (const struct chain_validation *v, char *buf,
                            size_t size);
/* The strings as a JSON array; NULL on ENOMEM. */
json_t *show_strings_json (const chain_string_vector *v);

/* A JSON string, or null for NULL. */
json_t *show_nullable (const char *s);
#endif
