/* SPDX-License-Identifier: Apache-2.0 */
/* agent-submit.c: "knib COMMAND --agent [--wait]": a long command run as
 * a job of knibd, its options turned into the job's request, followed
 * with the usual progress bar. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "common/cleanup.h"
#include "common/error.h"
#include "common/util.h"
#include "progress.h"
#include "qmp/qmp.h"

/* How an option of the command becomes a member of the request. */
enum req_kind {
  REQ_STRING, /* --opt VALUE: "key": "VALUE" */
  REQ_INT,    /* --opt N: "key": N */
  REQ_LIST,   /* --opt VALUE, repeatable: "key": ["VALUE", ...] */
  REQ_FLAG,   /* --opt: "key": true */
  REQ_MODE,   /* --opt: "key": "opt" */
};

struct req_option {
  const char *option; /* the command's long option */
  const char *key;    /* the request's member */
  enum req_kind kind;
};

/* Positional words: none, the backup, the backups, (verify) the
 * backup when --vm is given and the VM otherwise, or (validate) the
 * backup and the command in the guest. */
enum req_words {
  WORDS_NONE,
  WORDS_BACKUP,
  WORDS_BACKUPS,
  WORDS_VERIFY,
  WORDS_VALIDATE
};

#define REQ_REPO_VM                                                            \
  { "repo", "repo", REQ_STRING },                                              \
  {                                                                            \
    "vm", "vm", REQ_STRING                                                     \
  }
/* For knibd alone: the job's timeout in seconds and its retries. */
#define REQ_JOB                                                                \
  { "job-timeout", "timeout", REQ_INT },                                       \
  {                                                                            \
    "retries", "retries", REQ_INT                                              \
  }

static const struct req_option backup_opts[] = {
  REQ_REPO_VM,
  REQ_JOB,
  { "qmp", "qmp", REQ_STRING },
  { "domain", "domain", REQ_STRING },
  { "image", "image", REQ_LIST },
  { "disk", "disk", REQ_STRING },
  { "auto", "mode", REQ_MODE },
  { "full", "mode", REQ_MODE },
  { "incremental", "mode", REQ_MODE },
  { "isolated", "mode", REQ_MODE },
  { "compress", "compress", REQ_STRING },
  { "chain-size", "chain-size", REQ_INT },
  { "scratch", "scratch", REQ_STRING },
  { "rate-limit", "rate-limit", REQ_INT },
  { NULL, NULL, REQ_FLAG },
};

static const struct req_option restore_opts[] = {
  REQ_REPO_VM,
  REQ_JOB,
  { "to", "to", REQ_STRING },
  { "disk", "disk", REQ_STRING },
  { "format", "format", REQ_STRING },
  { "force", "force", REQ_FLAG },
  { "domain", "domain", REQ_STRING },
  { "image", "image", REQ_LIST },
  { "qmp", "qmp", REQ_STRING },
  { "quick", "quick", REQ_FLAG },
  { "start", "start", REQ_FLAG },
  { "stop", "stop", REQ_FLAG },
  { "consolidate", "consolidate", REQ_FLAG },
  { "rate-limit", "rate-limit", REQ_INT },
  { NULL, NULL, REQ_FLAG },
};

static const struct req_option verify_opts[] = {
  REQ_REPO_VM,
  REQ_JOB,
  { NULL, NULL, REQ_FLAG },
};

static const struct req_option validate_opts[] = {
  REQ_REPO_VM,
  REQ_JOB,
  { "boot-timeout", "boot-timeout", REQ_INT },
  { "command-timeout", "command-timeout", REQ_INT },
  { "expect-exit", "expect-exit", REQ_INT },
  { "expect-output", "expect-output", REQ_STRING },
  { "no-screenshot", "no-screenshot", REQ_FLAG },
  { "accel", "accel", REQ_STRING },
  { "memory", "memory", REQ_INT },
  { "cpus", "cpus", REQ_INT },
  { "scratch", "scratch", REQ_STRING },
  { NULL, NULL, REQ_FLAG },
};

