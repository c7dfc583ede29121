/* SPDX-License-Identifier: Apache-2.0 */
/* info.c: "knib info": one backup in detail, disk by disk. */
#include <config.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "chain/chain.h"
#include "cli.h"
#include "common/cleanup.h"
#include "common/error.h"
#include "common/util.h"
#include "progress.h"
#include "show.h"

struct info_opts {
  const char *repo;
  const char *vm;
  const char *id;
  bool json;
};

enum { OPT_REPO = 256, OPT_VM, OPT_JSON };

static void
info_usage (FILE *fp)
{
  fprintf (fp, "Usage: knib info --repo DIR [--vm VM] BACKUP [--json]\n"
               "\n"
               "Show one backup in detail: what its manifest records (kind,\n"
               "state, chain, parent, times, why it is full or incremental)\n"
               "and for each disk its image, virtual and cluster size, kind,\n"
               "bytes read and written, extents, xxh3-128 hash, compression,\n"
               "the image's path and the backing file the image records.\n"
               "BACKUP is a backup id; name the VM when two VMs have it.\n"
               "\n"
               "Options:\n"
               "      --repo DIR   the repository\n"
               "      --vm VM      the VM whose backup it is\n"
               "      --json       one JSON object\n"
               "  -h, --help       show this help\n");
}

static int
info_parse (int argc, char **argv, struct info_opts *o)
{
  static const struct option opts[] = {
    { "repo", required_argument, NULL, OPT_REPO },
    { "vm", required_argument, NULL, OPT_VM },
    { "json", no_argument, NULL, OPT_JSON },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  int c;

  while ((c = getopt_long (argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case OPT_REPO:
      o->repo = optarg;
      break;
    case OPT_VM:
      o->vm = optarg;
      break;
    case OPT_JSON:
      o->json = true;
      break;
    case 'h':
      info_usage (stdout);
      return EXIT_OK;
    default:
      return cli_usage_error ("info", "unknown option");
    }
  }
  if (optind >= argc)
    return cli_usage_error ("info", "no BACKUP given");
  o->id = argv[optind++];
  if (optind < argc)
    return cli_usage_error ("info", "unexpected argument '%s'", argv[optind]);
  if (o->repo == NULL)
    return cli_usage_error ("info", "--repo is required");
  if (!cli_name_ok ("vm", o->vm))
    return EXIT_USAGE;
  return -1;
}

static const char *
str (const json_t *o, const char *key)
{
  const char *s = json_string_value (json_object_get (o, key));

  return s != NULL ? s : "-";
}

static void
print_size (const char *label, const json_t *v)
{
  char text[32];

  if (!json_is_integer (v)) {
    printf ("%-16s ?\n", label);
    return;
  }
  progress_format_bytes ((uint64_t) json_integer_value (v), text, sizeof text);
  printf ("%-16s %s (%" JSON_INTEGER_FORMAT " bytes)\n", label, text,
          json_integer_value (v));
}

static void
print_disk (const json_t *d)
{
  printf ("\ndisk %s\n", str (d, "name"));
  printf ("  %-14s %s\n", "image", str (d, "image"));
  printf ("  %-14s %s\n", "path", str (d, "path"));
  printf ("  %-14s %s\n", "kind", str (d, "kind"));
  printf ("  %-14s %s\n", "reason", str (d, "reason"));
  print_size ("  virtual size", json_object_get (d, "virtual-size"));
  printf ("  %-14s %" JSON_INTEGER_FORMAT "\n", "cluster size",
          json_integer_value (json_object_get (d, "cluster-size")));
  printf ("  %-14s %s\n", "bitmap", str (d, "bitmap"));
  printf ("  %-14s %" JSON_INTEGER_FORMAT "\n", "bytes read",
          json_integer_value (json_object_get (d, "bytes-read")));
  printf ("  %-14s %" JSON_INTEGER_FORMAT "\n", "bytes written",
          json_integer_value (json_object_get (d, "bytes-written")));
  printf ("  %-14s %" JSON_INTEGER_FORMAT "\n", "extents",
          json_integer_value (json_object_get (d, "extents")));
  printf ("  %-14s %s\n", "xxh3-128", str (d, "xxh3-128"));
  printf ("  %-14s %s\n", "compression", str (d, "compression"));
  printf ("  %-14s %s\n", "backing file",
          json_is_null (json_object_get (d, "backing-file"))
            ? "none"
            : str (d, "backing-file"));
}

static void
print_text (const json_t *b)
{
  const json_t *disks = json_object_get (b, "disks");
  const json_t *d;
  size_t i;

  printf ("%-16s %s\n", "backup", str (b, "id"));
  printf ("%-16s %s\n", "vm", str (b, "vm"));
  printf ("%-16s %s\n", "kind", str (b, "kind"));
  printf ("%-16s %s\n", "state", str (b, "state"));
  printf ("%-16s %s\n", "chain", str (b, "chain"));
  printf ("%-16s %" JSON_INTEGER_FORMAT "\n", "position",
          json_integer_value (json_object_get (b, "position")));
  printf ("%-16s %s\n", "parent", str (b, "parent"));
  printf ("%-16s %s\n", "created", str (b, "created"));
  printf ("%-16s %s\n", "finished", str (b, "finished"));
  printf ("%-16s %s\n", "reason", str (b, "reason"));
  print_size ("size on disk", json_object_get (b, "size"));
  json_array_foreach (disks, i, d) print_disk (d);
}

int
cmd_info (struct cli *cli, int argc, char **argv)
{
  struct info_opts o = { .repo = NULL };
  chain_string_vector problems = empty_vector;
  struct chain_repo *repo;
  struct chain_manifest *m = NULL;
  json_t *b = NULL;
  int status;

  status = info_parse (argc, argv, &o);
  if (status >= 0)
    return status;
  repo = chain_repo_open (o.repo, false);
  if (repo != NULL)
    m = chain_backup_find (repo, o.vm, o.id);
  if (m != NULL)
    b = show_backup_json (repo, m, true, &problems);
  if (b == NULL) {
    cli_error ("info");
    status = EXIT_FAILURE_;
  }
  else {
    if (o.json)
      show_json (b, false);
    else
      print_text (b);
    fflush (stdout);
    show_problems (&problems);
    status = problems.len > 0 ? EXIT_FAILURE_ : EXIT_OK;
  }
  json_decref (b);
  chain_string_vector_release (&problems);
  chain_manifest_free (m);
  chain_repo_free (repo);
  return status;
}
