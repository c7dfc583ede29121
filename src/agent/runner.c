/* SPDX-License-Identifier: Apache-2.0 */
/* runner.c: knibd's jobs: check a request, queue it, start it as a knib
 * child in its own process group under limits and per-VM conflicts,
 * kill it at its timeout, retry it, adopt it after a restart. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/util.h"
#include "internal.h"

static const char *const state_names[] = {
  [JOB_QUEUED] = "queued",       [JOB_RUNNING] = "running",
  [JOB_SUCCEEDED] = "succeeded", [JOB_FAILED] = "failed",
  [JOB_CANCELLED] = "cancelled", [JOB_INTERRUPTED] = "interrupted",
  [JOB_HELD] = "held",
};

static const char *const type_names[] = {
  [JOB_BACKUP] = "backup",
  [JOB_RESTORE] = "restore",
  [JOB_VALIDATE] = "validate",
  [JOB_COMPRESS_START] = "compress-start",
  [JOB_COMPRESS_FINALIZE] = "compress-finalize",
  [JOB_DELETE] = "delete",
  [JOB_PRUNE] = "prune",
  [JOB_VERIFY] = "verify",
  [JOB_MERGE] = "merge",
};

const char *
job_state_name (enum job_state s)
{
  return state_names[s];
}

const char *
job_type_name (enum job_type t)
{
  return type_names[t];
}

int
job_type_parse (const char *name, enum job_type *t)
{
  for (enum job_type i = JOB_BACKUP; i <= JOB_TYPE_LAST; i++)
    if (strcmp (type_names[i], name) == 0) {
      *t = i;
      return 0;
    }
  set_error (0, "unknown job type '%s'", name);
  return -1;
}

void
job_free (struct job *j)
{
  if (j == NULL)
    return;
  free (j->vm);
  free (j->backup);
  json_decref (j->request);
  json_decref (j->argv);
  json_decref (j->progress);
  free (j->error);
  free (j);
}

static double
now_wall (void)
{
  struct timeval tv;

  gettimeofday (&tv, NULL);
  return tv.tv_sec + tv.tv_usec / 1e6;
}

/* ------------------------------------------------------------------ */
/* Requests: which arguments each job takes and how they become knib's
 * options. */

enum arg_type {
  ARG_NAME,   /* a VM, disk or backup name: checked like one */
  ARG_STRING, /* a path or a word */
  ARG_INT,
  ARG_BOOL,
  ARG_NAMES, /* an array of names */
  ARG_WORDS, /* an array of strings: a command and its arguments, after
                "--" */
  ARG_AGENT, /* for knibd itself (an integer), not passed on */
};

struct arg_spec {
  const char *name;
  enum arg_type type;
  const char *option; /* NULL: a positional argument */
  bool required;
  const char *const *choices; /* for ARG_STRING: the allowed values */
};

/* The integers whose range is narrower than 0 to 1000000000: knib
 * validate's. */
static const struct int_range {
  const char *name;
  int64_t min, max;
} int_ranges[] = {
  { "boot-timeout", 1, 86400 }, { "command-timeout", 1, 86400 },
  { "expect-exit", 0, 255 },    { "memory", 16, 16 * 1024 * 1024 },
  { "cpus", 1, 255 },
};

static const char *const backup_modes[]
  = { "auto", "full", "incremental", "isolated", NULL };
static const char *const backup_compress[]
  = { "none", "zstd", "zlib", "deferred", NULL };
static const char *const compress_types[] = { "zstd", "zlib", NULL };
static const char *const formats[] = { "qcow2", "raw", NULL };
static const char *const accels[] = { "auto", "kvm", "tcg", NULL };

#define AGENT_ARGS                                                             \
  { "timeout", ARG_AGENT, NULL, false, NULL },                                 \
  {                                                                            \
    "retries", ARG_AGENT, NULL, false, NULL                                    \
  }

static const struct arg_spec backup_args[] = {
  { "vm", ARG_NAME, "--vm", true, NULL },
  { "repo", ARG_STRING, "--repo", true, NULL },
  { "qmp", ARG_STRING, "--qmp", false, NULL },
  { "domain", ARG_NAME, "--domain", false, NULL },
  { "image", ARG_NAMES, "--image", false, NULL },
  { "disk", ARG_STRING, "--disk", false, NULL },
  { "mode", ARG_STRING, NULL, false, backup_modes },
  { "compress", ARG_STRING, "--compress", false, backup_compress },
  { "chain-size", ARG_INT, "--chain-size", false, NULL },
  { "scratch", ARG_STRING, "--scratch", false, NULL },
  { "rate-limit", ARG_INT, "--rate-limit", false, NULL },
  AGENT_ARGS,
  { NULL, ARG_AGENT, NULL, false, NULL },
};

/* To new files (to), in place (image, or domain), or the consolidation
 * of a quick restore (consolidate, with domain or qmp). */
static const struct arg_spec restore_args[] = {
  { "vm", ARG_NAME, "--vm", true, NULL },
  { "repo", ARG_STRING, "--repo", true, NULL },
  { "backup", ARG_NAME, NULL, false, NULL },
  { "to", ARG_STRING, "--to", false, NULL },
  { "disk", ARG_NAME, "--disk", false, NULL },
  { "format", ARG_STRING, "--format", false, formats },
  { "force", ARG_BOOL, "--force", false, NULL },
  { "domain", ARG_NAME, "--domain", false, NULL },
  { "image", ARG_NAMES, "--image", false, NULL },
  { "qmp", ARG_STRING, "--qmp", false, NULL },
  { "quick", ARG_BOOL, "--quick", false, NULL },
  { "start", ARG_BOOL, "--start", false, NULL },
  { "stop", ARG_BOOL, "--stop", false, NULL },
  { "consolidate", ARG_BOOL, "--consolidate", false, NULL },
  { "rate-limit", ARG_INT, "--rate-limit", false, NULL },
  AGENT_ARGS,
  { NULL, ARG_AGENT, NULL, false, NULL },
};

/* knib validate: a boot validation; its ranges are knib validate's. */
static const struct arg_spec validate_args[] = {
  { "vm", ARG_NAME, "--vm", true, NULL },
  { "repo", ARG_STRING, "--repo", true, NULL },
  { "backup", ARG_NAME, NULL, true, NULL },
  { "boot-timeout", ARG_INT, "--boot-timeout", false, NULL },
  { "command-timeout", ARG_INT, "--command-timeout", false, NULL },
  { "expect-exit", ARG_INT, "--expect-exit", false, NULL },
  { "expect-output", ARG_STRING, "--expect-output", false, NULL },
  { "no-screenshot", ARG_BOOL, "--no-screenshot", false, NULL },
  { "accel", ARG_STRING, "--accel", false, accels },
  { "memory", ARG_INT, "--memory", false, NULL },
  { "cpus", ARG_INT, "--cpus", false, NULL },
  { "scratch", ARG_STRING, "--scratch", false, NULL },
  { "command", ARG_WORDS, NULL, false, NULL },
  AGENT_ARGS,
  { NULL, ARG_AGENT, NULL, false, NULL },
};