static const struct req_option compress_opts[] = {
  REQ_REPO_VM,
  REQ_JOB,
  { "compress", "compress", REQ_STRING },
  { NULL, NULL, REQ_FLAG },
};

static const struct req_option prune_opts[] = {
  REQ_REPO_VM,
  REQ_JOB,
  { "keep-last", "keep-last", REQ_INT },
  { "keep-daily", "keep-daily", REQ_INT },
  { "keep-weekly", "keep-weekly", REQ_INT },
  { NULL, NULL, REQ_FLAG },
};

static const struct agent_command {
  const char *command; /* knib's */
  const char *execute; /* knibd's */
  const struct req_option *opts;
  enum req_words words;
} agent_commands[] = {
  { "backup", "backup", backup_opts, WORDS_NONE },
  { "restore", "restore", restore_opts, WORDS_BACKUP },
  { "validate", "validate", validate_opts, WORDS_VALIDATE },
  { "verify", "verify", verify_opts, WORDS_VERIFY },
  { "merge", "merge", verify_opts, WORDS_BACKUP },
  { "compress", "compress", compress_opts, WORDS_BACKUP },
  { "delete", "delete", verify_opts, WORDS_BACKUPS },
  { "prune", "prune", prune_opts, WORDS_NONE },
};

/* The client's own options, after the command's in getopt's table. */
enum {
  OPT_CLIENT_AGENT = 0x2000,
  OPT_CLIENT_WAIT,
  OPT_CLIENT_JSON,
  OPT_CLIENT_QUIET,
  OPT_CLIENT_CANCEL,
};

struct submit_opts {
  const char *agent;
  bool wait;
  struct cli_follow f;
};

static const struct agent_command *
agent_command_find (const char *cmd)
{
  for (size_t i = 0; i < sizeof agent_commands / sizeof agent_commands[0]; i++)
    if (strcmp (agent_commands[i].command, cmd) == 0)
      return &agent_commands[i];
  return NULL;
}

bool
cli_agent_requested (int argc, char **argv)
{
  for (int i = 1; i < argc && strcmp (argv[i], "--") != 0; i++) {
    if (strcmp (argv[i], "--help") == 0 || strcmp (argv[i], "-h") == 0)
      return false; /* the command's own help */
    if (strcmp (argv[i], "--agent") == 0
        || strncmp (argv[i], "--agent=", 8) == 0)
      return true;
  }
  return false;
}

/* One option of the command into the request; -1 (said) on bad input. */
static int
request_add (const char *cmd, json_t *req, const struct req_option *r,
             const char *arg)
{
  json_t *v = NULL, *arr;
  int64_t n;

  switch (r->kind) {
  case REQ_STRING:
    v = json_string (arg);
    break;
  case REQ_INT:
    if (parse_int64 (r->option, arg, 0, 1000000000, &n) == -1) {
      cli_error ("%s", cmd);
      return -1;
    }
    v = json_integer (n);
    break;
  case REQ_LIST:
    arr = json_object_get (req, r->key);
    if (arr == NULL) {
      arr = json_array ();
      json_object_set_new (req, r->key, arr);
    }
    if (json_array_append_new (arr, json_string (arg)) == -1)
      return cli_usage_error (cmd, "--%s: out of memory", r->option);
    return 0;
  case REQ_FLAG:
    v = json_true ();
    break;
  case REQ_MODE:
    if (json_object_get (req, r->key) != NULL)
      return cli_usage_error (cmd, "give one of --auto, --full, "
                                   "--incremental, --isolated");
    v = json_string (r->option);
    break;
  }
  if (v == NULL || json_object_set_new (req, r->key, v) == -1)
    return cli_usage_error (cmd, "--%s: not valid UTF-8", r->option);
  return 0;
}

