/* SPDX-License-Identifier: Apache-2.0 */
/* metrics.c: the textfile for node_exporter's textfile collector,
 * rewritten after every job: per VM the last successful backup and the
 * last boot validation, per host the jobs in each state. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "internal.h"

/* The image bytes a backup's --json summary says it wrote. */
static int64_t
result_bytes (const json_t *result)
{
  const json_t *disk;
  size_t i;
  int64_t sum = 0;

  json_array_foreach (json_object_get (result, "disks"), i, disk) sum
    += json_integer_value (json_object_get (disk, "bytes_written"));
  return sum;
}

/* The last boot validation (knib validate's --json summary as the
 * job's result): passed or not, the backup, the measured recovery time.
 * A job that could not validate (no summary) did not pass. */
static void
write_validation (FILE *fp, const char *vm, const json_t *row)
{
  const json_t *result = json_object_get (row, "result");
  const json_t *v = json_object_get (result, "validation");
  const json_t *boot = json_object_get (v, "boot-seconds");
  const char *backup = json_string_value (json_object_get (row, "backup"));

  fprintf (fp, "knib_last_validation_timestamp_seconds{vm=\"%s\"} %.3f\n", vm,
           json_real_value (json_object_get (row, "finished")));
  fprintf (fp, "knib_last_validation_success{vm=\"%s\",backup=\"%s\"} %d\n", vm,
           backup ? backup : "",
           json_is_true (json_object_get (result, "success")));
  if (json_is_number (boot))
    fprintf (fp, "knib_last_validation_recovery_seconds{vm=\"%s\"} %.1f\n", vm,
             json_number_value (boot));
}

static void
write_vm (FILE *fp, const json_t *row)
{
  const char *vm = json_string_value (json_object_get (row, "vm"));
  const char *type = json_string_value (json_object_get (row, "type"));
  const json_t *result = json_object_get (row, "result");
  double started = json_real_value (json_object_get (row, "started"));
  double finished = json_real_value (json_object_get (row, "finished"));

  /* VM names are safe names: nothing to escape in a label. */
  if (strcmp (type, "backup") == 0) {
    fprintf (fp, "knib_last_backup_timestamp_seconds{vm=\"%s\"} %.3f\n", vm,
             finished);
    fprintf (fp, "knib_last_backup_duration_seconds{vm=\"%s\"} %.3f\n", vm,
             finished - started);
    fprintf (fp, "knib_last_backup_bytes{vm=\"%s\"} %" PRIi64 "\n", vm,
             result_bytes (result));
    fprintf (fp, "knib_last_backup_info{vm=\"%s\",kind=\"%s\",id=\"%s\"} 1\n",
             vm, json_string_value (json_object_get (result, "kind")) ?: "",
             json_string_value (json_object_get (row, "backup")) ?: "");
  }
  else
    write_validation (fp, vm, row);
}

int
metrics_write (struct agent *a)
{
  CLEANUP_FREE char *tmp = NULL;
  json_auto_t *rows = NULL;
  json_auto_t *counts = NULL;
  const json_t *row;
  const char *state;
  json_t *n;
  size_t i;
  FILE *fp;
  int r;

  if (a->metrics_file == NULL)
    return 0;
  rows = store_jobs_latest (a->store);
  counts = store_jobs_count (a->store);
  if (rows == NULL || counts == NULL
      || asprintf (&tmp, "%s.%d.tmp", a->metrics_file, (int) getpid ()) == -1)
    return -1;
  fp = fopen (tmp, "we");
  if (fp == NULL) {
    set_error (errno, "metrics '%s'", tmp);
    return -1;
  }
  fchmod (fileno (fp), 0644);
  fprintf (fp, "# HELP knib_jobs knibd's jobs in each state.\n"
               "# TYPE knib_jobs gauge\n");
  json_object_foreach (counts, state, n)
    fprintf (fp, "knib_jobs{state=\"%s\"} %" JSON_INTEGER_FORMAT "\n", state,
             json_integer_value (n));
  fprintf (fp, "# HELP knib_last_backup_timestamp_seconds When the VM's last "
               "successful backup ended.\n"
               "# TYPE knib_last_backup_timestamp_seconds gauge\n");
  json_array_foreach (rows, i, row) write_vm (fp, row);
  r = fflush (fp) == 0 && fsync (fileno (fp)) == 0 ? 0 : -1;
  if (fclose (fp) != 0)
    r = -1;
  if (r == -1 || rename (tmp, a->metrics_file) == -1) {
    set_error (errno, "metrics '%s'", a->metrics_file);
    unlink (tmp);
    return -1;
  }
  return 0;
}