/* knib verify: the integrity check of a backup, or of every backup of
 * the VM. */
static const struct arg_spec verify_args[] = {
  { "vm", ARG_NAME, "--vm", true, NULL },
  { "repo", ARG_STRING, "--repo", true, NULL },
  { "backup", ARG_NAME, NULL, false, NULL },
  AGENT_ARGS,
  { NULL, ARG_AGENT, NULL, false, NULL },
};

static const struct arg_spec merge_args[] = {
  { "vm", ARG_NAME, "--vm", true, NULL },
  { "repo", ARG_STRING, "--repo", true, NULL },
  { "backup", ARG_NAME, NULL, true, NULL },
  AGENT_ARGS,
  { NULL, ARG_AGENT, NULL, false, NULL },
};

static const struct arg_spec compress_args[] = {
  { "vm", ARG_NAME, "--vm", true, NULL },
  { "repo", ARG_STRING, "--repo", true, NULL },
  { "backup", ARG_NAME, NULL, true, NULL },
  { "compress", ARG_STRING, "--compress", false, compress_types },
  AGENT_ARGS,
  { NULL, ARG_AGENT, NULL, false, NULL },
};

static const struct arg_spec delete_args[] = {
  { "vm", ARG_NAME, "--vm", true, NULL },
  { "repo", ARG_STRING, "--repo", true, NULL },
  { "backups", ARG_NAMES, NULL, true, NULL },
  AGENT_ARGS,
  { NULL, ARG_AGENT, NULL, false, NULL },
};

static const struct arg_spec prune_args[] = {
  { "vm", ARG_NAME, "--vm", true, NULL },
  { "repo", ARG_STRING, "--repo", true, NULL },
  { "keep-last", ARG_INT, "--keep-last", true, NULL },
  { "keep-daily", ARG_INT, "--keep-daily", false, NULL },
  { "keep-weekly", ARG_INT, "--keep-weekly", false, NULL },
  AGENT_ARGS,
  { NULL, ARG_AGENT, NULL, false, NULL },
};

static const struct arg_spec *
job_args (enum job_type t)
{
  switch (t) {
  case JOB_BACKUP:
    return backup_args;
  case JOB_RESTORE:
    return restore_args;
  case JOB_VALIDATE:
    return validate_args;
  case JOB_VERIFY:
    return verify_args;
  case JOB_MERGE:
    return merge_args;
  case JOB_COMPRESS_START:
  case JOB_COMPRESS_FINALIZE:
    return compress_args;
  case JOB_DELETE:
    return delete_args;
  case JOB_PRUNE:
    return prune_args;
  }
  return NULL;
}

static bool
choice_ok (const char *const *choices, const char *v)
{
  if (choices == NULL)
    return true;
  for (size_t i = 0; choices[i] != NULL; i++)
    if (strcmp (choices[i], v) == 0)
      return true;
  return false;
}

static int
arg_check (const struct arg_spec *s, const json_t *v)
{
  switch (s->type) {
  case ARG_NAME:
    if (!json_is_string (v)) {
      set_error (0, "argument '%s' must be a string", s->name);
      return -1;
    }
    if (name_check (s->name, json_string_value (v)) == -1) {
      error_prepend ("argument '%s'", s->name);
      return -1;
    }
    return 0;
  case ARG_STRING:
    if (!json_is_string (v) || json_string_length (v) == 0
        || json_string_length (v) > 4096
        || strlen (json_string_value (v)) != json_string_length (v)) {
      set_error (0, "argument '%s' must be a non-empty string", s->name);
      return -1;
    }
    if (!choice_ok (s->choices, json_string_value (v))) {
      set_error (0, "argument '%s': '%s' is not a valid choice", s->name,
                 json_string_value (v));
      return -1;
    }
    return 0;
  case ARG_INT:
  case ARG_AGENT: {
    int64_t min = 0, max = 1000000000;

    for (size_t i = 0; i < sizeof int_ranges / sizeof int_ranges[0]; i++)
      if (strcmp (int_ranges[i].name, s->name) == 0) {
        min = int_ranges[i].min;
        max = int_ranges[i].max;
      }

    if (!json_is_integer (v) || json_integer_value (v) < min
        || json_integer_value (v) > max) {
      set_error (
        0, "argument '%s' must be an integer from %" PRIi64 " to %" PRIi64,
        s->name, min, max);
      return -1;
    }
    return 0;
  }
  case ARG_WORDS:
    if (!json_is_array (v) || json_array_size (v) == 0
        || json_array_size (v) > 1024) {
      set_error (0, "argument '%s' must be a non-empty array", s->name);
      return -1;
    }
    for (size_t i = 0; i < json_array_size (v); i++) {
      const json_t *e = json_array_get (v, i);

      if (!json_is_string (e) || json_string_length (e) > 4096
          || strlen (json_string_value (e)) != json_string_length (e)
          || (i == 0 && json_string_length (e) == 0)) {
        set_error (0,
                   "argument '%s' must hold strings (the program first, "
                   "not empty)",
                   s->name);
        return -1;
      }
    }
    return 0;
  case ARG_BOOL:
    if (!json_is_boolean (v)) {
      set_error (0, "argument '%s' must be true or false", s->name);
      return -1;
    }
    return 0;
  case ARG_NAMES:
    if (!json_is_array (v) || json_array_size (v) == 0
        || json_array_size (v) > 1024) {
      set_error (0, "argument '%s' must be a non-empty array", s->name);
      return -1;
    }
    for (size_t i = 0; i < json_array_size (v); i++) {
      const json_t *e = json_array_get (v, i);
      /* --image takes DISK=PATH: only the disk is a name. */
      const char *str = json_string_value (e);
      CLEANUP_FREE char *name = str ? strndup (str, strcspn (str, "=")) : NULL;

      if (!json_is_string (e) || name == NULL
          || (s->option == NULL && str[strlen (name)] != '\0')
          || name_check (s->name, name) == -1) {
        if (!json_is_string (e) || name == NULL)
          set_error (0, "argument '%s' must hold strings", s->name);
        else
          error_prepend ("argument '%s'", s->name);
        return -1;
      }
    }
    return 0;
  }
  return 0;
}

static bool
has_true (const json_t *args, const char *key)
{
  return json_is_true (json_object_get (args, key));
}

