/* SPDX-License-Identifier: Apache-2.0 */
/* test-common.c: errors, vectors, names, numbers, clocks and knib.conf. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/conf.h"
#include "common/debug.h"
#include "common/error.h"
#include "common/util.h"
#include "common/vector.h"

#define assert_contains(haystack, needle)                                      \
  do {                                                                         \
    const char *_h = (haystack), *_n = (needle);                               \
    if (_h == NULL || strstr (_h, _n) == NULL)                                 \
      fail_msg ("\"%s\" does not contain \"%s\"", _h ? _h : "(null)", _n);     \
  } while (0)

/* error.c */

static void
set_error_without_errno_keeps_the_message_alone (void **state)
{
  errno = EBADF;
  set_error (0, "disk '%s' is busy", "vda");
  assert_string_equal (get_error (), "disk 'vda' is busy");
  assert_int_equal (get_errno (), 0);
  assert_int_equal (errno, 0);
}

static void
set_error_with_errno_appends_strerror (void **state)
{
  set_error (ENOENT, "open '%s'", "/x");
  assert_string_equal (get_error (), "open '/x': No such file or directory");
  assert_int_equal (get_errno (), ENOENT);
  assert_int_equal (errno, ENOENT);
}

static void
set_error_keeps_a_long_message_whole (void **state)
{
  char big[10001];

  memset (big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  set_error (EIO, "%s", big);
  assert_int_equal (strlen (get_error ()),
                    10000 + strlen (": ") + strlen (strerror (EIO)));
}

static void
error_prepend_adds_context_and_keeps_errno (void **state)
{
  set_error (ECONNRESET, "nbd read at %d", 1048576);
  errno = 0;
  error_prepend ("disk '%s'", "vda");
  error_prepend ("backup '%s'", "web01");
  assert_string_equal (
    get_error (),
    "backup 'web01': disk 'vda': nbd read at 1048576: Connection reset by peer");
  assert_int_equal (get_errno (), ECONNRESET);
  assert_int_equal (errno, ECONNRESET);
}

static void *
set_error_and_exit (void *text)
{
  set_error (EIO, "%s", (const char *) text);
  return NULL;
}

/* A thread that ends with an error set does not take the message with
 * it (worker threads hand their error on; a watcher prints it).  Under
 * ASan or valgrind, which replace malloc and report leaks themselves,
 * mallinfo2 says nothing and the check is theirs. */
static void
a_thread_s_error_is_freed_when_it_exits (void **state)
{
  const size_t n = 4u << 20;
  char *big = malloc (n + 1);
  struct mallinfo2 before, after;
  pthread_t t;

  assert_non_null (big);
  memset (big, 'x', n);
  big[n] = '\0';
  /* Messages this size are mmapped, and counted in hblkhd. */
  mallopt (M_MMAP_THRESHOLD, 64 * 1024);
  before = mallinfo2 ();
  for (int i = 0; i < 4; i++) {
    assert_int_equal (pthread_create (&t, NULL, set_error_and_exit, big), 0);
    assert_int_equal (pthread_join (t, NULL), 0);
  }
  after = mallinfo2 ();
  free (big);
  if (before.hblkhd == 0 && after.hblkhd == 0)
    skip ();
  assert_true (after.hblkhd < before.hblkhd + n);
}

static void
error_prepend_without_an_error_says_unknown (void **state)
{
  error_clear ();
  error_prepend ("vm '%s'", "web01");
  assert_string_equal (get_error (), "vm 'web01': unknown error");
  assert_int_equal (get_errno (), 0);
}

static void
set_error_negative_code_has_no_system_text (void **state)
{
  set_error (-EREMOTEIO, "command refused");
  assert_string_equal (get_error (), "command refused");
  assert_int_equal (get_errno (), EREMOTEIO);
  assert_int_equal (errno, EREMOTEIO);
  error_prepend ("qmp");
  assert_string_equal (get_error (), "qmp: command refused");
  assert_int_equal (get_errno (), EREMOTEIO);
  assert_int_equal (errno, EREMOTEIO);
}

static void
error_save_restore_keeps_the_error (void **state)
{
  struct error_saved saved;

  set_error (ENOENT, "image '%s'", "a.qcow2");
  error_save (&saved);
  assert_int_equal (get_errno (), 0);
  set_error (EIO, "teardown failed");
  error_restore (&saved);
  assert_string_equal (get_error (),
                       "image 'a.qcow2': No such file or directory");
  assert_int_equal (get_errno (), ENOENT);
  assert_int_equal (errno, ENOENT);
  assert_null (saved.msg);
  /* Saving no error restores no error. */
  error_clear ();
  error_save (&saved);
  set_error (EIO, "teardown failed");
  error_restore (&saved);
  assert_int_equal (get_errno (), 0);
}

static void
get_error_is_never_null (void **state)
{
  error_clear ();
  assert_non_null (get_error ());
  assert_string_equal (get_error (), "unknown error");
  assert_int_equal (get_errno (), 0);
  set_error (0, "%s", "");
  assert_non_null (get_error ());
}

static void *
thread_sets_error (void *arg)
{
  set_error (EPIPE, "other thread");
  *(int *) arg = get_errno ();
  error_clear ();
  return NULL;
}

static void
errors_are_per_thread (void **state)
{
  pthread_t t;
  int seen = 0;

  set_error (ENOSPC, "main thread");
  assert_int_equal (pthread_create (&t, NULL, thread_sets_error, &seen), 0);
  assert_int_equal (pthread_join (t, NULL), 0);
  assert_int_equal (seen, EPIPE);
  assert_string_equal (get_error (), "main thread: No space left on device");
  assert_int_equal (get_errno (), ENOSPC);
}

/* vector.h */

DEFINE_VECTOR_TYPE (int_vector, int)

static void
vector_append_grows_and_keeps_order (void **state)
{
  int_vector v = empty_vector;

  assert_int_equal (int_vector_append (&v, 0), 0);
  assert_int_equal (v.len, 1);
  assert_int_equal (v.cap, 8);
  for (int i = 1; i < 1000; i++)
    assert_int_equal (int_vector_append (&v, i), 0);
  assert_int_equal (v.len, 1000);
  assert_int_equal (v.cap, 1024);
  for (int i = 0; i < 1000; i++)
    assert_int_equal (v.ptr[i], i);
  int_vector_reset (&v);
}

static void
vector_remove_shifts_the_rest (void **state)
{
  int_vector v = empty_vector;

  for (int i = 0; i < 5; i++)
    assert_int_equal (int_vector_append (&v, i), 0);
  int_vector_remove (&v, 2); /* middle */
  int_vector_remove (&v, 0); /* first */
  int_vector_remove (&v, 2); /* last */
  assert_int_equal (v.len, 2);
  assert_int_equal (v.ptr[0], 1);
  assert_int_equal (v.ptr[1], 3);
  int_vector_remove (&v, 0);
  int_vector_remove (&v, 0);
  assert_int_equal (v.len, 0);
  int_vector_reset (&v);
}

static void
vector_reset_empties_and_allows_reuse (void **state)
{
  int_vector v = empty_vector;

  assert_int_equal (int_vector_append (&v, 7), 0);
  int_vector_reset (&v);
  assert_null (v.ptr);
  assert_int_equal (v.len, 0);
  assert_int_equal (v.cap, 0);
  int_vector_reset (&v);
  assert_int_equal (int_vector_append (&v, 8), 0);
  assert_int_equal (v.ptr[0], 8);
  int_vector_reset (&v);
}

static void
vector_reserve_keeps_len_and_avoids_regrowth (void **state)
{
  int_vector v = empty_vector;
  int *before;

  assert_int_equal (int_vector_reserve (&v, 100), 0);
  assert_int_equal (v.len, 0);
  assert_true (v.cap >= 100);
  before = v.ptr;
  for (int i = 0; i < 100; i++)
    assert_int_equal (int_vector_append (&v, i), 0);
  assert_ptr_equal (v.ptr, before);
  int_vector_reset (&v);
}

static void
vector_reserve_too_much_fails_with_enomem_untouched (void **state)
{
  int_vector v = empty_vector;

  assert_int_equal (int_vector_append (&v, 1), 0);
  errno = 0;
  assert_int_equal (int_vector_reserve (&v, SIZE_MAX), -1);
  assert_int_equal (errno, ENOMEM);
  errno = 0;
  assert_int_equal (int_vector_reserve (&v, SIZE_MAX / 2), -1);
  assert_int_equal (errno, ENOMEM);
  assert_int_equal (v.len, 1);
  assert_int_equal (v.cap, 8);
  assert_int_equal (v.ptr[0], 1);
  int_vector_reset (&v);
}

/* util.c: names */

static void
name_is_valid_accepts_safe_names (void **state)
{
  char longest[129];

  memset (longest, 'a', 128);
  longest[128] = '\0';
  assert_true (name_is_valid ("web01"));
  assert_true (name_is_valid ("vm_1.2"));
  assert_true (name_is_valid ("a"));
  assert_true (name_is_valid ("A-b+c:d@e_f.g"));
  assert_true (name_is_valid ("2024-01-01T00:00:00"));
  assert_true (name_is_valid (longest));
}

static void
name_is_valid_rejects_unsafe_names (void **state)
{
  static const char *const bad[] = {
    "",        ".",   "..",   "../x",  "a/b",         "/abs",  "-x",
    ".hidden", "a b", " a",   "a\tb",  "a\nb",        "a\x01", "\x7f",
    "a\\b",    "a*",  "a;rm", "$(id)", "caf\xc3\xa9",
  };
  char too_long[130];

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (name_is_valid (bad[i]))
      fail_msg ("name \"%s\" was accepted", bad[i]);
  memset (too_long, 'a', 129);
  too_long[129] = '\0';
  assert_false (name_is_valid (too_long));
  assert_false (name_is_valid (NULL));
}

static void
name_check_says_what_and_why (void **state)
{
  char too_long[130];

  assert_int_equal (name_check ("vm", "web01"), 0);

  assert_int_equal (name_check ("disk", "a/b"), -1);
  assert_string_equal (
    get_error (),
    "invalid disk name 'a/b': only letters, digits and ._+:@- are allowed");
  assert_int_equal (get_errno (), EINVAL);

  assert_int_equal (name_check ("vm", ".."), -1);
  assert_string_equal (
    get_error (), "invalid vm name '..': it may not start with '.' or '-'");
  assert_int_equal (name_check ("vm", ""), -1);
  assert_string_equal (get_error (), "invalid vm name '': it is empty");

  memset (too_long, 'x', 129);
  too_long[129] = '\0';
  assert_int_equal (name_check ("backup", too_long), -1);
  assert_contains (get_error (), "longer than 128 characters");

  assert_int_equal (name_check ("vm", NULL), -1);
  assert_string_equal (get_error (), "no vm name given: Invalid argument");
  assert_int_equal (get_errno (), EINVAL);
}

/* util.c: numbers */

static void
parse_int64_takes_whole_numbers_in_range (void **state)
{
  int64_t v = 0;

  assert_int_equal (parse_int64 ("n", "0", -5, 5, &v), 0);
  assert_int_equal (v, 0);
  assert_int_equal (parse_int64 ("n", "-5", -5, 5, &v), 0);
  assert_int_equal (v, -5);
  assert_int_equal (parse_int64 ("n", "5", -5, 5, &v), 0);
  assert_int_equal (v, 5);
  assert_int_equal (
    parse_int64 ("n", "9223372036854775807", INT64_MIN, INT64_MAX, &v), 0);
  assert_true (v == INT64_MAX);
  assert_int_equal (
    parse_int64 ("n", "-9223372036854775808", INT64_MIN, INT64_MAX, &v), 0);
  assert_true (v == INT64_MIN);
}

static void
parse_int64_rejects_anything_else (void **state)
{
  static const char *const bad[] = {
    "",
    " ",
    "abc",
    "12abc",
    "1.5",
    "1e3",
    "0x10",
    " 5",
    "5 ",
    "5\n",
    "--5",
    "- 5",
    "+-5",
    "9223372036854775808",
    "-9223372036854775809",
  };
  int64_t v = 42;

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (parse_int64 ("chain-size", bad[i], INT64_MIN, INT64_MAX, &v) != -1)
      fail_msg ("\"%s\" was accepted", bad[i]);
    assert_contains (get_error (), "chain-size: '");
    assert_contains (get_error (), "is not a whole number");
  }
  assert_int_equal (v, 42);
}