/* The words after the options into the request. */
static int
request_add_words (const struct agent_command *ac, json_t *req, int argc,
                   char **argv)
{
  int n = argc - optind;
  json_t *arr;

  switch (ac->words) {
  case WORDS_NONE:
    if (n > 0)
      return cli_usage_error (ac->command, "unexpected argument '%s'",
                              argv[optind]);
    return 0;
  case WORDS_BACKUP:
    if (n > 1)
      return cli_usage_error (ac->command, "expected one BACKUP, got '%s'",
                              argv[optind + 1]);
    if (n == 1)
      json_object_set_new (req, "backup", json_string (argv[optind]));
    return 0;
  case WORDS_VERIFY:
    if (n != 1)
      return cli_usage_error (ac->command, "expected a BACKUP (with --vm) or "
                                           "a VM");
    json_object_set_new (req, json_object_get (req, "vm") ? "backup" : "vm",
                         json_string (argv[optind]));
    return 0;
  case WORDS_VALIDATE:
    if (n == 0)
      return cli_usage_error (ac->command, "no BACKUP given");
    json_object_set_new (req, "backup", json_string (argv[optind]));
    if (n == 1)
      return 0;
    arr = json_array ();
    for (int i = optind + 1; i < argc; i++)
      json_array_append_new (arr, json_string (argv[i]));
    json_object_set_new (req, "command", arr);
    return 0;
  case WORDS_BACKUPS:
    if (n == 0)
      return cli_usage_error (ac->command, "expected the BACKUPs to delete");
    arr = json_array ();
    for (int i = optind; i < argc; i++)
      json_array_append_new (arr, json_string (argv[i]));
    json_object_set_new (req, "backups", arr);
    return 0;
  }
  return 0;
}

/* The command line into a request and the client's options; 0 or -1
 * (said). */
static int
request_parse (const struct agent_command *ac, int argc, char **argv,
               json_t *req, struct submit_opts *so)
{
  struct option opts[32];
  size_t n = 0;
  int c;

  for (const struct req_option *r = ac->opts; r->option != NULL; r++)
    opts[n++] = (struct option) { r->option,
                                  r->kind == REQ_FLAG || r->kind == REQ_MODE
                                    ? no_argument
                                    : required_argument,
                                  NULL, (int) (r - ac->opts) };
  opts[n++]
    = (struct option) { "agent", optional_argument, NULL, OPT_CLIENT_AGENT };
  opts[n++] = (struct option) { "wait", no_argument, NULL, OPT_CLIENT_WAIT };
  opts[n++] = (struct option) { "json", no_argument, NULL, OPT_CLIENT_JSON };
  opts[n++] = (struct option) { "quiet", no_argument, NULL, OPT_CLIENT_QUIET };
  opts[n++] = (struct option) { "cancel-on-interrupt", no_argument, NULL,
                                OPT_CLIENT_CANCEL };
  opts[n] = (struct option) { NULL, 0, NULL, 0 };
  opterr = 0;
  optind = 0; /* a fresh scan: main's getopt used "+" */
  while ((c = getopt_long (argc, argv, "q", opts, NULL)) != -1) {
    switch (c) {
    case OPT_CLIENT_AGENT:
      if (optarg != NULL)
        so->agent = optarg;
      break;
    case OPT_CLIENT_WAIT:
      so->wait = true;
      break;
    case OPT_CLIENT_JSON:
      so->f.json = true;
      break;
    case 'q':
    case OPT_CLIENT_QUIET:
      so->f.quiet = true;
      break;
    case OPT_CLIENT_CANCEL:
      so->f.cancel_on_interrupt = true;
      break;
    case '?':
    case ':':
      if (c == ':' || (optopt != 0 && optopt < OPT_CLIENT_AGENT))
        return cli_usage_error (ac->command, "'%s' needs an argument",
                                argv[optind - 1]);
      return cli_usage_error (ac->command,
                              "'%s' does not go with --agent: knibd's "
                              "%s job does not take it (see knibd(8))",
                              argv[optind - 1], ac->execute);
    default:
      if (request_add (ac->command, req, &ac->opts[c], optarg) == -1)
        return -1;
    }
  }
  if (so->f.cancel_on_interrupt && !so->wait)
    return cli_usage_error (ac->command, "--cancel-on-interrupt goes with "
                                         "--wait");
  return request_add_words (ac, req, argc, argv);
}

