/* SPDX-License-Identifier: Apache-2.0 */
/* list.c: "knib list": the backups in a repository, per VM. */
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
#include "progress.h"
#include "show.h"

struct list_opts {
  struct cli_common common;
  bool all;
};

enum { OPT_ALL = CLI_OPT_FIRST };

/* The columns of the table; STATE only with --all. */
enum {
  COL_VM,
  COL_ID,
  COL_KIND,
  COL_POS,
  COL_PARENT,
  COL_BRANCH,
  COL_CREATED,
  COL_SIZE,
  COL_DISKS,
  COL_VALIDATED,
  COL_STATE,
  NCOLS
};

static const char *const headings[NCOLS] = {
  "VM",      "ID",   "KIND",  "POS",       "PARENT", "BRANCH",
  "CREATED", "SIZE", "DISKS", "VALIDATED", "STATE",
};

DEFINE_VECTOR_TYPE (row_vector, char **)
DEFINE_VECTOR_TYPE (const_string_vector, const char *)

static void
list_usage (FILE *fp)
{
  fprintf (fp,
           "Usage: knib list --repo DIR [VM] [--all] [--json]\n"
           "\n"
           "List the backups in the repository, of one VM or of every VM:\n"
           "id, kind (full, incremental, isolated), position in its chain,\n"
           "parent, where it stands to the VM's branch (BRANCH: 'tip' is the\n"
           "backup the VM's next backup continues from, 'on' its ancestors,\n"
           "'-' an old branch that a restore left), creation time (UTC),\n"
           "space its images take, disks, and the\n"
           "last boot validation (knib validate: passed with the seconds to\n"
           "the guest agent's first answer, FAILED, or -).\n"
           "A backup that was deleted but whose files later backups still\n"
           "need is hidden unless --all.  A backup whose manifest or images\n"
           "cannot be read is reported on standard error and the exit\n"
           "status is 1; the others are still listed.\n"
           "\n"
           "Options:\n"
           "      --repo DIR   the repository\n"
           "      --vm VM      only this VM (the same as the VM argument)\n"
           "      --all        also list deleted backups (state 'removed')\n"
           "      --json       one JSON object: {\"backups\": [...], "
           "\"problems\": [...]}\n"
           "  -h, --help       show this help\n");
}

/* 0, or -1 (said); --help stops the parse at once. */
static int
list_parse (struct cli *cli, int argc, char **argv, struct list_opts *o)
{
  static const struct option opts[] = {
    CLI_COMMON_OPTIONS,
    { "all", no_argument, NULL, OPT_ALL },
    { NULL, 0, NULL, 0 },
  };
  int c, r;

  cli_common_init (cli, &o->common);
  while ((r = cli_next_option ("list", argc, argv, opts, &o->common, &c)) > 0) {
    switch (c) {
    case OPT_ALL:
      o->all = true;
      break;
    default:
      return cli_usage_error ("list", "unknown option");
    }
  }
  if (r == -1)
    return -1;
  if (o->common.help)
    return 0;
  if (optind < argc) {
    if (o->common.vm != NULL)
      return cli_usage_error ("list", "give the VM once");
    if (!cli_name_ok ("vm", argv[optind]))
      return -1;
    o->common.vm = argv[optind++];
  }
  if (optind < argc)
    return cli_usage_error ("list", "unexpected argument '%s'", argv[optind]);
  if (cli_common_check ("list", &o->common, true, false) == -1)
    return -1;
  return 0;
}

static void
rows_free (row_vector *rows)
{
  for (size_t i = 0; i < rows->len; i++) {
    for (size_t c = 0; c < NCOLS; c++)
      free (rows->ptr[i][c]);
    free (rows->ptr[i]);
  }
  row_vector_reset (rows);
}

