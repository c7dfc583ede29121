/* SPDX-License-Identifier: Apache-2.0 */
/* qga-client.c: the tests' guest agent client (sync, guest-exec, any command), built on src/qmp/agent.c. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/error.h"
#include "common/util.h"
#include "qmp/agent.h"

/* Exit statuses of the client itself (a guest program's own status
 * otherwise). */
#define EXIT_TIMEOUT 124
#define EXIT_CLIENT 125

static const char usage[]
  = "usage: qga-client [-t SECS] SOCKET sync\n"
    "       qga-client [-t SECS] SOCKET exec PROGRAM [ARG]...\n"
    "       qga-client [-t SECS] SOCKET COMMAND [JSON-ARGS]\n"
    "  sync   wait until the agent answers guest-sync-delimited\n"
    "         (connecting again and again; default 120 s)\n"
    "  exec   guest-exec PROGRAM, poll guest-exec-status until it ends\n"
    "         (default 60 s), print its output and exit with its status\n"
    "         (128+N for signal N); 124 on timeout\n"
    "  other  run COMMAND and print its return value as JSON\n"
    "  125: the client failed (no agent, bad reply)\n";

static void
sleep_ms (long ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

  nanosleep (&ts, NULL);
}

/* Connect and sync, again and again until an agent answers or
 * timeout_ms passes. */
static struct qga_client *
connect_until (const char *path, int timeout_ms)
{
  int64_t deadline = deadline_after_ms (timeout_ms);

  for (;;) {
    int left = deadline_remaining_ms (deadline);
    struct qga_client *c
      = qga_client_connect (path, left < 3000 ? left : 3000, 30000, NULL);

    if (c != NULL)
      return c;
    if (deadline_remaining_ms (deadline) == 0) {
      fprintf (stderr, "qga-client: %s\n", get_error ());
      return NULL;
    }
    sleep_ms (200);
  }
}

static int
base64_value (int ch)
{
  static const char alphabet[]
    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const char *p = ch != 0 ? strchr (alphabet, ch) : NULL;

  return p != NULL ? (int) (p - alphabet) : -1;
}

/* Decode the base64 text in obj[key] (when present) onto fp. */
static int
print_base64 (const json_t *obj, const char *key, FILE *fp)
{
  const char *s = json_string_value (json_object_get (obj, key));
  unsigned bits = 0;
  int nbits = 0;

  if (s == NULL)
    return 0;
  for (; *s != '\0' && *s != '='; s++) {
    int v = base64_value (*s);

    if (v == -1) {
      fprintf (stderr, "qga-client: '%s' is not base64\n", key);
      return -1;
    }
    bits = (bits << 6) | (unsigned) v;
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      fputc ((int) ((bits >> nbits) & 0xff), fp);
    }
  }
  fflush (fp);
  return 0;
}

static int
run_exec (struct qga_client *c, int timeout_ms, int argc, char **argv)
{
  int64_t deadline = deadline_after_ms (timeout_ms);
  json_t *args, *argl, *ret = NULL;
  json_int_t pid;
  int i, status;

  argl = json_array ();
  for (i = 1; i < argc; i++)
    json_array_append_new (argl, json_string (argv[i]));
  args = json_pack ("{s:s,s:o,s:b}", "path", argv[0], "arg", argl,
                    "capture-output", 1);
  if (qga_client_execute (c, "guest-exec", args, &ret) == -1) {
    fprintf (stderr, "qga-client: %s\n", get_error ());
    return EXIT_CLIENT;
  }
  pid = json_integer_value (json_object_get (ret, "pid"));
  json_decref (ret);
  for (;;) {
    ret = NULL;
    args = json_pack ("{s:I}", "pid", pid);
    if (qga_client_execute (c, "guest-exec-status", args, &ret) == -1) {
      fprintf (stderr, "qga-client: %s\n", get_error ());
      return EXIT_CLIENT;
    }
    if (json_is_true (json_object_get (ret, "exited")))
      break;
    json_decref (ret);
    if (deadline_remaining_ms (deadline) == 0) {
      fprintf (stderr, "qga-client: %s did not exit within %d s\n", argv[0],
               timeout_ms / 1000);
      return EXIT_TIMEOUT;
    }
    sleep_ms (100);
  }
  if (print_base64 (ret, "out-data", stdout) == -1
      || print_base64 (ret, "err-data", stderr) == -1) {
    json_decref (ret);
    return EXIT_CLIENT;
  }
  if (json_is_true (json_object_get (ret, "out-truncated"))
      || json_is_true (json_object_get (ret, "err-truncated")))
    fprintf (stderr, "qga-client: the agent truncated the output\n");
  if (json_object_get (ret, "signal") != NULL)
    status = 128 + (int) json_integer_value (json_object_get (ret, "signal"));
  else
    status = (int) json_integer_value (json_object_get (ret, "exitcode"));
  json_decref (ret);
  return status;
}

static int
run_command (struct qga_client *c, const char *command, const char *text)
{
  json_t *args = NULL, *ret = NULL;
  json_error_t err;
  char *out;

  if (text != NULL && (args = json_loads (text, 0, &err)) == NULL) {
    fprintf (stderr, "qga-client: arguments: %s\n", err.text);
    return EXIT_CLIENT;
  }
  if (qga_client_execute (c, command, args, &ret) == -1) {
    fprintf (stderr, "qga-client: %s\n", get_error ());
    return EXIT_CLIENT;
  }
  out = json_dumps (ret, JSON_COMPACT | JSON_ENCODE_ANY);
  printf ("%s\n", out != NULL ? out : "null");
  free (out);
  json_decref (ret);
  return 0;
}

int
main (int argc, char **argv)
{
  int timeout_s = -1, opt, status;
  struct qga_client *c;
  const char *path, *what;

  while ((opt = getopt (argc, argv, "+t:")) != -1) {
    if (opt != 't' || (timeout_s = atoi (optarg)) <= 0) {
      fputs (usage, stderr);
      return EXIT_CLIENT;
    }
  }
  if (argc - optind < 2) {
    fputs (usage, stderr);
    return EXIT_CLIENT;
  }
  path = argv[optind];
  what = argv[optind + 1];
  if (strcmp (what, "exec") == 0 && argc - optind < 3) {
    fputs (usage, stderr);
    return EXIT_CLIENT;
  }
  if (timeout_s == -1)
    timeout_s = strcmp (what, "sync") == 0 ? 120 : 60;
  c = connect_until (path, strcmp (what, "sync") == 0 ? timeout_s * 1000
                                                      : QGA_SYNC_TIMEOUT_MS);
  if (c == NULL)
    return EXIT_CLIENT;
  if (strcmp (what, "sync") == 0)
    status = 0;
  else if (strcmp (what, "exec") == 0)
    status
      = run_exec (c, timeout_s * 1000, argc - optind - 2, argv + optind + 2);
  else
    status = run_command (c, what, optind + 2 < argc ? argv[optind + 2] : NULL);
  qga_client_free (c);
  return status;
}
