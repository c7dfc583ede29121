/* SPDX-License-Identifier: Apache-2.0 */
/* job.c: wait for a QEMU job to conclude, collect its error, dismiss it. */
#include <config.h>

#include <errno.h>
#include <string.h>

#include "common/error.h"
#include "common/util.h"
#include "qmp.h"

static bool
job_id_is (const json_t *data, void *opaque)
{
  const char *id = json_string_value (json_object_get (data, "id"));

  return id != NULL && strcmp (id, opaque) == 0;
}

/* Find the job in query-jobs.  Returns 1 found (status and error borrowed
 * from *jobs), 0 not found, -1 error. */
static int
job_lookup (struct qmp_client *c, const char *job_id, json_t **jobs,
            const char **status, const char **error)
{
  size_t i;
  json_t *job;

  if (qmp_query_jobs (c, jobs) == -1)
    return -1;
  json_array_foreach (*jobs, i, job)
  {
    struct qmp_job j;

    if (qmp_job_get (job, &j) == -1)
      return -1;
    if (strcmp (j.id, job_id) != 0)
      continue;
    *status = j.status;
    *error = j.error;
    return 1;
  }
  return 0;
}

static int
job_conclude (struct qmp_client *c, const char *job_id, const char *error)
{
  if (qmp_job_dismiss (c, job_id) == -1)
    return -1;
  if (error != NULL) {
    set_error (-EIO, "%s", error);
    return -1;
  }
  return 0;
}

static int
job_wait (struct qmp_client *c, const char *job_id, int timeout_ms)
{
  int64_t deadline = deadline_after_ms (timeout_ms);

  for (;;) {
    json_t *jobs = NULL, *event = NULL;
    const char *status = NULL, *error = NULL;
    int r;

    r = job_lookup (c, job_id, &jobs, &status, &error);
    if (r == 0) {
      json_decref (jobs);
      set_error (
        ENOENT,
        "no such job (jobs knib waits for must be started with auto-dismiss false)");
      return -1;
    }
    if (r == 1 && strcmp (status, "concluded") == 0) {
      r = job_conclude (c, job_id, error);
      json_decref (jobs);
      return r;
    }
    if (r == -1) {
      json_decref (jobs);
      return -1;
    }
    /* status is borrowed from jobs: keep jobs until the message. */
    r = qmp_client_wait_event (c, "JOB_STATUS_CHANGE", job_id_is,
                               (void *) job_id,
                               deadline_remaining_ms (deadline), &event);
    if (r == -1 && errno == ETIMEDOUT)
      set_error (ETIMEDOUT, "still %s after %.1f s", status,
                 timeout_ms / 1000.0);
    json_decref (jobs);
    if (r == -1)
      return -1;
    json_decref (event);
  }
}

int
qmp_client_job_wait (struct qmp_client *c, const char *job_id, int timeout_ms)
{
  if (job_wait (c, job_id, timeout_ms) == -1) {
    error_prepend ("job '%s'", job_id);
    return -1;
  }
  return 0;
}
