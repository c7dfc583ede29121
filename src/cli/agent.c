/* SPDX-License-Identifier: Apache-2.0 */
/* agent.c: "knib jobs", "knib job cancel|wait|log" and "knib agent
 * status": the client of knibd's socket. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"
#include "common/cleanup.h"
#include "common/error.h"
#include "common/util.h"
#include "qmp/qmp.h"

enum {
  OPT_AGENT = CLI_OPT_FIRST,
  OPT_TYPE,
  OPT_STATUS,
  OPT_BACKUP,
  OPT_EXECUTING,
  OPT_SCHEDULED,
  OPT_FAILED,
  OPT_WAIT,
};

struct agent_opts {
  struct cli_common common; /* --vm filters jobs; --timeout: job wait */
  const char *agent;
  bool wait;      /* job submit --wait */
  json_t *filter; /* knib jobs */
};

static void
agent_usage (FILE *fp)
{
  fprintf (
    fp, "Usage: knib jobs [--agent SOCKET] [--json] [--vm VM] [--type TYPE]\n"
        "                 [--status STATUS] [--backup ID] [--executing]\n"
        "                 [--scheduled] [--failed]\n"
        "       knib job cancel|log ID [--agent SOCKET] [--json]\n"
        "       knib job wait ID [--agent SOCKET] [--timeout SECONDS] "
        "[--json]\n"
        "       knib agent status [--agent SOCKET] [--json]\n"
        "\n"
        "Talk to knibd, the per-host agent (see knibd(8)): list its jobs,\n"
        "cancel one, wait for one to end (exit status 0 when it "
        "succeeded),\nshow one's log, or show the agent's state.\n"
        "\n"
        "Options:\n"
        "      --agent SOCKET  knibd's socket (default $KNIB_AGENT, else\n"
        "                      " CLI_DEFAULT_AGENT ")\n"
        "      --json          JSON output\n"
        "      --vm, --type, --status, --backup   only the jobs that match\n"
        "      --executing, --scheduled, --failed running, queued, failed "
        "jobs\n"
        "      --timeout SECONDS  job wait: give up after this long\n"
        "  -h, --help          show this help\n");
}

/* 0, or -1 (said); --help stops the parse at once. */
static int
agent_parse (struct cli *cli, const char *cmd, int argc, char **argv,
             struct agent_opts *o)
{
  static const struct option opts[] = {
    CLI_COMMON_OPTIONS,
    { "agent", required_argument, NULL, OPT_AGENT },
    { "type", required_argument, NULL, OPT_TYPE },
    { "status", required_argument, NULL, OPT_STATUS },
    { "backup", required_argument, NULL, OPT_BACKUP },
    { "executing", no_argument, NULL, OPT_EXECUTING },
    { "scheduled", no_argument, NULL, OPT_SCHEDULED },
    { "failed", no_argument, NULL, OPT_FAILED },
    { "wait", no_argument, NULL, OPT_WAIT },
    { NULL, 0, NULL, 0 },
  };
  static const char *const keys[] = {
    [OPT_TYPE - OPT_AGENT] = "type",
    [OPT_STATUS - OPT_AGENT] = "status",
    [OPT_BACKUP - OPT_AGENT] = "backup",
    [OPT_EXECUTING - OPT_AGENT] = "executing",
    [OPT_SCHEDULED - OPT_AGENT] = "scheduled",
    [OPT_FAILED - OPT_AGENT] = "failed",
  };
  int c, r;