static void
parse_int64_out_of_range_names_the_range (void **state)
{
  int64_t v = 42;

  assert_int_equal (parse_int64 ("timeout", "0", 1, 31536000, &v), -1);
  assert_string_equal (get_error (),
                       "timeout: 0 is out of range (1 to 31536000)");
  assert_int_equal (parse_int64 ("timeout", "31536001", 1, 31536000, &v), -1);
  assert_int_equal (v, 42);
}

static void
parse_double_takes_finite_numbers_in_range (void **state)
{
  double v = 0;

  assert_int_equal (parse_double ("r", "1.5", 0, 10, &v), 0);
  assert_true (v == 1.5);
  assert_int_equal (parse_double ("r", "0", 0, 10, &v), 0);
  assert_true (v == 0);
  assert_int_equal (parse_double ("r", "10", 0, 10, &v), 0);
  assert_true (v == 10);
  assert_int_equal (parse_double ("r", "2e-1", 0, 10, &v), 0);
  assert_true (v == 0.2);
  assert_int_equal (parse_double ("r", "-0.5", -1, 1, &v), 0);
  assert_true (v == -0.5);
}

static void
parse_double_rejects_anything_else (void **state)
{
  static const char *const bad[] = {
    "", " ", "abc", "1.5x", "1,5", " 1", "1 ", "nan", "inf", "-inf", "1e400",
  };
  double v = 42;

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (parse_double ("ratio", bad[i], -1e300, 1e300, &v) != -1)
      fail_msg ("\"%s\" was accepted", bad[i]);
    assert_contains (get_error (), "is not a number");
  }
  assert_int_equal (parse_double ("ratio", "-0.1", 0, 1000, &v), -1);
  assert_string_equal (get_error (), "ratio: -0.1 is out of range (0 to 1000)");
  assert_true (v == 42);
}

