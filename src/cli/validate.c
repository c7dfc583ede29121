/* SPDX-License-Identifier: Apache-2.0 */
/* validate.c: "knib validate": boot a backup in a throwaway VM and check it. */
#include <config.h>

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "backup/backup.h"
#include "cli.h"
#include "common/error.h"
#include "common/util.h"
#include "show.h"

enum {
  OPT_BOOT_TIMEOUT = CLI_OPT_FIRST,
  OPT_EXPECT_EXIT,
  OPT_EXPECT_OUTPUT,
  OPT_COMMAND_TIMEOUT,
  OPT_NO_SCREENSHOT,
  OPT_ACCEL,
  OPT_MEMORY,
  OPT_CPUS,
  OPT_KEEP,
  OPT_NO_WAIT,
  OPT_SCRATCH,
};

struct validate_cli {
  struct cli_common common;
  bool expect_exit_set;
  struct validate_options o;
};

static void
validate_usage (FILE *fp)
{
  fprintf (
    fp,
    "Usage: knib validate --repo DIR [--vm VM] BACKUP [--boot-timeout S]\n"
    "                     [--expect-exit N | --expect-output REGEX]\n"
    "                     [--command-timeout S] [--no-screenshot]\n"
    "                     [--accel auto|kvm|tcg] [--memory MiB] [--cpus N]\n"
    "                     [--keep] [--no-wait] [--scratch DIR] [--json]\n"
    "                     [-- PROGRAM ARG...]\n"
    "\n"
    "Boot the backup in a throwaway VM and check that it comes up: QEMU\n"
    "runs on temporary overlays of the backup's images (the repository is\n"
    "only read), without a network, with the hardware of the definition\n"
    "stored with the backup.  Steps: boot (the guest agent answers), a\n"
    "screenshot stored with the backup, and PROGRAM run in the guest\n"
    "through the agent (no shell: the words after -- as they are).  When\n"
    "the agent never answers, the guest's screen, serial console and a\n"
    "kernel panic say why.  The result, with the seconds from power-on to\n"
    "the agent's first answer, goes into the backup's manifest: 'knib\n"
    "info' shows it.\n"
    "\n"
    "Options:\n"
    "      --repo DIR          the repository\n"
    "      --vm VM             the VM (when two VMs have that backup id)\n"
    "      --boot-timeout S    wait this long for the agent (default %d)\n"
    "      --expect-exit N     PROGRAM must exit with N (default 0)\n"
    "      --expect-output RE  PROGRAM's output must match this extended\n"
    "                          regular expression (instead of its exit)\n"
    "      --command-timeout S PROGRAM may run this long (default %d)\n"
    "      --no-screenshot     take no screenshot\n"
    "      --accel A           auto (default: kvm when /dev/kvm works and the\n"
    "                          host is not itself a VM, else tcg), kvm, tcg\n"
    "      --memory MiB        the VM's memory (default: the definition's,\n"
    "                          else %d)\n"
    "      --cpus N            its vCPUs (default: the definition's, else %d)\n"
    "      --keep              keep the scratch directory (overlays, logs)\n"
    "      --no-wait           fail, not wait, when validation-jobs-per-host\n"
    "                          are running or the VM is locked\n"
    "      --scratch DIR       where the VM's files go (default " KNIB_DEFAULT_SCRATCH
    ")\n"
    "      --timeout S         QEMU's monitor may be silent this long\n"
    "      --json              one JSON object\n"
    "  -h, --help              show this help\n"
    "\n"
    "Exit status: 0 every step passed, 1 a step failed or the validation\n"
    "could not run, 2 usage.\n",
    VALIDATE_DEFAULT_BOOT_TIMEOUT, VALIDATE_DEFAULT_COMMAND_TIMEOUT,
    BACKUP_VM_DEFAULT_MEMORY_MIB, BACKUP_VM_DEFAULT_CPUS);
}

/* A number of seconds, or -1 (said). */
static int
seconds_arg (const char *name, const char *arg, int *out)
{
  int64_t v;

  if (parse_int64 (name, arg, 1, 86400, &v) == -1)
    return cli_usage_error ("validate", "%s", get_error ());
  *out = (int) v;
  return 0;
}

