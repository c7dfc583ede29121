/* SPDX-License-Identifier: Apache-2.0 */
/* store.c: knibd's job store, one SQLite database in WAL mode. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "internal.h"

struct store {
  sqlite3 *db;
  char *path;
};

static const char schema[]
  = "CREATE TABLE IF NOT EXISTS jobs ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " type TEXT NOT NULL, vm TEXT NOT NULL, backup TEXT,"
    " state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    " max_attempts INTEGER NOT NULL DEFAULT 1,"
    " request TEXT NOT NULL, argv TEXT, result TEXT, error TEXT, log TEXT,"
    " pid INTEGER NOT NULL DEFAULT 0, pid_start INTEGER NOT NULL DEFAULT 0,"
    " created REAL NOT NULL, started REAL NOT NULL DEFAULT 0,"
    " finished REAL NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0,"
    " deadline REAL NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);"
    "CREATE TABLE IF NOT EXISTS schedules ("
    " name TEXT PRIMARY KEY, definition TEXT NOT NULL,"
    " last_run REAL NOT NULL);"
    "CREATE TABLE IF NOT EXISTS settings ("
    " key TEXT PRIMARY KEY, value TEXT NOT NULL);";

/* Columns added since the first schema: each added when missing. */
static const char *const added_columns[] = {
  "exit_status INTEGER",
};

static int
store_fail (struct store *st, const char *what)
{
  set_error (EIO, "job store '%s': %s: %s", st->path, what,
             sqlite3_errmsg (st->db));
  return -1;
}