/* util.c: clocks */

static void
monotonic_ms_advances (void **state)
{
  struct timespec ts = { .tv_sec = 0, .tv_nsec = 20 * 1000000 };
  int64_t t0 = monotonic_ms (), t1;

  nanosleep (&ts, NULL);
  t1 = monotonic_ms ();
  assert_in_range (t1 - t0, 19, 5000);
}

static void
deadline_minus_one_means_no_deadline (void **state)
{
  assert_true (deadline_after_ms (-1) == -1);
  assert_true (deadline_after_ms (-1000) == -1);
  assert_int_equal (deadline_remaining_ms (-1), -1);
}

static void
deadline_remaining_counts_down_to_zero (void **state)
{
  int64_t now = monotonic_ms ();

  assert_int_equal (deadline_remaining_ms (deadline_after_ms (0)), 0);
  assert_in_range (deadline_remaining_ms (deadline_after_ms (10000)), 9000,
                   10000);
  assert_int_equal (deadline_remaining_ms (now - 5), 0);
  /* Long past, but still a deadline (not the -1 of "none"): the
   * monotonic clock may have started less than that long ago. */
  assert_int_equal (deadline_remaining_ms (now > 1000000 ? now - 1000000 : 0),
                    0);
}

static void
deadline_far_away_is_clamped (void **state)
{
  int64_t far = monotonic_ms () + (int64_t) INT_MAX * 4;

  assert_int_equal (deadline_remaining_ms (far), INT_MAX);
  /* A huge timeout must not overflow into the past. */
  assert_true (deadline_after_ms (INT64_MAX) > monotonic_ms ());
  assert_int_equal (deadline_remaining_ms (deadline_after_ms (INT64_MAX)),
                    INT_MAX);
}

