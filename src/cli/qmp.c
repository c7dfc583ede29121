/* SPDX-License-Identifier: Apache-2.0 */
/* qmp.c: "knib qmp": run QMP commands, watch events, or a small QMP shell. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "common/cleanup.h"
#include "common/error.h"
#include "common/util.h"
#include "qmp/qmp.h"

struct qmp_opts {
  bool json;
  bool events;
  bool help;
  const char **filters;
  size_t nfilters;
  int timeout_ms;
};

static void
qmp_usage (FILE *fp)
{
  fprintf (
    fp,
    "Usage: knib qmp [OPTIONS] SOCKET COMMAND [JSON-ARGS | KEY=VALUE...]\n"
    "       knib qmp [OPTIONS] SOCKET --events [--filter NAME]...\n"
    "       knib qmp [OPTIONS] SOCKET   (commands from standard input)\n"
    "\n"
    "Talk QMP to a running QEMU through its monitor socket.\n"
    "\n"
    "Arguments are one JSON object ('{\"node-name\": \"n0\"}') or KEY=VALUE\n"
    "pairs; a dotted KEY builds nested objects (target.driver=file) and a\n"
    "VALUE that is valid JSON (1, true, [..], \"text\") is used as such,\n"
    "anything else as a string.\n"
    "\n"
    "Options:\n"
    "      --json          compact JSON output, one object per line\n"
    "      --events        print events as they arrive until interrupted\n"
    "      --filter NAME   with --events: only events called NAME "
    "(repeatable)\n"
    "      --timeout SECS  wait at most this long for QEMU (default: the\n"
    "                      'timeout' setting)\n"
    "  -h, --help          show this help\n"
    "\n"
    "Reading from standard input, each line is COMMAND [ARGS] as above or\n"
    "a whole {\"execute\": ...} object; '.wait NAME [SECS] [KEY=VALUE...]'\n"
    "waits for an event (whose data has those values) and '.events' prints\n"
    "the events received so far.\n"
    "\n"
    "Exit status: 0 success, 1 knib could not talk to QEMU, 2 usage,\n"
    "10 GenericError, 11 CommandNotFound, 12 DeviceNotFound,\n"
    "13 DeviceNotActive, 14 KVMMissingCap, 15 another QEMU error class.\n");
}

/* Set key (dotted: a.b.c) to value inside obj, creating objects. */
static int
args_set_path (json_t *obj, char *key, json_t *value)
{
  char *dot;

  while ((dot = strchr (key, '.')) != NULL) {
    json_t *child;

    *dot = '\0';
    child = json_object_get (obj, key);
    if (child == NULL) {
      child = json_object ();
      if (child == NULL || json_object_set_new (obj, key, child) == -1) {
        json_decref (value);
        set_error (ENOMEM, "building arguments");
        return -1;
      }
    }
    else if (!json_is_object (child)) {
      json_decref (value);
      set_error (0, "argument '%s' is both a value and an object", key);
      return -1;
    }
    obj = child;
    key = dot + 1;
  }
  if (json_object_set_new (obj, key, value) == -1) {
    set_error (ENOMEM, "building arguments");
    return -1;
  }
  return 0;
}

static json_t *
args_value (const char *text)
{
  json_t *v = json_loads (text, JSON_DECODE_ANY, NULL);

  return v != NULL ? v : json_string (text);
}

int
cli_args_build (int argc, char **argv, json_t **out)
{
  json_auto_t *args = NULL;
  json_error_t err;

  *out = NULL;
  if (argc == 0)
    return 0;
  if (argc == 1 && argv[0][0] == '{') {
    args = json_loads (argv[0], 0, &err);
    if (args == NULL || !json_is_object (args)) {
      set_error (0, "arguments are not a JSON object: %s",
                 args ? "not an object" : err.text);
      return -1;
    }
    *out = json_incref (args);
    return 0;
  }
  args = json_object ();
  for (int i = 0; i < argc; i++) {
    CLEANUP_FREE char *key = strdup (argv[i]);
    char *eq = key ? strchr (key, '=') : NULL;

    if (key == NULL || args == NULL) {
      set_error (ENOMEM, "building arguments");
      return -1;
    }
    if (eq == NULL || eq == key) {
      set_error (0, "argument '%s' is not KEY=VALUE", argv[i]);
      return -1;
    }
    *eq = '\0';
    if (args_set_path (args, key, args_value (eq + 1)) == -1)
      return -1;
  }
  *out = json_incref (args);
  return 0;
}

