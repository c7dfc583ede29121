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
  OPT_DISK = CLI_OPT_FIRST,
  OPT_SOCKET,
  OPT_PORT,
  OPT_BIND,
  OPT_TLS_CREDS,
};

static void
export_usage (FILE *fp)
{
  fprintf (
    fp,
    "Usage: knib export --repo DIR [--vm VM] BACKUP [--disk NAME]\n"
    "                   (--socket PATH | --port N [--bind ADDR]\n"
    "                    [--tls-creds DIR])\n"
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
    "      --tls-creds DIR   TCP clients must use TLS: DIR holds ca-cert.pem,\n"
    "                        server-cert.pem and server-key.pem\n"
    "      --timeout SECONDS stop after this long\n"
    "      --json            say where it serves as one JSON object\n"
    "  -h, --help            show this help\n");
}

/* 0, or -1 (said); --help stops the parse at once. */
static int
export_parse (struct cli *cli, int argc, char **argv, struct cli_common *co,
              struct files_export_options *eo, const char **id)
{
  static const struct option opts[] = {
    CLI_COMMON_OPTIONS,
    { "disk", required_argument, NULL, OPT_DISK },
    { "socket", required_argument, NULL, OPT_SOCKET },
    { "port", required_argument, NULL, OPT_PORT },
    { "bind", required_argument, NULL, OPT_BIND },
    { "tls-creds", required_argument, NULL, OPT_TLS_CREDS },
    { NULL, 0, NULL, 0 },
  };
  int64_t port;
  int c, r;

  cli_common_init (cli, co);
  while ((r = cli_next_option ("export", argc, argv, opts, co, &c)) > 0) {
    switch (c) {
    case OPT_DISK:
      if (!cli_name_ok ("disk", optarg))
        return -1;
      eo->disk = optarg;
      break;
    case OPT_SOCKET:
      eo->socket = optarg;
      break;
    case OPT_PORT:
      if (parse_int64 ("--port", optarg, 1, 65535, &port) == -1)
        return cli_usage_error ("export", "%s", get_error ());
      eo->port = optarg;
      break;
    case OPT_BIND:
      eo->bind = optarg;
      break;
    case OPT_TLS_CREDS:
      eo->tls_creds = optarg;
      break;
    default:
      return cli_usage_error ("export", "unknown option");
    }
  }
  if (r == -1)
    return -1;
  if (co->help)
    return 0;
  if (optind >= argc)
    return cli_usage_error ("export", "no BACKUP given");
  *id = argv[optind++];
  if (optind < argc)
    return cli_usage_error ("export", "unexpected argument '%s'", argv[optind]);
  if (cli_common_check ("export", co, true, false) == -1)
    return -1;
  if ((eo->socket == NULL) == (eo->port == NULL))
    return cli_usage_error ("export", "give one of --socket PATH and --port N");
  if (eo->bind != NULL && eo->port == NULL)
    return cli_usage_error ("export", "--bind goes with --port");
  if (eo->tls_creds != NULL && eo->port == NULL)
    return cli_usage_error ("export", "--tls-creds goes with --port");
  eo->vm = co->vm;
  return 0;
}

int
cmd_export (struct cli *cli, int argc, char **argv)
{
  struct files_export_options eo = { NULL };
  struct cli_common co;
  const char *id = NULL;
  int64_t deadline;
  struct chain_repo *repo;
  struct files_export *e;
  char *uri = NULL;
  int c, status = EXIT_OK;

  if (export_parse (cli, argc, argv, &co, &eo, &id) == -1)
    return EXIT_USAGE;
  if (co.help) {
    export_usage (stdout);
    return EXIT_OK;
  }
  if (cli->parse_only)
    return EXIT_OK;
  cli_catch_signals ();
  repo = chain_repo_open (co.repo, false);
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
    c = asprintf (&uri, "%s://%s:%s/%s", eo.tls_creds ? "nbds" : "nbd",
                  eo.bind ? eo.bind : "localhost", eo.port,
                  files_export_disk (e));
  if (c == -1)
    uri = NULL;
  if (co.json) {
    json_t *j = json_pack ("{s:s, s:s, s:s, s:s, s:b, s:b}", "backup", id,
                           "disk", files_export_disk (e), "image",
                           files_export_image (e), "uri", uri ? uri : "",
                           "read_only", 1, "tls", eo.tls_creds != NULL);

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
  /* Without --timeout it serves until a signal. */
  deadline = deadline_after_ms (co.timeout_set ? co.timeout_ms : -1);
  while (!cli_interrupted) {
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
