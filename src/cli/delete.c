/* SPDX-License-Identifier: Apache-2.0 */
/* delete.c: "knib delete" and "knib prune": removing backups safely. */
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
#include "delete.h"
#include "show.h"

enum {
  OPT_DRY_RUN = CLI_OPT_FIRST,
  OPT_KEEP_LAST,
  OPT_KEEP_DAILY,
  OPT_KEEP_WEEKLY,
};

static const char *
action_name (enum chain_delete_action a)
{
  switch (a) {
  case CHAIN_DELETE_FILES:
    return "deleted";
  case CHAIN_DELETE_MARK:
    return "marked-removed";
  case CHAIN_DELETE_KEEP:
    return "unchanged";
  }
  return "?";
}

static const char *
reason_name (enum chain_delete_reason r)
{
  switch (r) {
  case CHAIN_DELETE_NOTHING_NEEDS:
    return "nothing-needs-it";
  case CHAIN_DELETE_TIP_HANDED_OVER:
    return "tip-handed-over";
  case CHAIN_DELETE_UNNEEDED:
    return "no-longer-needed";
  case CHAIN_DELETE_NEEDED:
    return "needed";
  case CHAIN_DELETE_TIP_FIRST:
    return "tip-without-predecessor";
  case CHAIN_DELETE_TIP_PRED_REMOVED:
    return "tip-predecessor-removed";
  case CHAIN_DELETE_TIP_PRED_GOES:
    return "tip-predecessor-deleted";
  }
  return "?";
}

int
cli_steps_report (const char *vm, const chain_delete_step_vector *steps,
                  bool dry_run, json_t *json)
{
  for (size_t i = 0; i < steps->len; i++) {
    const struct chain_delete_step *s = &steps->ptr[i];
    CLEANUP_FREE char *text = chain_delete_step_describe (s);

    if (text == NULL) {
      set_error (ENOMEM, "delete");
      return -1;
    }
    if (json == NULL) {
      printf ("%s%s\n", dry_run ? "(dry run) " : "", text);
      continue;
    }
    if (json_array_append_new (
          json,
          json_pack ("{s:s, s:s, s:s, s:s, s:b, s:s?, s:s}", "vm", vm, "id",
                     s->id, "action", action_name (s->action), "reason",
                     reason_name (s->reason), "asked", s->asked, "other",
                     s->other[0] ? s->other : NULL, "text", text))
        == -1) {
      set_error (ENOMEM, "delete");
      return -1;
    }
  }
  return 0;
}

/* ---- knib delete ---- */

struct delete_opts {
  struct cli_common common;
  bool dry_run;
  char **ids;
  size_t n;
};

static void
delete_usage (FILE *fp)
{
  fprintf (
    fp,
    "Usage: knib delete --repo DIR [--vm VM] BACKUP... [--dry-run] [--json]\n"
    "\n"
    "Delete backups without ever breaking a chain.  A backup that a\n"
    "remaining backup depends on is marked removed: hidden from 'knib\n"
    "list' (but 'knib list --all'), its files kept until nothing needs\n"
    "them; then it goes with the last backup that needed it.  Deleting\n"
    "the chain's latest backup deletes its files when the backup before\n"
    "it remains: the next backup then continues the chain from that one\n"
    "(when the VM's bitmaps allow it, else it is full, saying why).\n"
    "Otherwise it is kept as removed and the next backup is an\n"
    "incremental of it.  One line per backup says what happened.\n"
    "\n"
    "The VM's lock is needed: a delete fails at once while a backup,\n"
    "restore, verify, merge or compression of that VM runs.\n"
    "\n"
    "Options:\n"
    "      --repo DIR   the repository\n"
    "      --vm VM      the VM (default: whichever VM has each backup)\n"
    "      --dry-run    say what would happen, change nothing\n"
    "      --json       {\"steps\": [{\"vm\", \"id\", \"action\", \"reason\", "
    "...}]}\n"
    "  -h, --help       show this help\n");
}

/* 0, or -1 (said); --help stops the parse at once. */
static int
delete_parse (struct cli *cli, int argc, char **argv, struct delete_opts *o)
{
  static const struct option opts[] = {
    CLI_COMMON_OPTIONS,
    { "dry-run", no_argument, NULL, OPT_DRY_RUN },
    { NULL, 0, NULL, 0 },
  };
  int c, r;

  cli_common_init (cli, &o->common);
  while ((r = cli_next_option ("delete", argc, argv, opts, &o->common, &c))
         > 0) {
    switch (c) {
    case OPT_DRY_RUN:
      o->dry_run = true;
      break;
    default:
      return cli_usage_error ("delete", "unknown option");
    }
  }
  if (r == -1)
    return -1;
  if (o->common.help)
    return 0;
  o->ids = argv + optind;
  o->n = (size_t) (argc - optind);
  if (cli_common_check ("delete", &o->common, true, false) == -1)
    return -1;
  if (o->n == 0)
    return cli_usage_error ("delete", "name the backups to delete");
  return 0;
}

