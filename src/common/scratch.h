/* SPDX-License-Identifier: Apache-2.0 */
/* scratch.h: the scratch root, private to knib's user, and run directories. */
#ifndef KNIB_COMMON_SCRATCH_H
#define KNIB_COMMON_SCRATCH_H

#include <stdint.h>

/* Make sure root (the scratch root, --scratch) is knib's own: create it
 * 0700 when it is missing; refuse (EPERM, naming it) one that is a
 * symbolic link, is not a directory, belongs to another user than
 * knib's effective one, or lets the group or others write.  Returns an
 * O_DIRECTORY descriptor of it (close it), or -1 with set_error. */
int scratch_root_open (const char *root) __attribute__ ((warn_unused_result));

/* A new private run directory "<root>/<prefix>XXXXXX" (mkdtemp, 0700)
 * under a checked root; *dir gets its path (free it).  The path plus
 * "/" and longest (the longest name the run puts there) must fit in a
 * unix socket address, else ENAMETOOLONG. */
int scratch_make_dir (const char *root, const char *prefix, const char *longest,
                      char **dir) __attribute__ ((warn_unused_result));

/* The pid in the name of a run directory of vm, "<vm>.<pid>.XXXXXX" (or
 * "<vm>.<pid>", as older versions named it); -1 when name is not one. */
int64_t scratch_run_pid (const char *name, const char *vm);

/* Let others pass through root (o+x, for QEMU under another user):
 * changes the directory itself, never what a link points to. */
int scratch_root_share (const char *root) __attribute__ ((warn_unused_result));

#endif
