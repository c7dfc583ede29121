/* SPDX-License-Identifier: Apache-2.0 */
/* compress.c: "knib compress", and the compression options "knib backup" shares. */
#include <config.h>

#include <errno.h>
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
#include "progress.h"
#include "show.h"
#include "qcow2/qcow2.h"

/* The levels the libraries take (zstd's "ultra" levels included). */
#define ZLIB_MAX_LEVEL 9
#define ZSTD_MAX_LEVEL 22

/* ---- The options "knib backup" shares ---- */

void
cli_compression_init (const struct cli *cli, struct cli_compression *c,
                      bool deferred)
{
  memset (c, 0, sizeof *c);
  if (chain_compression_parse (cli->cfg.compress, &c->type) == -1)
    c->type = CHAIN_COMPRESSION_NONE; /* the settings checked it */
  if (deferred && c->type == CHAIN_COMPRESSION_NONE)
    c->type = CHAIN_COMPRESSION_ZSTD;
  c->threads = cli->cfg.compression_threads > QCOW2_PIPELINE_MAX_THREADS
                 ? QCOW2_PIPELINE_MAX_THREADS
                 : (unsigned) cli->cfg.compression_threads;
  c->rate_limit = cli->cfg.compression_rate_limit;
}

int
cli_compression_option (const char *cmd, int c, const char *arg,
                        struct cli_compression *comp)
{
  int64_t v;

  switch (c) {
  case CLI_OPT_COMPRESS:
    if (chain_compression_parse (arg, &comp->type) == -1)
      return cli_usage_error (cmd, "--compress: %s", get_error ());
    return 1;
  case CLI_OPT_LEVEL:
    if (parse_int64 ("--level", arg, 1, ZSTD_MAX_LEVEL, &v) == -1)
      return cli_usage_error (cmd, "%s", get_error ());
    comp->level = (int) v;
    return 1;
  case CLI_OPT_THREADS:
    if (parse_int64 ("--threads", arg, 0, QCOW2_PIPELINE_MAX_THREADS, &v) == -1)
      return cli_usage_error (cmd, "%s", get_error ());
    comp->threads = (unsigned) v;
    return 1;
  case CLI_OPT_RATE_LIMIT:
    if (parse_int64 ("--rate-limit", arg, INT32_MIN, 1000000, &v) == -1)
      return cli_usage_error (cmd, "%s", get_error ());
    comp->rate_limit = v;
    comp->rate_limit_set = true;
    return 1;
  default:
    return 0;
  }
}

int
cli_compression_check (const char *cmd, struct cli_compression *c)
{
  switch (c->type) {
  case CHAIN_COMPRESSION_NONE:
    if (c->level != 0)
      return cli_usage_error (cmd, "--level is for compressed images: add "
                                   "--compress zstd or --compress zlib");
    /* compression-rate-limit is about compression. */
    if (!c->rate_limit_set)
      c->rate_limit = 0;
    break;
  case CHAIN_COMPRESSION_ZLIB:
    if (c->level > ZLIB_MAX_LEVEL)
      return cli_usage_error (cmd, "--level %d: zlib levels go from 1 to %d",
                              c->level, ZLIB_MAX_LEVEL);
    break;
  case CHAIN_COMPRESSION_ZSTD:
    break;
  }
  return 0;
}

/* ---- knib compress ---- */

enum phase {
  PHASE_BOTH,
  PHASE_START,
  PHASE_FINALIZE,
};

struct compress_opts {
  struct cli_common common;
  const char *id;
  struct cli_compression comp;
  struct chain_compress_options co;
  enum phase phase;
};

enum {
  OPT_MIN_FREE = CLI_OPT_FIRST,
  OPT_START_ONLY,
  OPT_FINALIZE_ONLY,
};

