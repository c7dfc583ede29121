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
  struct cli_common common;
  const char *id;
};

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
               "The last boot validation (knib validate): its result, each\n"
               "step, the recovery time (seconds from power-on to the guest\n"
               "agent's first answer) and the screenshot and console log.\n"
               "BACKUP is a backup id; name the VM when two VMs have it.\n"
               "\n"
               "Options:\n"
               "      --repo DIR   the repository\n"
               "      --vm VM      the VM whose backup it is\n"
               "      --json       one JSON object\n"
               "  -h, --help       show this help\n");
}

/* 0, or -1 (said); --help stops the parse at once. */
static int
info_parse (struct cli *cli, int argc, char **argv, struct info_opts *o)
{
  static const struct option opts[] = {
    CLI_COMMON_OPTIONS,
    { NULL, 0, NULL, 0 },
  };
  int c, r;

  cli_common_init (cli, &o->common);
  while ((r = cli_next_option ("info", argc, argv, opts, &o->common, &c)) > 0) {
    switch (c) {
    default:
      return cli_usage_error ("info", "unknown option");
    }
  }
  if (r == -1)
    return -1;
  if (o->common.help)
    return 0;
  if (optind >= argc)
    return cli_usage_error ("info", "no BACKUP given");
  o->id = argv[optind++];
  if (optind < argc)
    return cli_usage_error ("info", "unexpected argument '%s'", argv[optind]);
  if (cli_common_check ("info", &o->common, true, false) == -1)
    return -1;
  return 0;
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
  if (json_object_get (d, "xxh3-128") != NULL)
    printf ("  %-14s %s\n", "xxh3-128", str (d, "xxh3-128"));
  else
    printf ("  %-14s %s (xxh3-128 of 4 MiB segments)\n", "hash",
            str (d, "xxh3-128-segments"));
  printf ("  %-14s %s\n", "compression", str (d, "compression"));
  printf ("  %-14s %s\n", "backing file",
          json_is_null (json_object_get (d, "backing-file"))
            ? "none"
            : str (d, "backing-file"));
}

/* The last boot validation, with the measured recovery time. */
static void
print_validation (const struct chain_manifest *m, const json_t *b)
{
  const struct chain_validation *v = m->validation;
  const char *path = NULL;
  const json_t *d = json_array_get (json_object_get (b, "disks"), 0);
  char when[CHAIN_TIME_MAX];

  if (v == NULL) {
    printf ("%-16s %s\n", "validation", "never (knib validate boots it)");
    return;
  }
  chain_time_format (v->time, when);
  printf ("%-16s %s at %s (%s, %.1f s)\n", "validation",
          v->status == CHAIN_CHECK_PASSED ? "passed" : "FAILED", when, v->accel,
          v->seconds);
  if (v->boot_seconds >= 0)
    printf ("%-16s %.1f s (power-on to the guest agent's first answer)\n",
            "recovery time", v->boot_seconds);
  else
    printf ("%-16s unknown: the guest agent never answered\n", "recovery time");
  show_validation_steps (v, stdout);
  /* The files are beside the images: the directory of the first one. */
  path = json_string_value (json_object_get (d, "path"));
  if (path != NULL && strrchr (path, '/') != NULL) {
    int dir = (int) (strrchr (path, '/') - path);

    if (v->screenshot)
      printf ("  %-14s %.*s/%s\n", "screenshot", dir, path, v->screenshot);
    if (v->console)
      printf ("  %-14s %.*s/%s\n", "console", dir, path, v->console);
  }
}

static void
print_text (const struct chain_manifest *m, const json_t *b)
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
  print_validation (m, b);
  json_array_foreach (disks, i, d) print_disk (d);
}

int
cmd_info (struct cli *cli, int argc, char **argv)
{
  struct info_opts o = { .common = { .repo = NULL } };
  chain_string_vector problems = empty_vector;
  struct chain_repo *repo;
  struct chain_manifest *m = NULL;
  json_t *b = NULL;
  int status;

  if (info_parse (cli, argc, argv, &o) == -1)
    return EXIT_USAGE;
  if (o.common.help) {
    info_usage (stdout);
    return EXIT_OK;
  }
  if (cli->parse_only)
    return EXIT_OK;
  repo = chain_repo_open (o.common.repo, false);
  if (repo != NULL)
    m = chain_backup_find (repo, o.common.vm, o.id);
  if (m != NULL)
    b = show_backup_json (repo, m, true, &problems);
  if (b == NULL) {
    cli_error ("info");
    status = EXIT_FAILURE_;
  }
  else {
    if (o.common.json)
      show_json (b, false);
    else
      print_text (m, b);
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
