/* SPDX-License-Identifier: Apache-2.0 */
/* protocol.c: knibd's socket: QMP's framing (greeting, commands with
 * ids, replies, events), peers checked with SO_PEERCRED, and the
 * commands themselves. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/command.h"
#include "common/error.h"
#include "common/util.h"
#include "internal.h"
#include "qmp/internal.h"

/* The most clients at once; more are turned away. */
#define MAX_CLIENTS 64

/* How long a client may take to read a reply before it is dropped. */
#define SEND_TIMEOUT_MS 5000

struct client {
  int fd;
  uint64_t serial; /* tells a client from a later one on the same fd */
  struct qmp_framer framer;
  bool negotiated; /* qmp_capabilities done: events flow */
};

/* A list-backups whose knib list runs: its output collected from pipes,
 * its reply sent to the client that asked, if it is still there. */
struct listing {
  uint64_t client; /* serial */
  json_t *id;      /* the request's, or NULL */
  pid_t pid;
  int out, err; /* pipes, -1 once at their end */
  char *out_buf, *err_buf;
  size_t out_len, err_len;
  int64_t deadline; /* monotonic ms */
};

struct server {
  struct agent *a;
  int fd;
  char *path;
  gid_t group; /* also allowed (-1: root only) */
  struct client clients[MAX_CLIENTS];
  size_t n;
  uint64_t next_serial;
  struct listing lists[MAX_CLIENTS];
  size_t n_lists;
};

/* ------------------------------------------------------------------ */
/* Commands. */

static json_t *
error_reply (const char *cls, const char *desc)
{
  return json_pack ("{s:{s:s, s:s}}", "error", "class", cls, "desc", desc);
}

static json_t *
cmd_query_version (struct agent *a, json_t *args)
{
  int major = 0, minor = 0, micro = 0;

  sscanf (PACKAGE_VERSION, "%d.%d.%d", &major, &minor, &micro);
  return json_pack ("{s:{s:i, s:i, s:i}, s:s}", "qemu", "major", major, "minor",
                    minor, "micro", micro, "package", "knibd " PACKAGE_VERSION);
}

static json_t *
settings_object (const struct knib_config *cfg)
{
  json_t *o = json_object ();
  const char *key;

  for (size_t i = 0; o != NULL && (key = config_key (i)) != NULL; i++) {
    CLEANUP_FREE char *text = config_get (cfg, key);
    json_t *v;

    if (text == NULL)
      continue;
    v = json_loads (text, JSON_DECODE_ANY, NULL);
    json_object_set_new (o, key, v ? v : json_string (text));
  }
  /* The per-VM policies: vm.NAME.compress. */
  for (size_t i = 0; o != NULL && i < cfg->n_vm_policies; i++) {
    CLEANUP_FREE char *vkey = config_vm_key (cfg, i);

    if (vkey != NULL)
      json_object_set_new (o, vkey, json_string (cfg->vm_policies[i].compress));
  }
  return o;
}

static json_t *
cmd_query_settings (struct agent *a, json_t *args)
{
  return settings_object (&a->cfg);
}

/* A JSON value as the configuration file would spell it. */
static char *
setting_text (const json_t *v)
{
  char *s = NULL;

  if (json_is_string (v))
    return strdup (json_string_value (v));
  if (json_is_boolean (v))
    return strdup (json_is_true (v) ? "true" : "false");
  if (json_is_integer (v)
      && asprintf (&s, "%" JSON_INTEGER_FORMAT, json_integer_value (v)) != -1)
    return s;
  if (json_is_real (v) && asprintf (&s, "%.17g", json_real_value (v)) != -1)
    return s;
  return NULL;
}

