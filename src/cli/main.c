/* SPDX-License-Identifier: Apache-2.0 */
/* main.c: the knib command: global options, then one sub-command. */
#include <config.h>

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"

/* cli_set_quiet: a parse only; errors are not printed. */
static bool quiet;

static const struct command {
  const char *name;
  int (*run) (struct cli *cli, int argc, char **argv);
  const char *summary;
} commands[] = {
  { "backup", cmd_backup, "back up a running VM (full or incremental)" },
  { "recover", cmd_recover, "repair what a killed backup left behind" },
  { "list", cmd_list, "list the backups in a repository" },
  { "info", cmd_info, "show one backup in detail" },
  { "verify", cmd_verify, "check a backup's chain or a VM's backups" },
  { "restore", cmd_restore, "write a backup's disks as new images" },
  { "compress", cmd_compress, "rewrite a backup's images compressed" },
  { "delete", cmd_delete, "delete backups without breaking a chain" },
  { "prune", cmd_prune, "delete the backups a retention policy drops" },
  { "validate", cmd_validate, "boot a backup in a throwaway VM and check it" },
  { "merge", cmd_merge, "make a backup standalone (a full backup)" },
  { "files", cmd_files, "list, find, copy out, compare files in backups" },
  { "export", cmd_export, "serve a backup's disk as a read-only NBD export" },
  { "chain", cmd_chain, "'chain end': the next backup is full" },
  { "snapshot", cmd_snapshot, "disk-only VM snapshots: create, list, ..." },
  { "libvirt", cmd_libvirt, "give knib a QMP monitor in a libvirt domain" },
  { "qmp", cmd_qmp, "talk QMP to a running QEMU (for debugging)" },
  { "jobs", cmd_jobs, "list the jobs of knibd, the agent" },
  { "job", cmd_job, "cancel, wait for or show the log of a knibd job" },
  { "agent", cmd_agent, "'agent status': the state of knibd" },
};

void
cli_set_quiet (bool on)
{
  quiet = on;
  opterr = !on; /* getopt's own messages too */
}

void
cli_error (const char *fmt, ...)
{
  va_list ap;
  char *ctx = NULL;

  if (quiet)
    return;
  va_start (ap, fmt);
  if (vasprintf (&ctx, fmt, ap) == -1)
    ctx = NULL;
  va_end (ap);
  if (ctx != NULL && ctx[0] != '\0')
    fprintf (stderr, "knib: %s: %s\n", ctx, get_error ());
  else
    fprintf (stderr, "knib: %s\n", get_error ());
  free (ctx);
}

int
cli_usage_error (const char *cmd, const char *fmt, ...)
{
  va_list ap;

  if (quiet)
    return -1;
  fputs ("knib: ", stderr);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\nTry 'knib %s%s--help' for more information.\n",
           cmd ? cmd : "", cmd ? " " : "");
  return -1;
}

bool
cli_name_ok (const char *what, const char *name)
{
  if (name == NULL || name_check (what, name) == 0)
    return true;
  cli_error ("%s", "");
  return false;
}

int
cli_exit_for_qemu_class (const char *cls)
{
  static const struct {
    const char *cls;
    int status;
  } map[] = {
    { "GenericError", EXIT_QEMU_GENERIC },
    { "CommandNotFound", EXIT_QEMU_COMMAND_NOT_FOUND },
    { "DeviceNotFound", EXIT_QEMU_DEVICE_NOT_FOUND },
    { "DeviceNotActive", EXIT_QEMU_DEVICE_NOT_ACTIVE },
    { "KVMMissingCap", EXIT_QEMU_KVM_MISSING_CAP },
  };

  if (cls == NULL)
    return EXIT_FAILURE_;
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (strcmp (map[i].cls, cls) == 0)
      return map[i].status;
  return EXIT_QEMU_OTHER;
}

static void
usage (FILE *fp)
{
  fprintf (fp, "Usage: knib [-v] [--config FILE] COMMAND [ARGS...]\n"
               "\n"
               "knib backs up QEMU/KVM virtual machines as qcow2 chains.\n"
               "\n"
               "Commands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf (fp, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf (fp,
           "\n"
           "Options:\n"
           "  -v, --verbose      trace everything (same as KNIB_DEBUG=all)\n"
           "      --config FILE  settings file (default " KNIB_CONFIG_PATH ")\n"
           "  -h, --help         show this help\n"
           "  -V, --version      show the version\n"
           "\n"
           "Environment: KNIB_DEBUG=qmp,nbd,qcow2,chain,cmd|all traces those "
           "parts on stderr;\nKNIB_CONFIG names the settings file.\n"
           "'knib COMMAND --help' describes a command; see also knib(1).\n"
           "backup, restore, verify, compress, delete and prune take "
           "--agent[=SOCKET]\n[--wait]: run as a job of knibd, the host's "
           "agent (see knib(1), knibd(8)).\n");
}

static int
setup (struct cli *cli)
{
  const char *env = getenv ("KNIB_DEBUG");
  unsigned mask = 0;

  if (env != NULL && debug_parse (env, &mask) == -1) {
    cli_error ("KNIB_DEBUG");
    return -1;
  }
  if (cli->verbose)
    mask = DEBUG_ALL;
  debug_set (mask);

  config_init (&cli->cfg);
  if (cli->parse_only)
    return 0;
  if (cli->config_path == NULL)
    cli->config_path = getenv ("KNIB_CONFIG");
  if (config_load (&cli->cfg,
                   cli->config_path ? cli->config_path : KNIB_CONFIG_PATH,
                   cli->config_path != NULL)
      == -1) {
    cli_error ("%s", "");
    return -1;
  }
  return 0;
}

int
cli_main (int argc, char **argv, bool parse_only)
{
  static const struct option opts[] = {
    { "verbose", no_argument, NULL, 'v' },
    { "config", required_argument, NULL, 'c' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
  };
  struct cli cli = { .parse_only = parse_only };
  int c;

  cli_set_quiet (parse_only);
  optind = 0; /* a new parse (glibc), also on a second call */
  while ((c = getopt_long (argc, argv, "+vhV", opts, NULL)) != -1) {
    switch (c) {
    case 'v':
      cli.verbose = true;
      break;
    case 'c':
      cli.config_path = optarg;
      break;
    case 'h':
      usage (stdout);
      return EXIT_OK;
    case 'V':
      printf ("knib %s\n", PACKAGE_VERSION);
      return EXIT_OK;
    default:
      cli_usage_error (NULL, "unknown option");
      return EXIT_USAGE;
    }
  }
  if (optind >= argc) {
    if (!quiet)
      usage (stderr);
    return EXIT_USAGE;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
    if (strcmp (argv[optind], commands[i].name) != 0)
      continue;
    if (setup (&cli) == -1)
      return EXIT_FAILURE_;
    argv += optind;
    argc -= optind;
    optind = 0; /* let the sub-command parse its own options */
    if (commands[i].run != cmd_jobs && commands[i].run != cmd_job
        && commands[i].run != cmd_agent && cli_agent_requested (argc, argv))
      return cli_agent_run (&cli, commands[i].name, argc, argv);
    return commands[i].run (&cli, argc, argv);
  }
  cli_usage_error (NULL, "unknown command '%s'", argv[optind]);
  return EXIT_USAGE;
}