/* One row of the table for backup m. */
static int
add_row (struct chain_repo *repo, const struct chain_manifest *m,
         const char *branch, row_vector *rows, chain_string_vector *problems)
{
  char **row = calloc (NCOLS, sizeof *row);
  char created[CHAIN_TIME_MAX], size[32], validated[32];
  uint64_t bytes;

  if (row == NULL)
    goto nomem;
  if (chain_backup_disk_usage (repo, m, &bytes) == 0)
    progress_format_bytes (bytes, size, sizeof size);
  else if (show_problem (problems) == -1)
    goto nomem;
  else
    strcpy (size, "?");
  chain_time_format (m->created, created);
  row[COL_VM] = strdup (m->vm);
  row[COL_ID] = strdup (m->id);
  row[COL_KIND] = strdup (chain_kind_name (m->kind));
  if (asprintf (&row[COL_POS], "%lld", (long long) m->position) == -1)
    row[COL_POS] = NULL;
  row[COL_PARENT] = strdup (m->parent[0] ? m->parent : "-");
  row[COL_BRANCH] = strdup (branch);
  row[COL_CREATED] = strdup (created);
  row[COL_SIZE] = strdup (size);
  row[COL_DISKS] = show_disk_names (m);
  show_validation_short (m->validation, validated, sizeof validated);
  row[COL_VALIDATED] = strdup (validated);
  row[COL_STATE] = strdup (chain_state_name (m->state));
  for (size_t c = 0; c < NCOLS; c++)
    if (row[c] == NULL)
      goto nomem;
  if (row_vector_append (rows, row) == -1)
    goto nomem;
  return 0;
nomem:
  if (row != NULL)
    for (size_t c = 0; c < NCOLS; c++)
      free (row[c]);
  free (row);
  set_error (ENOMEM, "list");
  return -1;
}

static void
print_table (const row_vector *rows, bool all)
{
  size_t ncols = all ? NCOLS : COL_STATE, width[NCOLS];

  for (size_t c = 0; c < ncols; c++) {
    width[c] = strlen (headings[c]);
    for (size_t i = 0; i < rows->len; i++)
      if (strlen (rows->ptr[i][c]) > width[c])
        width[c] = strlen (rows->ptr[i][c]);
  }
  for (size_t i = 0; i <= rows->len; i++) {
    const char *const *cells
      = i == 0 ? headings : (const char *const *) rows->ptr[i - 1];

    for (size_t c = 0; c < ncols; c++) {
      bool right = c == COL_POS || c == COL_SIZE;
      bool last = c + 1 == ncols;

      printf ("%s%*s", c > 0 ? "  " : "",
              right  ? (int) width[c]
              : last ? 0
                     : -(int) width[c],
              cells[c]);
    }
    putchar ('\n');
  }
}

/* The VMs to list: the one named, or every VM of the repository. */
static int
list_vms (struct chain_repo *repo, const char *vm, chain_string_vector *vms)
{
  char *copy;

  if (vm == NULL)
    return chain_vm_list (repo, vms);
  copy = strdup (vm);
  if (copy == NULL || chain_string_vector_append (vms, copy) == -1) {
    free (copy);
    set_error (ENOMEM, "list");
    return -1;
  }
  return 0;
}

/* The backups of one VM, each with where it stands to the VM's branch
 * (branches[i] of backups->ptr[i], static strings). */
static int
collect_vm (struct chain_repo *repo, const char *vm,
            chain_manifest_vector *backups, const_string_vector *branches,
            chain_string_vector *problems)
{
  chain_manifest_vector one = empty_vector;
  struct chain_vm *info = NULL;
  int r = chain_backup_list (repo, vm, &one, problems);

  if (r == 0) {
    info = chain_vm_load (repo, vm);
    if (info == NULL && errno != ENOENT && show_problem (problems) == -1)
      r = -1;
  }
  /* Every branch first: chain_branch_of looks at all of them. */
  for (size_t j = 0; r == 0 && j < one.len; j++)
    r = const_string_vector_append (
      branches,
      chain_branch_name (chain_branch_of (&one, info, one.ptr[j]->id)));
  for (size_t j = 0; r == 0 && j < one.len; j++) {
    r = chain_manifest_vector_append (backups, one.ptr[j]);
    if (r == 0)
      one.ptr[j] = NULL; /* backups owns it now */
  }
  if (r == -1)
    set_error (ENOMEM, "list");
  chain_vm_free (info);
  chain_manifest_vector_release (&one);
  return r;
}

