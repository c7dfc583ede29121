/* SPDX-License-Identifier: Apache-2.0 */
/* verify.c: "knib verify": check a backup's chain or all of a VM's backups. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "chain/chain.h"
#include "cli.h"
#include "common/cleanup.h"
#include "common/error.h"
#include "common/util.h"
#include "show.h"

struct verify_opts {
  struct cli_common common;
  const char *id; /* NULL: every backup of the VM */
};

struct verify_out {
  bool json;
  json_t *items; /* with --json */
  bool nomem;
};

static void
verify_usage (FILE *fp)
{
  fprintf (
    fp, "Usage: knib verify --repo DIR [--vm VM] BACKUP [--json]\n"
        "       knib verify --repo DIR VM [--json]\n"
        "\n"
        "Check a backup with every image of its chain (its full backup\n"
        "first), or every backup of a VM with their chains (each image once).\n"
        "Each image must be there, be the qcow2 image its manifest describes\n"
        "(size, cluster size, hash), name its parent's image as backing file\n"
        "(an incremental disk) or none (a full one), and pass 'qemu-img\n"
        "check'.  Leaked clusters are a warning; everything else is an error.\n"
        "Deletes wait while it runs (it holds the VM's shared lock).\n"
        "\n"
        "One line per image: 'ok', 'warning' or 'FAILED', the VM, backup and\n"
        "disk, then the image or what is wrong with it; then a summary.\n"
        "\n"
        "Options:\n"
        "      --repo DIR   the repository\n"
        "      --vm VM      the VM (with BACKUP: when two VMs have that id)\n"
        "      --json       one JSON object with every image and the counts\n"
        "  -h, --help       show this help\n"
        "\n"
        "Exit status: 0 all is well (warnings allowed), 1 a problem was found\n"
        "or verify could not run, 2 usage.\n");
}

/* 0, or -1 (said); --help stops the parse at once. */
static int
verify_parse (struct cli *cli, int argc, char **argv, struct verify_opts *o)
{
  static const struct option opts[] = {
    CLI_COMMON_OPTIONS,
    { NULL, 0, NULL, 0 },
  };
  int c, r;

  cli_common_init (cli, &o->common);
  while ((r = cli_next_option ("verify", argc, argv, opts, &o->common, &c))
         > 0) {
    switch (c) {
    default:
      return cli_usage_error ("verify", "unknown option");
    }
  }
  if (r == -1)
    return -1;
  if (o->common.help)
    return 0;
  if (optind < argc) {
    const char *arg = argv[optind++];

    /* A backup id, or else the name of a VM. */
    if (chain_id_is_valid (arg))
      o->id = arg;
    else if (o->common.vm != NULL)
      return cli_usage_error ("verify", "'%s' is not a backup id", arg);
    else if (!cli_name_ok ("vm", arg))
      return -1;
    else
      o->common.vm = arg;
  }
  if (optind < argc)
    return cli_usage_error ("verify", "unexpected argument '%s'", argv[optind]);
  if (cli_common_check ("verify", &o->common, true, false) == -1)
    return -1;
  if (o->common.vm == NULL && o->id == NULL)
    return cli_usage_error ("verify", "give a BACKUP or a VM");
  return 0;
}

static const char *
item_status (const struct chain_verify_item *item)
{
  if (item->errors->len > 0)
    return "error";
  if (item->warnings->len > 0)
    return "warning";
  return "ok";
}

static void
print_item (const struct chain_verify_item *item, void *opaque)
{
  struct verify_out *out = opaque;
  const char *status = item_status (item);

  if (out->json) {
    json_t *j = json_pack ("{s:s, s:o, s:o, s:o, s:s, s:o, s:o}", "vm",
                           item->vm, "backup", show_nullable (item->backup),
                           "disk", show_nullable (item->disk), "path",
                           show_nullable (item->path), "status", status,
                           "errors", show_strings_json (item->errors),
                           "warnings", show_strings_json (item->warnings));

    if (j == NULL || json_array_append_new (out->items, j) == -1)
      out->nomem = true;
    return;
  }
  /* Ids are 16 characters, 18 for the second backup of a second. */
  printf ("%-7s  %s  %-18s  %-4s  ",
          strcmp (status, "error") == 0 ? "FAILED" : status, item->vm,
          item->backup ? item->backup : "-", item->disk ? item->disk : "-");
  if (item->errors->len == 0 && item->warnings->len == 0)
    fputs (item->path, stdout);
  for (size_t i = 0; i < item->errors->len; i++)
    printf ("%s%s", i > 0 ? "; " : "", item->errors->ptr[i]);
  for (size_t i = 0; i < item->warnings->len; i++)
    printf ("%s%s", i > 0 || item->errors->len > 0 ? "; " : "",
            item->warnings->ptr[i]);
  putchar ('\n');
  fflush (stdout);
}

static void
print_summary (const struct verify_opts *o, struct verify_out *out,
               const struct chain_verify_summary *s)
{
  json_t *j;

  if (!out->json) {
    printf ("verified %zu image%s of %zu backup%s: %zu ok, %zu with "
            "warnings, %zu with errors\n",
            s->images, s->images == 1 ? "" : "s", s->backups,
            s->backups == 1 ? "" : "s", s->ok, s->warnings, s->errors);
    return;
  }
  j = json_pack ("{s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:b, s:O}", "vm",
                 show_nullable (o->common.vm), "backup", show_nullable (o->id),
                 "backups", (json_int_t) s->backups, "images",
                 (json_int_t) s->images, "ok", (json_int_t) s->ok, "warnings",
                 (json_int_t) s->warnings, "errors", (json_int_t) s->errors,
                 "success", s->errors == 0, "items", out->items);
  if (j == NULL) {
    out->nomem = true;
    return;
  }
  show_json (j, false);
  json_decref (j);
}

int
cmd_verify (struct cli *cli, int argc, char **argv)
{
  struct verify_opts o = { .common = { .repo = NULL } };
  struct verify_out out = { .json = false };
  struct chain_verify_summary sum;
  struct chain_repo *repo;
  int status, r;

  if (verify_parse (cli, argc, argv, &o) == -1)
    return EXIT_USAGE;
  if (o.common.help) {
    verify_usage (stdout);
    return EXIT_OK;
  }
  if (cli->parse_only)
    return EXIT_OK;
  out.json = o.common.json;
  out.items = json_array ();
  if (out.items == NULL) {
    fprintf (stderr, "knib: verify: out of memory\n");
    return EXIT_FAILURE_;
  }
  repo = chain_repo_open (o.common.repo, false);
  r = repo ? chain_verify (repo, o.common.vm, o.id, 0, print_item, &out, &sum)
           : -1;
  if (r == -1) {
    cli_error ("verify");
    status = EXIT_FAILURE_;
  }
  else {
    print_summary (&o, &out, &sum);
    if (out.nomem)
      fprintf (stderr, "knib: verify: out of memory\n");
    status = sum.errors > 0 || out.nomem ? EXIT_FAILURE_ : EXIT_OK;
  }
  json_decref (out.items);
  chain_repo_free (repo);
  return status;
}