/* debug.c */

static void
debug_parse_reads_topics (void **state)
{
  unsigned mask = 12345;

  assert_int_equal (debug_parse ("qmp,nbd", &mask), 0);
  assert_int_equal (mask, DEBUG_QMP | DEBUG_NBD);
  assert_int_equal (debug_parse ("cmd,,chain,", &mask), 0);
  assert_int_equal (mask, DEBUG_CMD | DEBUG_CHAIN);
  assert_int_equal (debug_parse ("all", &mask), 0);
  assert_int_equal (mask, DEBUG_ALL);
  assert_int_equal (debug_parse ("1", &mask), 0);
  assert_int_equal (mask, DEBUG_ALL);
  assert_int_equal (debug_parse ("", &mask), 0);
  assert_int_equal (mask, 0);
}

static void
debug_parse_rejects_unknown_topics (void **state)
{
  unsigned mask = 7;

  assert_int_equal (debug_parse ("qmp,qmpx", &mask), -1);
  assert_contains (get_error (), "unknown debug topic 'qmpx'");
  assert_int_equal (debug_parse ("q", &mask), -1);
  assert_int_equal (mask, 7);
}

/* cleanup.h */

static void
cleanup_close_closes_and_keeps_errno (void **state)
{
  int fd;

  {
    CLEANUP_CLOSE int inner = open ("/dev/null", O_RDONLY | O_CLOEXEC);

    assert_true (inner >= 0);
    fd = inner;
    errno = ENOSPC;
  }
  assert_int_equal (errno, ENOSPC);
  assert_int_equal (fcntl (fd, F_GETFD), -1);
  assert_int_equal (errno, EBADF);
}