/* All or nothing: every value is checked on a copy first. */
static json_t *
cmd_set_settings (struct agent *a, json_t *args)
{
  struct knib_config cfg = a->cfg;
  const char *key;
  json_t *v;

  if (json_object_size (args) == 0) {
    set_error (0, "no settings given");
    return NULL;
  }
  json_object_foreach (args, key, v)
  {
    CLEANUP_FREE char *text = setting_text (v);

    if (text == NULL) {
      set_error (0, "setting '%s': not a string, number or boolean", key);
      return NULL;
    }
    if (config_set (&cfg, key, text) == -1)
      return NULL;
  }
  json_object_foreach (args, key, v)
  {
    CLEANUP_FREE char *text = config_get (&cfg, key);

    if (text == NULL || store_setting_put (a->store, key, text) == -1)
      return NULL;
    fprintf (stderr, "knibd: setting %s = %s\n", key, text);
  }
  a->cfg = cfg;
  return json_object ();
}

/* Running jobs carry their last progress figures. */
static json_t *
jobs_with_progress (struct agent *a, json_t *jobs)
{
  size_t i;
  json_t *j;

  json_array_foreach (jobs, i, j)
  {
    const json_t *p
      = runner_progress (a, json_integer_value (json_object_get (j, "id")));

    if (p != NULL)
      json_object_set_new (j, "progress", json_deep_copy (p));
  }
  return jobs;
}

static json_t *
cmd_query_jobs (struct agent *a, json_t *args)
{
  static const char *const known[]
    = { "id",        "backup",    "vm",     "type", "status",
        "executing", "scheduled", "failed", NULL };
  json_auto_t *filter = json_object ();
  const char *key;
  json_t *v;

  json_object_foreach (args, key, v)
  {
    size_t i = 0;

    while (known[i] != NULL && strcmp (known[i], key) != 0)
      i++;
    if (known[i] == NULL) {
      set_error (0, "unknown argument '%s'", key);
      return NULL;
    }
    if (i == 0  ? !json_is_integer (v)
        : i < 5 ? !json_is_string (v)
                : !json_is_boolean (v)) {
      set_error (0, "argument '%s' has the wrong type", key);
      return NULL;
    }
    if (i < 5)
      json_object_set (filter, key, v);
    else if (json_is_true (v)) {
      const char *st = i == 5 ? "running" : i == 6 ? "queued" : "failed";
      const char *old = json_string_value (json_object_get (filter, "status"));

      if (old != NULL && strcmp (old, st) != 0) {
        set_error (0, "argument '%s' contradicts the others", key);
        return NULL;
      }
      json_object_set_new (filter, "status", json_string (st));
    }
  }
  if ((v = json_object_get (filter, "type")) != NULL) {
    enum job_type t;

    if (job_type_parse (json_string_value (v), &t) == -1)
      return NULL;
  }
  return jobs_with_progress (a, store_jobs_query (a->store, filter));
}

static int
job_id_arg (json_t *args, int64_t *id)
{
  json_t *v = json_object_get (args, "id");

  if (!json_is_integer (v) || json_object_size (args) != 1) {
    set_error (0, "expected one argument 'id', an integer");
    return -1;
  }
  *id = json_integer_value (v);
  return 0;
}

static json_t *
cmd_job_cancel (struct agent *a, json_t *args)
{
  int64_t id;

  if (job_id_arg (args, &id) == -1 || runner_cancel (a, id) == -1)
    return NULL;
  return json_object ();
}

static json_t *
cmd_query_job_log (struct agent *a, json_t *args)
{
  CLEANUP_FREE char *state = NULL;
  CLEANUP_FREE char *log = NULL;
  int64_t id;

  if (job_id_arg (args, &id) == -1)
    return NULL;
  log = store_job_log (a->store, id, &state);
  if (log == NULL)
    return NULL;
  return json_pack ("{s:s, s:s}", "status", state, "log", log);
}

static json_t *
cmd_query_agent (struct agent *a, json_t *args)
{
  json_t *counts = store_jobs_count (a->store);

  if (counts == NULL)
    return NULL;
  return json_pack ("{s:i, s:s, s:o, s:o}", "pid", (int) getpid (), "version",
                    PACKAGE_VERSION, "jobs", counts, "settings",
                    settings_object (&a->cfg));
}