/* The VM of each backup (o->vm, or the one that has it). */
static int
resolve_vms (struct chain_repo *repo, const struct delete_opts *o, char **vms)
{
  for (size_t i = 0; i < o->n; i++) {
    struct chain_manifest *m
      = chain_backup_find (repo, o->common.vm, o->ids[i]);

    if (m == NULL)
      return -1;
    vms[i] = m->vm;
    m->vm = NULL;
    chain_manifest_free (m);
  }
  return 0;
}

/* Delete, VM by VM, the backups of that VM in the order given. */
static int
delete_all (struct chain_repo *repo, const struct delete_opts *o, char **vms,
            json_t *json)
{
  CLEANUP_FREE const char **ids = calloc (o->n, sizeof *ids);
  int status = EXIT_OK;

  if (ids == NULL) {
    set_error (ENOMEM, "delete");
    cli_error ("%s", "");
    return EXIT_FAILURE_;
  }
  for (size_t i = 0; i < o->n; i++) {
    chain_delete_step_vector steps = empty_vector;
    size_t n = 0;
    bool seen = false;
    int r;

    for (size_t j = 0; j < i; j++)
      seen = seen || strcmp (vms[j], vms[i]) == 0;
    if (seen)
      continue;
    for (size_t j = i; j < o->n; j++)
      if (strcmp (vms[j], vms[i]) == 0)
        ids[n++] = o->ids[j];
    r = chain_delete (repo, vms[i], ids, n, o->dry_run, &steps);
    if (cli_steps_report (vms[i], &steps, o->dry_run, json) == -1 || r == -1) {
      cli_error ("%s", "");
      status = EXIT_FAILURE_;
    }
    chain_delete_step_vector_reset (&steps);
  }
  return status;
}

int
cmd_delete (struct cli *cli, int argc, char **argv)
{
  struct delete_opts o = { .ids = NULL };
  struct chain_repo *repo = NULL;
  char **vms = NULL;
  json_t *json = NULL;
  int status;

  if (delete_parse (cli, argc, argv, &o) == -1)
    return EXIT_USAGE;
  if (o.common.help) {
    delete_usage (stdout);
    return EXIT_OK;
  }
  if (cli->parse_only)
    return EXIT_OK;
  status = EXIT_FAILURE_;
  repo = chain_repo_open (o.common.repo, false);
  vms = calloc (o.n, sizeof *vms);
  if (repo == NULL || vms == NULL) {
    if (vms == NULL)
      set_error (ENOMEM, "delete");
    cli_error ("delete");
    goto out;
  }
  if (resolve_vms (repo, &o, vms) == -1) {
    cli_error ("delete");
    goto out;
  }
  if (o.common.json && (json = json_array ()) == NULL) {
    set_error (ENOMEM, "delete");
    cli_error ("delete");
    goto out;
  }
  status = delete_all (repo, &o, vms, json);
  if (json != NULL) {
    json_t *out = json_pack ("{s:O, s:b}", "steps", json, "dry-run", o.dry_run);
    if (out != NULL)
      show_json (out, false);
    json_decref (out);
  }
out:
  for (size_t i = 0; vms != NULL && i < o.n; i++)
    free (vms[i]);
  free (vms);
  json_decref (json);
  chain_repo_free (repo);
  if (fflush (stdout) != 0)
    status = EXIT_FAILURE_;
  return status;
}

/* ---- knib prune ---- */

struct prune_opts {
  struct cli_common common;
  struct chain_prune_policy policy;
  bool keep_last_given;
  bool dry_run;
};

static void
prune_usage (FILE *fp)
{
  fprintf (
    fp, "Usage: knib prune --repo DIR --vm VM --keep-last N [--keep-daily D]\n"
        "                  [--keep-weekly W] [--dry-run] [--json]\n"
        "\n"
        "Retention: keep the N latest backups of the VM, the latest backup of\n"
        "each of the D latest days (UTC) that have backups and the latest of\n"
        "each of the W latest weeks (Monday to Sunday); delete the others as\n"
        "'knib delete' does, so that a kept incremental never loses its\n"
        "parent: backups that a kept one depends on are marked removed and\n"
        "their files stay.  One line per backup says what happened.\n"
        "\n"
        "Options:\n"
        "      --repo DIR         the repository\n"
        "      --vm VM            the VM\n"
        "      --keep-last N      the N latest backups (required, N >= 0)\n"
        "      --keep-daily D     the latest of each of D days\n"
        "      --keep-weekly W    the latest of each of W weeks\n"
        "      --dry-run          say what would happen, change nothing\n"
        "      --json             {\"steps\": [...]} as 'knib delete --json'\n"
        "  -h, --help             show this help\n");
}