static void
steal_ptr_keeps_the_value_from_cleanup (void **state)
{
  char *kept;

  {
    CLEANUP_FREE char *p = strdup ("kept");

    assert_non_null (p);
    kept = STEAL_PTR (p);
    assert_null (p);
  }
  assert_string_equal (kept, "kept");
  free (kept);
}

/* conf.c */

static void
config_init_gives_the_documented_defaults (void **state)
{
  struct knib_config cfg;

  memset (&cfg, 0xa5, sizeof cfg);
  config_init (&cfg);
  assert_int_equal (cfg.chain_size, 8);
  assert_int_equal (cfg.timeout, 43200);
  assert_string_equal (cfg.compress, "none");
  assert_true (cfg.compression_jobs);
  assert_int_equal (cfg.compression_jobs_per_host, 5);
  assert_int_equal (cfg.compression_retries, 2);
  assert_int_equal (cfg.compression_retry_interval, 60);
  assert_int_equal (cfg.compression_timeout, 28800);
  assert_true (cfg.compression_min_free == 1.0);
  assert_int_equal (cfg.compression_threads, 0); /* number of cores */
  assert_int_equal (cfg.compression_rate_limit, 0);
}

static void
config_set_checks_every_type (void **state)
{
  struct knib_config cfg;

  config_init (&cfg);
  assert_int_equal (config_set (&cfg, "chain-size", "-1"), 0);
  assert_int_equal (cfg.chain_size, -1);
  assert_int_equal (config_set (&cfg, "compression-jobs-per-host", "-1"), 0);
  assert_int_equal (cfg.compression_jobs_per_host, -1);
  assert_int_equal (config_set (&cfg, "compression-jobs", "no"), 0);
  assert_false (cfg.compression_jobs);
  assert_int_equal (config_set (&cfg, "compression-jobs", "1"), 0);
  assert_true (cfg.compression_jobs);
  assert_int_equal (config_set (&cfg, "compress", "zlib"), 0);
  assert_string_equal (cfg.compress, "zlib");
  assert_int_equal (config_set (&cfg, "compression-min-free", "0.25"), 0);
  assert_true (cfg.compression_min_free == 0.25);

  assert_int_equal (config_set (&cfg, "compression-jobs", "maybe"), -1);
  assert_string_equal (get_error (),
                       "compression-jobs: 'maybe' is not true or false");
  assert_int_equal (config_set (&cfg, "compress", "lz4"), -1);
  assert_string_equal (get_error (),
                       "compress: 'lz4' is not one of none, zstd, zlib");
  assert_int_equal (config_set (&cfg, "timeout", "0"), -1);
  assert_contains (get_error (), "timeout: 0 is out of range");
  assert_int_equal (config_set (&cfg, "colour", "blue"), -1);
  assert_string_equal (get_error (), "unknown setting 'colour'");
  assert_string_equal (cfg.compress, "zlib");
  assert_true (cfg.compression_jobs);
}

