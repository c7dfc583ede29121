/* SPDX-License-Identifier: Apache-2.0 */
/* test-files.c: the pure parts of src/files: path normalising, diffs, names, settings. */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/conf.h"
#include "common/error.h"
#include "files/files.h"

static void
check_normalise (const char *in, const char *want)
{
  char *got = files_normalise (in);

  assert_non_null (got);
  assert_string_equal (got, want);
  free (got);
}

static void
test_normalise (void **state)
{
  check_normalise ("/", "/");
  check_normalise ("", "/");
  check_normalise ("/etc/hosts", "/etc/hosts");
  check_normalise ("etc//hosts/", "/etc/hosts");
  check_normalise ("/etc/./nginx/../hosts", "/etc/hosts");
  check_normalise ("/../../etc", "/etc");
  check_normalise ("/a/../../../b/..", "/");
  check_normalise ("/..dots/...", "/..dots/...");
  check_normalise ("/a/b/c/../../d", "/a/d");
}

static struct files_entry
entry (const char *path, enum files_type t, int64_t size, uint32_t mode,
       int64_t mtime, const char *target)
{
  struct files_entry e = { NULL };

  e.path = (char *) path;
  e.type = t;
  e.size = size;
  e.mode = mode;
  e.mtime_sec = mtime;
  e.target = (char *) target;
  return e;
}

static void
test_diff (void **state)
{
  files_entry_vector a = empty_vector, b = empty_vector;
  files_diff_vector d = empty_vector;

  assert_int_equal (files_entry_vector_append (
                      &a, entry ("/d", FILES_DIRECTORY, 4096, 0755, 1, NULL)),
                    0);
  assert_int_equal (files_entry_vector_append (
                      &a, entry ("/d/gone", FILES_REGULAR, 3, 0644, 1, NULL)),
                    0);
  assert_int_equal (files_entry_vector_append (
                      &a, entry ("/d/link", FILES_SYMLINK, 3, 0777, 1, "/x")),
                    0);
  assert_int_equal (files_entry_vector_append (
                      &a, entry ("/d/same", FILES_REGULAR, 5, 0644, 1, NULL)),
                    0);
  assert_int_equal (files_entry_vector_append (
                      &a, entry ("/d/t", FILES_REGULAR, 5, 0644, 1, NULL)),
                    0);
  /* The directory's size and mtime follow its entries: not a change. */
  assert_int_equal (files_entry_vector_append (
                      &b, entry ("/d", FILES_DIRECTORY, 8192, 0755, 9, NULL)),
                    0);
  assert_int_equal (files_entry_vector_append (
                      &b, entry ("/d/link", FILES_SYMLINK, 3, 0777, 1, "/y")),
                    0);
  assert_int_equal (files_entry_vector_append (
                      &b, entry ("/d/new", FILES_REGULAR, 1, 0600, 2, NULL)),
                    0);
  assert_int_equal (files_entry_vector_append (
                      &b, entry ("/d/same", FILES_REGULAR, 5, 0644, 1, NULL)),
                    0);
  assert_int_equal (files_entry_vector_append (
                      &b, entry ("/d/t", FILES_DIRECTORY, 5, 0700, 3, NULL)),
                    0);

  assert_int_equal (files_diff (&a, &b, &d), 0);
  assert_int_equal (d.len, 4);
  assert_int_equal (d.ptr[0].change, FILES_REMOVED);
  assert_string_equal (d.ptr[0].a->path, "/d/gone");
  assert_int_equal (d.ptr[1].change, FILES_CHANGED);
  assert_string_equal (d.ptr[1].b->path, "/d/link");
  assert_int_equal (d.ptr[1].what, FILES_DIFF_TARGET);
  assert_int_equal (d.ptr[2].change, FILES_ADDED);
  assert_string_equal (d.ptr[2].b->path, "/d/new");
  assert_null (d.ptr[2].a);
  assert_int_equal (d.ptr[3].change, FILES_CHANGED);
  assert_int_equal (d.ptr[3].what, FILES_DIFF_TYPE);
  assert_string_equal (files_change_name (FILES_ADDED), "added");

  files_diff_vector_reset (&d);
  files_entry_vector_reset (&a);
  files_entry_vector_reset (&b);
}

static void
test_names (void **state)
{
  enum files_accel a;
  const char *why = NULL;
  struct knib_config cfg;

  assert_string_equal (files_type_name (FILES_SYMLINK), "symlink");
  assert_int_equal (files_type_letter (FILES_DIRECTORY), 'd');
  assert_int_equal (files_accel_parse ("tcg", &a), 0);
  assert_int_equal (a, FILES_ACCEL_TCG);
  assert_int_equal (files_accel_parse ("fast", &a), -1);
  assert_non_null (
    strstr (get_error (), "'fast' is not one of auto, kvm, tcg"));
  assert_int_equal (files_accel_resolve (FILES_ACCEL_KVM, &why),
                    FILES_ACCEL_KVM);
  assert_int_not_equal (files_accel_resolve (FILES_ACCEL_AUTO, &why),
                        FILES_ACCEL_AUTO);
  assert_non_null (why);

  config_init (&cfg);
  assert_string_equal (cfg.files_accel, "auto");
  assert_int_equal (config_set (&cfg, "files-accel", "kvm"), 0);
  assert_string_equal (cfg.files_accel, "kvm");
  assert_int_equal (config_set (&cfg, "files-accel", "qemu"), -1);
  assert_non_null (
    strstr (get_error (), "files-accel: 'qemu' is not one of auto, kvm, tcg"));
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_normalise),
    cmocka_unit_test (test_diff),
    cmocka_unit_test (test_names),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