static void
compress_usage (FILE *fp)
{
  fprintf (
    fp,
    "Usage: knib compress --repo DIR [--vm VM] BACKUP [OPTIONS]\n"
    "\n"
    "Rewrite the uncompressed images of a backup as compressed qcow2\n"
    "images, with the same backing files: a backup taken without\n"
    "--compress takes less space afterwards, and its chain stays whole.\n"
    "Only the clusters of each image itself are read (not its backing\n"
    "chain); each one that shrinks is stored compressed.  Images that are\n"
    "compressed already are left alone.\n"
    "\n"
    "Two phases: the start phase writes a compressed copy beside each\n"
    "image (backups of the VM go on meanwhile); the finalize phase waits\n"
    "for restores and verifies of the VM to finish, swaps the copies in\n"
    "atomically and updates the manifest (sizes before and after, hash).\n"
    "A failure, a timeout or ^C leaves the original untouched and no\n"
    "partial copy; the next run removes what a killed one left.\n"
    "\n"
    "Options:\n"
    "      --repo DIR         the repository\n"
    "      --vm VM            the VM whose backup it is (when two VMs have\n"
    "                         that id)\n"
    "      --compress TYPE    zstd or zlib (default: the compress setting;\n"
    "                         zstd when that is none)\n"
    "      --level N          compression level: zstd 1-22 (default 3),\n"
    "                         zlib 1-9 (default 6)\n"
    "      --threads N        compression threads (default: the\n"
    "                         compression-threads setting; 0: one per core)\n"
    "      --rate-limit MBPS  write at most this many MiB/s (default: the\n"
    "                         compression-rate-limit setting; < 1: no limit)\n"
    "      --min-free RATIO   refuse, writing nothing, unless the free space\n"
    "                         is at least RATIO times the backup's size\n"
    "                         (default: compression-min-free, 1.0)\n"
    "      --timeout SECONDS  give up after this long (default: the\n"
    "                         compression-timeout setting, 28800)\n"
    "      --start-only       only write the compressed copies\n"
    "      --finalize-only    only swap in the copies written before\n"
    "      --json             print one JSON summary on stdout\n"
    "  -q, --quiet            no progress bar\n"
    "  -h, --help             show this help\n");
}

/* 0, or -1 (said); --help stops the parse at once. */
static int
compress_parse (struct cli *cli, int argc, char **argv, struct compress_opts *o)
{
  static const struct option opts[] = {
    CLI_COMMON_OPTIONS,
    CLI_COMPRESSION_OPTIONS,
    { "min-free", required_argument, NULL, OPT_MIN_FREE },
    { "start-only", no_argument, NULL, OPT_START_ONLY },
    { "finalize-only", no_argument, NULL, OPT_FINALIZE_ONLY },
    { NULL, 0, NULL, 0 },
  };
  int c, r, taken;

  cli_common_init (cli, &o->common);
  /* Compression has a timeout setting of its own. */
  o->common.timeout_ms = cli_timeout_ms (cli->cfg.compression_timeout);
  cli_compression_init (cli, &o->comp, true);
  o->co.min_free = cli->cfg.compression_min_free;
  while ((r = cli_next_option ("compress", argc, argv, opts, &o->common, &c))
         > 0) {
    taken = cli_compression_option ("compress", c, optarg, &o->comp);
    if (taken == -1)
      return -1;
    if (taken)
      continue;
    switch (c) {
    case OPT_MIN_FREE:
      if (parse_double ("--min-free", optarg, 0, 1000000, &o->co.min_free)
          == -1)
        return cli_usage_error ("compress", "%s", get_error ());
      break;
    case OPT_START_ONLY:
      o->phase = PHASE_START;
      break;
    case OPT_FINALIZE_ONLY:
      o->phase = PHASE_FINALIZE;
      break;
    default:
      return cli_usage_error ("compress", "unknown option");
    }
  }
  if (r == -1)
    return -1;
  if (o->common.help)
    return 0;
  if (argc - optind != 1)
    return cli_usage_error ("compress", "give one BACKUP id");
  o->id = argv[optind];
  if (cli_common_check ("compress", &o->common, true, false) == -1)
    return -1;
  if (o->comp.type == CHAIN_COMPRESSION_NONE)
    return cli_usage_error ("compress", "--compress none: compress with zstd "
                                        "or zlib");
  if (cli_compression_check ("compress", &o->comp) == -1)
    return -1;
  o->co.vm = o->common.vm;
  o->co.timeout_ms = o->common.timeout_ms;
  o->co.compression = o->comp.type;
  o->co.level = o->comp.level;
  o->co.threads = o->comp.threads;
  o->co.rate_limit = o->comp.rate_limit;
  return 0;
}

static void
on_progress (void *opaque, const char *disk, uint64_t done, uint64_t total)
{
  progress_update (opaque, disk, done, total);
}