/* Which restore it is: the members that go together. */
static int
restore_check (const json_t *args)
{
  bool backup = json_object_get (args, "backup") != NULL;
  int targets = (json_object_get (args, "to") != NULL)
                + (json_object_get (args, "image") != NULL)
                + (json_object_get (args, "domain") != NULL);

  if (has_true (args, "consolidate")) {
    if (backup || json_object_get (args, "to")
        || json_object_get (args, "image") || has_true (args, "quick")
        || has_true (args, "start") || has_true (args, "stop")) {
      set_error (0, "a consolidation takes 'domain' or 'qmp' and no "
                    "'backup', 'to', 'image', 'quick', 'start', 'stop'");
      return -1;
    }
    if ((json_object_get (args, "domain") != NULL)
        == (json_object_get (args, "qmp") != NULL)) {
      set_error (0, "a consolidation needs one of 'domain', 'qmp'");
      return -1;
    }
    return 0;
  }
  if (!backup) {
    set_error (0, "missing argument 'backup'");
    return -1;
  }
  if (targets != 1 || json_object_get (args, "qmp") != NULL) {
    set_error (0, "a restore needs exactly one of 'to', 'image', 'domain' "
                  "('qmp' goes with 'consolidate')");
    return -1;
  }
  if ((has_true (args, "start") || has_true (args, "stop"))
      && json_object_get (args, "domain") == NULL) {
    set_error (0, "'start' and 'stop' go with 'domain'");
    return -1;
  }
  return 0;
}

/* A validation's command checks go with a command, one of them. */
static int
validate_check (const json_t *args)
{
  bool exit_ = json_object_get (args, "expect-exit") != NULL;
  bool output = json_object_get (args, "expect-output") != NULL;

  if (exit_ && output) {
    set_error (0, "give 'expect-exit' or 'expect-output', not both");
    return -1;
  }
  if ((exit_ || output) && json_object_get (args, "command") == NULL) {
    set_error (0, "'expect-exit' and 'expect-output' check a 'command'");
    return -1;
  }
  return 0;
}

/* Every member known, of the right type; every required one there. */
static int
request_check (enum job_type type, const json_t *args)
{
  const struct arg_spec *specs = job_args (type);
  const char *key;
  const json_t *v;

  if (!json_is_object (args)) {
    set_error (0, "'arguments' must be an object");
    return -1;
  }
  json_object_foreach ((json_t *) args, key, v)
  {
    const struct arg_spec *s = specs;

    while (s->name != NULL && strcmp (s->name, key) != 0)
      s++;
    if (s->name == NULL) {
      set_error (0, "unknown argument '%s'", key);
      return -1;
    }
    if (arg_check (s, v) == -1)
      return -1;
  }
  for (const struct arg_spec *s = specs; s->name != NULL; s++)
    if (s->required && json_object_get (args, s->name) == NULL) {
      set_error (0, "missing argument '%s'", s->name);
      return -1;
    }
  if (type == JOB_BACKUP
      && (json_object_get (args, "qmp") != NULL)
             + (json_object_get (args, "domain") != NULL)
             + (json_object_get (args, "image") != NULL)
           != 1) {
    set_error (0, "a backup needs exactly one of 'qmp', 'domain', "
                  "'image'");
    return -1;
  }
  if (type == JOB_RESTORE)
    return restore_check (args);
  if (type == JOB_VALIDATE)
    return validate_check (args);
  return 0;
}

static int
argv_add (json_t *argv, const char *s)
{
  return json_array_append_new (argv, json_string (s));
}

static int argv_addf (json_t *argv, const char *fmt, ...)
  __attribute__ ((format (printf, 2, 3)));

static int
argv_addf (json_t *argv, const char *fmt, ...)
{
  va_list ap;
  char *s = NULL;
  int r;

  va_start (ap, fmt);
  r = vasprintf (&s, fmt, ap);
  va_end (ap);
  if (r == -1)
    return -1;
  r = json_array_append_new (argv, json_string (s));
  free (s);
  return r;
}

/* The options of the request, as the table spells them. */
static int
argv_add_request (json_t *argv, const struct arg_spec *specs,
                  const json_t *args)
{
  for (const struct arg_spec *s = specs; s->name != NULL; s++) {
    const json_t *v = json_object_get (args, s->name);

    if (v == NULL)
      continue;
    switch (s->type) {
    case ARG_NAME:
    case ARG_STRING:
      if (s->option == NULL && s->choices == backup_modes) {
        if (strcmp (json_string_value (v), "auto") != 0
            && argv_addf (argv, "--%s", json_string_value (v)) == -1)
          return -1;
        continue;
      }
      if (s->choices == backup_compress
          && strcmp (json_string_value (v), "deferred") == 0) {
        if (argv_add (argv, "--compress") == -1
            || argv_add (argv, "none") == -1)
          return -1;
        continue;
      }
      if ((s->option && argv_add (argv, s->option) == -1)
          || argv_add (argv, json_string_value (v)) == -1)
        return -1;
      break;
    case ARG_INT:
      if (argv_add (argv, s->option) == -1
          || argv_addf (argv, "%" JSON_INTEGER_FORMAT, json_integer_value (v))
               == -1)
        return -1;
      break;
    case ARG_BOOL:
      if (json_is_true (v) && argv_add (argv, s->option) == -1)
        return -1;
      break;
    case ARG_NAMES:
      for (size_t i = 0; i < json_array_size (v); i++)
        if ((s->option && argv_add (argv, s->option) == -1)
            || argv_add (argv, json_string_value (json_array_get (v, i))) == -1)
          return -1;
      break;
    case ARG_WORDS: /* the last words: see argv_add_words */
    case ARG_AGENT:
      break;
    }
  }
  return 0;
}

/* The request's words (a command in the guest) after "--". */
static int
argv_add_words (json_t *argv, const struct arg_spec *specs, const json_t *args)
{
  for (const struct arg_spec *s = specs; s->name != NULL; s++) {
    const json_t *v = json_object_get (args, s->name);

    if (s->type != ARG_WORDS || v == NULL)
      continue;
    if (argv_add (argv, "--") == -1)
      return -1;
    for (size_t i = 0; i < json_array_size (v); i++)
      if (argv_add (argv, json_string_value (json_array_get (v, i))) == -1)
        return -1;
  }
  return 0;
}