/* ALTER TABLE jobs ADD COLUMN def, unless the column is there. */
static int
store_column_add (struct store *st, const char *def)
{
  CLEANUP_FREE char *sql = NULL;
  CLEANUP_FREE char *name = strndup (def, strcspn (def, " "));
  sqlite3_stmt *s = NULL;
  bool found = false;

  if (name == NULL
      || sqlite3_prepare_v2 (st->db,
                             "SELECT name FROM pragma_table_info "
                             "('jobs')",
                             -1, &s, NULL)
           != SQLITE_OK)
    return store_fail (st, "schema");
  while (sqlite3_step (s) == SQLITE_ROW)
    if (strcmp ((const char *) sqlite3_column_text (s, 0), name) == 0)
      found = true;
  sqlite3_finalize (s);
  if (found)
    return 0;
  if (asprintf (&sql, "ALTER TABLE jobs ADD COLUMN %s", def) == -1) {
    sql = NULL;
    set_error (ENOMEM, "job store '%s'", st->path);
    return -1;
  }
  if (sqlite3_exec (st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
    return store_fail (st, "schema");
  return 0;
}

struct store *
store_open (const char *path)
{
  struct store *st = calloc (1, sizeof *st);
  char *msg = NULL;

  if (st == NULL || (st->path = strdup (path)) == NULL) {
    free (st);
    set_error (ENOMEM, "job store '%s'", path);
    return NULL;
  }
  if (sqlite3_open_v2 (path, &st->db,
                       SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                         | SQLITE_OPEN_FULLMUTEX,
                       NULL)
      != SQLITE_OK) {
    store_fail (st, "cannot open");
    store_close (st);
    return NULL;
  }
  sqlite3_busy_timeout (st->db, 5000);
  if (sqlite3_exec (st->db,
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL,
                    NULL, &msg)
        != SQLITE_OK
      || sqlite3_exec (st->db, schema, NULL, NULL, &msg) != SQLITE_OK) {
    set_error (EIO, "job store '%s': cannot set up: %s", path, msg ? msg : "?");
    sqlite3_free (msg);
    store_close (st);
    return NULL;
  }
  for (size_t i = 0; i < sizeof added_columns / sizeof added_columns[0]; i++)
    if (store_column_add (st, added_columns[i]) == -1) {
      store_close (st);
      return NULL;
    }
  return st;
}

void
store_close (struct store *st)
{
  if (st == NULL)
    return;
  sqlite3_close (st->db);
  free (st->path);
  free (st);
}

static int
bind_text (sqlite3_stmt *s, int i, const char *text)
{
  if (text == NULL)
    return sqlite3_bind_null (s, i);
  return sqlite3_bind_text (s, i, text, -1, SQLITE_TRANSIENT);
}

static int
bind_json (sqlite3_stmt *s, int i, const json_t *v)
{
  char *text;
  int r;

  if (v == NULL)
    return sqlite3_bind_null (s, i);
  text = json_dumps (v, JSON_COMPACT | JSON_ENCODE_ANY);
  if (text == NULL)
    return SQLITE_NOMEM;
  r = sqlite3_bind_text (s, i, text, -1, free);
  return r;
}

/* Run a prepared statement that returns no rows, then finalize it. */
static int
store_step_done (struct store *st, sqlite3_stmt *s, const char *what)
{
  int r = sqlite3_step (s);

  sqlite3_finalize (s);
  if (r != SQLITE_DONE)
    return store_fail (st, what);
  return 0;
}

int
store_job_insert (struct store *st, struct job *j)
{
  sqlite3_stmt *s = NULL;

  if (sqlite3_prepare_v2 (st->db,
                          "INSERT INTO jobs (type, vm, backup, state, "
                          "max_attempts, request, created, not_before) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          -1, &s, NULL)
      != SQLITE_OK)
    return store_fail (st, "insert");
  if (bind_text (s, 1, job_type_name (j->type)) != SQLITE_OK
      || bind_text (s, 2, j->vm) != SQLITE_OK
      || bind_text (s, 3, j->backup) != SQLITE_OK
      || bind_text (s, 4, job_state_name (j->state)) != SQLITE_OK
      || sqlite3_bind_int (s, 5, j->max_attempts) != SQLITE_OK
      || bind_json (s, 6, j->request) != SQLITE_OK
      || sqlite3_bind_double (s, 7, j->created) != SQLITE_OK
      || sqlite3_bind_double (s, 8, j->not_before) != SQLITE_OK) {
    sqlite3_finalize (s);
    return store_fail (st, "insert");
  }
  if (store_step_done (st, s, "insert") == -1)
    return -1;
  j->id = sqlite3_last_insert_rowid (st->db);
  return 0;
}

int
store_job_update (struct store *st, const struct job *j, const char *result,
                  const char *log)
{
  sqlite3_stmt *s = NULL;

  if (sqlite3_prepare_v2 (
        st->db,
        "UPDATE jobs SET state = ?, attempts = ?, argv = ?, error = ?, "
        "pid = ?, pid_start = ?, started = ?, finished = ?, "
        "not_before = ?, deadline = ?, backup = ?, "
        "result = coalesce (?, result), log = coalesce (?, log), "
        "exit_status = ?, request = ? WHERE id = ?",
        -1, &s, NULL)
      != SQLITE_OK)
    return store_fail (st, "update");
  if (bind_text (s, 1, job_state_name (j->state)) != SQLITE_OK
      || sqlite3_bind_int (s, 2, j->attempts) != SQLITE_OK
      || bind_json (s, 3, j->argv) != SQLITE_OK
      || bind_text (s, 4, j->error) != SQLITE_OK
      || sqlite3_bind_int64 (s, 5, j->pid) != SQLITE_OK
      || sqlite3_bind_int64 (s, 6, j->pid_start) != SQLITE_OK
      || sqlite3_bind_double (s, 7, j->started) != SQLITE_OK
      || sqlite3_bind_double (s, 8, j->finished) != SQLITE_OK
      || sqlite3_bind_double (s, 9, j->not_before) != SQLITE_OK
      || sqlite3_bind_double (s, 10, j->deadline) != SQLITE_OK
      || bind_text (s, 11, j->backup) != SQLITE_OK
      || bind_text (s, 12, result) != SQLITE_OK
      || bind_text (s, 13, log) != SQLITE_OK
      || (j->exit_status < 0 ? sqlite3_bind_null (s, 14)
                             : sqlite3_bind_int (s, 14, j->exit_status))
           != SQLITE_OK
      || bind_json (s, 15, j->request) != SQLITE_OK
      || sqlite3_bind_int64 (s, 16, j->id) != SQLITE_OK) {
    sqlite3_finalize (s);
    return store_fail (st, "update");
  }
  return store_step_done (st, s, "update");
}

static char *
column_strdup (sqlite3_stmt *s, int i)
{
  const unsigned char *t = sqlite3_column_text (s, i);

  return t ? strdup ((const char *) t) : NULL;
}

static json_t *
column_json (sqlite3_stmt *s, int i)
{
  const unsigned char *t = sqlite3_column_text (s, i);

  return t ? json_loads ((const char *) t, JSON_DECODE_ANY, NULL) : NULL;
}

static int
state_parse (const char *name, enum job_state *out)
{
  for (enum job_state s = JOB_QUEUED; s <= JOB_STATE_LAST; s++)
    if (strcmp (job_state_name (s), name) == 0) {
      *out = s;
      return 0;
    }
  return -1;
}

static struct job *
job_from_row (sqlite3_stmt *s)
{
  struct job *j = calloc (1, sizeof *j);
  const char *type = (const char *) sqlite3_column_text (s, 1);
  const char *state = (const char *) sqlite3_column_text (s, 4);

  if (j == NULL)
    return NULL;
  j->id = sqlite3_column_int64 (s, 0);
  if (type == NULL || job_type_parse (type, &j->type) == -1 || state == NULL
      || state_parse (state, &j->state) == -1) {
    free (j);
    set_error (EPROTO, "job %lld has a bad type or state",
               (long long) sqlite3_column_int64 (s, 0));
    return NULL;
  }
  j->vm = column_strdup (s, 2);
  j->backup = column_strdup (s, 3);
  j->attempts = sqlite3_column_int (s, 5);
  j->max_attempts = sqlite3_column_int (s, 6);
  j->request = column_json (s, 7);
  j->argv = column_json (s, 8);
  j->pid = sqlite3_column_int64 (s, 9);
  j->pid_start = sqlite3_column_int64 (s, 10);
  j->created = sqlite3_column_double (s, 11);
  j->started = sqlite3_column_double (s, 12);
  j->not_before = sqlite3_column_double (s, 13);
  j->deadline = sqlite3_column_double (s, 14);
  j->exit_status = -1;
  if (j->vm == NULL || j->request == NULL) {
    job_free (j);
    set_error (ENOMEM, "job store");
    return NULL;
  }
  return j;
}

int
store_jobs_active (struct store *st, job_vector *out)
{
  sqlite3_stmt *s = NULL;
  int r;

  if (sqlite3_prepare_v2 (st->db,
                          "SELECT id, type, vm, backup, state, attempts, "
                          "max_attempts, request, argv, pid, pid_start, "
                          "created, started, not_before, deadline FROM jobs "
                          "WHERE state IN ('queued', 'running', 'held') "
                          "ORDER BY id",
                          -1, &s, NULL)
      != SQLITE_OK)
    return store_fail (st, "read");
  while ((r = sqlite3_step (s)) == SQLITE_ROW) {
    struct job *j = job_from_row (s);

    if (j == NULL || job_vector_append (out, j) == -1) {
      job_free (j);
      sqlite3_finalize (s);
      error_prepend ("job store '%s'", st->path);
      return -1;
    }
  }
  sqlite3_finalize (s);
  if (r != SQLITE_DONE)
    return store_fail (st, "read");
  return 0;
}

/* One row of query-jobs as an object. */
static json_t *
row_object (sqlite3_stmt *s)
{
  json_t *o = json_pack (
    "{s:I, s:s?, s:s?, s:s?, s:s?, s:i, s:i, s:f, s:f, s:f, s:f}", "id",
    (json_int_t) sqlite3_column_int64 (s, 0), "type",
    (const char *) sqlite3_column_text (s, 1), "vm",
    (const char *) sqlite3_column_text (s, 2), "backup",
    (const char *) sqlite3_column_text (s, 3), "status",
    (const char *) sqlite3_column_text (s, 4), "attempts",
    sqlite3_column_int (s, 5), "max-attempts", sqlite3_column_int (s, 6),
    "created", sqlite3_column_double (s, 7), "started",
    sqlite3_column_double (s, 8), "finished", sqlite3_column_double (s, 9),
    "not-before", sqlite3_column_double (s, 10));
  const char *err = (const char *) sqlite3_column_text (s, 11);
  json_t *v;

  if (o == NULL)
    return NULL;
  if (err != NULL)
    json_object_set_new (o, "error", json_string (err));
  if ((v = column_json (s, 12)) != NULL)
    json_object_set_new (o, "request", v);
  if ((v = column_json (s, 13)) != NULL)
    json_object_set_new (o, "argv", v);
  if ((v = column_json (s, 14)) != NULL)
    json_object_set_new (o, "result", v);
  if (sqlite3_column_int64 (s, 15) > 0)
    json_object_set_new (o, "pid", json_integer (sqlite3_column_int64 (s, 15)));
  if (sqlite3_column_type (s, 16) != SQLITE_NULL)
    json_object_set_new (o, "exit-status",
                         json_integer (sqlite3_column_int (s, 16)));
  return o;
}

json_t *
store_jobs_query (struct store *st, const json_t *filter)
{
  /* Each filter is one clause; unset ones compare NULL and match all. */
  static const char sql[]
    = "SELECT id, type, vm, backup, state, attempts, max_attempts, created, "
      "started, finished, not_before, error, request, argv, result, pid, "
      "exit_status FROM jobs WHERE (?1 IS NULL OR id = ?1) AND (?2 IS NULL OR backup = ?2) "
      "AND (?3 IS NULL OR vm = ?3) AND (?4 IS NULL OR type = ?4) "
      "AND (?5 IS NULL OR state = ?5) ORDER BY id";
  const json_t *id = json_object_get (filter, "id");
  sqlite3_stmt *s = NULL;
  json_t *arr = json_array ();
  int r;

  if (arr == NULL
      || sqlite3_prepare_v2 (st->db, sql, -1, &s, NULL) != SQLITE_OK) {
    json_decref (arr);
    store_fail (st, "query");
    return NULL;
  }
  if (id != NULL)
    sqlite3_bind_int64 (s, 1, json_integer_value (id));
  bind_text (s, 2, json_string_value (json_object_get (filter, "backup")));
  bind_text (s, 3, json_string_value (json_object_get (filter, "vm")));
  bind_text (s, 4, json_string_value (json_object_get (filter, "type")));
  bind_text (s, 5, json_string_value (json_object_get (filter, "status")));
  while ((r = sqlite3_step (s)) == SQLITE_ROW) {
    json_t *o = row_object (s);

    if (o == NULL || json_array_append_new (arr, o) == -1) {
      sqlite3_finalize (s);
      json_decref (arr);
      set_error (ENOMEM, "query-jobs");
      return NULL;
    }
  }
  sqlite3_finalize (s);
  if (r != SQLITE_DONE) {
    json_decref (arr);
    store_fail (st, "query");
    return NULL;
  }
  return arr;
}

char *
store_job_log (struct store *st, int64_t id, char **state)
{
  sqlite3_stmt *s = NULL;
  char *log = NULL;

  if (sqlite3_prepare_v2 (st->db, "SELECT log, state FROM jobs WHERE id = ?",
                          -1, &s, NULL)
      != SQLITE_OK) {
    store_fail (st, "read");
    return NULL;
  }
  sqlite3_bind_int64 (s, 1, id);
  if (sqlite3_step (s) != SQLITE_ROW) {
    sqlite3_finalize (s);
    set_error (ENOENT, "no job %lld", (long long) id);
    return NULL;
  }
  log = column_strdup (s, 0);
  if (log == NULL)
    log = strdup ("");
  *state = column_strdup (s, 1);
  sqlite3_finalize (s);
  if (log == NULL || *state == NULL) {
    free (log);
    set_error (ENOMEM, "job %lld", (long long) id);
    return NULL;
  }
  return log;
}

json_t *
store_jobs_latest (struct store *st)
{
  static const char sql[]
    = "SELECT id, type, vm, backup, state, attempts, max_attempts, created, "
      "started, finished, not_before, error, request, argv, result, pid, "
      "exit_status FROM jobs WHERE id IN ("
      " SELECT max (id) FROM jobs WHERE type = 'backup' AND "
      " state = 'succeeded' GROUP BY vm "
      " UNION SELECT max (id) FROM jobs WHERE type = 'validate' AND "
      " state IN ('succeeded', 'failed') GROUP BY vm) ORDER BY vm, type";
  sqlite3_stmt *s = NULL;
  json_t *arr = json_array ();

  if (arr == NULL
      || sqlite3_prepare_v2 (st->db, sql, -1, &s, NULL) != SQLITE_OK) {
    json_decref (arr);
    store_fail (st, "metrics");
    return NULL;
  }
  while (sqlite3_step (s) == SQLITE_ROW) {
    json_t *o = row_object (s);

    if (o == NULL || json_array_append_new (arr, o) == -1) {
      sqlite3_finalize (s);
      json_decref (arr);
      set_error (ENOMEM, "metrics");
      return NULL;
    }
  }
  sqlite3_finalize (s);
  return arr;
}

int
store_schedule_put (struct store *st, const char *name, const json_t *def,
                    double now)
{
  sqlite3_stmt *s = NULL;

  if (sqlite3_prepare_v2 (st->db,
                          "INSERT OR REPLACE INTO schedules VALUES (?, ?, ?)",
                          -1, &s, NULL)
      != SQLITE_OK)
    return store_fail (st, "schedules");
  if (bind_text (s, 1, name) != SQLITE_OK || bind_json (s, 2, def) != SQLITE_OK
      || sqlite3_bind_double (s, 3, now) != SQLITE_OK) {
    sqlite3_finalize (s);
    return store_fail (st, "schedules");
  }
  return store_step_done (st, s, "schedules");
}

int
store_schedule_remove (struct store *st, const char *name)
{
  sqlite3_stmt *s = NULL;

  if (sqlite3_prepare_v2 (st->db, "DELETE FROM schedules WHERE name = ?", -1,
                          &s, NULL)
      != SQLITE_OK)
    return store_fail (st, "schedules");
  bind_text (s, 1, name);
  if (store_step_done (st, s, "schedules") == -1)
    return -1;
  if (sqlite3_changes (st->db) == 0) {
    set_error (ENOENT, "no schedule '%s'", name);
    return -1;
  }
  return 0;
}

int
store_schedule_ran (struct store *st, const char *name, double when)
{
  sqlite3_stmt *s = NULL;

  if (sqlite3_prepare_v2 (st->db,
                          "UPDATE schedules SET last_run = ? WHERE name = ?",
                          -1, &s, NULL)
      != SQLITE_OK)
    return store_fail (st, "schedules");
  sqlite3_bind_double (s, 1, when);
  bind_text (s, 2, name);
  return store_step_done (st, s, "schedules");
}

json_t *
store_schedules (struct store *st)
{
  sqlite3_stmt *s = NULL;
  json_t *arr = json_array ();

  if (arr == NULL
      || sqlite3_prepare_v2 (
           st->db,
           "SELECT name, definition, last_run FROM schedules ORDER BY name", -1,
           &s, NULL)
           != SQLITE_OK) {
    json_decref (arr);
    store_fail (st, "schedules");
    return NULL;
  }
  while (sqlite3_step (s) == SQLITE_ROW) {
    json_t *o = json_pack (
      "{s:s, s:o?, s:f}", "name", (const char *) sqlite3_column_text (s, 0),
      "request", column_json (s, 1), "last-run", sqlite3_column_double (s, 2));

    if (o == NULL || json_array_append_new (arr, o) == -1) {
      sqlite3_finalize (s);
      json_decref (arr);
      set_error (ENOMEM, "schedules");
      return NULL;
    }
  }
  sqlite3_finalize (s);
  return arr;
}

json_t *
store_jobs_count (struct store *st)
{
  sqlite3_stmt *s = NULL;
  json_t *o = json_object ();

  if (o == NULL
      || sqlite3_prepare_v2 (st->db,
                             "SELECT state, count(*) FROM jobs GROUP BY state",
                             -1, &s, NULL)
           != SQLITE_OK) {
    json_decref (o);
    store_fail (st, "count");
    return NULL;
  }
  for (enum job_state i = JOB_QUEUED; i <= JOB_STATE_LAST; i++)
    json_object_set_new (o, job_state_name (i), json_integer (0));
  while (sqlite3_step (s) == SQLITE_ROW)
    json_object_set_new (o, (const char *) sqlite3_column_text (s, 0),
                         json_integer (sqlite3_column_int64 (s, 1)));
  sqlite3_finalize (s);
  return o;
}

int
store_setting_put (struct store *st, const char *key, const char *value)
{
  sqlite3_stmt *s = NULL;

  if (sqlite3_prepare_v2 (
        st->db, "INSERT OR REPLACE INTO settings VALUES (?, ?)", -1, &s, NULL)
      != SQLITE_OK)
    return store_fail (st, "settings");
  bind_text (s, 1, key);
  bind_text (s, 2, value);
  return store_step_done (st, s, "settings");
}

int
store_settings_apply (struct store *st, struct knib_config *cfg)
{
  sqlite3_stmt *s = NULL;

  if (sqlite3_prepare_v2 (st->db, "SELECT key, value FROM settings", -1, &s,
                          NULL)
      != SQLITE_OK)
    return store_fail (st, "settings");
  while (sqlite3_step (s) == SQLITE_ROW)
    if (config_set (cfg, (const char *) sqlite3_column_text (s, 0),
                    (const char *) sqlite3_column_text (s, 1))
        == -1) {
      sqlite3_finalize (s);
      error_prepend ("job store '%s': stored setting", st->path);
      return -1;
    }
  sqlite3_finalize (s);
  return 0;
}