static void
print_json (const json_t *v, bool compact)
{
  CLEANUP_FREE char *text = NULL;

  text = json_dumps (v, (compact ? JSON_COMPACT : JSON_INDENT (2))
                          | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
  printf ("%s\n", text ? text : "null");
  fflush (stdout);
}

static void
print_event (const json_t *event, bool compact)
{
  const json_t *ts = json_object_get (event, "timestamp");
  const json_t *data = json_object_get (event, "data");
  CLEANUP_FREE char *text = NULL;

  if (compact) {
    print_json (event, true);
    return;
  }
  if (data != NULL)
    text = json_dumps (data, JSON_COMPACT | JSON_PRESERVE_ORDER);
  printf ("%lld.%06lld %s%s%s\n",
          (long long) json_integer_value (json_object_get (ts, "seconds")),
          (long long) json_integer_value (json_object_get (ts, "microseconds")),
          json_string_value (json_object_get (event, "event")), text ? " " : "",
          text ? text : "");
  fflush (stdout);
}

/* Run one command; print its result; return the exit status. */
static int
run_command (struct qmp_client *c, const struct qmp_opts *o,
             const char *command, json_t *args)
{
  json_t *result = NULL;

  if (qmp_client_execute (c, command, args, &result) == -1) {
    const char *cls = qmp_client_error_class (c);

    cli_error ("%s", "");
    return cli_exit_for_qemu_class (cls);
  }
  print_json (result, o->json);
  json_decref (result);
  return EXIT_OK;
}

static bool
filter_match (const struct qmp_opts *o, const json_t *event)
{
  const char *name = json_string_value (json_object_get (event, "event"));

  if (o->nfilters == 0)
    return true;
  for (size_t i = 0; i < o->nfilters; i++)
    if (name != NULL && strcmp (o->filters[i], name) == 0)
      return true;
  return false;
}

static int
watch_events (struct qmp_client *c, const struct qmp_opts *o)
{
  for (;;) {
    json_t *event = NULL;

    if (qmp_client_wait_event (c, NULL, NULL, NULL, -1, &event) == -1) {
      if (get_errno () == ECONNRESET) /* QEMU quit: the watch is over */
        return EXIT_OK;
      cli_error ("%s", "");
      return EXIT_FAILURE_;
    }
    if (filter_match (o, event))
      print_event (event, o->json);
    json_decref (event);
  }
}

static void
drain_events (struct qmp_client *c, const struct qmp_opts *o)
{
  json_t *event;

  while (qmp_client_events_queued (c) > 0
         && qmp_client_wait_event (c, NULL, NULL, NULL, 0, &event) == 0) {
    print_event (event, o->json);
    json_decref (event);
  }
}

/* Split s in place into words at blanks; '...' and "..." quote blanks
 * (the quotes go), a backslash escapes the next character.  Returns the
 * number of words, or -1 on an open quote or too many words. */
static int
shell_split (char *s, char **words, int max)
{
  int n = 0;
  char *out = s;

  for (;;) {
    char quote = 0;

    while (*s == ' ' || *s == '\t')
      s++;
    if (*s == '\0')
      return n;
    if (n == max)
      return -1;
    words[n++] = out;
    while (*s != '\0' && (quote || (*s != ' ' && *s != '\t'))) {
      if (quote == 0 && (*s == '\'' || *s == '"'))
        quote = *s++;
      else if (quote != 0 && *s == quote) {
        quote = 0;
        s++;
      }
      else if (*s == '\\' && quote != '\'' && s[1] != '\0') {
        s++;
        *out++ = *s++;
      }
      else
        *out++ = *s++;
    }
    if (quote != 0)
      return -1;
    if (*s != '\0')
      s++;
    *out++ = '\0';
  }
}

struct wait_filter {
  char **keys; /* KEY=VALUE words: data.KEY must be VALUE */
  int n;
};

static bool
wait_filter_match (const json_t *data, void *opaque)
{
  const struct wait_filter *f = opaque;

  for (int i = 0; i < f->n; i++) {
    const char *eq = strchr (f->keys[i], '=');
    const json_t *v;
    CLEANUP_FREE char *key = NULL;
    CLEANUP_FREE char *text = NULL;

    if (eq == NULL)
      return false;
    key = strndup (f->keys[i], eq - f->keys[i]);
    v = key ? json_object_get (data, key) : NULL;
    if (v == NULL)
      return false;
    if (json_is_string (v)) {
      if (strcmp (json_string_value (v), eq + 1) != 0)
        return false;
      continue;
    }
    text = json_dumps (v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL || strcmp (text, eq + 1) != 0)
      return false;
  }
  return true;
}

/* ".wait NAME [SECS] [KEY=VALUE...]": wait for one event whose data has
 * those values, and print it. */
static int
shell_wait (struct qmp_client *c, const struct qmp_opts *o, char *rest)
{
  char *words[64];
  int n = shell_split (rest, words, 64);
  int64_t s = o->timeout_ms < 0 ? -1 : o->timeout_ms / 1000;
  struct wait_filter f = { .keys = NULL, .n = 0 };
  json_t *event = NULL;
  int first = 1;

  if (n < 1) {
    fprintf (stderr, "knib: usage: .wait EVENT [SECONDS] [KEY=VALUE...]\n");
    return EXIT_USAGE;
  }
  if (n > 1 && strchr (words[1], '=') == NULL) {
    if (parse_int64 ("seconds", words[1], 0, 2000000, &s) == -1) {
      cli_error ("%s", "");
      return EXIT_USAGE;
    }
    first = 2;
  }
  f.keys = words + first;
  f.n = n - first;
  if (qmp_client_wait_event (c, words[0], wait_filter_match, &f,
                             s < 0 ? -1 : (int) (s * 1000), &event)
      == -1) {
    cli_error ("%s", "");
    return EXIT_FAILURE_;
  }
  print_event (event, o->json);
  json_decref (event);
  return EXIT_OK;
}

/* One line of the shell: a JSON request or COMMAND [ARGS]. */
static int
shell_line (struct qmp_client *c, const struct qmp_opts *o, char *line)
{
  char *command, *rest;
  json_t *args = NULL;
  int r;

  line[strcspn (line, "\r\n")] = '\0';
  while (*line == ' ' || *line == '\t')
    line++;
  if (*line == '\0' || *line == '#')
    return -1;
  if (strncmp (line, ".wait", 5) == 0)
    return shell_wait (c, o, line + 5);
  if (strcmp (line, ".events") == 0) {
    drain_events (c, o);
    return EXIT_OK;
  }
  if (*line == '{') {
    json_auto_t *req = json_loads (line, 0, NULL);
    const char *cmd = NULL;
    json_t *a = NULL;

    if (req == NULL
        || json_unpack (req, "{s:s, s?o}", "execute", &cmd, "arguments", &a)
             == -1) {
      fprintf (stderr, "knib: not a QMP request: %s\n", line);
      return EXIT_USAGE;
    }
    return run_command (c, o, cmd, json_incref (a));
  }
  command = strtok_r (line, " \t", &rest);
  while (*rest == ' ' || *rest == '\t')
    rest++;
  if (*rest == '{') {
    char *one[] = { rest };
    r = cli_args_build (1, one, &args);
  }
  else {
    char *words[256];
    int n = shell_split (rest, words, 256);

    if (n < 0) {
      set_error (0, "unbalanced quotes or more than 256 arguments");
      r = -1;
    }
    else
      r = cli_args_build (n, words, &args);
  }
  if (r == -1) {
    cli_error ("qmp '%s'", command);
    return EXIT_USAGE;
  }
  return run_command (c, o, command, args);
}

static int
shell (struct qmp_client *c, const struct qmp_opts *o)
{
  bool tty = isatty (STDIN_FILENO);
  CLEANUP_FREE char *line = NULL;
  size_t cap = 0;
  int status = EXIT_OK;

  for (;;) {
    int r;

    if (tty) {
      drain_events (c, o);
      fputs ("(qmp) ", stdout);
      fflush (stdout);
    }
    if (getline (&line, &cap, stdin) == -1)
      break;
    r = shell_line (c, o, line);
    if (r > 0)
      status = r;
  }
  if (tty)
    putchar ('\n');
  return status;
}

static int
qmp_parse (int argc, char **argv, struct qmp_opts *o)
{
  static const struct option opts[] = {
    { "json", no_argument, NULL, 'j' },
    { "events", no_argument, NULL, 'e' },
    { "filter", required_argument, NULL, 'f' },
    { "timeout", required_argument, NULL, 't' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int c;

  while ((c = getopt_long (argc, argv, "+h", opts, NULL)) != -1) {
    switch (c) {
    case 'j':
      o->json = true;
      break;
    case 'e':
      o->events = true;
      break;
    case 'f':
      o->filters[o->nfilters++] = optarg;
      break;
    case 't':
      if (cli_parse_timeout ("qmp", "--timeout", optarg, &o->timeout_ms) == -1)
        return -1;
      break;
    case 'h':
      o->help = true;
      return 0;
    default:
      return cli_usage_error ("qmp", "bad option");
    }
  }
  return 0;
}

int
cmd_qmp (struct cli *cli, int argc, char **argv)
{
  struct qmp_opts o = { .timeout_ms = -1 };
  struct qmp_client *c;
  const char *socket_path;
  json_t *args = NULL;
  int r, first;

  o.timeout_ms = cli_timeout_ms (cli->cfg.timeout);
  o.filters = calloc (argc + 1, sizeof *o.filters);
  if (o.filters == NULL) {
    perror ("knib: calloc");
    return EXIT_FAILURE_;
  }
  /* Options may come after SOCKET too (knib qmp SOCK --events): parse
   * the words before SOCKET, then again after it. */
  r = EXIT_USAGE;
  if (qmp_parse (argc, argv, &o) == -1)
    goto out;
  if (o.help) {
    qmp_usage (stdout);
    r = EXIT_OK;
    goto out;
  }
  if (optind >= argc) {
    cli_usage_error ("qmp", "no SOCKET given");
    goto out;
  }
  socket_path = argv[optind];
  argv += optind;
  argc -= optind;
  optind = 0;
  if (qmp_parse (argc, argv, &o) == -1)
    goto out;
  if (o.help) {
    qmp_usage (stdout);
    r = EXIT_OK;
    goto out;
  }
  first = optind;
  if (o.nfilters > 0 && !o.events) {
    cli_usage_error ("qmp", "--filter goes with --events");
    goto out;
  }
  if (o.events && first < argc) {
    cli_usage_error ("qmp", "--events takes no COMMAND");
    goto out;
  }
  if (first < argc && first + 1 < argc) {
    if (cli_args_build (argc - first - 1, argv + first + 1, &args) == -1) {
      cli_error ("qmp '%s'", argv[first]);
      r = EXIT_USAGE;
      goto out;
    }
  }
  if (cli->parse_only) {
    json_decref (args);
    r = EXIT_OK;
    goto out;
  }
  c = qmp_client_connect (socket_path, o.timeout_ms, NULL);
  if (c == NULL) {
    json_decref (args);
    cli_error ("%s", "");
    r = EXIT_FAILURE_;
    goto out;
  }
  if (o.events)
    r = watch_events (c, &o);
  else if (first < argc)
    r = run_command (c, &o, argv[first], args);
  else
    r = shell (c, &o);
  qmp_client_free (c);
out:
  free (o.filters);
  return r;
}