static bool
status_is_end (const char *status)
{
  return status != NULL
         && (strcmp (status, "succeeded") == 0 || strcmp (status, "failed") == 0
             || strcmp (status, "cancelled") == 0);
}

/* The job's progress, or the end of its attempt or of itself. */
static bool
event_is_ours (const json_t *data, void *opaque)
{
  return json_integer_value (json_object_get (data, "id"))
           == *(int64_t *) opaque
         && (json_object_get (data, "done") != NULL
             || status_is_end (
               json_string_value (json_object_get (data, "status"))));
}

static void
draw (struct progress *bar, const json_t *p)
{
  const char *label = json_string_value (json_object_get (p, "label"));

  if (label != NULL)
    progress_update (bar, label,
                     json_integer_value (json_object_get (p, "done")),
                     json_integer_value (json_object_get (p, "total")));
}

/* The job's row; NULL (with set_error) when it cannot be read. */
static json_t *
job_row (struct qmp_client *c, int64_t id)
{
  json_t *jobs = NULL, *j;

  if (qmp_client_execute (c, "query-jobs",
                          json_pack ("{s:I}", "id", (json_int_t) id), &jobs)
      == -1)
    return NULL;
  j = json_incref (json_array_get (jobs, 0));
  json_decref (jobs);
  if (j == NULL)
    set_error (ENOENT, "knibd has no job %" PRIi64, id);
  return j;
}

/* Ctrl-C: the job goes on, unless --cancel-on-interrupt asks to cancel
 * it (then the wait goes on until it ends).  True when the wait goes
 * on. */
static bool
on_interrupt (struct qmp_client *c, const struct cli_follow *f, int64_t id)
{
  if (!f->cancel_on_interrupt) {
    fprintf (stderr,
             "knib: job %" PRIi64 " goes on in knibd: 'knib job wait %" PRIi64
             "' follows it, 'knib job cancel %" PRIi64 "' stops it\n",
             id, id, id);
    return false;
  }
  qmp_client_set_cancel (c, NULL);
  if (qmp_client_execute (c, "job-cancel",
                          json_pack ("{s:I}", "id", (json_int_t) id), NULL)
      == -1)
    cli_error ("job %" PRIi64 ": cancel", id);
  else
    fprintf (stderr, "knib: job %" PRIi64 ": cancelling it\n", id);
  return true;
}

static void
print_json_value (const json_t *v)
{
  CLEANUP_FREE char *s = json_dumps (v, JSON_COMPACT | JSON_ENCODE_ANY);

  if (s != NULL)
    printf ("%s\n", s);
}