/* The knib command line of a job, with the settings as they are now. */
static json_t *
job_argv (struct agent *a, const struct job *j)
{
  const struct knib_config *cfg = &a->cfg;
  json_t *argv = json_array ();
  int r = 0;

  if (argv == NULL)
    return NULL;
  r |= argv_add (argv, a->knib);
  if (a->config_path != NULL)
    r |= argv_add (argv, "--config") | argv_add (argv, a->config_path);
  switch (j->type) {
  case JOB_BACKUP:
    r |= argv_add (argv, "backup") | argv_add (argv, "--json");
    r |= argv_add_request (argv, backup_args, j->request);
    break;
  case JOB_RESTORE:
    r |= argv_add (argv, "restore") | argv_add (argv, "-q");
    r |= argv_add_request (argv, restore_args, j->request);
    /* A job ends when the data is in: a consolidation, or a quick
     * restore that starts its domain, waits for it. */
    if (has_true (j->request, "consolidate")
        || (has_true (j->request, "quick") && has_true (j->request, "start")))
      r |= argv_add (argv, "--wait");
    break;
  case JOB_VALIDATE:
    /* knib validate --repo DIR --vm VM BACKUP [OPTIONS] [-- PROGRAM...] */
    r |= argv_add (argv, "validate") | argv_add (argv, "--json");
    r |= argv_add_request (argv, validate_args, j->request);
    r |= argv_add_words (argv, validate_args, j->request);
    break;
  case JOB_MERGE:
    r |= argv_add (argv, "merge");
    r |= argv_add_request (argv, merge_args, j->request);
    break;
  case JOB_VERIFY:
    /* knib verify --repo DIR [--vm VM] BACKUP | VM */
    r |= argv_add (argv, "verify") | argv_add (argv, "--json");
    r |= argv_add (argv, "--repo")
         | argv_add (argv,
                     json_string_value (json_object_get (j->request, "repo")));
    if (j->backup != NULL)
      r |= argv_add (argv, "--vm") | argv_add (argv, j->vm)
           | argv_add (argv, j->backup);
    else
      r |= argv_add (argv, j->vm);
    break;
  case JOB_COMPRESS_START:
  case JOB_COMPRESS_FINALIZE:
    r |= argv_add (argv, "compress") | argv_add (argv, "--json");
    r |= argv_add_request (argv, compress_args, j->request);
    if (j->type == JOB_COMPRESS_START) {
      r |= argv_add (argv, "--start-only");
      if (cfg->compression_threads > 0)
        r |= argv_add (argv, "--threads")
             | argv_addf (argv, "%" PRIi64, cfg->compression_threads);
      r |= argv_add (argv, "--rate-limit")
           | argv_addf (argv, "%" PRIi64, cfg->compression_rate_limit);
      r |= argv_add (argv, "--min-free")
           | argv_addf (argv, "%g", cfg->compression_min_free);
    }
    else
      r |= argv_add (argv, "--finalize-only");
    r |= argv_add (argv, "--timeout")
         | argv_addf (argv, "%" PRIi64, cfg->compression_timeout);
    break;
  case JOB_DELETE:
    r |= argv_add (argv, "delete") | argv_add (argv, "--json");
    r |= argv_add_request (argv, delete_args, j->request);
    break;
  case JOB_PRUNE:
    r |= argv_add (argv, "prune") | argv_add (argv, "--json");
    r |= argv_add_request (argv, prune_args, j->request);
    break;
  }
  if (r != 0) {
    json_decref (argv);
    set_error (ENOMEM, "job %" PRIi64 ": command line", j->id);
    return NULL;
  }
  return argv;
}

static bool
is_compress (enum job_type t)
{
  return t == JOB_COMPRESS_START || t == JOB_COMPRESS_FINALIZE;
}

/* Seconds a job may run. */
static int64_t
job_timeout (const struct agent *a, const struct job *j)
{
  const json_t *t = json_object_get (j->request, "timeout");

  if (t != NULL && json_integer_value (t) > 0)
    return json_integer_value (t);
  return is_compress (j->type) ? a->cfg.compression_timeout : a->cfg.timeout;
}

/* Seconds between a failed attempt and the next. */
static double
job_retry_interval (const struct agent *a, const struct job *j)
{
  if (is_compress (j->type))
    return (double) a->cfg.compression_retry_interval
           * a->cfg.retry_interval_unit;
  return (double) a->cfg.retry_interval_unit;
}

/* The domain a job needs running, or NULL: a live backup over QMP, and
 * the consolidation of a quick restore, which streams on the domain's
 * QEMU.  (A backup of a libvirt domain runs offline when it is off.) */
static const char *
job_domain (const struct job *j)
{
  const char *domain
    = json_string_value (json_object_get (j->request, "domain"));

  if (j->type == JOB_BACKUP && json_object_get (j->request, "qmp") != NULL)
    return j->vm;
  if (j->type == JOB_RESTORE && has_true (j->request, "consolidate"))
    return domain ? domain : j->vm;
  /* A quick restore that starts its domain goes on as a consolidation
   * once the domain runs. */
  if (j->type == JOB_RESTORE && has_true (j->request, "quick")
      && has_true (j->request, "start") && j->attempts > 0)
    return domain;
  return NULL;
}

static bool
domain_stopped (const struct agent *a, const char *name)
{
  return name != NULL && json_object_get (a->stopped, name) != NULL;
}

/* ------------------------------------------------------------------ */
/* Events and the store. */

static void
job_event (struct agent *a, const struct job *j)
{
  json_t *data
    = json_pack ("{s:I, s:s, s:s, s:s, s:i}", "id", (json_int_t) j->id, "type",
                 job_type_name (j->type), "vm", j->vm, "status",
                 job_state_name (j->state), "attempt", j->attempts);

  if (data == NULL)
    return;
  if (j->backup != NULL)
    json_object_set_new (data, "backup", json_string (j->backup));
  if (j->error != NULL && j->state != JOB_SUCCEEDED)
    json_object_set_new (data, "error", json_string (j->error));
  a->emit (a, "JOB_STATUS_CHANGE", data);
}

static void
job_save (struct agent *a, const struct job *j, const char *result,
          const char *log)
{
  if (store_job_update (a->store, j, result, log) == -1)
    fprintf (stderr, "knibd: job %" PRIi64 ": %s\n", j->id, get_error ());
}

static struct job *
job_new (enum job_type type, const json_t *args)
{
  struct job *j = calloc (1, sizeof *j);
  const char *backup = json_string_value (json_object_get (args, "backup"));

  if (j == NULL)
    return NULL;
  j->type = type;
  j->state = JOB_QUEUED;
  j->vm = strdup (json_string_value (json_object_get (args, "vm")));
  j->backup = backup ? strdup (backup) : NULL;
  j->request = json_deep_copy (args);
  j->created = now_wall ();
  j->max_attempts = 1;
  j->exit_status = -1;
  if (j->vm == NULL || (backup && j->backup == NULL) || j->request == NULL) {
    job_free (j);
    return NULL;
  }
  return j;
}

/* Insert j into the store and the queue (taking it, also on failure). */
static int64_t
job_enqueue (struct agent *a, struct job *j)
{
  const json_t *retries = json_object_get (j->request, "retries");

  /* The VM's policy (vm.NAME.compress) when the request says nothing:
   * deferred queues a compression after the backup (job_follow). */
  if (j->type == JOB_BACKUP && json_object_get (j->request, "compress") == NULL
      && config_vm_compress (&a->cfg, j->vm) != NULL)
    json_object_set_new (j->request, "compress",
                         json_string (config_vm_compress (&a->cfg, j->vm)));
  if (is_compress (j->type))
    j->max_attempts
      = a->cfg.compression_retries > 0 ? (int) a->cfg.compression_retries : 1;
  else if (retries != NULL)
    j->max_attempts = 1 + (int) json_integer_value (retries);
  if (domain_stopped (a, job_domain (j)))
    j->state = JOB_HELD;
  if (store_job_insert (a->store, j) == -1
      || job_vector_append (&a->jobs, j) == -1) {
    if (j->id > 0) {
      j->state = JOB_FAILED;
      job_save (a, j, NULL, NULL);
    }
    job_free (j);
    return -1;
  }
  fprintf (stderr, "knibd: job %" PRIi64 ": %s of '%s' %s\n", j->id,
           job_type_name (j->type), j->vm,
           j->state == JOB_HELD ? "held: its domain is stopped" : "queued");
  job_event (a, j);
  return j->id;
}