static void
config_vm_policy_is_a_key_per_vm (void **state)
{
  struct knib_config cfg;
  char *key, *v;

  config_init (&cfg);
  assert_null (config_vm_compress (&cfg, "web01"));
  v = config_get (&cfg, "vm.web01.compress");
  assert_string_equal (v, "default");
  free (v);
  assert_int_equal (config_set (&cfg, "vm.web01.compress", "deferred"), 0);
  assert_int_equal (config_set (&cfg, "vm.db:1.compress", "zlib"), 0);
  assert_int_equal (config_set (&cfg, "vm.web01.compress", "zstd"), 0);
  assert_string_equal (config_vm_compress (&cfg, "web01"), "zstd");
  assert_string_equal (config_vm_compress (&cfg, "db:1"), "zlib");
  assert_int_equal (cfg.n_vm_policies, 2);
  key = config_vm_key (&cfg, 1);
  assert_string_equal (key, "vm.db:1.compress");
  free (key);
  assert_null (config_vm_key (&cfg, 2));

  assert_int_equal (config_set (&cfg, "vm.web01.compress", "later"), -1);
  assert_string_equal (get_error (), "vm.web01.compress: 'later' is not one "
                                     "of none, zstd, zlib, deferred, default");
  assert_int_equal (config_set (&cfg, "vm.a/b.compress", "none"), -1);
  assert_contains (get_error (), "vm.a/b.compress: invalid vm name 'a/b'");
  assert_int_equal (config_set (&cfg, "vm..compress", "none"), -1);
  assert_string_equal (get_error (), "unknown setting 'vm..compress'");
  assert_int_equal (config_set (&cfg, "vm.web01.colour", "red"), -1);
  assert_string_equal (get_error (), "unknown setting 'vm.web01.colour'");
  assert_string_equal (config_vm_compress (&cfg, "web01"), "zstd");

  /* default: the VM has no policy of its own any more. */
  assert_int_equal (config_set (&cfg, "vm.web01.compress", "default"), 0);
  assert_null (config_vm_compress (&cfg, "web01"));
  assert_string_equal (config_vm_compress (&cfg, "db:1"), "zlib");
  assert_int_equal (cfg.n_vm_policies, 1);
}