static json_t *
cmd_schedule_set (struct agent *a, json_t *args)
{
  if (schedule_set (a, args) == -1)
    return NULL;
  return json_object ();
}

static json_t *
cmd_schedule_remove (struct agent *a, json_t *args)
{
  const char *name = json_string_value (json_object_get (args, "name"));

  if (name == NULL || json_object_size (args) != 1) {
    set_error (0, "expected one argument 'name', a string");
    return NULL;
  }
  if (store_schedule_remove (a->store, name) == -1)
    return NULL;
  return json_object ();
}

static json_t *
cmd_query_schedules (struct agent *a, json_t *args)
{
  return schedules_query (a);
}

/* knib list (not a job: it only reads manifests) runs in a child whose
 * output the main loop collects, so other clients are answered
 * meanwhile; at most LIST_TIMEOUT_MS. */
#define LIST_TIMEOUT_MS 60000

/* list-backups' arguments checked, as knib's command line. */
static json_t *
list_argv (struct agent *a, json_t *args)
{
  const char *repo = json_string_value (json_object_get (args, "repo"));
  const json_t *vm = json_object_get (args, "vm");
  json_t *argv;

  if (repo == NULL || repo[0] == '\0') {
    set_error (0, "missing argument 'repo', a string");
    return NULL;
  }
  if (json_object_size (args) != 1 + (vm != NULL)) {
    set_error (0, "list-backups takes 'repo' and 'vm' only");
    return NULL;
  }
  if (vm != NULL
      && (!json_is_string (vm)
          || name_check ("vm", json_string_value (vm)) == -1)) {
    if (!json_is_string (vm))
      set_error (0, "argument 'vm' must be a string");
    return NULL;
  }
  if (a->config_path != NULL)
    argv = json_pack ("[s, s, s, s, s, s, s]", a->knib, "--config",
                      a->config_path, "list", "--repo", repo, "--json");
  else
    argv = json_pack ("[s, s, s, s, s]", a->knib, "list", "--repo", repo,
                      "--json");
  if (argv != NULL && vm != NULL)
    json_array_append (argv, (json_t *) vm);
  if (argv == NULL)
    set_error (ENOMEM, "list-backups");
  return argv;
}

/* The socket runs list-backups itself (server_list_start); through
 * agent_dispatch alone it only checks the arguments. */
static json_t *
cmd_list_backups (struct agent *a, json_t *args)
{
  json_auto_t *argv = list_argv (a, args);

  if (argv != NULL)
    set_error (0, "list-backups is answered on knibd's socket only");
  return NULL;
}

static json_t *cmd_query_commands (struct agent *a, json_t *args);

/* A command either runs a function or queues a job of a type. */
static const struct command {
  const char *name;
  json_t *(*run) (struct agent *a, json_t *args);
  enum job_type job;
} commands[] = {
  { .name = "query-version", .run = cmd_query_version },
  { .name = "query-commands", .run = cmd_query_commands },
  { .name = "query-agent", .run = cmd_query_agent },
  { .name = "query-settings", .run = cmd_query_settings },
  { .name = "set-settings", .run = cmd_set_settings },
  { .name = "query-jobs", .run = cmd_query_jobs },
  { .name = "query-job-log", .run = cmd_query_job_log },
  { .name = "job-cancel", .run = cmd_job_cancel },
  { .name = "backup", .job = JOB_BACKUP },
  { .name = "restore", .job = JOB_RESTORE },
  { .name = "validate", .job = JOB_VALIDATE },
  { .name = "compress", .job = JOB_COMPRESS_START },
  { .name = "delete", .job = JOB_DELETE },
  { .name = "prune", .job = JOB_PRUNE },
  { .name = "verify", .job = JOB_VERIFY },
  { .name = "merge", .job = JOB_MERGE },
  { .name = "list-backups", .run = cmd_list_backups },
  { .name = "schedule-set", .run = cmd_schedule_set },
  { .name = "schedule-remove", .run = cmd_schedule_remove },
  { .name = "query-schedules", .run = cmd_query_schedules },
};

