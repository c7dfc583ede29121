/* SPDX-License-Identifier: Apache-2.0 */
/* test-repo-builder.c: make backups of real qcow2 chains for the repo-*.sh tests. */
#include <config.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "common/error.h"
#include "common/util.h"
#include "repo-fixture.h"

#define MAX_ITEMS 64

static const char usage[]
  = "usage: test-repo-builder [options] REPO VM\n"
    "       test-repo-builder -R REPO VM ID\n"
    "Make one backup of VM in REPO (created when missing) through the\n"
    "chain API, with images made by qemu-img and written by qemu-io, and\n"
    "print its id.\n"
    "  -m MODE            auto (default), full, incremental, isolated\n"
    "  -d DISK            a disk (repeatable; default vda)\n"
    "  -s BYTES           every disk's size (default 1048576)\n"
    "  -w DISK:PAT:OFF:LEN  qemu-io 'write -P PAT OFF LEN' (repeatable)\n"
    "  -t SECONDS         the clock (seconds since the epoch) for the id\n"
    "  -R                 mark backup ID removed instead\n";

static int64_t
fixed_clock (void *opaque)
{
  return *(const int64_t *) opaque;
}

static int
parse_mode (const char *s, enum chain_mode *mode)
{
  if (strcmp (s, "auto") == 0)
    *mode = CHAIN_MODE_AUTO;
  else if (strcmp (s, "full") == 0)
    *mode = CHAIN_MODE_FULL;
  else if (strcmp (s, "incremental") == 0)
    *mode = CHAIN_MODE_INCREMENTAL;
  else if (strcmp (s, "isolated") == 0)
    *mode = CHAIN_MODE_ISOLATED;
  else
    return -1;
  return 0;
}

/* DISK:PATTERN:OFFSET:LENGTH (numbers as strtoull reads them). */
static int
parse_write (char *s, struct fixture_write *w)
{
  char *pat = strchr (s, ':'), *off, *len, *end;

  if (pat == NULL)
    return -1;
  *pat++ = '\0';
  off = strchr (pat, ':');
  if (off == NULL)
    return -1;
  *off++ = '\0';
  len = strchr (off, ':');
  if (len == NULL)
    return -1;
  *len++ = '\0';
  w->disk = s;
  w->pattern = (int) strtol (pat, &end, 0);
  if (*end != '\0')
    return -1;
  w->offset = strtoull (off, &end, 0);
  if (*end != '\0')
    return -1;
  w->length = strtoull (len, &end, 0);
  return *end == '\0' ? 0 : -1;
}

int
main (int argc, char **argv)
{
  enum chain_mode mode = CHAIN_MODE_AUTO;
  const char *disks[MAX_ITEMS + 1] = { NULL };
  struct fixture_write writes[MAX_ITEMS];
  size_t ndisks = 0, nwrites = 0;
  uint64_t size = 1048576;
  int64_t now = -1;
  bool removed = false;
  struct chain_repo *repo;
  char *id = NULL;
  int c, r = 0;

  while ((c = getopt (argc, argv, "m:d:s:w:t:R")) != -1) {
    switch (c) {
    case 'm':
      if (parse_mode (optarg, &mode) == -1)
        goto usage;
      break;
    case 'd':
      if (ndisks == MAX_ITEMS)
        goto usage;
      disks[ndisks++] = optarg;
      break;
    case 's':
      size = strtoull (optarg, NULL, 0);
      break;
    case 'w':
      if (nwrites == MAX_ITEMS || parse_write (optarg, &writes[nwrites]) == -1)
        goto usage;
      nwrites++;
      break;
    case 't':
      now = strtoll (optarg, NULL, 0);
      break;
    case 'R':
      removed = true;
      break;
    default:
      goto usage;
    }
  }
  if (argc - optind != (removed ? 3 : 2))
    goto usage;
  if (ndisks == 0)
    disks[ndisks++] = "vda";
  repo = chain_repo_open (argv[optind], true);
  if (repo == NULL) {
    fprintf (stderr, "test-repo-builder: %s\n", get_error ());
    return 1;
  }
  if (now >= 0)
    chain_repo_set_clock (repo, fixed_clock, &now);
  if (removed)
    r = fixture_mark_removed (repo, argv[optind + 1], argv[optind + 2]);
  else {
    id = fixture_backup (repo, argv[optind + 1], mode, disks, size, writes,
                         nwrites);
    r = id == NULL ? -1 : 0;
  }
  if (r == -1)
    fprintf (stderr, "test-repo-builder: %s\n", get_error ());
  else if (id != NULL)
    printf ("%s\n", id);
  free (id);
  chain_repo_free (repo);
  return r == -1 ? 1 : 0;
usage:
  fputs (usage, stderr);
  return 2;
}