static void
config_vm_policies_are_bounded (void **state)
{
  struct knib_config cfg;
  char key[64];

  config_init (&cfg);
  for (int i = 0; i < CONFIG_MAX_VM_POLICIES; i++) {
    snprintf (key, sizeof key, "vm.vm%d.compress", i);
    assert_int_equal (config_set (&cfg, key, "deferred"), 0);
  }
  assert_int_equal (config_set (&cfg, "vm.one-more.compress", "none"), -1);
  assert_contains (get_error (), "more than 512 VMs have a policy");
  /* A VM that has one can still change it. */
  assert_int_equal (config_set (&cfg, "vm.vm7.compress", "none"), 0);
  assert_string_equal (config_vm_compress (&cfg, "vm7"), "none");
}

/* Write text to a new temporary file; its name goes to path. */
static void
write_temp (char path[64], const char *text)
{
  int fd;
  size_t n = strlen (text);

  strcpy (path, "/tmp/knib-test-conf.XXXXXX");
  fd = mkstemp (path);
  assert_true (fd >= 0);
  assert_int_equal (write (fd, text, n), (ssize_t) n);
  assert_int_equal (close (fd), 0);
}

static void
config_load_reads_comments_blanks_and_spaces (void **state)
{
  struct knib_config cfg;
  char path[64];

  write_temp (path, "# knib.conf\n"
                    "\n"
                    "   \t\n"
                    "chain-size = 3   # shorter chains\n"
                    "timeout=60\n"
                    "\tcompress   =   zstd  \r\n"
                    "compression-jobs = false\n"
                    "  # compression-retries = 9\n"
                    "compression-min-free = 0.5\n"
                    "compression-rate-limit = 100"); /* no final newline */
  config_init (&cfg);
  assert_int_equal (config_load (&cfg, path, true), 0);
  assert_int_equal (cfg.chain_size, 3);
  assert_int_equal (cfg.timeout, 60);
  assert_string_equal (cfg.compress, "zstd");
  assert_false (cfg.compression_jobs);
  assert_int_equal (cfg.compression_retries, 2);
  assert_true (cfg.compression_min_free == 0.5);
  assert_int_equal (cfg.compression_rate_limit, 100);
  assert_int_equal (cfg.compression_timeout, 28800);
  unlink (path);
}

/* Load text and check the error names the file and the line. */
static void
check_load_error (const char *text, unsigned line, const char *why)
{
  struct knib_config cfg;
  char path[64], want[256];

  write_temp (path, text);
  config_init (&cfg);
  assert_int_equal (config_load (&cfg, path, false), -1);
  snprintf (want, sizeof want, "configuration '%s' line %u: %s", path, line,
            why);
  assert_string_equal (get_error (), want);
  unlink (path);
}

static void
config_load_errors_name_the_file_and_line (void **state)
{
  check_load_error ("chain-size = 4\n\ncolour = blue\n", 3,
                    "unknown setting 'colour'");
  check_load_error ("# bad value\nchain-size = lots\n", 2,
                    "chain-size: 'lots' is not a whole number");
  check_load_error ("chain-size 4\n", 1, "expected 'key = value'");
  check_load_error ("timeout = \n", 1, "timeout: '' is not a whole number");
  check_load_error ("= 4\n", 1, "unknown setting ''");
}

static void
config_load_missing_file_is_fine_unless_required (void **state)
{
  struct knib_config cfg;
  const char *path = "/nonexistent-knib-dir/knib.conf";

  config_init (&cfg);
  assert_int_equal (config_load (&cfg, path, false), 0);
  assert_int_equal (cfg.chain_size, 8);
  assert_int_equal (config_load (&cfg, path, true), -1);
  assert_string_equal (
    get_error (),
    "configuration '/nonexistent-knib-dir/knib.conf': No such file or directory");
  assert_int_equal (get_errno (), ENOENT);
}

static void
config_load_of_a_directory_fails (void **state)
{
  struct knib_config cfg;

  config_init (&cfg);
  assert_int_equal (config_load (&cfg, "/tmp", false), -1);
  assert_contains (get_error (), "configuration '/tmp'");
  assert_int_equal (get_errno (), EISDIR);
}