/* One of validate's own options: 0, or -1 (said). */
static int
validate_option (struct validate_cli *v, int c, const char *arg)
{
  struct validate_options *o = &v->o;
  int64_t n;

  switch (c) {
  case OPT_BOOT_TIMEOUT:
    return seconds_arg ("--boot-timeout", arg, &o->boot_timeout);
  case OPT_COMMAND_TIMEOUT:
    return seconds_arg ("--command-timeout", arg, &o->command_timeout);
  case OPT_EXPECT_EXIT:
    if (parse_int64 ("--expect-exit", arg, 0, 255, &n) == -1)
      return cli_usage_error ("validate", "%s", get_error ());
    o->expect_exit = (int) n;
    v->expect_exit_set = true;
    return 0;
  case OPT_EXPECT_OUTPUT:
    o->expect_output = arg;
    return 0;
  case OPT_NO_SCREENSHOT:
    o->screenshot = false;
    return 0;
  case OPT_ACCEL:
    if (backup_vm_accel_parse (arg, &o->vm_options.accel) == -1)
      return cli_usage_error ("validate", "--accel: %s", get_error ());
    return 0;
  case OPT_MEMORY:
    if (parse_int64 ("--memory", arg, 16, 16 * 1024 * 1024, &n) == -1)
      return cli_usage_error ("validate", "%s (MiB)", get_error ());
    o->vm_options.memory_mib = (uint64_t) n;
    return 0;
  case OPT_CPUS:
    if (parse_int64 ("--cpus", arg, 1, 255, &n) == -1)
      return cli_usage_error ("validate", "%s", get_error ());
    o->vm_options.cpus = (unsigned) n;
    return 0;
  case OPT_KEEP:
    o->vm_options.keep = true;
    return 0;
  case OPT_NO_WAIT:
    o->no_wait = true;
    return 0;
  case OPT_SCRATCH:
    o->vm_options.scratch = arg;
    return 0;
  default:
    return cli_usage_error ("validate", "unknown option");
  }
}

/* 0, or -1 (said); --help stops the parse at once. */
static int
validate_parse (struct cli *cli, int argc, char **argv, struct validate_cli *v)
{
  static const struct option opts[] = {
    CLI_COMMON_OPTIONS,
    { "boot-timeout", required_argument, NULL, OPT_BOOT_TIMEOUT },
    { "expect-exit", required_argument, NULL, OPT_EXPECT_EXIT },
    { "expect-output", required_argument, NULL, OPT_EXPECT_OUTPUT },
    { "command-timeout", required_argument, NULL, OPT_COMMAND_TIMEOUT },
    { "no-screenshot", no_argument, NULL, OPT_NO_SCREENSHOT },
    { "accel", required_argument, NULL, OPT_ACCEL },
    { "memory", required_argument, NULL, OPT_MEMORY },
    { "cpus", required_argument, NULL, OPT_CPUS },
    { "keep", no_argument, NULL, OPT_KEEP },
    { "no-wait", no_argument, NULL, OPT_NO_WAIT },
    { "scratch", required_argument, NULL, OPT_SCRATCH },
    { NULL, 0, NULL, 0 },
  };
  struct validate_options *o = &v->o;
  int c, r;

  cli_common_init (cli, &v->common);
  while ((r = cli_next_option ("validate", argc, argv, opts, &v->common, &c))
         > 0)
    if (validate_option (v, c, optarg) == -1)
      return -1;
  if (r == -1)
    return -1;
  if (v->common.help)
    return 0;
  /* BACKUP, then the command (getopt moved BACKUP before "--"). */
  if (optind < argc && strcmp (argv[optind], "--") != 0)
    o->id = argv[optind++];
  if (optind < argc && strcmp (argv[optind], "--") == 0)
    optind++;
  if (optind < argc)
    o->argv = (const char *const *) &argv[optind];
  if (o->id == NULL)
    return cli_usage_error ("validate", "no BACKUP given");
  if (!chain_id_is_valid (o->id))
    return cli_usage_error ("validate", "'%s' is not a backup id", o->id);
  if (cli_common_check ("validate", &v->common, true, false) == -1)
    return -1;
  if (v->expect_exit_set && o->expect_output != NULL)
    return cli_usage_error ("validate",
                            "give --expect-exit or --expect-output, not both");
  if ((v->expect_exit_set || o->expect_output) && o->argv == NULL)
    return cli_usage_error ("validate",
                            "--expect-exit and --expect-output check a "
                            "command: give it after --");
  o->vm = v->common.vm;
  if (v->common.timeout_set)
    o->vm_options.timeout_ms = v->common.timeout_ms;
  return 0;
}