static int
collect (struct chain_repo *repo, const struct list_opts *o,
         chain_manifest_vector *backups, const_string_vector *branches,
         chain_string_vector *problems)
{
  chain_string_vector vms = empty_vector;
  int r = 0;

  if (list_vms (repo, o->common.vm, &vms) == -1)
    return -1;
  /* VM by VM: chain_backup_list sorts all that its vector holds. */
  for (size_t i = 0; r == 0 && i < vms.len; i++)
    r = collect_vm (repo, vms.ptr[i], backups, branches, problems);
  chain_string_vector_release (&vms);
  /* Deleted backups are hidden without --all. */
  for (size_t i = 0; r == 0 && !o->all && i < backups->len;) {
    if (backups->ptr[i]->state == CHAIN_STATE_REMOVED) {
      chain_manifest_free (backups->ptr[i]);
      chain_manifest_vector_remove (backups, i);
      const_string_vector_remove (branches, i);
    }
    else
      i++;
  }
  return r;
}

static int
print_json_list (struct chain_repo *repo, const chain_manifest_vector *backups,
                 const const_string_vector *branches,
                 chain_string_vector *problems)
{
  json_auto_t *list = json_array ();
  json_auto_t *probs = json_array ();
  json_auto_t *out = NULL;

  if (list == NULL || probs == NULL)
    goto nomem;
  for (size_t i = 0; i < backups->len; i++) {
    json_t *b = show_backup_json (repo, backups->ptr[i], false, problems);

    if (b == NULL)
      return -1;
    if (json_object_set_new (b, "branch", json_string (branches->ptr[i])) == -1
        || json_array_append_new (list, b) == -1)
      goto nomem;
  }
  for (size_t i = 0; i < problems->len; i++)
    if (json_array_append_new (probs, json_string (problems->ptr[i])) == -1)
      goto nomem;
  out = json_pack ("{s:O, s:O}", "backups", list, "problems", probs);
  if (out == NULL)
    goto nomem;
  show_json (out, false);
  return 0;
nomem:
  set_error (ENOMEM, "list");
  return -1;
}

static int
print_text_list (struct chain_repo *repo, const chain_manifest_vector *backups,
                 const const_string_vector *branches, bool all,
                 chain_string_vector *problems)
{
  row_vector rows = empty_vector;
  int r = 0;

  for (size_t i = 0; r == 0 && i < backups->len; i++)
    r = add_row (repo, backups->ptr[i], branches->ptr[i], &rows, problems);
  if (r == 0)
    print_table (&rows, all);
  rows_free (&rows);
  return r;
}

int
cmd_list (struct cli *cli, int argc, char **argv)
{
  struct list_opts o = { .common = { .repo = NULL } };
  chain_manifest_vector backups = empty_vector;
  const_string_vector branches = empty_vector;
  chain_string_vector problems = empty_vector;
  struct chain_repo *repo;
  int status, r;

  if (list_parse (cli, argc, argv, &o) == -1)
    return EXIT_USAGE;
  if (o.common.help) {
    list_usage (stdout);
    return EXIT_OK;
  }
  if (cli->parse_only)
    return EXIT_OK;
  repo = chain_repo_open (o.common.repo, false);
  if (repo == NULL) {
    cli_error ("list");
    return EXIT_FAILURE_;
  }
  r = collect (repo, &o, &backups, &branches, &problems);
  if (r == 0)
    r = o.common.json
          ? print_json_list (repo, &backups, &branches, &problems)
          : print_text_list (repo, &backups, &branches, o.all, &problems);
  fflush (stdout);
  show_problems (&problems);
  if (r == -1)
    cli_error ("list");
  status = r == -1 || problems.len > 0 ? EXIT_FAILURE_ : EXIT_OK;
  chain_manifest_vector_release (&backups);
  const_string_vector_reset (&branches);
  chain_string_vector_release (&problems);
  chain_repo_free (repo);
  return status;
}
