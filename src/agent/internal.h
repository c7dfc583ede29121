/* SPDX-License-Identifier: Apache-2.0 */
/* internal.h: knibd's parts: the job store, the runner, the protocol. */
#ifndef KNIB_AGENT_INTERNAL_H
#define KNIB_AGENT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <jansson.h>

#include "common/conf.h"
#include "common/vector.h"

/* The longest message a client may send, without its newline. */
#define AGENT_MAX_MESSAGE (64u * 1024)

/* How much of a job's stdout (its --json result) and stderr (its log)
 * are kept. */
#define AGENT_MAX_RESULT (1024u * 1024)
#define AGENT_MAX_LOG (64u * 1024)

/* How long after a job's failure a stop notice of its domain still
 * explains it (QEMU's end and the hook's notice race). */
#define AGENT_HOLD_GRACE_S 60

/* Between SIGTERM and SIGKILL when a job is cancelled or times out. */
#define AGENT_KILL_GRACE_MS 10000

enum job_state {
  JOB_QUEUED,
  JOB_RUNNING,
  JOB_SUCCEEDED,
  JOB_FAILED,
  JOB_CANCELLED,
  JOB_INTERRUPTED,
  JOB_HELD, /* needs its domain running; queued again when it starts */
};
#define JOB_STATE_LAST JOB_HELD

enum job_type {
  JOB_BACKUP,
  JOB_RESTORE,
  JOB_VALIDATE,
  JOB_COMPRESS_START,
  JOB_COMPRESS_FINALIZE,
  JOB_DELETE,
  JOB_PRUNE,
  JOB_VERIFY,
  JOB_MERGE,
};
#define JOB_TYPE_LAST JOB_MERGE

const char *job_state_name (enum job_state s);
const char *job_type_name (enum job_type t);
int job_type_parse (const char *name, enum job_type *t)
  __attribute__ ((warn_unused_result));

/* A job that is queued or running (finished ones live in the store
 * only). */
struct job {
  int64_t id;
  enum job_type type;
  enum job_state state;
  char *vm;
  char *backup;     /* the backup it is about, or NULL */
  json_t *request;  /* the command's arguments */
  json_t *argv;     /* the knib command line of the last attempt */
  int attempts;     /* started so far */
  int max_attempts; /* >= 1 */
  double created, started, finished, not_before; /* wall clock, seconds */
  double deadline;   /* wall clock: killed then (0: none) */
  pid_t pid;         /* the job's supervisor (0: none) */
  int64_t pid_start; /* its start time in clock ticks after boot */
  bool adopted;      /* started by an earlier knibd: polled, not reaped */
  bool cancel;       /* job-cancel asked for it */
  bool timed_out;
  int64_t term_sent_ms; /* monotonic: when SIGTERM was sent (0: not yet) */
  char *error;
  int exit_status;  /* knib's, 128 + a signal (-1: none yet) */
  json_t *progress; /* a running job's last figures, or NULL */
};

DEFINE_VECTOR_TYPE (job_vector, struct job *);

void job_free (struct job *j);

/* store.c: the SQLite database (WAL). */
struct store;
struct store *store_open (const char *path)
  __attribute__ ((warn_unused_result));
void store_close (struct store *st);
/* Give j an id and insert it. */
int store_job_insert (struct store *st, struct job *j)
  __attribute__ ((warn_unused_result));
/* Write j's state, times, attempts, process (and, when given, its
 * result and log). */
int store_job_update (struct store *st, const struct job *j, const char *result,
                      const char *log) __attribute__ ((warn_unused_result));
/* Every queued or running job, oldest first. */
int store_jobs_active (struct store *st, job_vector *out)
  __attribute__ ((warn_unused_result));
/* The jobs that match the filter of query-jobs, as a JSON array. */
json_t *store_jobs_query (struct store *st, const json_t *filter)
  __attribute__ ((warn_unused_result));
/* One job's log, NULL when there is no such job (ENOENT). */
char *store_job_log (struct store *st, int64_t id, char **state)
  __attribute__ ((warn_unused_result));
/* Per VM its last successful backup and its last finished validation,
 * as query-jobs rows. */
json_t *store_jobs_latest (struct store *st)
  __attribute__ ((warn_unused_result));
/* Schedules: def is schedule-set's arguments; last-run starts at now. */
int store_schedule_put (struct store *st, const char *name, const json_t *def,
                        double now) __attribute__ ((warn_unused_result));
int store_schedule_remove (struct store *st, const char *name)
  __attribute__ ((warn_unused_result));
int store_schedule_ran (struct store *st, const char *name, double when)
  __attribute__ ((warn_unused_result));
/* [{"name", "request" (the definition), "last-run"}] */
json_t *store_schedules (struct store *st) __attribute__ ((warn_unused_result));
/* Counts of the jobs per state, as a JSON object. */
json_t *store_jobs_count (struct store *st)
  __attribute__ ((warn_unused_result));