int
cli_agent_follow (struct qmp_client *c, int64_t id, const struct cli_follow *f)
{
  struct progress *bar = progress_new (!f->json && !f->quiet);
  json_auto_t *j = NULL;
  const char *status = NULL;
  bool query = true;
  json_int_t code;
  int r = EXIT_FAILURE_;

  cli_catch_signals ();

  for (;;) {
    json_t *ev = NULL;

    if (query) {
      json_decref (j);
      j = job_row (c, id);
      if (j == NULL && cli_interrupted && on_interrupt (c, f, id))
        continue;
      if (j == NULL) {
        if (!cli_interrupted)
          cli_error ("job %" PRIi64, id);
        r = cli_exit_status_failed ();
        goto out;
      }
      status = json_string_value (json_object_get (j, "status"));
      if (status_is_end (status))
        break;
      draw (bar, json_object_get (j, "progress"));
    }
    /* Events wake it; a query now and then closes the race with the
     * job's start and a missed event. */
    if (f->deadline >= 0 && deadline_remaining_ms (f->deadline) == 0) {
      set_error (ETIMEDOUT, "waiting for job %" PRIi64 ": it is %s", id,
                 status ? status : "not over");
      cli_error ("%s", "");
      goto out;
    }
    if (qmp_client_wait_event (
          c, NULL, event_is_ours, &id,
          f->deadline < 0 ? 5000 : (int) deadline_remaining_ms (f->deadline),
          &ev)
        == -1) {
      if (cli_interrupted && get_errno () == EINTR) {
        if (!on_interrupt (c, f, id)) {
          r = cli_exit_status_failed ();
          goto out;
        }
      }
      else if (get_errno () != ETIMEDOUT) {
        cli_error ("job %" PRIi64, id);
        goto out;
      }
      query = true;
      continue;
    }
    query = json_object_get (json_object_get (ev, "data"), "done") == NULL;
    if (!query)
      draw (bar, json_object_get (ev, "data"));
    json_decref (ev);
  }
  progress_free (bar);
  bar = NULL;
  code = json_integer_value (json_object_get (j, "exit-status"));
  if (f->json) {
    const json_t *result = json_object_get (j, "result");

    /* The command's own --json summary, as without --agent. */
    print_json_value (result && !f->print_row ? result : j);
  }
  else if (strcmp (status, "succeeded") == 0 && !f->quiet) {
    const char *backup = json_string_value (json_object_get (j, "backup"));

    printf ("job %" PRIi64 ": succeeded%s%s\n", id, backup ? ": backup " : "",
            backup ? backup : "");
  }
  if (strcmp (status, "succeeded") == 0)
    return EXIT_OK;
  fprintf (stderr, "knib: job %" PRIi64 ": %s: %s\n", id, status,
           json_string_value (json_object_get (j, "error"))
             ? json_string_value (json_object_get (j, "error"))
             : "no error recorded");
  /* knib's own exit status in the job, when it ran and failed. */
  if (strcmp (status, "cancelled") == 0)
    return EXIT_FAILURE_; /* not the SIGTERM that stopped its knib */
  return code > 0 && code < 256 ? (int) code : EXIT_FAILURE_;
out:
  progress_free (bar);
  return r;
}

int
cli_agent_run (struct cli *cli, const char *cmd, int argc, char **argv)
{
  const struct agent_command *ac = agent_command_find (cmd);
  struct submit_opts so
    = { .agent = getenv ("KNIB_AGENT"), .f = { .deadline = -1 } };
  json_auto_t *req = json_object ();
  struct qmp_client *c;
  json_t *ret = NULL;
  int64_t id;
  int status;

  (void) cli;
  if (ac == NULL) {
    cli_usage_error (cmd,
                     "'knib %s' does not run through knibd: --agent "
                     "goes with backup, restore, validate, verify, merge, "
                     "compress, delete and prune",
                     cmd);
    return EXIT_USAGE;
  }
  if (req == NULL || request_parse (ac, argc, argv, req, &so) == -1)
    return EXIT_USAGE;
  if (so.agent == NULL || so.agent[0] == '\0')
    so.agent = CLI_DEFAULT_AGENT;
  c = qmp_client_connect (so.agent, 30000, &cli_interrupted);
  if (c == NULL) {
    cli_error ("agent '%s' (is knibd running? see knibd(8))", so.agent);
    return EXIT_FAILURE_;
  }
  if (qmp_client_execute (c, ac->execute, json_incref (req), &ret) == -1) {
    cli_error ("agent");
    qmp_client_free (c);
    return EXIT_FAILURE_;
  }
  id = json_integer_value (json_object_get (ret, "id"));
  json_decref (ret);
  if (!so.wait) {
    if (so.f.json)
      printf ("{\"id\":%" PRIi64 "}\n", id);
    else if (!so.f.quiet)
      printf ("job %" PRIi64 ": queued\n", id);
    qmp_client_free (c);
    return EXIT_OK;
  }
  status = cli_agent_follow (c, id, &so.f);
  qmp_client_free (c);
  return status;
}