int
runner_check (enum job_type type, const json_t *args)
{
  return request_check (type, args);
}

int64_t
runner_submit (struct agent *a, enum job_type type, json_t *args)
{
  if (request_check (type, args) == -1)
    return -1;
  return runner_submit_checked (a, type, args);
}

int64_t
runner_submit_checked (struct agent *a, enum job_type type, json_t *args)
{
  struct job *j;

  j = job_new (type, args);
  if (j == NULL) {
    set_error (ENOMEM, "cannot queue the job");
    return -1;
  }
  return job_enqueue (a, j);
}

/* ------------------------------------------------------------------ */
/* Starting a job. */

static char *
job_file (const struct agent *a, int64_t id, const char *ext)
{
  char *p = NULL;

  if (asprintf (&p, "%s/jobs/%" PRIi64 ".%s", a->state_dir, id, ext) == -1)
    return NULL;
  return p;
}

/* The supervisor: a forked knibd in the job's process group that runs
 * knib, waits for it and writes its exit status to a file, so a knibd
 * started later learns how an adopted job ended.  It ignores SIGTERM:
 * the group's SIGTERM is for knib. */
static void __attribute__ ((noreturn))
supervise (char **argv, const char *out, const char *err, const char *status,
           const char *progress)
{
  sigset_t none;
  pid_t child;
  int st = 0, fd;
  char text[64], tmp[4096];

  sigemptyset (&none);
  sigprocmask (SIG_SETMASK, &none, NULL);
  signal (SIGTERM, SIG_IGN);
  signal (SIGINT, SIG_IGN);
  signal (SIGHUP, SIG_IGN);
  signal (SIGPIPE, SIG_DFL);
  fd = open ("/dev/null", O_RDONLY);
  if (fd == -1 || dup2 (fd, 0) == -1)
    _exit (127);
  fd = open (out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd == -1 || dup2 (fd, 1) == -1)
    _exit (127);
  fd = open (err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd == -1 || dup2 (fd, 2) == -1)
    _exit (127);
  for (int i = 3; i < 1024; i++)
    close (i);
  if (setenv (PROGRESS_FILE_ENV, progress, 1) == -1)
    _exit (127);
  child = fork ();
  if (child == -1)
    _exit (127);
  if (child == 0) {
    signal (SIGTERM, SIG_DFL);
    signal (SIGINT, SIG_DFL);
    signal (SIGHUP, SIG_DFL);
    if (strchr (argv[0], '/') != NULL)
      execv (argv[0], argv);
    else
      execvp (argv[0], argv);
    dprintf (2, "knibd: cannot run '%s': %s\n", argv[0], strerror (errno));
    _exit (127);
  }
  while (waitpid (child, &st, 0) == -1 && errno == EINTR)
    ;
  if (WIFSIGNALED (st))
    snprintf (text, sizeof text, "signal %d\n", WTERMSIG (st));
  else
    snprintf (text, sizeof text, "exit %d\n", WEXITSTATUS (st));
  snprintf (tmp, sizeof tmp, "%s.tmp", status);
  fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd != -1) {
    if (write_all (fd, text, strlen (text)) == 0 && fsync (fd) == 0)
      rename (tmp, status);
    close (fd);
  }
  _exit (WIFEXITED (st) ? WEXITSTATUS (st) : 128 + WTERMSIG (st));
}

static int
job_spawn (struct agent *a, struct job *j)
{
  CLEANUP_FREE char *out = job_file (a, j->id, "out");
  CLEANUP_FREE char *err = job_file (a, j->id, "err");
  CLEANUP_FREE char *status = job_file (a, j->id, "status");
  CLEANUP_FREE char *progress = job_file (a, j->id, "progress");
  size_t n = json_array_size (j->argv);
  CLEANUP_FREE char **argv = calloc (n + 1, sizeof *argv);
  pid_t pid;

  if (out == NULL || err == NULL || status == NULL || progress == NULL
      || argv == NULL) {
    set_error (ENOMEM, "job %" PRIi64, j->id);
    return -1;
  }
  for (size_t i = 0; i < n; i++)
    argv[i] = (char *) json_string_value (json_array_get (j->argv, i));
  unlink (status);
  unlink (progress);
  pid = fork ();
  if (pid == -1) {
    set_error (errno, "job %" PRIi64 ": fork", j->id);
    return -1;
  }
  if (pid == 0) {
    setpgid (0, 0);
    supervise (argv, out, err, status, progress);
  }
  setpgid (pid, pid);
  j->pid = pid;
  j->pid_start = process_start_time (pid);
  return 0;
}

static void job_finish (struct agent *a, struct job *j);
static void job_progress_read (struct agent *a, struct job *j);

static void
job_start (struct agent *a, struct job *j)
{
  json_decref (j->argv);
  j->argv = job_argv (a, j);
  j->attempts++;
  j->state = JOB_RUNNING;
  j->started = now_wall ();
  j->finished = 0;
  j->deadline = j->started + (double) job_timeout (a, j);
  j->timed_out = false;
  j->term_sent_ms = 0;
  free (j->error);
  j->error = NULL;
  if (j->argv == NULL || job_spawn (a, j) == -1) {
    j->error = strdup (get_error ());
    j->pid = 0;
    job_finish (a, j);
    return;
  }
  fprintf (stderr,
           "knibd: job %" PRIi64 ": %s of '%s' started (pid %d, "
           "attempt %d of %d)\n",
           j->id, job_type_name (j->type), j->vm, (int) j->pid, j->attempts,
           j->max_attempts);
  job_save (a, j, NULL, NULL);
  job_event (a, j);
}

/* ------------------------------------------------------------------ */
/* Finishing a job. */

/* Up to max bytes of a file: its start, or with tail its end. */
static char *
read_file_bounded (const char *path, size_t max, bool tail)
{
  CLEANUP_CLOSE int fd = open (path, O_RDONLY | O_CLOEXEC);
  struct stat sb;
  char *buf;
  ssize_t r;
  size_t len = 0;

  if (fd == -1 || fstat (fd, &sb) == -1)
    return NULL;
  if (tail && (size_t) sb.st_size > max)
    lseek (fd, sb.st_size - max, SEEK_SET);
  buf = malloc (max + 1);
  if (buf == NULL)
    return NULL;
  while (len < max && (r = read (fd, buf + len, max - len)) > 0)
    len += r;
  buf[len] = '\0';
  return buf;
}

/* The job's error from its log: the last line knib's main printed
 * ("knib: ..."), else the last line that says something. */