static json_t *
cmd_query_commands (struct agent *a, json_t *args)
{
  json_t *arr = json_array ();

  for (size_t i = 0; arr && i < sizeof commands / sizeof commands[0]; i++)
    json_array_append_new (arr, json_pack ("{s:s}", "name", commands[i].name));
  return arr;
}

static json_t *
submit (struct agent *a, enum job_type t, json_t *args)
{
  int64_t id = runner_submit (a, t, args);

  if (id == -1)
    return NULL;
  /* It starts in the main loop, after the reply went out. */
  return json_pack ("{s:I}", "id", (json_int_t) id);
}

json_t *
agent_dispatch (struct agent *a, json_t *msg, bool *negotiated)
{
  json_t *exec = json_object_get (msg, "execute");
  json_t *args = json_object_get (msg, "arguments");
  json_t *id = json_object_get (msg, "id");
  json_t *ret = NULL, *reply;
  const char *name = json_string_value (exec);
  const char *key;
  json_t *v;

  json_object_foreach (msg, key, v)
  {
    if (strcmp (key, "execute") != 0 && strcmp (key, "arguments") != 0
        && strcmp (key, "id") != 0) {
      CLEANUP_FREE char *desc = NULL;

      if (asprintf (&desc, "message member '%s' is unexpected", key) == -1)
        desc = NULL;
      reply = error_reply ("GenericError", desc ? desc : "unexpected member");
      goto out;
    }
  }
  if (name == NULL) {
    reply = error_reply ("GenericError",
                         "expected a message with 'execute', a string");
    goto out;
  }
  if (args != NULL && !json_is_object (args)) {
    reply = error_reply ("GenericError", "'arguments' must be an object");
    goto out;
  }
  if (strcmp (name, "qmp_capabilities") == 0) {
    if (*negotiated)
      reply = error_reply ("CommandNotFound",
                           "capabilities negotiation is already complete");
    else {
      *negotiated = true;
      reply = json_pack ("{s:{}}", "return");
    }
    goto out;
  }
  if (!*negotiated) {
    reply = error_reply ("CommandNotFound",
                         "expecting capabilities negotiation with "
                         "'qmp_capabilities'");
    goto out;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp (commands[i].name, name) == 0) {
      json_auto_t *empty = json_object ();

      error_clear ();
      ret = commands[i].run ? commands[i].run (a, args ? args : empty)
                            : submit (a, commands[i].job, args ? args : empty);
      reply = ret ? json_pack ("{s:o}", "return", ret)
                  : error_reply ("GenericError", get_error ());
      goto out;
    }
  {
    CLEANUP_FREE char *desc = NULL;

    if (asprintf (&desc, "the command %s has not been found", name) == -1)
      desc = NULL;
    reply = error_reply ("CommandNotFound", desc ? desc : "unknown command");
  }
out:
  if (reply != NULL && id != NULL)
    json_object_set (reply, "id", id);
  return reply;
}

/* ------------------------------------------------------------------ */
/* The socket. */

static void
client_close (struct server *s, size_t i)
{
  close (s->clients[i].fd);
  qmp_framer_release (&s->clients[i].framer);
  s->clients[i] = s->clients[--s->n];
}

/* -1 when the client must go. */
static int
client_send (struct client *c, json_t *msg)
{
  CLEANUP_FREE char *text = json_dumps (msg, JSON_COMPACT);
  struct qmp_wait w;
  size_t len;

  if (text == NULL)
    return -1;
  len = strlen (text);
  text[len] = '\n'; /* json_dumps ends with NUL: make room */
  qmp_wait_init (&w, NULL, SEND_TIMEOUT_MS);
  if (qmp_send_all (c->fd, text, len + 1, &w) != 0)
    return -1;
  return 0;
}