  cli_common_init (cli, &o->common);
  o->agent = getenv ("KNIB_AGENT");
  if (o->agent == NULL)
    o->agent = CLI_DEFAULT_AGENT;
  while ((r = cli_next_option (cmd, argc, argv, opts, &o->common, &c)) > 0) {
    switch (c) {
    case OPT_AGENT:
      o->agent = optarg;
      break;
    case OPT_TYPE:
    case OPT_STATUS:
    case OPT_BACKUP:
      if (o->filter == NULL)
        return cli_usage_error (cmd, "--%s is for knib jobs",
                                keys[c - OPT_AGENT]);
      json_object_set_new (o->filter, keys[c - OPT_AGENT],
                           json_string (optarg));
      break;
    case OPT_EXECUTING:
    case OPT_SCHEDULED:
    case OPT_FAILED:
      if (o->filter == NULL)
        return cli_usage_error (cmd, "--%s is for knib jobs",
                                keys[c - OPT_AGENT]);
      json_object_set_new (o->filter, keys[c - OPT_AGENT], json_true ());
      break;
    case OPT_WAIT:
      o->wait = true;
      break;
    default:
      return cli_usage_error (cmd, "unknown option");
    }
  }
  if (r == -1)
    return -1;
  if (o->common.vm != NULL) {
    if (o->filter == NULL)
      return cli_usage_error (cmd, "--vm is for knib jobs");
    json_object_set_new (o->filter, "vm", json_string (o->common.vm));
  }
  return 0;
}

static struct qmp_client *
agent_connect (const struct agent_opts *o)
{
  struct qmp_client *c = qmp_client_connect (o->agent, 30000, &cli_interrupted);

  if (c == NULL)
    cli_error ("agent '%s' (is knibd running? see knibd(8))", o->agent);
  return c;
}

/* Run one command; prints the error itself. */
static json_t *
agent_execute (struct qmp_client *c, const char *cmd, json_t *args)
{
  json_t *ret = NULL;

  if (qmp_client_execute (c, cmd, args, &ret) == -1) {
    cli_error ("agent");
    return NULL;
  }
  return ret;
}

static void
print_json (const json_t *v)
{
  char *s = json_dumps (v, JSON_COMPACT | JSON_ENCODE_ANY);

  if (s != NULL)
    printf ("%s\n", s);
  free (s);
}

static const char *
str_or (const json_t *o, const char *key, const char *dflt)
{
  const char *s = json_string_value (json_object_get (o, key));

  return s ? s : dflt;
}