static char *
log_error (const char *log)
{
  const char *end = log + strlen (log);
  const char *last = NULL, *last_end = NULL;

  while (end > log) {
    const char *start;

    while (end > log && (end[-1] == '\n' || end[-1] == ' '))
      end--;
    start = end;
    while (start > log && start[-1] != '\n')
      start--;
    if (end > start && last == NULL) {
      last = start;
      last_end = end;
    }
    if (end > start && strncmp (start, "knib: ", 6) == 0)
      return strndup (start, end - start);
    end = start;
  }
  return last ? strndup (last, last_end - last) : NULL;
}

/* A boot validation that ran and failed: its first failed step, from
 * knib validate's --json summary (NULL when there is none). */
static char *
validation_error (const json_t *result)
{
  const json_t *steps
    = json_object_get (json_object_get (result, "validation"), "steps");
  const json_t *step;
  size_t i;
  char *e = NULL;

  json_array_foreach (steps, i, step)
  {
    const char *status = json_string_value (json_object_get (step, "status"));
    const char *msg = json_string_value (json_object_get (step, "message"));

    if (status == NULL || strcmp (status, "failed") != 0)
      continue;
    if (asprintf (&e, "validation failed: %s: %s",
                  json_string_value (json_object_get (step, "name")) ?: "?",
                  msg ? msg : "no message")
        == -1)
      return NULL;
    return e;
  }
  return NULL;
}

/* -1 when the status file is missing (the supervisor was killed). */
static int
read_status (const char *path, bool *signalled)
{
  CLEANUP_FREE char *text = read_file_bounded (path, 63, false);
  int n;

  if (text == NULL)
    return -1;
  if (sscanf (text, "exit %d", &n) == 1) {
    *signalled = false;
    return n;
  }
  if (sscanf (text, "signal %d", &n) == 1) {
    *signalled = true;
    return n;
  }
  return -1;
}

static void job_retire (struct agent *a, struct job *j);

/* A scheduled backup with a retention rule: its prune. */
static void
job_retention (struct agent *a, const struct job *j)
{
  const json_t *last = json_object_get (j->request, "keep-last");
  json_auto_t *args = NULL;
  struct job *n;

  if (last == NULL)
    return;
  args = json_pack ("{s:s, s:O, s:O}", "vm", j->vm, "repo",
                    json_object_get (j->request, "repo"), "keep-last", last);
  if (args == NULL)
    return;
  if (json_object_get (j->request, "keep-daily") != NULL)
    json_object_set (args, "keep-daily",
                     json_object_get (j->request, "keep-daily"));
  if (json_object_get (j->request, "keep-weekly") != NULL)
    json_object_set (args, "keep-weekly",
                     json_object_get (j->request, "keep-weekly"));
  n = job_new (JOB_PRUNE, args);
  if (n == NULL || job_enqueue (a, n) == -1)
    fprintf (stderr, "knibd: job %" PRIi64 ": cannot queue its prune\n", j->id);
}

/* What follows a successful job: a backup with deferred compression
 * queues its compression, a compression start its finalize. */
static void
job_follow (struct agent *a, const struct job *j, const json_t *result)
{
  const char *compress
    = json_string_value (json_object_get (j->request, "compress"));
  const char *id = json_string_value (json_object_get (result, "id"));
  json_t *args;
  struct job *n;

  if (j->type == JOB_BACKUP && id != NULL) {
    a->emit (a, "BACKUP_COMPLETED",
             json_pack ("{s:I, s:s, s:s, s:s?}", "job", (json_int_t) j->id,
                        "vm", j->vm, "backup", id, "kind",
                        json_string_value (json_object_get (result, "kind"))));
    job_retention (a, j);
    if (compress == NULL || strcmp (compress, "deferred") != 0)
      return;
    args = json_pack ("{s:s, s:O, s:s}", "vm", j->vm, "repo",
                      json_object_get (j->request, "repo"), "backup", id);
    n = args ? job_new (JOB_COMPRESS_START, args) : NULL;
  }
  else if (j->type == JOB_COMPRESS_START) {
    args = json_incref (j->request);
    n = job_new (JOB_COMPRESS_FINALIZE, j->request);
  }
  else
    return;
  json_decref (args);
  if (n == NULL || job_enqueue (a, n) == -1)
    fprintf (stderr, "knibd: job %" PRIi64 ": cannot queue what follows: %s\n",
             j->id, n ? get_error () : "out of memory");
}

/* A job that failed because its domain stopped: held until it starts
 * (the stop is not the job's failure).  A quick restore that started its
 * domain goes on as the consolidation it had begun. */
static void
job_hold (struct job *j)
{
  static const char *const restore_only[]
    = { "backup", "to", "image", "quick", "start", "stop", "format", "force" };

  if (j->type == JOB_RESTORE && has_true (j->request, "quick")) {
    for (size_t i = 0; i < sizeof restore_only / sizeof restore_only[0]; i++)
      json_object_del (j->request, restore_only[i]);
    json_object_set_new (j->request, "consolidate", json_true ());
  }
  if (j->attempts > 0)
    j->attempts--;
  j->not_before = 0;
  j->finished = 0;
  j->state = JOB_HELD;
}

/* Keep a failed job that needed a domain for AGENT_HOLD_GRACE_S, out of
 * the queue: its domain's stop notice may come after its end. */
static void
job_keep_recent (struct agent *a, struct job *j)
{
  for (size_t i = 0; i < a->jobs.len; i++)
    if (a->jobs.ptr[i] == j) {
      job_vector_remove (&a->jobs, i);
      break;
    }
  if (job_vector_append (&a->recent, j) == -1)
    job_free (j);
}

/* Put j back into the queue, in id order. */
static int
job_requeue (struct agent *a, struct job *j)
{
  size_t i = a->jobs.len;

  if (job_vector_append (&a->jobs, j) == -1)
    return -1;
  while (i > 0 && a->jobs.ptr[i - 1]->id > j->id) {
    a->jobs.ptr[i] = a->jobs.ptr[i - 1];
    i--;
  }
  a->jobs.ptr[i] = j;
  return 0;
}

void
runner_domain_stopped (struct agent *a, const char *name)
{
  if (a->stopped == NULL)
    a->stopped = json_object ();
  json_object_set_new (a->stopped, name, json_true ());
  for (size_t i = 0; i < a->jobs.len; i++) {
    struct job *j = a->jobs.ptr[i];
    const char *d = job_domain (j);

    if (j->state != JOB_QUEUED || d == NULL || strcmp (d, name) != 0)
      continue;
    j->state = JOB_HELD;
    fprintf (stderr, "knibd: job %" PRIi64 ": held until '%s' starts\n", j->id,
             name);
    job_save (a, j, NULL, NULL);
    job_event (a, j);
  }
  /* Failed just before the notice came: held after all. */
  for (size_t i = a->recent.len; i-- > 0;) {
    struct job *j = a->recent.ptr[i];
    const char *d = job_domain (j);

    if (d == NULL || strcmp (d, name) != 0)
      continue;
    job_vector_remove (&a->recent, i);
    job_hold (j);
    if (job_requeue (a, j) == -1) {
      job_free (j);
      continue;
    }
    fprintf (stderr,
             "knibd: job %" PRIi64 ": failed as '%s' stopped: held until "
             "it starts\n",
             j->id, name);
    job_save (a, j, NULL, NULL);
    job_event (a, j);
  }
}

