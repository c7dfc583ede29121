/* SPDX-License-Identifier: Apache-2.0 */
/* restore.h: "knib restore" options, shared by its file and VM targets. */
#ifndef KNIB_CLI_RESTORE_H
#define KNIB_CLI_RESTORE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "backup/backup.h"
#include "chain/chain.h"
#include "cli.h"

DEFINE_VECTOR_TYPE (restore_target_vector, struct chain_restore_target)

struct restore_opts {
  struct cli_common common; /* --repo, --vm, --json, --quiet, ... */
  const char *id;
  struct chain_restore_options ro; /* --disk, --to, --format, --force */
  restore_target_vector images;    /* --image DISK=PATH (disk owned) */
  const char *domain;
  const char *qmp;
  const char *attach;     /* --attach DOMAIN */
  const char *attach_qmp; /* --attach-qmp SOCKET */
  const char *target;     /* --target DEV */
  const char *new_domain; /* --new-domain NAME */
  const char *storage;    /* --storage DIR */
  bool print_xml;
  bool drop_snapshots; /* in place: drop the VM's snapshots */
  bool quick, start, stop, consolidate, status, wait;
  int64_t stop_timeout; /* seconds */
  int64_t rate_limit;   /* consolidation, MiB/s; 0: none */
};

struct restore_state {
  struct progress *bar;
  bool quiet;
};

void restore_opts_release (struct restore_opts *o);

/* The chain_restore progress callback (opaque: struct restore_state). */
int restore_on_progress (const struct chain_restore_status *s, void *opaque);

/* Parse "--image DISK=PATH" into o->images; -1 (said) when malformed. */
int restore_add_image (struct restore_opts *o, const char *arg);

/* After the options, for each kind of restore: 0 when they are fine,
 * else -1 (said: a usage error). */
int restore_check_in_place (struct restore_opts *o);
int restore_check_consolidate (struct restore_opts *o, int argc, char **argv);

/* Run them; the exit status. */
int restore_in_place (struct cli *cli, struct restore_opts *o);
int restore_attach (struct cli *cli, struct restore_opts *o);
int restore_check_attach (struct restore_opts *o);
int restore_new_domain (struct cli *cli, struct restore_opts *o);
int restore_check_new_domain (struct restore_opts *o);
int restore_consolidate (struct cli *cli, struct restore_opts *o);

#endif