static json_t *
greeting (void)
{
  int major = 0, minor = 0, micro = 0;

  sscanf (PACKAGE_VERSION, "%d.%d.%d", &major, &minor, &micro);
  return json_pack ("{s:{s:{s:{s:i, s:i, s:i}, s:s}, s:[]}}", "QMP", "version",
                    "qemu", "major", major, "minor", minor, "micro", micro,
                    "package", "knibd " PACKAGE_VERSION, "capabilities");
}

/* gid is among the supplementary groups of process pid. */
static bool
proc_in_group (pid_t pid, gid_t gid)
{
  char path[64];
  CLEANUP_FCLOSE FILE *fp = NULL;
  CLEANUP_FREE char *line = NULL;
  size_t cap = 0;

  snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
  fp = fopen (path, "re");
  if (fp == NULL)
    return false;
  while (getline (&line, &cap, fp) != -1) {
    char *p = line, *end;

    if (strncmp (line, "Groups:", 7) != 0)
      continue;
    p += 7;
    for (;;) {
      unsigned long g = strtoul (p, &end, 10);

      if (end == p)
        return false;
      if ((gid_t) g == gid)
        return true;
      p = end;
    }
  }
  return false;
}

static bool
peer_allowed (struct server *s, int fd, struct ucred *cred)
{
  socklen_t len = sizeof *cred;

  if (getsockopt (fd, SOL_SOCKET, SO_PEERCRED, cred, &len) == -1)
    return false;
  if (cred->uid == 0)
    return true;
  if (s->group == (gid_t) -1)
    return false;
  return cred->gid == s->group || proc_in_group (cred->pid, s->group);
}