void
runner_domain_started (struct agent *a, const char *name)
{
  if (a->stopped != NULL)
    json_object_del (a->stopped, name);
  for (size_t i = 0; i < a->jobs.len; i++) {
    struct job *j = a->jobs.ptr[i];
    const char *d = job_domain (j);

    if (j->state != JOB_HELD || d == NULL || strcmp (d, name) != 0)
      continue;
    j->state = JOB_QUEUED;
    fprintf (stderr, "knibd: job %" PRIi64 ": '%s' started: queued again\n",
             j->id, name);
    job_save (a, j, NULL, NULL);
    job_event (a, j);
  }
}

/* Forget the failed jobs whose grace has passed. */
static void
recent_expire (struct agent *a, double now)
{
  for (size_t i = a->recent.len; i-- > 0;)
    if (now - a->recent.ptr[i]->finished > AGENT_HOLD_GRACE_S) {
      job_free (a->recent.ptr[i]);
      job_vector_remove (&a->recent, i);
    }
}

static void
job_finish (struct agent *a, struct job *j)
{
  CLEANUP_FREE char *out = job_file (a, j->id, "out");
  CLEANUP_FREE char *err = job_file (a, j->id, "err");
  CLEANUP_FREE char *status = job_file (a, j->id, "status");
  CLEANUP_FREE char *progress = job_file (a, j->id, "progress");
  CLEANUP_FREE char *result = NULL;
  CLEANUP_FREE char *log = NULL;
  json_t *res = NULL;
  bool signalled = false;
  int code = -1;

  if (j->pid > 0) {
    job_progress_read (a, j); /* the last figures, written at its end */
    result = out ? read_file_bounded (out, AGENT_MAX_RESULT, false) : NULL;
    log = err ? read_file_bounded (err, AGENT_MAX_LOG, true) : NULL;
    code = status ? read_status (status, &signalled) : -1;
    res = result ? json_loads (result, 0, NULL) : NULL;
    if (res == NULL) {
      free (result);
      result = NULL;
    }
    if (code != 0 && j->error == NULL && j->type == JOB_VALIDATE)
      j->error = validation_error (res);
    if (code != 0 && j->error == NULL && log != NULL)
      j->error = log_error (log);
    if (code != 0 && j->error == NULL) {
      if (code == -1)
        j->error = strdup ("the job was killed");
      else if (asprintf (&j->error, "knib %s %d",
                         signalled ? "got signal" : "exited", code)
               == -1)
        j->error = NULL;
    }
  }
  if (out)
    unlink (out);
  if (err)
    unlink (err);
  if (status)
    unlink (status);
  if (progress)
    unlink (progress);
  json_decref (j->progress);
  j->progress = NULL;
  j->exit_status = code == -1 ? -1 : signalled ? 128 + code : code;
  j->pid = 0;
  j->pid_start = 0;
  j->adopted = false;
  j->finished = now_wall ();
  if (j->timed_out) {
    free (j->error);
    if (asprintf (&j->error, "timed out after %" PRIi64 " s: killed",
                  job_timeout (a, j))
        == -1)
      j->error = NULL;
  }
  if (j->cancel)
    j->state = JOB_CANCELLED;
  else if (code == 0 && !signalled && !j->timed_out)
    j->state = JOB_SUCCEEDED;
  else if (j->attempts < j->max_attempts) {
    j->state = JOB_QUEUED;
    j->not_before = j->finished + job_retry_interval (a, j);
  }
  else
    j->state = JOB_FAILED;
  if ((j->state == JOB_FAILED || j->state == JOB_QUEUED)
      && domain_stopped (a, job_domain (j)))
    job_hold (j);
  if (j->type == JOB_BACKUP && j->state == JOB_SUCCEEDED && j->backup == NULL) {
    const char *id = json_string_value (json_object_get (res, "id"));

    j->backup = id ? strdup (id) : NULL;
  }
  fprintf (stderr, "knibd: job %" PRIi64 ": %s of '%s' %s%s%s\n", j->id,
           job_type_name (j->type), j->vm,
           j->state == JOB_QUEUED ? "failed, retried later"
                                  : job_state_name (j->state),
           j->error && j->state != JOB_SUCCEEDED ? ": " : "",
           j->error && j->state != JOB_SUCCEEDED ? j->error : "");
  job_save (a, j, result, log ? log : "");
  job_event (a, j);
  if (j->state == JOB_SUCCEEDED)
    job_follow (a, j, res);
  json_decref (res);
  if (j->state == JOB_FAILED && job_domain (j) != NULL)
    job_keep_recent (a, j);
  else if (j->state != JOB_QUEUED && j->state != JOB_HELD)
    job_retire (a, j);
  if (metrics_write (a) == -1)
    fprintf (stderr, "knibd: %s\n", get_error ());
}

/* Drop a finished job from the queue. */
static void
job_retire (struct agent *a, struct job *j)
{
  for (size_t i = 0; i < a->jobs.len; i++)
    if (a->jobs.ptr[i] == j) {
      job_vector_remove (&a->jobs, i);
      break;
    }
  job_free (j);
}

/* ------------------------------------------------------------------ */
/* Scheduling. */

/* Two jobs of one VM that must not run together.  Compression jobs wait
 * for the VM's lock by themselves; every other job takes it at once or
 * fails, so it runs alone. */
static bool
jobs_conflict (const struct job *x, const struct job *y)
{
  if (strcmp (x->vm, y->vm) != 0)
    return false;
  return !(is_compress (x->type) && is_compress (y->type));
}

/* The most jobs of j's kind that may run at once (-1: no limit). */
static int64_t
job_limit (const struct agent *a, const struct job *j)
{
  switch (j->type) {
  case JOB_BACKUP:
    return a->cfg.backup_jobs_per_host > 0 ? a->cfg.backup_jobs_per_host
                                           : a->cores;
  case JOB_VALIDATE: /* less than 1: no limit, as for knib validate */
    return a->cfg.validation_jobs_per_host > 0 ? a->cfg.validation_jobs_per_host
                                               : -1;
  case JOB_COMPRESS_START:
    return a->cfg.compression_jobs_per_host < 0
             ? -1
             : a->cfg.compression_jobs_per_host;
  case JOB_COMPRESS_FINALIZE: /* the reference: finalize ignores it */
  case JOB_RESTORE:
  case JOB_DELETE:
  case JOB_PRUNE:
  case JOB_VERIFY:
  case JOB_MERGE:
    return -1;
  }
  return -1;
}