static void
print_time (double t)
{
  time_t s = (time_t) t;
  struct tm tm;
  char buf[32];

  if (t <= 0 || gmtime_r (&s, &tm) == NULL) {
    printf (" %-19s", "-");
    return;
  }
  strftime (buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  printf (" %-19s", buf);
}

static void
print_jobs (const json_t *jobs)
{
  size_t i;
  const json_t *j;

  printf ("%-6s %-17s %-16s %-26s %-11s %-8s %-19s %s\n", "ID", "TYPE", "VM",
          "BACKUP", "STATUS", "ATTEMPTS", "STARTED", "ERROR");
  json_array_foreach (jobs, i, j)
  {
    printf ("%-6" JSON_INTEGER_FORMAT
            " %-17s %-16s %-26s %-11s %3" JSON_INTEGER_FORMAT
            "/%-4" JSON_INTEGER_FORMAT,
            json_integer_value (json_object_get (j, "id")),
            str_or (j, "type", "-"), str_or (j, "vm", "-"),
            str_or (j, "backup", "-"), str_or (j, "status", "-"),
            json_integer_value (json_object_get (j, "attempts")),
            json_integer_value (json_object_get (j, "max-attempts")));
    print_time (json_real_value (json_object_get (j, "started")));
    printf (" %s\n", strcmp (str_or (j, "status", ""), "succeeded") == 0
                       ? ""
                       : str_or (j, "error", ""));
  }
}

int
cmd_jobs (struct cli *cli, int argc, char **argv)
{
  struct agent_opts o = { .filter = json_object () };
  json_auto_t *filter = o.filter;
  struct qmp_client *c;
  json_t *jobs;

  if (filter == NULL)
    return EXIT_FAILURE_;
  if (agent_parse (cli, "jobs", argc, argv, &o) == -1)
    return EXIT_USAGE;
  if (o.common.help) {
    agent_usage (stdout);
    return EXIT_OK;
  }
  if (optind != argc) {
    cli_usage_error ("jobs", "unexpected argument '%s'", argv[optind]);
    return EXIT_USAGE;
  }
  if (cli->parse_only)
    return EXIT_OK;
  c = agent_connect (&o);
  if (c == NULL)
    return EXIT_FAILURE_;
  jobs = agent_execute (c, "query-jobs", json_incref (filter));
  qmp_client_free (c);
  if (jobs == NULL)
    return EXIT_FAILURE_;
  if (o.common.json)
    print_json (jobs);
  else
    print_jobs (jobs);
  json_decref (jobs);
  return EXIT_OK;
}

static int
job_wait (struct qmp_client *c, const struct agent_opts *o, int64_t id)
{
  struct cli_follow f = {
    .json = o->common.json,
    .print_row = true,
    .deadline
    = o->common.timeout_set ? deadline_after_ms (o->common.timeout_ms) : -1,
  };

  return cli_agent_follow (c, id, &f);
}

static const char *const job_commands[] = {
  "backup",   "restore", "validate", "verify", "merge",
  "compress", "delete",  "prune",    NULL,
};

/* knib job submit COMMAND ARGS... [--wait] */
static int
job_submit (struct qmp_client *c, const struct agent_opts *o, int argc,
            char **argv)
{
  json_t *args = NULL;
  json_t *ret;
  int64_t id;

  if (cli_args_build (argc - 1, argv + 1, &args) == -1) {
    cli_error ("job submit");
    return EXIT_USAGE;
  }
  ret = agent_execute (c, argv[0], args);
  if (ret == NULL)
    return EXIT_FAILURE_;
  id = json_integer_value (json_object_get (ret, "id"));
  json_decref (ret);
  if (!o->wait) {
    if (o->common.json)
      printf ("{\"id\":%" PRIi64 "}\n", id);
    else
      printf ("job %" PRIi64 ": queued\n", id);
    return EXIT_OK;
  }
  return job_wait (c, o, id);
}

static int
job_submit_main (const struct cli *cli, const struct agent_opts *o, int argc,
                 char **argv)
{
  struct qmp_client *c;
  size_t i = 0;
  int r;

  if (argc < 1) {
    cli_usage_error ("job", "expected a command to submit");
    return EXIT_USAGE;
  }
  while (job_commands[i] != NULL && strcmp (job_commands[i], argv[0]) != 0)
    i++;
  if (job_commands[i] == NULL) {
    cli_usage_error ("job",
                     "'%s' is not a job (backup, restore, validate, "
                     "verify, merge, compress, delete, prune)",
                     argv[0]);
    return EXIT_USAGE;
  }
  if (cli->parse_only) {
    json_t *args = NULL;

    if (cli_args_build (argc - 1, argv + 1, &args) == -1) {
      cli_error ("job submit");
      return EXIT_USAGE;
    }
    json_decref (args);
    return EXIT_OK;
  }
  c = agent_connect (o);
  if (c == NULL)
    return EXIT_FAILURE_;
  r = job_submit (c, o, argc, argv);
  qmp_client_free (c);
  return r;
}

int
cmd_job (struct cli *cli, int argc, char **argv)
{
  struct agent_opts o = { .filter = NULL };
  struct qmp_client *c;
  const char *verb;
  int64_t id;
  json_t *ret;
  int r;

  if (argc >= 2 && strcmp (argv[1], "submit") == 0) {
    /* Its KEY=VALUE words are no options: take out only these. */
    int kept = 0;

    o.agent = getenv ("KNIB_AGENT") ? getenv ("KNIB_AGENT") : CLI_DEFAULT_AGENT;
    for (int i = 2; i < argc; i++) {
      if (strcmp (argv[i], "--wait") == 0)
        o.wait = true;
      else if (strcmp (argv[i], "--json") == 0)
        o.common.json = true;
      else if (strcmp (argv[i], "--agent") == 0 && i + 1 < argc)
        o.agent = argv[++i];
      else if (strncmp (argv[i], "--agent=", 8) == 0)
        o.agent = argv[i] + 8;
      else if (strcmp (argv[i], "--help") == 0 || strcmp (argv[i], "-h") == 0) {
        agent_usage (stdout);
        return EXIT_OK;
      }
      else if (strncmp (argv[i], "--", 2) == 0) {
        cli_usage_error ("job", "unknown option '%s'", argv[i]);
        return EXIT_USAGE;
      }
      else
        argv[2 + kept++] = argv[i];
    }
    return job_submit_main (cli, &o, kept, argv + 2);
  }
  if (agent_parse (cli, "job", argc, argv, &o) == -1)
    return EXIT_USAGE;
  if (o.common.help) {
    agent_usage (stdout);
    return EXIT_OK;
  }
  if (argc - optind != 2) {
    cli_usage_error ("job", "expected 'cancel', 'wait' or 'log' and a job id");
    return EXIT_USAGE;
  }
  verb = argv[optind];
  if (parse_int64 ("job id", argv[optind + 1], 1, INT64_MAX, &id) == -1) {
    cli_error ("%s", "");
    return EXIT_USAGE;
  }
  if (strcmp (verb, "cancel") != 0 && strcmp (verb, "wait") != 0
      && strcmp (verb, "log") != 0) {
    cli_usage_error ("job", "unknown action '%s'", verb);
    return EXIT_USAGE;
  }
  if (cli->parse_only)
    return EXIT_OK;
  c = agent_connect (&o);
  if (c == NULL)
    return EXIT_FAILURE_;
  if (strcmp (verb, "wait") == 0) {
    r = job_wait (c, &o, id);
    qmp_client_free (c);
    return r;
  }
  ret = agent_execute (
    c, strcmp (verb, "cancel") == 0 ? "job-cancel" : "query-job-log",
    json_pack ("{s:I}", "id", (json_int_t) id));
  qmp_client_free (c);
  if (ret == NULL)
    return EXIT_FAILURE_;
  if (o.common.json)
    print_json (ret);
  else if (strcmp (verb, "log") == 0)
    fputs (str_or (ret, "log", ""), stdout);
  else
    printf ("job %" PRIi64 ": cancelled\n", id);
  json_decref (ret);
  return EXIT_OK;
}

int
cmd_agent (struct cli *cli, int argc, char **argv)
{
  struct agent_opts o = { .filter = NULL };
  struct qmp_client *c;
  json_t *ret, *jobs;
  const char *key;
  json_t *v;

  if (agent_parse (cli, "agent", argc, argv, &o) == -1)
    return EXIT_USAGE;
  if (o.common.help) {
    agent_usage (stdout);
    return EXIT_OK;
  }
  if (argc - optind != 1 || strcmp (argv[optind], "status") != 0) {
    cli_usage_error ("agent", "expected 'status'");
    return EXIT_USAGE;
  }
  if (cli->parse_only)
    return EXIT_OK;
  c = agent_connect (&o);
  if (c == NULL)
    return EXIT_FAILURE_;
  ret = agent_execute (c, "query-agent", NULL);
  qmp_client_free (c);
  if (ret == NULL)
    return EXIT_FAILURE_;
  if (o.common.json)
    print_json (ret);
  else {
    printf ("knibd %s, pid %" JSON_INTEGER_FORMAT ", socket %s\njobs:",
            str_or (ret, "version", "?"),
            json_integer_value (json_object_get (ret, "pid")), o.agent);
    jobs = json_object_get (ret, "jobs");
    json_object_foreach (jobs, key, v)
    {
      printf (" %s %" JSON_INTEGER_FORMAT, key, json_integer_value (v));
    }
    printf ("\n");
  }
  json_decref (ret);
  return EXIT_OK;
}