/* Settings changed with set-settings, kept over restarts. */
int store_setting_put (struct store *st, const char *key, const char *value)
  __attribute__ ((warn_unused_result));
int store_settings_apply (struct store *st, struct knib_config *cfg)
  __attribute__ ((warn_unused_result));

/* The agent as a whole (knibd.c owns it). */
struct agent {
  struct knib_config cfg;
  const char *config_path; /* passed on to the jobs (NULL: default) */
  const char *knib;        /* the knib program */
  char *state_dir;         /* job files: STATE/jobs/ID.{out,err,status} */
  struct store *store;
  job_vector jobs; /* queued and running, by id */
  long cores;
  const char *metrics_file; /* NULL: none */
  bool schedules;           /* there are schedules to watch */
  json_t *stopped; /* the domains the hook said stopped: name -> true */
  /* Jobs that needed a domain and failed within AGENT_HOLD_GRACE_S: held
   * after all when the domain's stop notice comes after their end. */
  job_vector recent;
  /* Events go to the protocol's clients. */
  void (*emit) (struct agent *a, const char *event, json_t *data);
};

/* runner.c: queue, start, watch and finish jobs. */
/* Check a request for a job of type, and queue it (and for compress
 * the finalize after the start).  Returns the job's id, or -1 with
 * set_error naming the bad argument. */
int64_t runner_submit (struct agent *a, enum job_type type, json_t *args)
  __attribute__ ((warn_unused_result));
/* Check a request as runner_submit does, without queueing it. */
int runner_check (enum job_type type, const json_t *args)
  __attribute__ ((warn_unused_result));
/* Queue a request checked already (it may hold members of knibd's own,
 * such as a schedule's name and retention). */
int64_t runner_submit_checked (struct agent *a, enum job_type type,
                               json_t *args)
  __attribute__ ((warn_unused_result));
/* Cancel a queued or running job: -1 with set_error when there is no
 * such job or it has finished. */
int runner_cancel (struct agent *a, int64_t id)
  __attribute__ ((warn_unused_result));
/* After a restart: adopt the living, requeue the vanished. */
int runner_reconcile (struct agent *a) __attribute__ ((warn_unused_result));
/* Start what may start, kill what timed out, poll adopted jobs. */
void runner_tick (struct agent *a);
/* A child of knibd exited (from SIGCHLD). */
void runner_reap (struct agent *a);
/* Milliseconds until runner_tick has something to do (-1: nothing). */
int runner_next_ms (struct agent *a);
/* A running job's progress ({"label", "done", "total"}), borrowed, or
 * NULL. */
const json_t *runner_progress (const struct agent *a, int64_t id);

/* schedule.c: calendars and schedules. */
struct calendar {
  enum { CAL_MINUTELY, CAL_HOURLY, CAL_DAILY, CAL_WEEKLY } kind;
  int hour, minute, second; /* CAL_DAILY */
};
int calendar_parse (const char *text, struct calendar *c)
  __attribute__ ((warn_unused_result));
/* The last time the calendar fires at or before now, and the first
 * after now. */
time_t calendar_prev (const struct calendar *c, time_t now);
time_t calendar_next (const struct calendar *c, time_t now);
int schedule_set (struct agent *a, json_t *args)
  __attribute__ ((warn_unused_result));
json_t *schedules_query (struct agent *a) __attribute__ ((warn_unused_result));
/* Queue the backups that are due. */
void schedules_tick (struct agent *a);

/* The hook said domain name stopped: queued jobs that need it running
 * are held (and running ones that fail meanwhile); started: they are
 * queued again. */
void runner_domain_stopped (struct agent *a, const char *name);
void runner_domain_started (struct agent *a, const char *name);

/* notify.c: the hook's notices.  notify_open binds the datagram socket
 * (0600) and returns it; notify_read takes every waiting notice. */
int notify_open (const char *path) __attribute__ ((warn_unused_result));
void notify_read (struct agent *a, int fd);

/* metrics.c: rewrite the textfile (when there is one). */
int metrics_write (struct agent *a) __attribute__ ((warn_unused_result));

/* protocol.c: the QMP-framed socket. */
struct server;
struct server *server_new (struct agent *a, const char *path, gid_t group)
  __attribute__ ((warn_unused_result));
void server_free (struct server *s);
/* Add the server's descriptors to a poll set and handle what is ready. */
int server_fd (const struct server *s);
void server_accept (struct server *s);
size_t server_poll_fill (struct server *s, void *pfds, size_t max);
void server_poll_done (struct server *s, const void *pfds, size_t n);
void server_emit (struct server *s, const char *event, json_t *data);
/* Milliseconds until a list-backups times out (-1: none runs). */
int server_next_ms (struct server *s);
/* The reply to one parsed message (the caller sends it). */
json_t *agent_dispatch (struct agent *a, json_t *msg, bool *negotiated);

#endif