static bool
job_may_start (const struct agent *a, const struct job *j, double now)
{
  int64_t limit = job_limit (a, j), running = 0;

  if (j->not_before > now)
    return false;
  if (is_compress (j->type) && !a->cfg.compression_jobs)
    return false;
  for (size_t i = 0; i < a->jobs.len; i++) {
    const struct job *o = a->jobs.ptr[i];

    if (o == j)
      break; /* the queue is in id order: only earlier jobs count */
    if (o->state == JOB_RUNNING && jobs_conflict (o, j))
      return false;
    /* An earlier job of the VM that waits for it goes first. */
    if (o->state == JOB_QUEUED && o->not_before <= now
        && !(is_compress (o->type) && !a->cfg.compression_jobs)
        && jobs_conflict (o, j))
      return false;
  }
  for (size_t i = 0; i < a->jobs.len; i++) {
    const struct job *o = a->jobs.ptr[i];

    if (o->state == JOB_RUNNING && o != j && jobs_conflict (o, j))
      return false;
    if (o->state == JOB_RUNNING && o->type == j->type)
      running++;
  }
  return limit < 0 || running < limit;
}

static void
job_signal (struct job *j, int sig)
{
  if (j->pid > 0 && kill (-j->pid, sig) == -1 && errno == ESRCH)
    kill (j->pid, sig);
}

/* A running job's progress file, read again: a JOB_PROGRESS event when
 * its figures changed. */
static void
job_progress_read (struct agent *a, struct job *j)
{
  CLEANUP_FREE char *path = job_file (a, j->id, "progress");
  CLEANUP_FREE char *text = path ? read_file_bounded (path, 255, false) : NULL;
  json_t *p = text ? json_loads (text, 0, NULL) : NULL;
  const char *label;
  json_int_t done, total;

  if (p == NULL
      || json_unpack (p, "{s:s, s:I, s:I}", "label", &label, "done", &done,
                      "total", &total)
           == -1
      || json_equal (p, j->progress)) {
    json_decref (p); /* being rewritten, or not changed */
    return;
  }
  json_decref (j->progress);
  j->progress = p;
  a->emit (a, "JOB_PROGRESS",
           json_pack ("{s:I, s:s, s:s, s:s, s:I, s:I}", "id",
                      (json_int_t) j->id, "type", job_type_name (j->type), "vm",
                      j->vm, "label", label, "done", done, "total", total));
}

const json_t *
runner_progress (const struct agent *a, int64_t id)
{
  for (size_t i = 0; i < a->jobs.len; i++)
    if (a->jobs.ptr[i]->id == id)
      return a->jobs.ptr[i]->progress;
  return NULL;
}

void
runner_tick (struct agent *a)
{
  double now = now_wall ();
  int64_t mono = monotonic_ms ();

  schedules_tick (a);
  recent_expire (a, now);
  /* Deadlines, kills, adopted processes (in reverse: finishing drops). */
  for (size_t i = a->jobs.len; i-- > 0;) {
    struct job *j = a->jobs.ptr[i];

    if (j->state != JOB_RUNNING)
      continue;
    job_progress_read (a, j);
    if (j->adopted && process_start_time (j->pid) != j->pid_start) {
      job_finish (a, j);
      continue;
    }
    if (j->term_sent_ms == 0 && j->deadline > 0 && now >= j->deadline) {
      fprintf (stderr, "knibd: job %" PRIi64 ": timed out, stopping it\n",
               j->id);
      j->timed_out = true;
      j->term_sent_ms = mono;
      job_signal (j, SIGTERM);
    }
    else if (j->term_sent_ms > 0
             && mono - j->term_sent_ms >= AGENT_KILL_GRACE_MS)
      job_signal (j, SIGKILL);
  }
  /* Start what may start, oldest first. */
  for (size_t i = 0; i < a->jobs.len; i++) {
    struct job *j = a->jobs.ptr[i];

    if (j->state == JOB_QUEUED && job_may_start (a, j, now)) {
      job_start (a, j);
      i = (size_t) -1; /* a start may have finished a job at once */
    }
  }
}

void
runner_reap (struct agent *a)
{
  pid_t pid;
  int st;

  while ((pid = waitpid (-1, &st, WNOHANG)) > 0)
    for (size_t i = 0; i < a->jobs.len; i++)
      if (a->jobs.ptr[i]->pid == pid && !a->jobs.ptr[i]->adopted) {
        job_finish (a, a->jobs.ptr[i]);
        break;
      }
}

int
runner_next_ms (struct agent *a)
{
  if (a->jobs.len > 0 || a->recent.len > 0)
    return 500;
  return a->schedules ? 1000 : -1;
}

int
runner_cancel (struct agent *a, int64_t id)
{
  for (size_t i = 0; i < a->jobs.len; i++) {
    struct job *j = a->jobs.ptr[i];

    if (j->id != id)
      continue;
    j->cancel = true;
    if (j->state == JOB_QUEUED || j->state == JOB_HELD) {
      j->finished = now_wall ();
      j->state = JOB_CANCELLED;
      job_save (a, j, NULL, NULL);
      job_event (a, j);
      job_retire (a, j);
    }
    else if (j->term_sent_ms == 0) {
      j->term_sent_ms = monotonic_ms ();
      job_signal (j, SIGTERM);
    }
    return 0;
  }
  set_error (ENOENT, "job %" PRIi64 " is not queued or running", id);
  return -1;
}

int
runner_reconcile (struct agent *a)
{
  if (store_jobs_active (a->store, &a->jobs) == -1)
    return -1;
  for (size_t i = a->jobs.len; i-- > 0;) {
    struct job *j = a->jobs.ptr[i];
    CLEANUP_FREE char *status = NULL;

    /* Held: its domain was stopped when the last knibd heard of it. */
    if (j->state == JOB_HELD && job_domain (j) != NULL) {
      if (a->stopped == NULL)
        a->stopped = json_object ();
      json_object_set_new (a->stopped, job_domain (j), json_true ());
    }
    if (j->state != JOB_RUNNING)
      continue;
    if (j->pid > 0 && process_start_time (j->pid) == j->pid_start) {
      j->adopted = true;
      fprintf (stderr, "knibd: job %" PRIi64 ": adopted (pid %d)\n", j->id,
               (int) j->pid);
      continue;
    }
    status = job_file (a, j->id, "status");
    if (j->pid > 0 && status != NULL && access (status, F_OK) == 0) {
      job_finish (a, j); /* it ended while no knibd watched */
      continue;
    }
    fprintf (stderr, "knibd: job %" PRIi64 ": interrupted, queued again\n",
             j->id);
    j->state = JOB_INTERRUPTED;
    job_event (a, j);
    j->state = JOB_QUEUED;
    j->attempts--; /* the interruption is not the job's failure */
    j->pid = 0;
    j->pid_start = 0;
    job_save (a, j, NULL, NULL);
  }
  return 0;
}
