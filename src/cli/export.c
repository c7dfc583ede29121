/* SPDX-License-Identifier: Apache-2.0 */
/* export.c: "knib export": one disk of a backup point as a read-only NBD export. */
#include <config.h>

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "chain/chain.h"
#include "cli.h"
#include "common/error.h"
#include "common/util.h"
#include "files/files.h"
#include "show.h"

enum {
  OPT_REPO = 256,
  OPT_VM,
  OPT_DISK,
  OPT_SOCKET,
  OPT_PORT,
  OPT_BIND,
  OPT_TIMEOUT,
  OPT_JSON
};

static volatile sig_atomic_t stop_signal;

static void
export_usage (FILE *fp)
{
  fprintf (
    fp,
    "Usage: knib export --repo DIR [--vm VM] BACKUP [--disk NAME]\n"
    "                   (--socket PATH | --port N [--bind ADDR])\n"
    "                   [--timeout SECONDS] [--json]\n"
    "\n"
    "Serve one disk of a backup, as it was at that point, as a read-only\n"
    "NBD export (named after the disk) that any NBD client can read:\n"
    "qemu-storage-daemon reads the backup's image with its chain.  It\n"
    "serves until ^C, SIGTERM or the timeout.  Writes are refused.\n"
    "\n"
    "Options:\n"
    "      --repo DIR        the repository\n"
    "      --vm VM           the VM whose backup it is\n"
    "      --disk NAME       the disk (needed when the backup has several)\n"
    "      --socket PATH     serve on this unix socket\n"
    "      --port N          serve on this TCP port ...\n"
    "      --bind ADDR       ... of this address (default: all)\n"
    "      --timeout SECONDS stop after this long\n"
    "      --json            say where it serves as one JSON object\n"
    "  -h, --help            show this help\n");
}

static void
on_signal (int sig)
{
  stop_signal = sig;
}

int
cmd_export (struct cli *cli, int argc, char **argv)
{
  static const struct option opts[] = {
    { "repo", required_argument, NULL, OPT_REPO },
    { "vm", required_argument, NULL, OPT_VM },
    { "disk", required_argument, NULL, OPT_DISK },
    { "socket", required_argument, NULL, OPT_SOCKET },
    { "port", required_argument, NULL, OPT_PORT },
    { "bind", required_argument, NULL, OPT_BIND },
    { "timeout", required_argument, NULL, OPT_TIMEOUT },
    { "json", no_argument, NULL, OPT_JSON },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct files_export_options eo = { NULL };
  const char *repo_path = NULL, *id;
  int64_t timeout = -1, port, deadline;
  bool json = false;
  struct chain_repo *repo;
  struct files_export *e;
  struct sigaction sa;
  char *uri = NULL;
  int c, status = EXIT_OK;

  while ((c = getopt_long (argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case OPT_REPO:
      repo_path = optarg;
      break;
    case OPT_VM:
      eo.vm = optarg;
      break;
    case OPT_DISK:
      eo.disk = optarg;
      break;
    case OPT_SOCKET:
      eo.socket = optarg;
      break;
    case OPT_PORT:
      if (parse_int64 ("--port", optarg, 1, 65535, &port) == -1)
        return cli_usage_error ("export", "%s", get_error ());
      eo.port = optarg;
      break;
    case OPT_BIND:
      eo.bind = optarg;
      break;
    case OPT_TIMEOUT:
      if (parse_int64 ("--timeout", optarg, 1, 31536000, &timeout) == -1)
        return cli_usage_error ("export", "%s", get_error ());
      break;
    case OPT_JSON:
      json = true;
      break;
    case 'h':
      export_usage (stdout);
      return EXIT_OK;
    default:
      return cli_usage_error ("export", "unknown option");
    }
  }
  if (optind >= argc)
    return cli_usage_error ("export", "no BACKUP given");
  id = argv[optind++];
  if (optind < argc)
    return cli_usage_error ("export", "unexpected argument '%s'", argv[optind]);
  if (repo_path == NULL)
    return cli_usage_error ("export", "--repo is required");
  if ((eo.socket == NULL) == (eo.port == NULL))
    return cli_usage_error ("export", "give one of --socket PATH and --port N");
  if (eo.bind != NULL && eo.port == NULL)
    return cli_usage_error ("export", "--bind goes with --port");
  if (!cli_name_ok ("vm", eo.vm) || !cli_name_ok ("disk", eo.disk))
    return EXIT_USAGE;

  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGHUP, &sa, NULL);

  repo = chain_repo_open (repo_path, false);
  e = repo ? files_export_new (repo, id, &eo) : NULL;
  if (e == NULL) {
    cli_error ("%s", "");
    chain_repo_free (repo);
    return EXIT_FAILURE_;
  }
  if (eo.socket != NULL)
    c = asprintf (&uri, "nbd+unix:///%s?socket=%s", files_export_disk (e),
                  eo.socket);
  else
    c = asprintf (&uri, "nbd://%s:%s/%s", eo.bind ? eo.bind : "localhost",
                  eo.port, files_export_disk (e));
  if (c == -1)
    uri = NULL;
  if (json) {
    json_t *j = json_pack (
      "{s:s, s:s, s:s, s:s, s:b}", "backup", id, "disk", files_export_disk (e),
      "image", files_export_image (e), "uri", uri ? uri : "", "read_only", 1);

    show_json (j, true);
    json_decref (j);
  }
  else
    printf ("serving disk '%s' of backup '%s' read-only at %s (^C stops)\n",
            files_export_disk (e), id, uri ? uri : "?");
  fflush (stdout);
  if (cli->verbose)
    fprintf (stderr, "knib: export reads '%s' with its chain\n",
             files_export_image (e));
  deadline = deadline_after_ms (timeout < 0 ? -1 : timeout * 1000);
  while (!stop_signal) {
    int r = files_export_wait (e, 200);

    if (r == -1) {
      cli_error ("export");
      status = EXIT_FAILURE_;
      break;
    }
    if (deadline != -1 && deadline_remaining_ms (deadline) == 0)
      break;
  }
  free (uri);
  files_export_free (e);
  chain_repo_free (repo);
  return status;
}