static const char *
phase_name (enum phase p)
{
  switch (p) {
  case PHASE_BOTH:
    return "both";
  case PHASE_START:
    return "start";
  case PHASE_FINALIZE:
    return "finalize";
  }
  return "?";
}

static json_t *
result_json (const struct chain_compress_result *r, enum phase phase)
{
  json_t *disks = json_array (), *notes = json_array ();

  for (size_t i = 0; i < r->disks.len; i++) {
    const struct chain_compress_disk *d = &r->disks.ptr[i];

    json_array_append_new (
      disks, json_pack ("{s:s, s:s, s:s, s:I, s:I, s:b, s:f}", "name", d->name,
                        "before", chain_compression_name (d->before), "after",
                        chain_compression_name (d->after), "bytes_before",
                        (json_int_t) d->bytes_before, "bytes_after",
                        (json_int_t) d->bytes_after, "done", d->done, "seconds",
                        d->seconds));
  }
  for (size_t i = 0; i < r->notes.len; i++)
    json_array_append_new (notes, json_string (r->notes.ptr[i]));
  return json_pack ("{s:s, s:s, s:s, s:o, s:o}", "vm", r->vm, "id", r->id,
                    "phase", phase_name (phase), "disks", disks, "notes",
                    notes);
}

static void
print_human (const struct chain_compress_result *r, enum phase phase)
{
  printf ("backup %s of vm %s:%s\n", r->id, r->vm,
          phase == PHASE_START ? " compressed copies written" : "");
  for (size_t i = 0; i < r->disks.len; i++) {
    const struct chain_compress_disk *d = &r->disks.ptr[i];
    char before[32], after[32];

    progress_format_bytes (d->bytes_before, before, sizeof before);
    progress_format_bytes (d->bytes_after, after, sizeof after);
    if (d->before != CHAIN_COMPRESSION_NONE)
      printf ("  %-6s compressed already (%s)\n", d->name,
              chain_compression_name (d->before));
    else if (d->bytes_after == 0)
      printf ("  %-6s %s: the copy an earlier run wrote is ready\n", d->name,
              chain_compression_name (d->after));
    else
      printf ("  %-6s %s  %10s -> %10s (%.1f%%)%s\n", d->name,
              chain_compression_name (d->after), before, after,
              d->bytes_before ? 100.0 * d->bytes_after / d->bytes_before : 0,
              phase == PHASE_START ? "  ready" : "");
  }
}

int
cmd_compress (struct cli *cli, int argc, char **argv)
{
  struct compress_opts o = { .id = NULL };
  struct chain_compress_result r = { .vm = NULL };
  struct chain_repo *repo = NULL;
  struct progress *bar = NULL;
  int status, ret = -1;

  if (compress_parse (cli, argc, argv, &o) == -1)
    return EXIT_USAGE;
  if (o.common.help) {
    compress_usage (stdout);
    return EXIT_OK;
  }
  if (cli->parse_only)
    return EXIT_OK;
  repo = chain_repo_open (o.common.repo, false);
  if (repo == NULL) {
    cli_error ("%s", "");
    return EXIT_FAILURE_;
  }
  cli_catch_signals ();
  bar = progress_new (!o.common.json && !o.common.quiet);
  o.co.progress = on_progress;
  o.co.opaque = bar;
  o.co.cancel = &cli_interrupted;
  switch (o.phase) {
  case PHASE_START:
    ret = chain_compress_start (repo, o.id, &o.co, &r);
    break;
  case PHASE_FINALIZE:
    ret = chain_compress_finalize (repo, o.id, &o.co, &r);
    break;
  case PHASE_BOTH:
    ret = chain_compress (repo, o.id, &o.co, &r);
    break;
  }
  progress_free (bar);
  show_problems (&r.notes);
  status = cli_exit_status_failed ();
  if (ret == -1)
    cli_error ("%s", "");
  else if (o.common.json) {
    json_t *j = result_json (&r, o.phase);

    if (j == NULL) {
      set_error (ENOMEM, "json");
      cli_error ("%s", "");
    }
    else {
      show_json (j, true);
      json_decref (j);
      status = EXIT_OK;
    }
  }
  else {
    print_human (&r, o.phase);
    status = EXIT_OK;
  }
  chain_compress_result_release (&r);
  chain_repo_free (repo);
  if (status == EXIT_OK && fflush (stdout) != 0)
    status = EXIT_FAILURE_;
  return status;
}