static void
on_waiting (void *opaque, const char *why)
{
  (void) opaque;
  fprintf (stderr, "knib: validate: %s\n", why);
}

static void
print_json (const struct validate_result *r)
{
  json_t *v = show_validation_json (r->validation);
  json_t *j;

  j = json_pack (
    "{s:s, s:s, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, "
    "s:o}",
    "vm", r->vm, "backup", r->id, "success",
    r->validation->status == CHAIN_CHECK_PASSED, "validation",
    v ? v : json_null (), "evidence", show_strings_json (&r->evidence),
    "screenshot", show_nullable (r->screenshot), "console",
    show_nullable (r->console), "exit-code",
    r->exit_code >= 0 ? json_integer (r->exit_code) : json_null (), "stdout",
    show_nullable (r->out), "stderr", show_nullable (r->err), "scratch",
    show_nullable (r->scratch), "notes", show_strings_json (&r->notes));
  if (j == NULL) {
    fprintf (stderr, "knib: validate: out of memory\n");
    return;
  }
  show_json (j, false);
  json_decref (j);
}

static void
print_text (const struct validate_result *r)
{
  const struct chain_validation *v = r->validation;

  for (size_t i = 0; i < r->notes.len; i++)
    printf ("%s\n", r->notes.ptr[i]);
  printf ("validation of backup %s of vm %s (%s)\n", r->id, r->vm,
          v->accel ? v->accel : "?");
  show_validation_steps (v, stdout);
  for (size_t i = 0; i < r->evidence.len; i++)
    printf ("  %s\n", r->evidence.ptr[i]);
  if (r->out != NULL && r->out[0] != '\0')
    printf ("command output:\n%s%s", r->out,
            r->out[strlen (r->out) - 1] == '\n' ? "" : "\n");
  if (r->err != NULL && r->err[0] != '\0')
    printf ("command errors:\n%s%s", r->err,
            r->err[strlen (r->err) - 1] == '\n' ? "" : "\n");
  if (r->screenshot)
    printf ("screenshot: %s\n", r->screenshot);
  if (r->console)
    printf ("console:    %s\n", r->console);
  if (r->scratch)
    printf ("kept:       %s\n", r->scratch);
  if (v->boot_seconds >= 0)
    printf ("recovery time (power-on to the guest agent): %.1f s\n",
            v->boot_seconds);
  printf ("%s\n", v->status == CHAIN_CHECK_PASSED ? "passed" : "FAILED");
}

int
cmd_validate (struct cli *cli, int argc, char **argv)
{
  struct validate_cli v = { .common = { .repo = NULL } };
  struct validate_result r;
  struct chain_repo *repo;
  int status;

  v.o.boot_timeout = VALIDATE_DEFAULT_BOOT_TIMEOUT;
  v.o.command_timeout = VALIDATE_DEFAULT_COMMAND_TIMEOUT;
  v.o.screenshot = true;
  v.o.vm_options.timeout_ms = 60000;
  v.o.jobs_per_host = cli->cfg.validation_jobs_per_host;
  v.o.waiting = on_waiting;
  v.o.cancel = &cli_interrupted;
  if (validate_parse (cli, argc, argv, &v) == -1)
    return EXIT_USAGE;
  if (v.common.help) {
    validate_usage (stdout);
    return EXIT_OK;
  }
  if (cli->parse_only)
    return EXIT_OK;
  cli_catch_signals ();
  repo = chain_repo_open (v.common.repo, false);
  if (repo == NULL || backup_validate (repo, &v.o, &r) == -1) {
    cli_error ("validate");
    if (repo != NULL)
      validate_result_release (&r);
    chain_repo_free (repo);
    return cli_exit_status_failed ();
  }
  if (v.common.json)
    print_json (&r);
  else
    print_text (&r);
  status = r.validation->status == CHAIN_CHECK_PASSED ? EXIT_OK : EXIT_FAILURE_;
  validate_result_release (&r);
  chain_repo_free (repo);
  return status;
}
