/* SPDX-License-Identifier: Apache-2.0 */
/* testhook.h: points where the test suite stops knib, and the clock of
 * knibd's schedules, only in a build configured with --enable-test-hooks
 * (never in a default build). */
#ifndef KNIB_COMMON_TESTHOOK_H
#define KNIB_COMMON_TESTHOOK_H

#include <stdbool.h>
#include <time.h>

#ifdef ENABLE_TEST_HOOKS
/* Tests stop knib at a named point of a long operation ("transaction",
 * "copy", "commit", "compress", "finalize", "restore", "restore-install",
 * "validate-start": a validation that checked the chain, before QEMU
 * opens it) with KNIB_TEST_STOP_AT=NAME,
 * to kill it or to write to the disk exactly there: the process stops
 * itself with SIGSTOP. */
void test_stop_point (const char *name);
/* Whether KNIB_TEST_FLAGS (a comma-separated list) names flag: tests
 * take a path that this machine's QEMU would not ("no-cbw": fleecing by
 * blockdev-backup, as with a QEMU older than 7.1). */
bool test_flag (const char *flag);

/* The time of knibd's schedules: with KNIB_TEST_CLOCK=FILE, the seconds
 * since the epoch written in FILE (read each time, so that a test moves
 * it on and a calendar's time arrives at once), else time (NULL). */
time_t test_clock (void);
#else
static inline void
test_stop_point (const char *name)
{
  (void) name;
}
static inline bool
test_flag (const char *flag)
{
  (void) flag;
  return false;
}
static inline time_t
test_clock (void)
{
  return time (NULL);
}
#endif

#endif
