/* SPDX-License-Identifier: Apache-2.0 */
/* options.c: the options every sub-command takes, and one timeout rule. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/cleanup.h"
#include "common/error.h"
#include "common/util.h"

int
cli_timeout_ms (int64_t seconds)
{
  if (seconds <= 0)
    return -1;
  if (seconds > CLI_TIMEOUT_MAX_S)
    seconds = CLI_TIMEOUT_MAX_S;
  return (int) (seconds * 1000);
}

int
cli_parse_timeout (const char *cmd, const char *what, const char *arg, int *ms)
{
  int64_t v;

  if (parse_int64 (what, arg, 1, CLI_TIMEOUT_MAX_S, &v) == -1) {
    cli_usage_error (cmd, "%s", get_error ());
    return -1;
  }
  *ms = cli_timeout_ms (v);
  return 0;
}

void
cli_common_init (const struct cli *cli, struct cli_common *co)
{
  memset (co, 0, sizeof *co);
  co->timeout_ms = cli_timeout_ms (cli->cfg.timeout);
}

int
cli_common_option (const char *cmd, int c, const char *arg,
                   struct cli_common *co)
{
  switch (c) {
  case CLI_OPT_REPO:
    co->repo = arg;
    return 1;
  case CLI_OPT_VM:
    if (!cli_name_ok ("vm", arg))
      return -1;
    co->vm = arg;
    return 1;
  case CLI_OPT_JSON:
    co->json = true;
    return 1;
  case CLI_OPT_TIMEOUT:
    if (cli_parse_timeout (cmd, "--timeout", arg, &co->timeout_ms) == -1)
      return -1;
    co->timeout_set = true;
    return 1;
  case 'q':
    co->quiet = true;
    return 1;
  case 'h':
    co->help = true;
    return 1;
  default:
    return 0;
  }
}

int
cli_next_option (const char *cmd, int argc, char **argv,
                 const struct option *opts, struct cli_common *co, int *c)
{
  int taken;

  while (!co->help
         && (*c = getopt_long (argc, argv, CLI_COMMON_SHORT, opts, NULL))
              != -1) {
    taken = cli_common_option (cmd, *c, optarg, co);
    if (taken == -1)
      return -1;
    if (taken == 0)
      return 1;
  }
  return 0;
}

int
cli_common_check (const char *cmd, const struct cli_common *co, bool need_repo,
                  bool need_vm)
{
  if (need_repo && need_vm && (co->repo == NULL || co->vm == NULL)) {
    cli_usage_error (cmd, "--vm and --repo are required");
    return -1;
  }
  if (need_repo && co->repo == NULL) {
    cli_usage_error (cmd, "--repo is required");
    return -1;
  }
  if (need_vm && co->vm == NULL) {
    cli_usage_error (cmd, "--vm is required");
    return -1;
  }
  return 0;
}

int
cli_split_list (const char *what, const char *arg, chain_string_vector *out)
{
  CLEANUP_FREE char *copy = strdup (arg);
  char *rest = copy, *tok;

  if (copy == NULL) {
    set_error (ENOMEM, "%s", what);
    return -1;
  }
  /* strsep, not strtok: an empty name ("vda,,vdb", ",") is an error. */
  while ((tok = strsep (&rest, ",")) != NULL) {
    char *s;

    if (name_check (what, tok) == -1)
      return -1;
    s = strdup (tok);
    if (s == NULL || chain_string_vector_append (out, s) == -1) {
      free (s);
      set_error (ENOMEM, "%s", what);
      return -1;
    }
  }
  return 0;
}