/* process_alive: a zombie is gone, as is a reaped pid. */
static void
process_alive_and_start_time_count_a_zombie_as_gone (void **state)
{
  pid_t pid;
  int st;

  assert_true (process_alive (getpid ()));
  assert_false (process_alive (0));
  assert_true (process_start_time (getpid ()) > 0);
  assert_int_equal (process_start_time (0), -1);
  pid = fork ();
  assert_true (pid >= 0);
  if (pid == 0)
    _exit (0);
  /* Not reaped yet: a zombie once it has exited. */
  for (int i = 0; i < 500 && process_alive (pid); i++)
    usleep (10000);
  assert_false (process_alive (pid));
  assert_int_equal (process_start_time (pid), -1);
  assert_int_equal (waitpid (pid, &st, 0), pid);
  assert_false (process_alive (pid));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (set_error_without_errno_keeps_the_message_alone),
    cmocka_unit_test (set_error_with_errno_appends_strerror),
    cmocka_unit_test (set_error_keeps_a_long_message_whole),
    cmocka_unit_test (error_prepend_adds_context_and_keeps_errno),
    cmocka_unit_test (error_prepend_without_an_error_says_unknown),
    cmocka_unit_test (a_thread_s_error_is_freed_when_it_exits),
    cmocka_unit_test (set_error_negative_code_has_no_system_text),
    cmocka_unit_test (error_save_restore_keeps_the_error),
    cmocka_unit_test (get_error_is_never_null),
    cmocka_unit_test (errors_are_per_thread),
    cmocka_unit_test (vector_append_grows_and_keeps_order),
    cmocka_unit_test (vector_remove_shifts_the_rest),
    cmocka_unit_test (vector_reset_empties_and_allows_reuse),
    cmocka_unit_test (vector_reserve_keeps_len_and_avoids_regrowth),
    cmocka_unit_test (vector_reserve_too_much_fails_with_enomem_untouched),
    cmocka_unit_test (name_is_valid_accepts_safe_names),
    cmocka_unit_test (name_is_valid_rejects_unsafe_names),
    cmocka_unit_test (name_check_says_what_and_why),
    cmocka_unit_test (parse_int64_takes_whole_numbers_in_range),
    cmocka_unit_test (parse_int64_rejects_anything_else),
    cmocka_unit_test (parse_int64_out_of_range_names_the_range),
    cmocka_unit_test (parse_double_takes_finite_numbers_in_range),
    cmocka_unit_test (parse_double_rejects_anything_else),
    cmocka_unit_test (monotonic_ms_advances),
    cmocka_unit_test (deadline_minus_one_means_no_deadline),
    cmocka_unit_test (deadline_remaining_counts_down_to_zero),
    cmocka_unit_test (deadline_far_away_is_clamped),
    cmocka_unit_test (debug_parse_reads_topics),
    cmocka_unit_test (debug_parse_rejects_unknown_topics),
    cmocka_unit_test (cleanup_close_closes_and_keeps_errno),
    cmocka_unit_test (steal_ptr_keeps_the_value_from_cleanup),
    cmocka_unit_test (config_init_gives_the_documented_defaults),
    cmocka_unit_test (config_set_checks_every_type),
    cmocka_unit_test (config_vm_policy_is_a_key_per_vm),
    cmocka_unit_test (config_vm_policies_are_bounded),
    cmocka_unit_test (config_load_reads_comments_blanks_and_spaces),
    cmocka_unit_test (config_load_errors_name_the_file_and_line),
    cmocka_unit_test (config_load_missing_file_is_fine_unless_required),
    cmocka_unit_test (config_load_of_a_directory_fails),
    cmocka_unit_test (process_alive_and_start_time_count_a_zombie_as_gone),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