/* 0, or -1 (said). */
static int
parse_count (const char *what, const char *arg, int64_t *v)
{
  if (parse_int64 (what, arg, 0, 1000000, v) == -1)
    return cli_usage_error ("prune", "%s", get_error ());
  return 0;
}

/* 0, or -1 (said); --help stops the parse at once. */
static int
prune_parse (struct cli *cli, int argc, char **argv, struct prune_opts *o)
{
  static const struct option opts[] = {
    CLI_COMMON_OPTIONS,
    { "keep-last", required_argument, NULL, OPT_KEEP_LAST },
    { "keep-daily", required_argument, NULL, OPT_KEEP_DAILY },
    { "keep-weekly", required_argument, NULL, OPT_KEEP_WEEKLY },
    { "dry-run", no_argument, NULL, OPT_DRY_RUN },
    { NULL, 0, NULL, 0 },
  };
  int c, r;

  cli_common_init (cli, &o->common);
  while ((r = cli_next_option ("prune", argc, argv, opts, &o->common, &c))
         > 0) {
    switch (c) {
    case OPT_KEEP_LAST:
      o->keep_last_given = true;
      if (parse_count ("--keep-last", optarg, &o->policy.keep_last) == -1)
        return -1;
      break;
    case OPT_KEEP_DAILY:
      if (parse_count ("--keep-daily", optarg, &o->policy.keep_daily) == -1)
        return -1;
      break;
    case OPT_KEEP_WEEKLY:
      if (parse_count ("--keep-weekly", optarg, &o->policy.keep_weekly) == -1)
        return -1;
      break;
    case OPT_DRY_RUN:
      o->dry_run = true;
      break;
    default:
      return cli_usage_error ("prune", "unknown option");
    }
  }
  if (r == -1)
    return -1;
  if (o->common.help)
    return 0;
  if (optind < argc)
    return cli_usage_error ("prune", "unexpected argument '%s'", argv[optind]);
  if (o->common.repo == NULL || o->common.vm == NULL || !o->keep_last_given)
    return cli_usage_error ("prune", "--repo, --vm and --keep-last are "
                                     "required");
  if (o->policy.keep_last + o->policy.keep_daily + o->policy.keep_weekly == 0)
    return cli_usage_error ("prune", "this would delete every backup: keep "
                                     "some, or use 'knib delete'");
  return 0;
}

int
cmd_prune (struct cli *cli, int argc, char **argv)
{
  struct prune_opts o = { .dry_run = false };
  chain_delete_step_vector steps = empty_vector;
  struct chain_repo *repo;
  json_t *json = NULL;
  const char *vm;
  int status, r;

  if (prune_parse (cli, argc, argv, &o) == -1)
    return EXIT_USAGE;
  if (o.common.help) {
    prune_usage (stdout);
    return EXIT_OK;
  }
  if (cli->parse_only)
    return EXIT_OK;
  vm = o.common.vm;
  repo = chain_repo_open (o.common.repo, false);
  if (repo == NULL) {
    cli_error ("prune");
    return EXIT_FAILURE_;
  }
  if (o.common.json && (json = json_array ()) == NULL) {
    chain_repo_free (repo);
    set_error (ENOMEM, "prune");
    cli_error ("%s", "");
    return EXIT_FAILURE_;
  }
  r = chain_prune (repo, vm, &o.policy, o.dry_run, &steps);
  status = r == 0 ? EXIT_OK : EXIT_FAILURE_;
  if (cli_steps_report (vm, &steps, o.dry_run, json) == -1 || r == -1) {
    cli_error ("%s", "");
    status = EXIT_FAILURE_;
  }
  else if (json == NULL && steps.len == 0)
    printf ("vm %s: nothing to prune\n", vm);
  if (json != NULL) {
    json_t *out = json_pack ("{s:O, s:b}", "steps", json, "dry-run", o.dry_run);
    if (out != NULL)
      show_json (out, false);
    json_decref (out);
  }
  json_decref (json);
  chain_delete_step_vector_reset (&steps);
  chain_repo_free (repo);
  if (fflush (stdout) != 0)
    status = EXIT_FAILURE_;
  return status;
}