void
server_accept (struct server *s)
{
  int fd = accept4 (s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  struct ucred cred;
  struct client *c;
  json_auto_t *g = NULL;

  if (fd == -1)
    return;
  if (!peer_allowed (s, fd, &cred)) {
    json_auto_t *e
      = error_reply ("GenericError", "permission denied: knibd takes commands "
                                     "from root or its agent-group only");
    struct client tmp = { .fd = fd };

    fprintf (stderr, "knibd: refused a client (uid %d)\n", (int) cred.uid);
    (void) client_send (&tmp, e);
    close (fd);
    return;
  }
  if (s->n == MAX_CLIENTS) {
    json_auto_t *e = error_reply ("GenericError", "too many clients");
    struct client tmp = { .fd = fd };

    (void) client_send (&tmp, e);
    close (fd);
    return;
  }
  c = &s->clients[s->n];
  c->fd = fd;
  c->serial = ++s->next_serial;
  c->negotiated = false;
  qmp_framer_init (&c->framer, AGENT_MAX_MESSAGE);
  g = greeting ();
  if (g == NULL || client_send (c, g) == -1) {
    close (fd);
    qmp_framer_release (&c->framer);
    return;
  }
  s->n++;
}

/* ------------------------------------------------------------------ */
/* list-backups in a child. */

/* A well-formed list-backups after negotiation: the socket runs it. */
static bool
is_list_request (const json_t *msg, bool negotiated)
{
  const char *name = json_string_value (json_object_get (msg, "execute"));
  const json_t *args = json_object_get (msg, "arguments");
  size_t members = 1 + (args != NULL) + (json_object_get (msg, "id") != NULL);

  return negotiated && name != NULL && strcmp (name, "list-backups") == 0
         && (args == NULL || json_is_object (args))
         && json_object_size (msg) == members;
}

static void
listing_release (struct listing *l)
{
  if (l->out != -1)
    close (l->out);
  if (l->err != -1)
    close (l->err);
  free (l->out_buf);
  free (l->err_buf);
  json_decref (l->id);
}

/* Fork knib list with its stdout and stderr on pipes; 0 or -1. */
static int
listing_spawn (struct listing *l, const json_t *argv)
{
  size_t n = json_array_size (argv);
  CLEANUP_FREE char **args = calloc (n + 1, sizeof *args);
  int out[2] = { -1, -1 }, err[2] = { -1, -1 };

  if (args == NULL) {
    set_error (ENOMEM, "list-backups");
    return -1;
  }
  for (size_t i = 0; i < n; i++)
    args[i] = (char *) json_string_value (json_array_get (argv, i));
  if (pipe2 (out, O_CLOEXEC) == -1 || pipe2 (err, O_CLOEXEC) == -1
      || (l->pid = fork ()) == -1) {
    set_error (errno, "list-backups: cannot run knib list");
    for (int i = 0; i < 2; i++) {
      if (out[i] != -1)
        close (out[i]);
      if (err[i] != -1)
        close (err[i]);
    }
    return -1;
  }
  if (l->pid == 0) {
    sigset_t none;
    int null = open ("/dev/null", O_RDONLY);

    sigemptyset (&none);
    sigprocmask (SIG_SETMASK, &none, NULL);
    if (null == -1 || dup2 (null, 0) == -1 || dup2 (out[1], 1) == -1
        || dup2 (err[1], 2) == -1)
      _exit (127);
    if (strchr (args[0], '/') != NULL)
      execv (args[0], args);
    else
      execvp (args[0], args);
    dprintf (2, "knibd: cannot run '%s': %s\n", args[0], strerror (errno));
    _exit (127);
  }
  close (out[1]);
  close (err[1]);
  l->out = out[0];
  l->err = err[0];
  fcntl (l->out, F_SETFL, O_NONBLOCK);
  fcntl (l->err, F_SETFL, O_NONBLOCK);
  l->deadline = deadline_after_ms (LIST_TIMEOUT_MS);
  return 0;
}

/* Start the listing for client c; the error reply when it cannot. */
static json_t *
server_list_start (struct server *s, struct client *c, const json_t *msg)
{
  const json_t *id = json_object_get (msg, "id");
  json_t *args = json_object_get (msg, "arguments");
  json_auto_t *empty = json_object ();
  json_auto_t *argv = NULL;
  struct listing *l;
  json_t *reply;

  error_clear ();
  argv = list_argv (s->a, args ? args : empty);
  if (argv != NULL && s->n_lists == MAX_CLIENTS)
    set_error (EAGAIN, "list-backups: too many listings at once");
  if (argv != NULL && s->n_lists < MAX_CLIENTS) {
    l = &s->lists[s->n_lists];
    *l = (struct listing) { .client = c->serial, .out = -1, .err = -1 };
    if (listing_spawn (l, argv) == 0) {
      l->id = json_incref ((json_t *) id);
      s->n_lists++;
      return NULL;
    }
  }
  reply = error_reply ("GenericError", get_error ());
  if (reply != NULL && id != NULL)
    json_object_set (reply, "id", (json_t *) id);
  return reply;
}

/* Read what a pipe has (bounded: more than max is cut); -1 at its end. */
static int
pipe_drain (int *fd, char **buf, size_t *len, size_t max)
{
  char tmp[16384];
  ssize_t r;

  while ((r = read (*fd, tmp, sizeof tmp)) > 0) {
    size_t take = *len + r > max ? max - *len : (size_t) r;
    char *nb = realloc (*buf, *len + take + 1);

    if (nb == NULL)
      break;
    *buf = nb;
    memcpy (*buf + *len, tmp, take);
    *len += take;
    (*buf)[*len] = '\0';
  }
  if (r == -1 && (errno == EAGAIN || errno == EINTR))
    return 0;
  close (*fd);
  *fd = -1;
  return -1;
}

/* The reply of a listing that ended (or timed out). */
static json_t *
listing_reply (struct listing *l, bool timed_out)
{
  json_t *ret = NULL, *reply;
  const char *err = l->err_buf ? l->err_buf : "";
  size_t n = strlen (err);

  /* Exit status 1 with a list: some backups could not be read, which
   * the list's "problems" say. */
  if (!timed_out && l->out_buf != NULL)
    ret = json_loads (l->out_buf, 0, NULL);
  if (ret != NULL)
    reply = json_pack ("{s:o}", "return", ret);
  else {
    CLEANUP_FREE char *desc = NULL;

    while (n > 0 && err[n - 1] == '\n')
      n--;
    if (timed_out)
      desc = strdup ("knib list: timed out after 60 s: killed");
    else if (asprintf (&desc, "knib list: %.*s", (int) n,
                       n > 0 ? err : "no JSON on its output")
             == -1)
      desc = NULL;
    reply = error_reply ("GenericError", desc ? desc : "knib list failed");
  }
  if (reply != NULL && l->id != NULL)
    json_object_set (reply, "id", l->id);
  return reply;
}

static struct client *
client_by_serial (struct server *s, uint64_t serial)
{
  for (size_t i = 0; i < s->n; i++)
    if (s->clients[i].serial == serial)
      return &s->clients[i];
  return NULL;
}

static int client_send (struct client *c, json_t *msg);
static void client_close (struct server *s, size_t i);

/* Send listing k's reply and drop it. */
static void
listing_finish (struct server *s, size_t k, bool timed_out)
{
  struct listing *l = &s->lists[k];
  json_auto_t *reply = NULL;
  struct client *c = client_by_serial (s, l->client);

  if (timed_out)
    kill (l->pid, SIGKILL); /* runner_reap reaps it */
  if (c != NULL) {
    reply = listing_reply (l, timed_out);
    if (reply == NULL || client_send (c, reply) == -1)
      client_close (s, (size_t) (c - s->clients));
  }
  listing_release (l);
  s->lists[k] = s->lists[--s->n_lists];
}

int
server_next_ms (struct server *s)
{
  int64_t next = -1;

  for (size_t k = 0; k < s->n_lists; k++) {
    int64_t left = deadline_remaining_ms (s->lists[k].deadline);

    if (next == -1 || left < next)
      next = left;
  }
  return next > INT32_MAX ? INT32_MAX : (int) next;
}

/* Handle what the client sent; -1 when it must go. */
static int
client_read (struct server *s, struct client *c)
{
  char buf[16384];
  ssize_t n = recv (c->fd, buf, sizeof buf, 0);
  char *line;
  size_t len;
  int r;

  if (n == -1 && (errno == EAGAIN || errno == EINTR))
    return 0;
  if (n <= 0)
    return -1;
  if (qmp_framer_feed (&c->framer, buf, n) == -1) {
    json_auto_t *e = error_reply ("GenericError", get_error ());

    (void) client_send (c, e);
    return -1; /* the stream cannot be resynchronised */
  }
  while ((r = qmp_framer_next (&c->framer, &line, &len)) == 1) {
    json_auto_t *msg = qmp_message_parse (line, len);
    json_auto_t *reply = NULL;

    free (line);
    if (msg == NULL)
      reply = error_reply ("GenericError", get_error ());
    else if (is_list_request (msg, c->negotiated)) {
      reply = server_list_start (s, c, msg);
      if (reply == NULL)
        continue; /* answered when knib list ends */
    }
    else
      reply = agent_dispatch (s->a, msg, &c->negotiated);
    if (reply == NULL || client_send (c, reply) == -1)
      return -1;
  }
  if (r == -1) {
    json_auto_t *e = error_reply ("GenericError", get_error ());

    (void) client_send (c, e);
    return -1;
  }
  return 0;
}

size_t
server_poll_fill (struct server *s, void *pfds_, size_t max)
{
  struct pollfd *pfds = pfds_;
  size_t n = 0;

  for (size_t k = s->n_lists; k-- > 0;)
    if (deadline_remaining_ms (s->lists[k].deadline) == 0)
      listing_finish (s, k, true);
  for (size_t i = 0; i < s->n && n < max; i++, n++)
    pfds[n] = (struct pollfd) { .fd = s->clients[i].fd, .events = POLLIN };
  for (size_t k = 0; k < s->n_lists; k++) {
    if (s->lists[k].out != -1 && n < max)
      pfds[n++] = (struct pollfd) { .fd = s->lists[k].out, .events = POLLIN };
    if (s->lists[k].err != -1 && n < max)
      pfds[n++] = (struct pollfd) { .fd = s->lists[k].err, .events = POLLIN };
  }
  return n;
}

void
server_poll_done (struct server *s, const void *pfds_, size_t n)
{
  const struct pollfd *pfds = pfds_;

  /* Listings first (a client's read may start one, moving the others
   * about), then clients.  Both are matched by fd: closing one moves
   * another into its slot. */
  for (size_t k = 0; k < n; k++) {
    if (pfds[k].revents == 0)
      continue;
    for (size_t m = 0; m < s->n_lists; m++) {
      struct listing *l = &s->lists[m];

      if (l->out == pfds[k].fd)
        (void) pipe_drain (&l->out, &l->out_buf, &l->out_len, AGENT_MAX_RESULT);
      else if (l->err == pfds[k].fd)
        (void) pipe_drain (&l->err, &l->err_buf, &l->err_len, AGENT_MAX_LOG);
      else
        continue;
      if (l->out == -1 && l->err == -1)
        listing_finish (s, m, false);
      break;
    }
  }
  for (size_t k = 0; k < n; k++) {
    if (pfds[k].revents == 0)
      continue;
    for (size_t i = 0; i < s->n; i++)
      if (s->clients[i].fd == pfds[k].fd) {
        if (client_read (s, &s->clients[i]) == -1)
          client_close (s, i);
        break;
      }
  }
}

void
server_emit (struct server *s, const char *event, json_t *data)
{
  struct timeval tv;
  json_t *msg;

  gettimeofday (&tv, NULL);
  msg = json_pack ("{s:s, s:o, s:{s:I, s:I}}", "event", event, "data", data,
                   "timestamp", "seconds", (json_int_t) tv.tv_sec,
                   "microseconds", (json_int_t) tv.tv_usec);
  if (msg == NULL)
    return;
  for (size_t i = s->n; i-- > 0;)
    if (s->clients[i].negotiated && client_send (&s->clients[i], msg) == -1)
      client_close (s, i);
  json_decref (msg);
}

int
server_fd (const struct server *s)
{
  return s->fd;
}

struct server *
server_new (struct agent *a, const char *path, gid_t group)
{
  struct server *s = calloc (1, sizeof *s);
  struct sockaddr_un addr = { .sun_family = AF_UNIX };

  if (s == NULL || (s->path = strdup (path)) == NULL) {
    free (s);
    set_error (ENOMEM, "socket '%s'", path);
    return NULL;
  }
  s->a = a;
  s->group = group;
  if (strlen (path) >= sizeof addr.sun_path) {
    set_error (ENAMETOOLONG, "socket '%s': the path is too long", path);
    server_free (s);
    return NULL;
  }
  strcpy (addr.sun_path, path);
  s->fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s->fd == -1) {
    set_error (errno, "socket '%s'", path);
    server_free (s);
    return NULL;
  }
  /* A socket file left by a knibd that was killed: the caller holds the
   * state directory's lock, so no other knibd listens on it. */
  unlink (path);
  if (bind (s->fd, (struct sockaddr *) &addr, sizeof addr) == -1
      || chmod (path, group == (gid_t) -1 ? 0600 : 0660) == -1
      || (group != (gid_t) -1 && chown (path, (uid_t) -1, group) == -1)
      || listen (s->fd, 64) == -1) {
    set_error (errno, "socket '%s'", path);
    server_free (s);
    return NULL;
  }
  return s;
}

void
server_free (struct server *s)
{
  if (s == NULL)
    return;
  while (s->n_lists > 0) {
    kill (s->lists[s->n_lists - 1].pid, SIGKILL);
    listing_release (&s->lists[--s->n_lists]);
  }
  while (s->n > 0)
    client_close (s, s->n - 1);
  if (s->fd > 0) {
    close (s->fd);
    unlink (s->path);
  }
  free (s->path);
  free (s);
}
